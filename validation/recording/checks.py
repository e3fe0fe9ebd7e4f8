"""Checks on a recording as untrusted input, made before any of it is believed or read into memory.

A recording may come from anywhere (a CI artefact, a pull request), and every byte of it may be forged, the
SHA-256s in its manifest included: they catch accidents, not forgeries. So, before anything is read:

- **no links**: ``manifest.json``, ``cases/`` and every data file must be a regular file or a real directory,
  never a symbolic link, a device or a pipe. The recording directory itself may be a link: the user named it;
  nothing inside it may point elsewhere.
- **every manifest entry is well typed**, for every case, selected or not (:func:`check_entry`,
  :func:`check_definition`).
- **an irreproducible step must be excused** by a known torch defect of the recorded torch version that makes
  torch nondeterministic (:func:`check_irreproducible`): the claim cannot be recomputed without the recorded
  torch, and it silences every difference from that step on.
- **a data file holds only what the writer writes**, each member declaring (in its .npy header, read before
  its data) a dtype and a shape that the manifest and the case definitions allow, and the file's declared
  uncompressed size is bounded before anything is decompressed (:func:`read_members`).

The recorded *reference verdict* is not checked here: it is recomputed from the recorded data
(:func:`refwd_validation.recording.replay.recorded_verdict`).
"""
import dataclasses
import math
import os
import stat

import numpy as np

from .. import defects
from ..cases import DEVICES, DTYPES, IMPLS, OPTIMIZERS, UNINITIALISED_READS, Case
from ..outcomes import Status

MAX_STATE_KEYS = 4          # tensors per param besides "step": torch's Adam keeps 3 (amsgrad), RMSprop 3, SGD 1
MAX_NAME_CHARACTERS = 256   # of a tensor name in a case's "tensors" ("state/0.weight/max_exp_avg_sq")
MAX_FILE_BYTES = 256 << 20  # declared uncompressed bytes of one data file: ~85× the largest of the CPU matrix (3 MB)
NPY_HEADER_BYTES = 10_000 + 12    # numpy's own limit on an .npy header, and the magic and length before it
CASE_MEMBERS = ("loss", "lrs", "tensors", "shapes", "index", "counted", "counts")   # "<case id>/<member>"
FILE_MEMBERS = ("chunks/float64", "chunks/float32", "chunk_dtypes", "chunk_sizes")
REFERENCE_STATUSES = tuple(str(status) for status in Status)


class RecordingError(Exception):
    """A recording that cannot be trusted or used: the message names the file or case. Exit code 2."""


# ---------------------------------------------------------------------------------------------------------------
# Files: no links


def check_not_a_link(path, where, kind="file"):
    """``path`` must exist as a real ``kind`` ("file": a regular file; "directory"), not a link to one."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(mode):
        raise RecordingError(f"{where} is a symbolic link; a recording must hold its files itself")
    if not (stat.S_ISDIR(mode) if kind == "directory" else stat.S_ISREG(mode)):
        raise RecordingError(f"{where} is not a regular {kind}")
    return True


def open_regular(path, where):
    """``path`` opened for binary reading; never through a link (``O_NOFOLLOW``: no swap after the check)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError as error:
        raise RecordingError(f"{where}: cannot be opened as a regular file ({error.strerror})") from None
    handle = os.fdopen(descriptor, "rb")
    if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
        handle.close()
        raise RecordingError(f"{where} is not a regular file")
    return handle


# ---------------------------------------------------------------------------------------------------------------
# The manifest: types of every field


ENTRY_FIELDS = ("id", "file", "steps", "error", "irreproducible_step", "reference", "definition")


def check_entry(entry, where):
    """A case entry of the manifest: every field present has the right type (raises naming the case and field)."""
    if not isinstance(entry, dict):
        raise RecordingError(f"{where}: not a JSON object")
    missing = [name for name in ("id", "file", "steps", "definition") if name not in entry]
    if missing:
        raise RecordingError(f"{where} lacks {', '.join(missing)}")
    unknown = sorted(set(entry) - set(ENTRY_FIELDS))
    if unknown:
        raise RecordingError(f"{where}: unknown fields {unknown} (recorded by a newer refwd?)")
    _expect(isinstance(entry["id"], str) and entry["id"], where, "id", entry["id"], "a non-empty string")
    _expect(isinstance(entry["file"], str), where, "file", entry["file"], "a string")
    steps = entry["steps"]
    _expect(_is_int(steps) and steps >= 0, where, "steps", steps, "a non-negative integer")
    error = entry.get("error")
    _expect(error is None or isinstance(error, str), where, "error", error, "null or a string")
    irreproducible = entry.get("irreproducible_step")
    _expect(irreproducible is None or _is_int(irreproducible) and 1 <= irreproducible <= steps, where,
            "irreproducible_step", irreproducible, f"null or an integer from 1 to its steps ({steps})")
    reference = entry.get("reference")
    _expect(reference is None or isinstance(reference, dict), where, "reference", reference, "null or an object")
    if reference is not None:
        status = reference.get("status")
        _expect(status in REFERENCE_STATUSES, where, "reference.status", status, " or ".join(REFERENCE_STATUSES))
        worst = reference.get("worst_ulps")
        _expect(worst is None or isinstance(worst, str) or _is_number(worst), where, "reference.worst_ulps", worst,
                "null, a number or a string (inf, nan)")
        detail = reference.get("detail")
        _expect(detail is None or isinstance(detail, str), where, "reference.detail", detail, "null or a string")
    _expect(isinstance(entry["definition"], dict), where, "definition", entry["definition"], "an object")


