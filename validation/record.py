"""Record torch's trajectories over the case matrix, and compare another torch against a recording.

``refwd validate --record DIR`` saves, for every case run, torch's params (before the first step and after
every step), its gradients, loss, batch and optimizer state after every step, with a manifest.
``refwd validate --against DIR`` replays the recording under the installed torch and reports, per case,
whether torch's numbers are bit-identical to the recorded ones, changed within tolerance, or changed beyond it,
and next to each the installed torch's verdict against the reference (:func:`validation.harness.run_case`).

The comparison is a lock-step replay: at every step t the installed torch gets the recorded params θ_{t-1},
computes its own loss and gradients on the recorded batch (compared with the recorded ones: the *gradient*
check), is then given the recorded gradients g_t and optimizer state S_{t-1}, takes one step, and its θ_t and
S_t are compared with the recorded ones (the *lockstep* check). So a difference is pinned to the step and
tensor where it arises and never accumulates, and a change in autograd is told apart from a change in the
optimizer. Differences are measured as the harness measures them, in ULPs of the error scale of one step
(:mod:`validation.tolerance`): two correct implementations are within the budget of each other.

Layout of a recording::

    DIR/manifest.json                  schema version, environment, case definitions, the SHA-256 of every
                                       data file, per case its steps, torch's error if any, its verdict
    DIR/cases/NNN-<configuration>.npz  the cases of one configuration (all dtypes and implementations)

Storage: the matrix repeats itself (the foreach implementation equals the for-loop on CPU bit for bit, the
first gradients of a configuration are the same for all its implementations, ...), so every tensor of every
step is a *chunk* stored once, in the file of the first case that has it, and numbered in recording order; a
case holds an index (tensor → chunk number per step), a file the chunks its cases introduce, as byte-shuffled
planes (the sign and exponent bytes of neighbouring values compress well together; the low mantissa bytes do
not), LZMA-compressed. float16 and bfloat16 values are stored exactly as float32. Recording and replay run
torch on one thread (:func:`one_thread`).

Safety: a recording is data only. Manifests are JSON; arrays are read with ``np.load(allow_pickle=False)``;
every data file's SHA-256 is checked before it is read; file names are checked to stay inside ``cases/``. Any
problem (a missing, truncated, corrupted or tampered file, an unknown or newer schema, a case on one side
only, another device than requested) is a :class:`RecordingError` naming the file or case, exit code 2.
"""
import contextlib
import dataclasses
import datetime
import hashlib
import json
import math
import os
import platform
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import tolerance, twin
from .cases import CASE_IDS, Case

GOLDEN = Path(__file__).parent / "golden"  # the recording shipped with refwd: torch 2.13.0 on CPU
FORMAT = "refwd-torch-recording"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
STORED_DTYPES = ("float64", "float32")      # float16 and bfloat16 are stored (exactly) as float32
COMPARISON_STATUSES = ("identical", "within", "beyond", "nondeterministic", "error")
STATUS_WORDS = {"identical": "bit-identical", "within": "changed within tolerance",
                "beyond": "changed beyond tolerance", "error": "replay error",
                "nondeterministic": "not reproducible (torch differed between two runs when recorded)"}


class RecordingError(Exception):
    """A recording that cannot be trusted or used: the message names the file or case. Exit code 2."""


# ---------------------------------------------------------------------------------------------------------------
# Writing


def environment():
    """What the numbers depend on: versions, platform, CPU (and its ATen dispatch), GPU."""
    from .report import environment as harness_environment
    import torch
    info = dict(harness_environment())
    info["torch_cuda_build"] = torch.version.cuda   # the CUDA the wheel was built for, used or not
    info["cpu"] = _cpu_model()
    info["machine"] = platform.machine()
    return info


def _cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def case_definition(case):
    """A case as JSON-ready data (every field; tuples become lists)."""
    return {f.name: _jsonable(getattr(case, f.name)) for f in dataclasses.fields(case)}


def case_from_definition(definition, where):
    """The :class:`Case` of a manifest entry (lists become tuples again, so it equals the original)."""
    names = {f.name for f in dataclasses.fields(Case)}
    unknown = sorted(set(definition) - names)
    if unknown:
        raise RecordingError(f"{where}: unknown case fields {unknown} (recorded by a newer refwd?)")
    try:
        return Case(**{key: _tupled(value) for key, value in definition.items()})
    except TypeError as error:
        raise RecordingError(f"{where}: not a case definition: {error}") from None


def _jsonable(value):
    if isinstance(value, (tuple, list)):
        return [_jsonable(item) for item in value]
    return value


def _tupled(value):
    if isinstance(value, list):
        return tuple(_tupled(item) for item in value)
    return value


