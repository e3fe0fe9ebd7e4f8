"""The recording format: write torch's trajectories of the cases run, and read and verify them.

Layout of a recording::

    DIR/manifest.json                  schema version, environment, case definitions, the SHA-256 of every
                                       data file, per case its steps, torch's error if any, its verdict
    DIR/cases/NNN-<configuration>.npz  the cases of one configuration (all dtypes and implementations)

Storage: the matrix repeats itself (the foreach implementation equals the for-loop on CPU bit for bit, the
first gradients of a configuration are the same for all its implementations, ...), so every tensor of every
step is a *chunk* stored once, in the file of the first case that has it, and numbered in recording order; a
case holds an index (tensor → chunk number per step), a file the chunks its cases introduce, as byte-shuffled
planes (the sign and exponent bytes of neighbouring values compress well together; the low mantissa bytes do
not), LZMA-compressed. float16 and bfloat16 values are stored exactly as float32.

A recording is read one way: :meth:`RecordedCase.trajectory` yields its steps as the live twin does
(:class:`refwd_validation.twin.TorchStep`), for the replay and for the reference check alike.

Safety: a recording is untrusted data. Manifests are JSON; arrays are read with ``allow_pickle=False``;
every data file's SHA-256 is checked before it is read; file names are checked to stay inside ``cases/``; no
link is followed, every manifest field is type-checked, and every member's declared size is bounded before it
is read (:mod:`.checks`). Any problem (a missing, truncated, corrupted or tampered file, an unknown or newer
schema, a case on one side only, another device than requested) is a :class:`RecordingError` naming the file
or case, exit code 2.
"""
import dataclasses
import datetime
import hashlib
import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import scenario, twin
from ..cases import Case
from ..dtypes import compute_dtype
from ..compare import jsonable
from ..report import environment
from .checks import (RecordingError, check_definition, check_entry, check_environment, check_file_entry,
                     check_irreproducible, check_not_a_link, check_steps, file_limits, open_regular,
                     read_members)

FORMAT = "refwd-torch-recording"
SCHEMA_VERSION = 2          # 2: cases carry their configuration name; 1 (refwd 0.1) is read too
MANIFEST = "manifest.json"
STORED_DTYPES = ("float64", "float32")      # float16 and bfloat16 are stored (exactly) as float32


# ---------------------------------------------------------------------------------------------------------------
# Writing


def case_definition(case):
    """A case as JSON-ready data (every field; tuples become lists)."""
    return {f.name: jsonable(getattr(case, f.name)) for f in dataclasses.fields(case)}


def case_from_definition(definition, where, schema_version=SCHEMA_VERSION):
    """The :class:`Case` of a manifest entry (lists become tuples again, so it equals the original).

    Schema 1 (refwd 0.1) had no ``config`` (it is the case id less its last three parts) and a ``tags`` field.
    """
    if not isinstance(definition, dict):
        raise RecordingError(f"{where}: its definition is not a JSON object")
    if schema_version == 1:
        definition = {key: value for key, value in definition.items() if key != "tags"}
        if isinstance(definition.get("id"), str):
            definition.setdefault("config", definition["id"].rsplit("-", 3)[0])
    names = {f.name for f in dataclasses.fields(Case)}
    unknown = sorted(set(definition) - names)
    if unknown:
        raise RecordingError(f"{where}: unknown case fields {unknown} (recorded by a newer refwd?)")
    definition = dict(definition)
    if isinstance(definition.get("inject"), list):   # the injected values are stored as "inf", "-inf", "nan"
        definition["inject"] = [[*entry[:3], float(entry[3])] if isinstance(entry, list) and len(entry) == 4
                                and isinstance(entry[3], (str, int, float)) else entry
                                for entry in definition["inject"]]
    try:
        return Case(**{key: _tupled(value) for key, value in definition.items()})
    except TypeError as error:
        raise RecordingError(f"{where}: not a case definition: {error}") from None


def _tupled(value):
    if isinstance(value, list):
        return tuple(_tupled(item) for item in value)
    return value