def check_definition(case, where):
    """A case rebuilt from the manifest: each field of the type :class:`Case` declares, and sizes that make sense
    (the bounds of :func:`case_limits` are computed from them)."""
    for f in dataclasses.fields(Case):
        value = getattr(case, f.name)
        expected = {str: isinstance(value, str), int: _is_int(value), float: _is_number(value),
                    bool: isinstance(value, bool), tuple: isinstance(value, tuple)}.get(f.type, True)
        _expect(expected, where, f"definition.{f.name}", value, f"a {f.type.__name__}")
    for name, choices in (("optimizer", OPTIMIZERS), ("dtype", DTYPES), ("impl", IMPLS), ("device", DEVICES)):
        _expect(getattr(case, name) in choices, where, f"definition.{name}", getattr(case, name), ", ".join(choices))
    _expect(len(case.model) >= 2 and all(_is_int(n) and n >= 1 for n in case.model), where, "definition.model",
            case.model, "two or more positive layer sizes")
    for name in ("steps", "free_steps", "batch"):
        _expect(getattr(case, name) >= (name == "batch"), where, f"definition.{name}", getattr(case, name),
                "a positive integer" if name == "batch" else "a non-negative integer")


def check_steps(case, steps, where):
    _expect(steps <= case.total_steps, where, "steps", steps, f"at most the case's {case.total_steps} steps")


def check_environment(environment, where):
    for key, value in environment.items():
        _expect(value is None or isinstance(value, str), where, f"environment.{key}", value, "null or a string")


def check_file_entry(entry, where):
    _expect(isinstance(entry, dict), where, "file entry", entry, "an object")
    _expect(isinstance(entry.get("sha256"), str), where, f"file {entry.get('path')!r}: sha256", entry.get("sha256"),
            "a string")
    size = entry.get("bytes")
    _expect(size is None or _is_int(size) and size >= 0, where, f"file {entry.get('path')!r}: bytes", size,
            "a non-negative integer")


def check_irreproducible(case_id, step, torch_version, where):
    """A claimed irreproducible step must be excused by a known defect making torch nondeterministic there."""
    if step is None:
        return
    try:
        defect = defects.defect_for(case_id, torch_version) if torch_version else None
    except ValueError:  # packaging's InvalidVersion
        raise RecordingError(f"{where}: its irreproducible_step needs the recorded torch version, and "
                             f"environment.torch {torch_version!r} is not one") from None
    if case_id in UNINITIALISED_READS:
        return
    if defect is None or not defect.nondeterministic:
        raise RecordingError(f"{where}: irreproducible_step {step} is claimed, but no known torch defect makes "
                             f"this case nondeterministic under the recorded torch {torch_version}; only one "
                             "(refwd_validation/defects.py, nondeterministic=True) may excuse a difference")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _expect(condition, where, name, value, wanted):
    if not condition:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise RecordingError(f"{where}: field '{name}' is {shown}; expected {wanted}")


# ---------------------------------------------------------------------------------------------------------------
# Data files: only the members the writer writes, each no larger than its case can need


@dataclasses.dataclass(frozen=True)
class Member:
    """What the format allows of one .npy member: its dtype (kind and item size) and per axis (least, most)."""

    kind: str
    itemsize: int
    axes: tuple

    def most_bytes(self):
        return NPY_HEADER_BYTES + math.prod(most for _, most in self.axes) * self.itemsize