@contextlib.contextmanager
def one_thread():
    """torch on one CPU thread while recording and replaying: how a matrix product splits its sums over threads
    changes its last bits, and a recording must not depend on the machine's core count."""
    torch = twin.import_torch()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def record_trajectory(case):
    """Run torch on ``case`` and return (its steps as :class:`validation.twin.TorchStep`, the error text or None).

    A torch error ends the trajectory; the steps before it are kept and the error is recorded (a documented
    torch error is part of torch's behaviour, and a later version that stops raising it has changed).
    """
    steps = []
    with one_thread():
        try:
            for step in twin.torch_trajectory(case):
                steps.append(step)
        except Exception as error:  # torch's own exception, recorded as text
            return steps, f"{type(error).__name__}: {error}"
    return steps, None


def first_irreproducible_step(steps, again):
    """The first step at which two runs of the same torch differ bit for bit (None: the runs agree).

    torch 2.13's fused SGD on float16/bfloat16 CPU params reads memory it never wrote (pytorch/pytorch#191763),
    so its numbers change from run to run; such a case cannot be compared bit for bit with another version.
    """
    for first, second in zip(steps, again):
        for name in first.new_params:
            pairs = [(first.new_params[name], second.new_params[name]), (first.all_grads[name], second.all_grads[name])]
            pairs += [(value, second.new_state[name].get(key)) for key, value in first.new_state[name].items()]
            if any(np.asarray(a).tobytes() != np.asarray(b).tobytes() for a, b in pairs):
                return first.step
    return None