class Writer:
    """Writes a recording: ``add(case, steps, error, reference)`` per case, then ``finish()``.

    ``directory`` must not exist or be empty: a recording is never mixed with, or written over, another.
    Consecutive cases of one configuration (the same case id but for dtype, implementation and device) go into
    one file, so that the compressor sees a fused trajectory next to the for-loop one it nearly repeats.
    """

    def __init__(self, directory):
        self.directory = Path(directory)
        try:
            if self.directory.exists() and (not self.directory.is_dir() or any(self.directory.iterdir())):
                raise RecordingError(f"{self.directory} exists and is not an empty directory; record into a new one")
            (self.directory / "cases").mkdir(parents=True, exist_ok=True)
        except OSError as error:  # a file's child, a read-only or a pseudo file system, no permission
            raise RecordingError(f"cannot record into {self.directory}: {error.strerror or error}") from None
        self.known = {}          # chunk digest -> chunk number (numbered in the order first seen)
        self.entries = []
        self.unsupported = {}    # case id -> why the recording torch could not run it (nothing recorded)
        self.files = []
        self.created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        self._open = None        # (configuration, file name, members, new chunks) of the file being filled

    def add(self, case, steps, error=None, reference=None, irreproducible_step=None):
        """Store one case: its torch ``steps`` (TorchSteps), the torch ``error`` that ended it, the verdict, and
        the first step at which a second run of torch differed (None: reproducible)."""
        configuration = case.config
        if self._open is None or self._open[0] != configuration:
            self._flush()
            self._open = (configuration, f"cases/{len(self.files):03d}-{configuration}.npz", {}, [])
        _, path, members, new_chunks = self._open
        for name, array in self._case_arrays(case, steps, new_chunks).items():
            members[f"{case.id}/{name}"] = array
        self.entries.append({"id": case.id, "file": path, "steps": len(steps), "error": error,
                             "irreproducible_step": irreproducible_step, "reference": reference,
                             "definition": case_definition(case)})

    def skip(self, case, reason):
        """A case the recording torch cannot run: named in the manifest with the reason, nothing stored."""
        self.unsupported[case.id] = reason

    def finish(self):
        """Write the last file and the manifest; return the manifest."""
        self._flush()
        manifest = {
            "format": FORMAT, "schema_version": SCHEMA_VERSION, "created": self.created,
            "environment": environment(),
            "devices": sorted({entry["definition"]["device"] for entry in self.entries}),
            "storage": "each tensor of each step stored once, byte-shuffled, in LZMA-compressed .npz files, one "
                       "per configuration (refwd_validation/recording/store.py)",
            "total_bytes": sum(entry["bytes"] for entry in self.files),
            "files": self.files, "cases": self.entries, "unsupported_when_recorded": self.unsupported,
        }
        (self.directory / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        return manifest

    def _flush(self):
        if self._open is None:
            return
        _, path, members, new_chunks = self._open
        for dtype in STORED_DTYPES:
            chunks = [chunk for chunk in new_chunks if chunk.dtype == dtype]
            members[f"chunks/{dtype}"] = _shuffle(np.concatenate(chunks) if chunks else np.zeros(0, dtype=dtype))
        members["chunk_dtypes"] = np.array([STORED_DTYPES.index(chunk.dtype.name) for chunk in new_chunks],
                                           dtype=np.uint8)
        members["chunk_sizes"] = np.array([chunk.size for chunk in new_chunks], dtype=np.int64)
        _save_npz(self.directory / path, members)
        full = self.directory / path
        self.files.append({"path": path, "sha256": _sha256(full), "bytes": full.stat().st_size})
        self._open = None

    def _case_arrays(self, case, steps, new_chunks):
        """One case's arrays: loss and lrs per step; per tensor, its chunk number at every step (-1: absent).

        Rows of ``index`` are tensors ("param/0.weight", "grad/0.weight", "state/0.weight/exp_avg", "x", "y"),
        columns positions 0..T: a param's value before step 1 and after each step; the other tensors' values
        of steps 1..T at columns 1..T (column 0 is -1). ``counts`` holds the state's step counts (-1: none).
        """
        dtype = "float32" if case.lowp else case.dtype
        initial = steps[0].params if steps else scenario.initial_params(case)
        names = list(initial)
        series = {"x": [None] + [step.x for step in steps], "y": [None] + [step.y for step in steps]}
        counted = []
        for name in names:
            series[f"param/{name}"] = [initial[name]] + [step.new_params[name] for step in steps]
            series[f"grad/{name}"] = [None] + [step.all_grads[name] for step in steps]
            for key in sorted({key for step in steps for key in step.new_state[name]} - {"step"}):
                series[f"state/{name}/{key}"] = [None] + [step.new_state[name].get(key) for step in steps]
            if any("step" in step.new_state[name] for step in steps):
                counted.append(name)
        shapes = np.full((len(series), 4), -1, dtype=np.int64)
        for row, values in enumerate(series.values()):
            shape = next((np.shape(value) for value in values if value is not None), ())  # () if torch never ran
            shapes[row, :len(shape)] = shape
        return {
            "loss": np.array([step.loss for step in steps], dtype=np.float64),
            "lrs": np.array([step.lrs for step in steps], dtype=np.float64).reshape(len(steps), -1 if steps else 0),
            "tensors": np.array(list(series), dtype=str),
            "shapes": shapes,
            "index": np.array([[self._chunk(value, dtype, new_chunks) for value in values]
                               for values in series.values()], dtype=np.int64).reshape(len(series), len(steps) + 1),
            "counted": np.array(counted, dtype=str),
            "counts": np.array([[step.new_state[name].get("step", -1) for step in steps] for name in counted],
                               dtype=np.int64).reshape(len(counted), len(steps)),
        }

    def _chunk(self, value, dtype, new_chunks):
        """The chunk number of one tensor at one step (-1: absent), adding it to this file if it is new."""
        if value is None:
            return -1
        value = np.ascontiguousarray(value, dtype=dtype)
        digest = hashlib.sha256(dtype.encode() + repr(value.shape).encode() + value.tobytes()).digest()
        if digest not in self.known:
            self.known[digest] = len(self.known)
            new_chunks.append(value.reshape(-1))
        return self.known[digest]


def _save_npz(path, members):
    """An .npz (a zip of .npy files) with LZMA compression; np.load reads it as any other."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_LZMA) as archive:
        for name, array in members.items():
            with archive.open(name + ".npy", "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.asarray(array), allow_pickle=False)


def _shuffle(flat):
    """Byte planes: (itemsize, n) uint8, plane k holding byte k of every value."""
    return np.ascontiguousarray(flat.view(np.uint8).reshape(-1, flat.itemsize).T)


def _unshuffle(planes, dtype):
    return np.ascontiguousarray(planes.T).reshape(-1).view(dtype)


def _sha256(source):
    """The SHA-256 of a file, given by its path or an open binary handle."""
    if not hasattr(source, "read"):
        with open(source, "rb") as handle:
            return _sha256(handle)
    digest = hashlib.sha256()
    for block in iter(lambda: source.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()



# ---------------------------------------------------------------------------------------------------------------
# Reading


class RecordedTorchError(Exception):
    """The recorded torch raised here (the message is its error text): replayed as the live torch would raise."""


@dataclass
class RecordedCase:
    """One case of a recording: its definition, its torch trajectory (as arrays), and what was recorded with it."""

    case: Case
    file: str
    steps: int
    error: str | None
    reference: dict | None
    irreproducible_step: int | None
    arrays: dict = field(repr=False)     # "loss", "lrs", "count/<name>", and per tensor a list over steps
    torch_version: str | None = None     # the recorded torch's (known defects are looked up for it)

    @property
    def names(self):
        return [tensor[len("param/"):] for tensor in self.arrays if tensor.startswith("param/")]

    def initial_params(self):
        return {name: self.tensor(f"param/{name}", 0) for name in self.names}

    def tensor(self, name, position):
        """The recorded tensor ``name`` ("param/0.weight", "grad/0.weight", "state/0.weight/exp_avg", "x", "y")
        at ``position`` t: a param after step t (t = 0: the initial value), anything else of step t; None where
        absent (a state before the parameter's first gradient)."""
        return self.arrays[name][position]

    def state(self, name, steps_done):
        """The recorded optimizer state of ``name`` after ``steps_done`` steps ({} before its first grad)."""
        if steps_done == 0:
            return {}
        prefix = f"state/{name}/"
        state = {tensor[len(prefix):]: values[steps_done] for tensor, values in self.arrays.items()
                 if tensor.startswith(prefix) and values[steps_done] is not None}
        counts = self.arrays.get(f"count/{name}")
        if counts is not None and counts[steps_done - 1] >= 0:
            state["step"] = int(counts[steps_done - 1])
        return state

    def trajectory(self):
        """The recorded torch run as :class:`refwd_validation.twin.TorchStep` s, as the live twin yields them
        (float16/bfloat16 upcast to float64, every array a writable copy); raises :class:`RecordedTorchError`
        after the last step where the recorded torch raised."""
        case, names = self.case, self.names
        compute = compute_dtype(case.dtype)

        def values(kind, position):
            return {name: _as(self.tensor(f"{kind}/{name}", position), compute) for name in names}

        def state(position):
            return {name: {key: value if key == "step" else _as(value, compute)
                           for key, value in self.state(name, position).items()} for name in names}

        for step in range(1, self.steps + 1):
            grads = values("grad", step)
            yield twin.TorchStep(
                step=step, lrs=[float(lr) for lr in self.arrays["lrs"][step - 1]],
                loss_scale=scenario.loss_scale(case, step), x=_as(self.tensor("x", step), compute),
                y=_as(self.tensor("y", step), compute), params=values("param", step - 1), all_grads=grads,
                grads=case.step_grads(step, grads),
                loss=float(self.arrays["loss"][step - 1]), state=state(step - 1),
                new_params=values("param", step), new_state=state(step))
        if self.error:
            raise RecordedTorchError(self.error)


def _as(array, dtype):
    return None if array is None else np.array(array, dtype=dtype)


@dataclass
class Recording:
    directory: Path
    manifest: dict
    cases: dict          # id -> RecordedCase, in recording order

    @property
    def environment(self):
        return self.manifest.get("environment", {})




def load(directory):
    """Read and verify a recording. Raises :class:`RecordingError` naming the file or case on any problem.

    ``directory`` may be a link (the user named it); nothing inside it may be one. Every entry of the manifest
    is checked, selected or not, before any data file is read; each data file is read once, from the handle its
    SHA-256 was computed on.
    """
    directory = Path(directory)
    manifest = _read_manifest(directory)
    files = _check_files(directory, manifest)
    entries = _check_entries(manifest, files)
    chunks, members = [], {}
    for path in files:  # in order: chunk numbers grow
        in_file = [(case, entry["steps"]) for case, entry in entries if entry["file"] == path]
        members[path] = _read_file(directory, files[path], file_limits(in_file), chunks)
    cases = {}
    for case, entry in entries:
        arrays = _case_arrays(entry["file"], members[entry["file"]], case, entry["steps"], chunks)
        cases[case.id] = RecordedCase(case=case, file=entry["file"], steps=entry["steps"], error=entry.get("error"),
                                      reference=entry.get("reference"),
                                      irreproducible_step=entry.get("irreproducible_step"), arrays=arrays,
                                      torch_version=manifest["environment"].get("torch"))
    return Recording(directory=directory, manifest=manifest, cases=cases)


def _read_manifest(directory):
    path = directory / MANIFEST
    if not check_not_a_link(path, path):
        raise RecordingError(f"{path} not found: {directory} is not a refwd recording")
    try:
        with open_regular(path, path) as handle:
            manifest = json.loads(handle.read().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise RecordingError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise RecordingError(f"{path} is not a refwd recording manifest (format {_get(manifest, 'format')!r}, "
                             f"expected {FORMAT!r})")
    version = manifest.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise RecordingError(f"{path}: unknown schema version {version!r}")
    if version > SCHEMA_VERSION:
        raise RecordingError(f"{path}: schema version {version} is newer than this refwd reads ({SCHEMA_VERSION}); "
                             "upgrade refwd to read it")
    for key, kind in (("files", list), ("cases", list), ("environment", dict)):
        if not isinstance(manifest.get(key), kind):
            raise RecordingError(f"{path}: '{key}' is missing or not a {kind.__name__}")
    unsupported = manifest.setdefault("unsupported_when_recorded", {})   # (absent before refwd 0.3)
    if not isinstance(unsupported, dict) or not all(isinstance(key, str) and isinstance(value, str)
                                                    for key, value in unsupported.items()):
        raise RecordingError(f"{path}: 'unsupported_when_recorded' is not a mapping of case ids to reasons")
    check_environment(manifest["environment"], MANIFEST)
    return manifest


def _check_entries(manifest, listed):
    """Every case entry, selected or not: [(Case, entry)], well typed, consistent, its claims excused."""
    entries, seen = [], set()
    for entry in manifest["cases"]:
        where = f"{MANIFEST}: case {entry.get('id')!r}" if isinstance(entry, dict) else f"{MANIFEST}: a case entry"
        check_entry(entry, where)
        case = case_from_definition(entry["definition"], where, manifest["schema_version"])
        check_definition(case, where)
        if case.id != entry["id"]:
            raise RecordingError(f"{where}: its definition has id {case.id!r}")
        if entry["id"] in seen:
            raise RecordingError(f"{where} appears twice")
        seen.add(entry["id"])
        if entry["file"] not in listed:
            raise RecordingError(f"{where}: its file {entry['file']!r} is not listed with a SHA-256 in 'files'")
        check_steps(case, entry["steps"], where)
        check_irreproducible(case.id, entry.get("irreproducible_step"), manifest["environment"].get("torch"),
                                    where)
        entries.append((case, entry))
    return entries


def _get(mapping, key):
    return mapping.get(key) if isinstance(mapping, dict) else None


SAFE_FILE = re.compile(r"cases/[A-Za-z0-9][A-Za-z0-9._-]*\.npz")


def _check_files(directory, manifest):
    """Every listed file: a safe name inside cases/, present and regular. Nothing unlisted, no link."""
    files = {}
    if not check_not_a_link(directory / "cases", "cases/", "directory") and manifest["files"]:
        raise RecordingError(f"cases/: missing from {directory}")
    for entry in manifest["files"]:
        path = _get(entry, "path")
        if not isinstance(path, str) or not SAFE_FILE.fullmatch(path) or ".." in path:
            raise RecordingError(f"{MANIFEST}: file entry {path!r} is not a file name inside cases/")
        if path in files:
            raise RecordingError(f"{MANIFEST}: {path} is listed twice")
        check_file_entry(entry, MANIFEST)
        if not check_not_a_link(directory / path, path):
            raise RecordingError(f"{path}: listed in {MANIFEST} but missing")
        files[path] = entry
    present = sorted(f"cases/{name}" for name in os.listdir(directory / "cases")) if files else []
    unlisted = [path for path in present if path not in files]
    if unlisted:
        raise RecordingError(f"{unlisted[0]}: a file in the recording that {MANIFEST} does not list")
    return files


def _read_file(directory, entry, limits, chunks):
    """The members of one data file, checked against its SHA-256 and against ``limits`` before they are read
    (from the handle that was hashed); the chunks it introduces are appended to ``chunks``."""
    path = entry["path"]
    with open_regular(directory / path, path) as handle:
        found = _sha256(handle)
        if found != entry["sha256"]:
            raise RecordingError(f"{path}: SHA-256 mismatch (manifest {entry['sha256']}, file {found}): the "
                                 "file was changed, truncated or corrupted after recording")
        handle.seek(0)
        try:
            with zipfile.ZipFile(handle) as archive:
                members = read_members(archive, path, limits)
        except RecordingError:
            raise
        except Exception as error:  # a zip or .npy that does not parse, even with a matching hash
            raise RecordingError(f"{path}: not a readable .npz ({type(error).__name__}: {error})") from None
    try:
        streams = [_unshuffle(members[f"chunks/{dtype}"], dtype) for dtype in STORED_DTYPES]
        offsets = [0] * len(STORED_DTYPES)
        for code, size in zip(members["chunk_dtypes"], members["chunk_sizes"], strict=True):
            chunk = streams[code][offsets[code]:offsets[code] + size]
            chunk.flags.writeable = False  # shared by every case that has this tensor: never to be changed
            chunks.append(chunk)
            offsets[code] += int(size)
        if offsets != [stream.size for stream in streams]:
            raise ValueError(f"chunk sizes add up to {offsets}, the streams hold {[s.size for s in streams]}")
    except (KeyError, ValueError, IndexError) as error:
        raise RecordingError(f"{path}: malformed recording data: {error}") from None
    return members


def _case_arrays(path, members, case, steps, chunks):
    """One case's arrays: "loss", "lrs", "count/<name>", and per tensor a list of arrays (None where absent)."""
    try:
        prefix = f"{case.id}/"
        arrays = {"loss": members[prefix + "loss"], "lrs": members[prefix + "lrs"]}
        index, shapes = members[prefix + "index"], members[prefix + "shapes"]
        if arrays["loss"].shape != (steps,) or index.shape[1] != steps + 1:
            raise ValueError(f"{steps} steps in the manifest, but loss {arrays['loss'].shape} and index "
                             f"{index.shape}")
        for tensor, row, shape in zip(members[prefix + "tensors"], index, shapes, strict=True):
            shape = tuple(int(n) for n in shape if n >= 0)
            arrays[str(tensor)] = [None if number < 0 else chunks[number].reshape(shape) for number in row]
        for name, counts in zip(members[prefix + "counted"], members[prefix + "counts"], strict=True):
            arrays[f"count/{name}"] = counts
    except (KeyError, ValueError, IndexError) as error:
        raise RecordingError(f"{path} (case {case.id!r}): malformed recording data: {error}") from None
    return arrays