def case_limits(case, steps):
    """The members of one case of ``steps`` recorded steps and their largest shapes, from its definition, with
    the most chunks and values it can add to its file's streams: per parameter (a weight and a bias per layer)
    its param, grad and at most MAX_STATE_KEYS state tensors, plus x and y, at steps + 1 positions, each tensor
    at most the largest of a weight, x or y (a bias is smaller than its weight). Names: 4 bytes a character."""
    params = 2 * (len(case.model) - 1)
    rows = 2 + params * (2 + MAX_STATE_KEYS)
    groups = max(1, len(case.groups))
    members = {
        "loss": Member("f", 8, ((steps, steps),)),
        "lrs": Member("f", 8, ((steps, steps), (0, groups))),
        "tensors": Member("U", 4 * MAX_NAME_CHARACTERS, ((0, rows),)),
        "shapes": Member("i", 8, ((0, rows), (4, 4))),
        "index": Member("i", 8, ((0, rows), (steps + 1, steps + 1))),
        "counted": Member("U", 4 * MAX_NAME_CHARACTERS, ((0, params),)),
        "counts": Member("i", 8, ((0, params), (steps, steps))),
    }
    largest = max([n_in * n_out for n_in, n_out in zip(case.model[:-1], case.model[1:])]
                  + [case.batch * case.model[0], case.batch * case.model[-1]])
    chunks = (steps + 1) * rows
    return {f"{case.id}/{member}": limit for member, limit in members.items()}, chunks, chunks * largest


def file_limits(cases):
    """Every member a data file may hold, for its cases [(Case, steps)]: the chunk streams hold at most every
    tensor of every case once."""
    limits, chunks, values = {}, 0, 0
    for case, steps in cases:
        members, case_chunks, case_values = case_limits(case, steps)
        limits.update(members)
        chunks, values = chunks + case_chunks, values + case_values
    limits.update({"chunks/float64": Member("u", 1, ((8, 8), (0, values))),
                   "chunks/float32": Member("u", 1, ((4, 4), (0, values))),
                   "chunk_dtypes": Member("u", 1, ((0, chunks),)), "chunk_sizes": Member("i", 8, ((0, chunks),))})
    return limits


def read_members(archive, path, limits):
    """The arrays of a data file (an open :class:`zipfile.ZipFile`), after checking, before reading any data,
    its member names, its declared uncompressed size and each member's .npy header against ``limits``."""
    infos = archive.infolist()
    names = [info.filename[:-len(".npy")] if info.filename.endswith(".npy") else info.filename for info in infos]
    for name, info in zip(names, infos):
        if name not in limits or not info.filename.endswith(".npy"):
            raise RecordingError(f"{path}: member {info.filename!r} is not part of the recording format")
    if len(set(names)) != len(names):
        raise RecordingError(f"{path}: a member appears twice")
    missing = sorted(set(limits) - set(names))
    if missing:
        raise RecordingError(f"{path}: member {missing[0]}.npy is missing")
    declared = sum(info.file_size for info in infos)
    allowed = min(MAX_FILE_BYTES, sum(limit.most_bytes() for limit in limits.values()))
    if declared > allowed:
        raise RecordingError(f"{path}: its members declare {declared} bytes uncompressed; its cases need at most "
                             f"{allowed}")
    for name, info in zip(names, infos):
        with archive.open(info) as handle:
            shape, dtype = _header(handle, path, info.filename)
        _check_member(path, info, shape, dtype, limits[name])
    arrays = {}
    for name, info in zip(names, infos):
        with archive.open(info) as handle:
            arrays[name] = np.lib.format.read_array(handle, allow_pickle=False)
    return arrays


def _header(handle, path, member):
    try:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(handle)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(handle)
        else:
            raise ValueError(f".npy version {version}")
    except ValueError as error:
        raise RecordingError(f"{path}: member {member!r} has no readable .npy header ({error})") from None
    if fortran_order:
        raise RecordingError(f"{path}: member {member!r} is in Fortran order, which the format does not write")
    return shape, dtype


def _check_member(path, info, shape, dtype, limit):
    member = info.filename
    if dtype.hasobject or dtype.kind != limit.kind or (dtype.itemsize != limit.itemsize if limit.kind != "U"
                                                        else dtype.itemsize > limit.itemsize):
        raise RecordingError(f"{path}: member {member!r} has dtype {dtype}, which the format does not write there")
    if len(shape) != len(limit.axes) or any(not least <= n <= most for n, (least, most) in zip(shape, limit.axes)):
        raise RecordingError(f"{path}: member {member!r} declares shape {shape}; its case allows at most "
                             f"{tuple(most for _, most in limit.axes)}")
    if math.prod(shape) * dtype.itemsize > info.file_size:
        raise RecordingError(f"{path}: member {member!r} declares shape {shape}, more than its "
                             f"{info.file_size} bytes hold")