class Writer:
    """Writes a recording: ``add(case, steps, error, reference)`` per case, then ``finish()``.

    ``directory`` must not exist or be empty: a recording is never mixed with, or written over, another.
    Consecutive cases of one configuration (the same case id but for dtype, implementation and device) go into
    one file, so that the compressor sees a fused trajectory next to the for-loop one it nearly repeats.
    """

    def __init__(self, directory):
        self.directory = Path(directory)
        if self.directory.exists() and (not self.directory.is_dir() or any(self.directory.iterdir())):
            raise RecordingError(f"{self.directory} exists and is not an empty directory; record into a new one")
        (self.directory / "cases").mkdir(parents=True, exist_ok=True)
        self.known = {}          # chunk digest -> chunk number (numbered in the order first seen)
        self.entries = []
        self.files = []
        self.created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        self._open = None        # (configuration, file name, members, new chunks) of the file being filled

    def add(self, case, steps, error=None, reference=None, irreproducible_step=None):
        """Store one case: its torch ``steps`` (TorchSteps), the torch ``error`` that ended it, the verdict, and
        the first step at which a second run of torch differed (None: reproducible)."""
        configuration = case.id.rsplit("-", 3)[0]
        if self._open is None or self._open[0] != configuration:
            self._flush()
            self._open = (configuration, f"cases/{len(self.files):03d}-{configuration}.npz", {}, [])
        _, path, members, new_chunks = self._open
        for name, array in self._case_arrays(case, steps, new_chunks).items():
            members[f"{case.id}/{name}"] = array
        self.entries.append({"id": case.id, "file": path, "steps": len(steps), "error": error,
                             "irreproducible_step": irreproducible_step, "reference": reference,
                             "definition": case_definition(case)})

    def finish(self):
        """Write the last file and the manifest; return the manifest."""
        self._flush()
        manifest = {
            "format": FORMAT, "schema_version": SCHEMA_VERSION, "created": self.created,
            "environment": environment(),
            "devices": sorted({entry["definition"]["device"] for entry in self.entries}),
            "storage": "each tensor of each step stored once, byte-shuffled, in LZMA-compressed .npz files, one "
                       "per configuration (validation/record.py)",
            "total_bytes": sum(entry["bytes"] for entry in self.files),
            "files": self.files, "cases": self.entries,
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
        initial = steps[0].params if steps else twin.initial_params(case)
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


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Recorder:
    """A reporter for ``refwd validate --record DIR``: records torch's trajectory of every case run."""

    def __init__(self, directory):
        self.writer = Writer(directory)

    def start(self, cases):
        pass

    def result(self, result):
        steps, error = record_trajectory(result.case)
        irreproducible = first_irreproducible_step(steps, record_trajectory(result.case)[0])
        reference = {"status": result.status, "worst_ulps": _finite(result.worst_ulps), "detail": result.detail}
        self.writer.add(result.case, steps, error, reference, irreproducible)

    def finish(self, results, seconds):
        self.manifest = self.writer.finish()


# ---------------------------------------------------------------------------------------------------------------
# Reading


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

    def tensor(self, name, position):
        """The recorded tensor ``name`` ("param/0.weight", "grad/0.weight", "state/0.weight/exp_avg", "x", "y")
        at ``position`` t: a param after step t (t = 0: the initial value), anything else of step t; None where
        absent (a state before the parameter's first gradient)."""
        return self.arrays[name][position]


@dataclass
class Recording:
    directory: Path
    manifest: dict
    cases: dict          # id -> RecordedCase, in recording order

    @property
    def environment(self):
        return self.manifest.get("environment", {})


def load(directory):
    """Read and verify a recording. Raises :class:`RecordingError` naming the file or case on any problem."""
    directory = Path(directory)
    manifest = _read_manifest(directory)
    files = _check_files(directory, manifest)
    chunks = []
    members = {path: _read_file(directory, path, chunks) for path in files}  # in order: chunk numbers grow
    cases = {}
    for entry in manifest["cases"]:
        where = f"{MANIFEST}: case {entry.get('id')!r}" if isinstance(entry, dict) else f"{MANIFEST}: a case entry"
        if not isinstance(entry, dict) or not {"id", "file", "steps", "definition"} <= set(entry):
            raise RecordingError(f"{where} lacks id, file, steps or definition")
        case = case_from_definition(entry["definition"], where)
        if case.id != entry["id"]:
            raise RecordingError(f"{where}: its definition has id {case.id!r}")
        if entry["id"] in cases:
            raise RecordingError(f"{where} appears twice")
        if entry["file"] not in files:
            raise RecordingError(f"{where}: its file {entry['file']!r} is not listed with a SHA-256 in 'files'")
        arrays = _case_arrays(entry["file"], members[entry["file"]], case, entry["steps"], chunks)
        cases[case.id] = RecordedCase(case=case, file=entry["file"], steps=int(entry["steps"]),
                                      error=entry.get("error"), reference=entry.get("reference"),
                                      irreproducible_step=entry.get("irreproducible_step"), arrays=arrays)
    return Recording(directory=directory, manifest=manifest, cases=cases)


def _read_manifest(directory):
    path = directory / MANIFEST
    if not path.is_file():
        raise RecordingError(f"{path} not found: {directory} is not a refwd recording")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
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
    return manifest


def _get(mapping, key):
    return mapping.get(key) if isinstance(mapping, dict) else None


SAFE_FILE = re.compile(r"cases/[A-Za-z0-9][A-Za-z0-9._-]*\.npz")


def _check_files(directory, manifest):
    """Every listed file: a safe name inside cases/, present, and with the recorded SHA-256. Nothing unlisted."""
    files = {}
    for entry in manifest["files"]:
        path = _get(entry, "path")
        if not isinstance(path, str) or not SAFE_FILE.fullmatch(path) or ".." in path:
            raise RecordingError(f"{MANIFEST}: file entry {path!r} is not a file name inside cases/")
        if path in files:
            raise RecordingError(f"{MANIFEST}: {path} is listed twice")
        full = directory / path
        if not full.is_file():
            raise RecordingError(f"{path}: listed in {MANIFEST} but missing")
        found = _sha256(full)
        if found != _get(entry, "sha256"):
            raise RecordingError(f"{path}: SHA-256 mismatch (manifest {_get(entry, 'sha256')}, file {found}): the "
                                 "file was changed, truncated or corrupted after recording")
        files[path] = entry
    unlisted = sorted(str(p.relative_to(directory)) for p in (directory / "cases").glob("*")
                      if str(p.relative_to(directory)) not in files) if (directory / "cases").is_dir() else []
    if unlisted:
        raise RecordingError(f"{unlisted[0]}: a file in the recording that {MANIFEST} does not list")
    return files


def _read_file(directory, path, chunks):
    """The members of one data file; the chunks it introduces are appended to ``chunks``."""
    try:
        with np.load(directory / path, allow_pickle=False) as data:
            members = {name: data[name] for name in data.files}
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
        for tensor, row, shape in zip(members[prefix + "tensors"], index, shapes):
            shape = tuple(int(n) for n in shape if n >= 0)
            arrays[str(tensor)] = [None if number < 0 else chunks[number].reshape(shape) for number in row]
        for name, counts in zip(members[prefix + "counted"], members[prefix + "counts"]):
            arrays[f"count/{name}"] = counts
    except (KeyError, ValueError, IndexError) as error:
        raise RecordingError(f"{path} (case {case.id!r}): malformed recording data: {error}") from None
    return arrays


# ---------------------------------------------------------------------------------------------------------------
# Comparing


@dataclass
class Difference:
    """Where the installed torch differs from the recording: the worst element of one tensor at one step."""

    check: str               # "gradient" (autograd at the recorded params) or "lockstep" (one optimizer step)
    step: int
    parameter: str | None    # None for the loss
    key: str                 # "param", a state key, "grad" or "loss"
    index: tuple | None
    recorded: float | None
    current: float | None
    ulps: float              # ULPs of the error scale of that step (inf: not comparable, e.g. a state key missing)
    budget: float
    message: str = ""

    def describe(self):
        where = f"step {self.step}" + (f", {self.parameter}" if self.parameter else "") + f", {self.key}"
        if self.index:
            where += f"[{', '.join(map(str, self.index))}]"
        if self.message:
            return f"{self.check}: {where}: {self.message}"
        return (f"{self.check}: {where}: recorded {self.recorded!r}, now {self.current!r}, "
                f"{_fmt_ulps(self.ulps)} ulp (budget {self.budget:g})")

    def to_dict(self):
        return {"check": self.check, "step": self.step, "parameter": self.parameter, "key": self.key,
                "index": list(self.index) if self.index else None, "recorded": self.recorded,
                "current": self.current, "ulps": _finite(self.ulps), "budget": self.budget,
                "message": self.message, "text": self.describe()}


@dataclass
class CaseComparison:
    case: Case
    status: str = "identical"                    # one of COMPARISON_STATUSES
    worst_ulps: float = 0.0
    compared: int = 0                            # tensors compared
    differing: int = 0                           # of those, not bit-identical
    unreliable: int = 0                          # differing where the recorded torch was not reproducible
    first_difference: Difference | None = None
    first_beyond: Difference | None = None
    error: str | None = None
    reference: object = None                     # the installed torch's CaseResult against refwd
    recorded_reference: dict | None = None

    @property
    def fixed(self):
        """Changed beyond tolerance, from failing the reference when recorded to passing it now: a torch fix."""
        return (self.status == "beyond" and self.reference is not None and self.reference.status == "pass"
                and (self.recorded_reference or {}).get("status") not in (None, "pass"))

    @property
    def ok(self):
        """Nothing for CI to stop on: not a replay error, no unexplained change, and correct now."""
        if self.reference is not None and not self.reference.ok:
            return False
        return self.status in ("identical", "within", "nondeterministic") or self.fixed

    def to_dict(self):
        reference = self.reference
        return {
            "id": self.case.id, "comparison": self.status, "comparison_text": STATUS_WORDS[self.status],
            "worst_ulps": _finite(self.worst_ulps), "tensors_compared": self.compared,
            "tensors_differing": self.differing, "tensors_differing_where_irreproducible": self.unreliable,
            "fixed": self.fixed,
            "first_difference": self.first_difference.to_dict() if self.first_difference else None,
            "first_beyond_tolerance": self.first_beyond.to_dict() if self.first_beyond else None,
            "error": self.error,
            "reference": None if reference is None else {"status": reference.status,
                                                         "worst_ulps": _finite(reference.worst_ulps),
                                                         "detail": reference.detail},
            "reference_when_recorded": self.recorded_reference,
        }


class _Comparer:
    """Compares one case's tensors, keeping the worst figure and the first differences.

    From ``unreliable_from`` on (the step at which two runs of the recorded torch differed) a difference says
    nothing about the installed torch: it is counted in ``comparison.unreliable`` only.
    """

    def __init__(self, comparison, unreliable_from=None):
        self.comparison = comparison
        self.dtype = comparison.case.dtype
        self.unreliable_from = unreliable_from

    def compare(self, check, step, parameter, key, recorded, current, scale):
        comparison = self.comparison
        comparison.compared += 1
        budget = tolerance.budget(self.dtype, key)
        if recorded is None or current is None:
            if recorded is None and current is None:
                return
            side = "the recording" if current is None else "the installed torch"
            self._differ(Difference(check, step, parameter, key, None, None, None, math.inf, budget,
                                    f"present only in {side}"))
            return
        recorded = np.asarray(recorded, dtype=np.float64)
        current = np.asarray(current, dtype=np.float64)
        if recorded.shape != current.shape:
            self._differ(Difference(check, step, parameter, key, None, None, None, math.inf, budget,
                                    f"recorded shape {recorded.shape}, now {current.shape}"))
            return
        if recorded.tobytes() == current.tobytes():  # bit for bit (the float64 upcast is exact)
            return
        ulps = tolerance.ulps(recorded, current, scale, self.dtype)
        flat = int(np.argmax(ulps))
        index = tuple(int(i) for i in np.unravel_index(flat, ulps.shape)) if ulps.ndim else None
        self._differ(Difference(check, step, parameter, key, index, float(recorded.flat[flat]),
                                float(current.flat[flat]), float(ulps.flat[flat]), budget))

    def compare_count(self, step, parameter, recorded, current):
        self.comparison.compared += 1
        if recorded != current:
            self._differ(Difference("lockstep", step, parameter, "step", None, recorded, current, math.inf, 0.0,
                                    f"step count recorded {recorded}, now {current}"))

    def _differ(self, difference):
        comparison = self.comparison
        if self.unreliable_from is not None and difference.step >= self.unreliable_from:
            comparison.unreliable += 1
            return
        comparison.differing += 1
        comparison.worst_ulps = max(comparison.worst_ulps, difference.ulps)
        if comparison.first_difference is None:
            comparison.first_difference = difference
        if difference.ulps > difference.budget and comparison.first_beyond is None:
            comparison.first_beyond = difference


def compare_case(recorded):
    """Replay ``recorded`` (a :class:`RecordedCase`) under the installed torch; return a :class:`CaseComparison`."""
    comparison = CaseComparison(case=recorded.case, recorded_reference=recorded.reference)
    try:
        with one_thread():
            _replay(recorded, _Comparer(comparison, recorded.irreproducible_step))
    except Exception as error:  # the installed torch crashed where the recorded one did not
        comparison.status = "error"
        comparison.error = f"{type(error).__name__}: {error}"
        return comparison
    if comparison.first_beyond is not None:
        comparison.status = "beyond"
    elif comparison.differing:
        comparison.status = "within"
    elif comparison.unreliable:
        comparison.status = "nondeterministic"
    return comparison


def _replay(recorded, comparer):
    torch = twin.import_torch()
    case = recorded.case
    dt = case.dtype
    names = [tensor[len("param/"):] for tensor in recorded.arrays if tensor.startswith("param/")]
    initial = {name: recorded.tensor(f"param/{name}", 0).astype(np.float64) for name in names}
    model, named = twin.torch_model(case, initial)
    groups = twin.group_names(case, names)
    optimizer = getattr(torch.optim, twin.TORCH_CLASSES[case.optimizer])(
        [dict(overrides, params=[named[n] for n in chosen]) for chosen, overrides in groups],
        **case.kwargs, **twin.torch_impl_kwargs(case))
    reference = twin.refwd_optimizer(case, names)      # holds the hyperparameters the error scales need
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    device, tdtype = twin.torch_device(case), getattr(torch, dt)
    activation = case.activation if len(case.model) > 2 else "identity"
    prefixes = ["" if layer == "" else f"{layer}." for layer in twin.layer_names(case)]

    def tensor(array):  # a copy: torch's in-place ops (foreach SGD writes into p.grad) never reach the recording
        return torch.tensor(np.asarray(array, dtype=np.float64), device=device).to(tdtype)

    last = recorded.steps + (1 if recorded.error else 0)   # a recorded torch error is replayed too
    for step in range(1, last + 1):
        params = {name: recorded.tensor(f"param/{name}", step - 1) for name in names}
        lrs = [lr * case.lr_factor(step) for lr in base_lrs]
        for group, refwd_group, lr in zip(optimizer.param_groups, reference.param_groups, lrs):
            group["lr"] = refwd_group["lr"] = lr
        with torch.no_grad():
            for name in names:
                named[name].copy_(tensor(params[name]))
        if step > recorded.steps:
            _replay_recorded_error(recorded, step, optimizer, model, named, tensor)
            return
        x, y = recorded.tensor("x", step), recorded.tensor("y", step)
        scale = twin.loss_scale(case, step)

        # gradient check: autograd at the recorded params, on the recorded batch
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(model(tensor(x)), tensor(y))
        if scale != 1.0:
            loss = loss * scale
        loss.backward()
        layers = [(params[f"{p}weight"].astype(np.float64), params[f"{p}bias"].astype(np.float64)) for p in prefixes]
        s_loss, s_layers = tolerance.loss_and_grad_scales(layers, activation, x.astype(np.float64),
                                                          y.astype(np.float64), dt, loss_scale=scale)
        grad_scales = {f"{prefix}{kind}": value for prefix, pair in zip(prefixes, s_layers)
                       for kind, value in zip(("weight", "bias"), pair)}
        comparer.compare("gradient", step, None, "loss", recorded.arrays["loss"][step - 1], float(loss.item()),
                         s_loss)
        for name in names:
            comparer.compare("gradient", step, name, "grad", recorded.tensor(f"grad/{name}", step),
                             twin.to_numpy(named[name].grad, dt), grad_scales[name])

        # lock-step: the recorded grads and state in, one step of the installed torch's optimizer
        grads = {name: None if case.grad_is_none(name, step) else recorded.tensor(f"grad/{name}", step)
                 for name in names}
        state_before = {name: _recorded_state(recorded, name, step - 1) for name in names}
        for name in names:
            named[name].grad = None if grads[name] is None else tensor(grads[name])
            _load_state(torch, optimizer, named[name], state_before[name], tensor)
        optimizer.step()
        hyperparameters = {name: {key: group[key] for key in reference.defaults}
                           for group in reference.param_groups for name in group["params"]}
        for name in names:
            if grads[name] is None:
                zero = np.zeros(np.shape(params[name]))
                scales = {key: zero for key in ("param", *state_before[name])}
            else:
                scales = tolerance.step_scales(case.optimizer, params[name], grads[name], state_before[name],
                                               hyperparameters[name], dt)
            comparer.compare("lockstep", step, name, "param", recorded.tensor(f"param/{name}", step),
                             twin.to_numpy(named[name], dt), scales["param"])
            now = optimizer.state.get(named[name], {})
            then = _recorded_state(recorded, name, step)
            for key in sorted((set(now) | set(then)) - {"step"}):
                comparer.compare("lockstep", step, name, key, then.get(key),
                                 twin.to_numpy(now[key], dt) if key in now else None,
                                 scales.get(key, np.zeros(np.shape(params[name]))))
            if "step" in now or "step" in then:
                comparer.compare_count(step, name, then.get("step"),
                                       int(now["step"].item()) if "step" in now else None)


def _recorded_state(recorded, name, steps_done):
    """The recorded optimizer state of ``name`` after ``steps_done`` steps ({} before its first grad)."""
    if steps_done == 0:
        return {}
    prefix = f"state/{name}/"
    state = {tensor[len(prefix):]: values[steps_done] for tensor, values in recorded.arrays.items()
             if tensor.startswith(prefix) and values[steps_done] is not None}
    counts = recorded.arrays.get(f"count/{name}")
    if counts is not None and counts[steps_done - 1] >= 0:
        state["step"] = int(counts[steps_done - 1])
    return state


def _load_state(torch, optimizer, param, state, tensor):
    """Make ``optimizer.state[param]`` hold exactly the recorded ``state`` (in place where the tensors exist)."""
    if not state:
        optimizer.state.pop(param, None)
        return
    current = optimizer.state[param]
    for key in [key for key in current if key not in state]:
        del current[key]
    for key, value in state.items():
        if key == "step":
            if torch.is_tensor(current.get(key)):
                current[key].fill_(float(value))
            else:  # torch keeps a float32 step (float64 under a float64 default dtype) on the CPU
                current[key] = torch.tensor(float(value), dtype=torch.float32 if torch.get_default_dtype() !=
                                            torch.float64 else torch.float64)
        elif torch.is_tensor(current.get(key)):
            current[key].copy_(tensor(value))
        else:
            current[key] = tensor(value).clone()


def _replay_recorded_error(recorded, step, optimizer, model, named, tensor):
    """The recorded torch raised at ``step``: the installed torch must raise the same error there."""
    case = recorded.case
    x, y = twin.batch(case, step)
    optimizer.zero_grad(set_to_none=True)
    torch = twin.import_torch()
    loss = torch.nn.functional.mse_loss(model(tensor(x)), tensor(y)) * twin.loss_scale(case, step)
    loss.backward()
    for name, param in named.items():
        if case.grad_is_none(name, step):
            param.grad = None
    state_before = {name: _recorded_state(recorded, name, step - 1) for name in named}
    for name in named:
        _load_state(torch, optimizer, named[name], state_before[name], tensor)
    try:
        optimizer.step()
    except Exception as error:
        text = f"{type(error).__name__}: {error}"
        if text != recorded.error:
            raise RuntimeError(f"at step {step} the recorded torch raised {recorded.error!r}, this one {text!r}")
        return
    raise RuntimeError(f"at step {step} the recorded torch raised {recorded.error!r}; this one does not")


class RecordedTorchError(Exception):
    """The recorded torch raised here (the message is its error text): replayed as the live torch would raise."""


def recorded_trajectory(recorded):
    """The recorded torch run as :class:`validation.twin.TorchStep` s, as :func:`twin.torch_trajectory` yields
    them live (float16/bfloat16 upcast to float64); raises :class:`RecordedTorchError` where torch raised."""
    case = recorded.case
    compute = twin.compute_dtype(case.dtype)
    names = [tensor[len("param/"):] for tensor in recorded.arrays if tensor.startswith("param/")]

    def values(kind, position):
        return {name: _as(recorded.tensor(f"{kind}/{name}", position), compute) for name in names}

    for step in range(1, recorded.steps + 1):
        grads = values("grad", step)
        yield twin.TorchStep(
            step=step, lrs=[float(lr) for lr in recorded.arrays["lrs"][step - 1]],
            loss_scale=twin.loss_scale(case, step), x=_as(recorded.tensor("x", step), compute),
            y=_as(recorded.tensor("y", step), compute), params=values("param", step - 1), all_grads=grads,
            grads={name: None if case.grad_is_none(name, step) else grad for name, grad in grads.items()},
            loss=float(recorded.arrays["loss"][step - 1]),
            state={name: _as_state(_recorded_state(recorded, name, step - 1), compute) for name in names},
            new_params=values("param", step),
            new_state={name: _as_state(_recorded_state(recorded, name, step), compute) for name in names})
    if recorded.error:
        raise RecordedTorchError(recorded.error)


def _as(array, dtype):
    return None if array is None else np.array(array, dtype=dtype)  # a writable copy for refwd's side


def _as_state(state, dtype):
    return {key: value if key == "step" else _as(value, dtype) for key, value in state.items()}


def check_reference(recorded):
    """The harness's verdict (lock-step and gradient checks, and free-running) of refwd against the recorded
    torch: a :class:`validation.harness.CaseResult`, without running torch's optimizer."""
    from .harness import run_case
    return run_case(recorded.case, trajectory=recorded_trajectory(recorded))


def compare(recording, cases, *, reference=True, progress=None):
    """Compare the installed torch with ``recording`` on ``cases`` (ids of the recording); yield CaseComparisons.

    With ``reference`` each comparison also carries the installed torch's verdict against refwd.
    """
    from .harness import run_case
    for case_id in cases:
        recorded = recording.cases[case_id]
        comparison = compare_case(recorded)
        if reference:
            comparison.reference = run_case(recorded.case)
        if progress is not None:
            progress(comparison)
        yield comparison


def cases_to_compare(recording, select_cases, devices=None):
    """The ids to compare, in recording order: the recorded cases that ``select_cases`` picks.

    ``select_cases(cases)`` applies the user's filters (optimizer, impl, dtype, case ids, --quick) to a list of
    cases; it is applied alike to the recording's cases and to this refwd's matrix, and the two must agree.
    ``devices`` (default: the recording's) must all be devices the recording was made on. Raises
    :class:`RecordingError` for a device not recorded, a case on one side only, or a case whose definition
    changed since the recording; nothing is skipped silently.
    """
    from .cases import CASES
    recorded_devices = sorted({recorded.case.device for recorded in recording.cases.values()})
    devices = sorted(devices or recorded_devices)
    not_recorded = [device for device in devices if device not in recorded_devices]
    if not_recorded:
        raise RecordingError(f"{recording.directory}: recorded on {', '.join(recorded_devices) or 'nothing'}, but "
                             f"{', '.join(not_recorded)} was asked for; record on that device first")
    recorded = [c.case for c in recording.cases.values() if c.case.device in devices]
    wanted = {case.id for case in select_cases(recorded)}
    current = {case.id for case in select_cases([case for case in CASES if case.device in devices])}
    only_recorded = sorted(wanted - current)
    if only_recorded:
        raise RecordingError(f"case {only_recorded[0]!r} is in the recording but not in this refwd's case matrix "
                             f"({len(only_recorded)} such case(s)); nothing is skipped silently")
    only_current = sorted(current - wanted)
    if only_current:
        raise RecordingError(f"case {only_current[0]!r} is in the case matrix but not in the recording "
                             f"{recording.directory} ({len(only_current)} such case(s)); record it, or narrow the "
                             "selection (--case, --optimizer, ...)")
    ids = [case.id for case in recorded if case.id in wanted]
    for case_id in ids:
        then, now = recording.cases[case_id].case, CASE_IDS[case_id]
        if then != now:
            changed = [f.name for f in dataclasses.fields(Case) if getattr(then, f.name) != getattr(now, f.name)]
            raise RecordingError(f"case {case_id!r}: its definition changed since the recording "
                                 f"({', '.join(changed)}); the numbers are not comparable: record again")
    if not ids:
        raise RecordingError(f"no recorded case matches these filters in {recording.directory}")
    return ids


# ---------------------------------------------------------------------------------------------------------------
# Reports


def verdict(comparisons):
    """One sentence: did torch change, and is it still right?"""
    changed = [c for c in comparisons if c.status not in ("identical", "nondeterministic")]
    wrong = [c for c in comparisons if c.reference is not None and not c.reference.ok]
    irreproducible = sum(c.status == "nondeterministic" for c in comparisons)
    fixed = [c for c in changed if c.fixed]
    if fixed and all(c.ok for c in comparisons):
        return (f"torch changed and is still correct, and better: {len(fixed)} case(s) that failed the reference "
                f"when recorded now pass it; every other change is within tolerance.")
    if not changed and not wrong and irreproducible:
        return (f"torch's numbers are unchanged: bit-identical to the recording in every reproducible case, and "
                f"correct ({irreproducible} case(s) differ between two runs of the same torch: see below).")
    if not changed and not wrong:
        return "torch's numbers are unchanged: bit-identical to the recording in every case, and correct."
    if not changed:
        return ("torch's numbers are unchanged (bit-identical), but some cases now disagree with the reference: "
                "the reference or its tolerance changed, not torch.")
    if any(c.status in ("beyond", "error") for c in changed) or wrong:
        return "torch changed and is now wrong in some cases: see the cases beyond tolerance or failing the reference."
    return "torch changed but is still correct: every change is within tolerance and every case passes the reference."


def markdown(comparisons, recording, current_environment):
    """A Markdown summary for a pull-request comment."""
    recorded_env = recording.environment
    counts = {status: sum(c.status == status for c in comparisons) for status in COMPARISON_STATUSES}
    reference_ok = sum(c.reference is not None and c.reference.ok for c in comparisons)
    lines = [f"## refwd: torch {current_environment.get('torch')} against a recording of torch "
             f"{recorded_env.get('torch')}", "",
             f"**{verdict(comparisons)}**", "",
             "| | recorded | now |", "|---|---|---|"]
    for key, label in (("torch", "torch"), ("torch_cuda_build", "CUDA build"), ("cuda", "CUDA in use"),
                       ("gpu", "GPU"), ("numpy", "NumPy"),
                       ("python", "Python"), ("refwd", "refwd"), ("platform", "platform"), ("cpu", "CPU"),
                       ("torch_cpu_capability", "ATen CPU capability")):
        lines.append(f"| {label} | {recorded_env.get(key) or '–'} | {current_environment.get(key) or '–'} |")
    lines.append(f"| created | {recording.manifest.get('created')} | |")
    lines += ["", "| comparison with the recording | cases |", "|---|---:|"]
    lines += [f"| {STATUS_WORDS[status]} | {counts[status]} |" for status in COMPARISON_STATUSES]
    lines.append(f"| **passing the reference now** (known torch defects included) | {reference_ok} of "
                 f"{len(comparisons)} |")
    worst = max((c.worst_ulps for c in comparisons if c.status == "within"), default=0.0)
    lines += ["", f"Worst change within tolerance: {_fmt_ulps(worst)} ULP of the error scale (budget "
                  f"{tolerance.budget('float64', 'param'):g}). Lock-step replay: each step starts from the recorded "
                  "params, grads and state, so differences never accumulate."]
    changed = [c for c in comparisons if c.status != "identical" or (c.reference is not None and not c.reference.ok)]
    if changed:
        lines += ["", "### Changed or failing cases", "",
                  "| case | vs recording | worst ULP | first difference | reference now |", "|---|---|---:|---|---|"]
        lines += [_markdown_row(c) for c in changed]
    lines += ["", "<details><summary>All cases</summary>", "",
              "| case | vs recording | worst ULP | reference now |", "|---|---|---:|---|"]
    lines += [f"| {c.case.id} | {STATUS_WORDS[c.status]} | {_fmt_ulps(c.worst_ulps)} | {_reference_text(c)} |"
              for c in comparisons]
    lines += ["", "</details>", ""]
    return "\n".join(lines)


def _markdown_row(c):
    if c.error:
        first = c.error
    elif c.first_difference is not None:
        first = (c.first_beyond or c.first_difference).describe()
    else:
        first = "–"
    change = STATUS_WORDS[c.status] + (" (a fix: failed the reference when recorded)" if c.fixed else "")
    return (f"| {c.case.id} | {change} | {_fmt_ulps(c.worst_ulps)} | {_cell(first)} | "
            f"{_cell(_reference_text(c))} |")


def _reference_text(c):
    if c.reference is None:
        return "not run"
    if c.reference.status == "pass" and not c.reference.note:
        return f"pass ({_fmt_ulps(c.reference.worst_ulps)} ulp)"
    return f"{c.reference.status}: {c.reference.detail}"


def _cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def json_report(comparisons, recording, current_environment):
    return {
        "tool": "refwd validate --against", "schema_version": SCHEMA_VERSION,
        "verdict": verdict(comparisons),
        "recording": {"directory": str(recording.directory), "created": recording.manifest.get("created"),
                      "environment": recording.environment},
        "environment": current_environment,
        "counts": {status: sum(c.status == status for c in comparisons) for status in COMPARISON_STATUSES},
        "reference_passing": sum(c.reference is not None and c.reference.ok for c in comparisons),
        "cases": [c.to_dict() for c in comparisons],
    }


def _fmt_ulps(value):
    return "inf" if not math.isfinite(value) else f"{value:.3g}"


def _finite(value):
    return value if value is None or math.isfinite(value) else repr(value)


def write_text(path, text):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


# ---------------------------------------------------------------------------------------------------------------
# Command line: the --against branch of ``refwd validate`` (validation/cli.py parses the options)


def against_main(args, *, stdout, stderr):
    """``refwd validate --against DIR [filters] [--json PATH] [--markdown PATH]``; returns the exit code.

    0: every case bit-identical or changed within tolerance, and passing the reference; 1: a case changed
    beyond tolerance, failed to replay, or fails the reference; 2: an unusable recording or selection.
    """
    from . import cli
    from .cases import UnknownFilterError, select

    def select_cases(cases):
        return select(cases, optimizer=cli._values(args.optimizer), impl=cli._values(args.impl),
                      dtype=cli._values(args.dtype), case=cli._values(args.case), quick=args.quick)

    torch = twin.import_torch()
    try:
        recording = load(args.against)
        ids = cases_to_compare(recording, select_cases, cli._values(args.device))
        if "cuda" in {recording.cases[case_id].case.device for case_id in ids} and not torch.cuda.is_available():
            raise RecordingError(f"{args.against} has cuda cases, but torch.cuda.is_available() is False here; "
                                 "select --device cpu")
    except (RecordingError, UnknownFilterError) as error:
        print(f"refwd validate: {error}", file=stderr)
        return cli.EXIT_USAGE
    if args.list:
        for case_id in ids:
            print(case_id, file=stdout)
        return cli.EXIT_OK
    progress = cli.Progress(stderr, quiet=args.quiet, verbose=args.verbose)
    progress.start(ids)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        comparisons = list(compare(recording, ids, progress=lambda c: progress.result(c.reference)))
    finally:
        torch.set_num_threads(threads)
    env = environment()
    text = markdown(comparisons, recording, env)
    print(text, file=stdout)
    try:
        if args.markdown:
            write_text(args.markdown, text)
        if args.json:
            write_text(args.json, json.dumps(json_report(comparisons, recording, env), indent=1) + "\n")
    except OSError as error:
        print(f"refwd validate: cannot write the report: {error}", file=stderr)
        return cli.EXIT_USAGE
    return cli.EXIT_OK if all(c.ok for c in comparisons) else cli.EXIT_FAILED
