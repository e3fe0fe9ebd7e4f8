"""Recordings are untrusted input: a forged manifest or data file (its SHA-256 recomputed, as a forger would) is
refused with a RecordingError naming the case or the file, never believed and never read unbounded."""
import hashlib
import io
import json
import os
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from recordings import (AdamWrongSecondMoment, damageable_copy, make_recording, manifest,  # noqa: E402
                        write_manifest)
from refwd_validation import cli, defects  # noqa: E402
from refwd_validation import recording as record  # noqa: E402
from refwd_validation.cases import CASE_IDS, UNINITIALISED_READS, select  # noqa: E402
from refwd_validation.recording import checks  # noqa: E402

pytestmark = pytest.mark.torch

CASES = ["adam-plain-f64-forloop-cpu", "rmsprop-plain-f32-forloop-cpu"]
GOLDEN = os.path.join(os.path.dirname(__file__), "data", "golden")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    return make_recording(tmp_path_factory.mktemp("recording") / "rec", CASES)


@pytest.fixture
def copy(recorded, tmp_path):
    """A copy of the recording that a test may damage."""
    return damageable_copy(recorded, tmp_path)


def edit_case(directory, case_id, **fields):
    data = manifest(directory)
    entry = next(entry for entry in data["cases"] if entry["id"] == case_id)
    for key, value in fields.items():
        if key.startswith("definition."):
            entry["definition"][key.split(".", 1)[1]] = value
        else:
            entry[key] = value
    write_manifest(directory, data)


def compare_all(directory, reference=False):
    recording = record.load(directory)
    ids = record.cases_to_compare(recording, lambda cases: select(cases, case=CASES))
    return list(record.compare(recording, ids, reference=reference))


# --- 5: the manifest decides nothing it could forge ----------------------------------------------------------------

def test_a_forged_reference_verdict_is_refused(copy):
    edit_case(copy, "adam-plain-f64-forloop-cpu", reference={"status": "fail", "worst_ulps": 9.0, "detail": "x"})
    with pytest.raises(record.RecordingError, match=r"case 'adam-plain-f64-forloop-cpu': its recorded reference "
                                                    r"verdict 'fail' does not match the recorded data \('pass'\)"):
        compare_all(copy)
    code, out, err = run_cli(["--against", str(copy), "-q", "--case", ",".join(CASES)])
    assert code == 2 and "does not match the recorded data" in err


def test_the_recorded_verdict_is_recomputed_not_read(tmp_path, monkeypatch):
    """A torch recorded wrong, its manifest claiming "pass": refused; with no claim, the verdict is the data's."""
    case = CASE_IDS["adam-plain-f64-forloop-cpu"]
    with monkeypatch.context() as patch:
        patch.setattr(torch.optim, "Adam", AdamWrongSecondMoment)
        trajectory = record.record_trajectory(case)
    for directory, claim in ((tmp_path / "claims-pass", {"status": "pass"}), (tmp_path / "no-claim", None)):
        writer = record.Writer(directory)
        writer.add(case, *trajectory, claim)
        writer.finish()
    with pytest.raises(record.RecordingError, match=r"verdict 'pass' does not match the recorded data \('fail'\)"):
        list(record.compare(record.load(tmp_path / "claims-pass"), [case.id]))
    [comparison] = record.compare(record.load(tmp_path / "no-claim"), [case.id])
    assert comparison.recorded_reference["status"] == "fail" and comparison.fixed and comparison.ok


def test_the_live_verdict_is_reused_only_for_a_bit_identical_trajectory(recorded, monkeypatch):
    calls = []
    check_reference = record.replay.check_reference
    monkeypatch.setattr(record.replay, "check_reference", lambda recorded: calls.append(1) or check_reference(recorded))
    comparisons = compare_all(recorded, reference=True)
    assert calls == [] and all(c.recorded_reference["status"] == "pass" for c in comparisons)
    monkeypatch.setattr(torch.optim, "Adam", AdamWrongSecondMoment)
    comparisons = compare_all(recorded, reference=True)
    assert len(calls) == 1 and comparisons[0].recorded_reference["status"] == "pass"  # recomputed from the data


def test_an_unexcused_irreproducible_step_is_refused(copy, monkeypatch):
    edit_case(copy, "adam-plain-f64-forloop-cpu", irreproducible_step=1)
    with pytest.raises(record.RecordingError, match=r"case 'adam-plain-f64-forloop-cpu': irreproducible_step 1 is "
                                                    r"claimed, but no known torch defect makes this case "
                                                    r"nondeterministic"):
        record.load(copy)
    listed = defects.KnownDefect(id="t", summary="t", torch_min="2.0", torch_max=None, reference="t",
                                 cases=("adam-plain-f64-forloop-cpu",), outcome="fail")
    monkeypatch.setattr(defects, "KNOWN_DEFECTS", (listed,))               # listed, but not as nondeterministic
    with pytest.raises(record.RecordingError, match="irreproducible_step 1 is claimed"):
        record.load(copy)
    monkeypatch.setattr(defects, "KNOWN_DEFECTS", (defects.KnownDefect(**{**listed.__dict__, "nondeterministic": True}),))
    assert record.load(copy).cases["adam-plain-f64-forloop-cpu"].irreproducible_step == 1


def test_the_golden_claims_irreproducible_steps_only_where_a_defect_excuses_them():
    golden = manifest_of(GOLDEN)
    claims = sorted(entry["id"] for entry in golden["cases"] if entry["irreproducible_step"] is not None)
    uninitialised = sorted(case_id for case_id in UNINITIALISED_READS if case_id.endswith("-cpu"))   # findings 7
    assert uninitialised == ["scaler-sgd-momentum-first-skipped-f32-grad-scaler-cpu"]
    assert claims == sorted([f"lowp-sgd{nesterov}-{dtype}-fused-cpu" for nesterov in ("", "-nesterov")
                             for dtype in ("f16", "bf16")] + uninitialised)
    assert all(case_id in UNINITIALISED_READS
               or defects.defect_for(case_id, golden["environment"]["torch"]).nondeterministic for case_id in claims)


def manifest_of(directory):
    with open(os.path.join(directory, "manifest.json"), encoding="utf-8") as handle:
        return json.load(handle)


@pytest.mark.parametrize("field, value", [
    ("steps", True), ("steps", -1), ("steps", "10"), ("steps", 11), ("error", 5), ("file", 3), ("id", ""),
    ("irreproducible_step", 0), ("irreproducible_step", 11), ("irreproducible_step", True),
    ("reference", "pass"), ("reference", {"status": "maybe"}), ("reference", {"status": "pass", "detail": 1}),
    ("definition", "adam"), ("definition.model", "abc"), ("definition.model", [4, 0]), ("definition.dtype", "f64"),
    ("definition.quick", 1), ("definition.batch", 0), ("definition.loss_scale", "1"), ("extra", 1)])
def test_a_field_of_the_wrong_type_is_refused_even_in_an_unselected_case(copy, field, value):
    edit_case(copy, "rmsprop-plain-f32-forloop-cpu", **{field: value})
    name = "unknown fields" if field == "extra" else f"field '{field}"   # 'reference.status' for a bad reference
    case = "" if field == "id" else "rmsprop-plain-f32-forloop-cpu"
    with pytest.raises(record.RecordingError, match=f"case '{case}'.*{name}"):
        record.load(copy)   # whatever is selected afterwards


def test_an_environment_value_of_the_wrong_type_is_refused(copy):
    data = manifest(copy)
    data["environment"]["torch"] = 2.13
    write_manifest(copy, data)
    with pytest.raises(record.RecordingError, match="field 'environment.torch' is 2.13"):
        record.load(copy)


# --- 6: members and their sizes are bounded before anything is read ------------------------------------------------

ADAM_FILE = "cases/000-adam-plain.npz"


def forge(directory, path, write):
    """Rewrite the data file ``path`` with ``write(archive)`` and recompute its SHA-256 in the manifest."""
    with zipfile.ZipFile(directory / path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        write(archive)
    data = manifest(directory)
    for entry in data["files"]:
        if entry["path"] == path:
            entry["sha256"] = hashlib.sha256((directory / path).read_bytes()).hexdigest()
    write_manifest(directory, data)


def members_of(directory, path):
    with np.load(directory / path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def write_members(archive, members):
    for name, array in members.items():
        with archive.open(name + ".npy", "w", force_zip64=True) as handle:
            np.lib.format.write_array(handle, array, allow_pickle=False)


def bounded_load(directory):
    """Load, and return (the error, seconds, peak bytes allocated by Python and NumPy)."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(record.RecordingError) as caught:
            record.load(directory)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return str(caught.value), time.perf_counter() - started, peak


def test_a_member_declaring_a_huge_shape_is_refused_before_it_is_read(copy):
    members = members_of(copy, ADAM_FILE)

    def write(archive):
        write_members(archive, {name: array for name, array in members.items() if name != "chunks/float64"})
        with archive.open("chunks/float64.npy", "w", force_zip64=True) as handle:  # a header claiming 3.2 GB
            header = {"descr": "|u1", "fortran_order": False, "shape": (8, 400_000_000)}
            np.lib.format.write_array_header_1_0(handle, header)
            handle.write(bytes(1000))

    forge(copy, ADAM_FILE, write)
    error, seconds, peak = bounded_load(copy)
    assert error.startswith(f"{ADAM_FILE}: member 'chunks/float64.npy' declares shape (8, 400000000); its case "
                            "allows at most (8, ")
    assert seconds < 2 and peak < 20_000_000


def test_a_file_declaring_more_than_its_cases_need_is_refused_up_front(copy):
    members = members_of(copy, ADAM_FILE)
    members["chunks/float64"] = np.zeros((8, 40_000_000), dtype=np.uint8)  # 320 MB of zeros: a 0.3 MB member
    forge(copy, ADAM_FILE, lambda archive: write_members(archive, members))
    assert (copy / ADAM_FILE).stat().st_size < 2_000_000
    error, seconds, peak = bounded_load(copy)
    assert error.startswith(f"{ADAM_FILE}: its members declare 320")
    assert "bytes uncompressed; its cases need at most" in error
    assert seconds < 2 and peak < 20_000_000


def test_a_member_the_format_does_not_define_is_refused(copy):
    members = members_of(copy, ADAM_FILE)
    forge(copy, ADAM_FILE, lambda archive: write_members(archive, {**members, "extra": np.zeros(3)}))
    with pytest.raises(record.RecordingError, match=f"{ADAM_FILE}: member 'extra.npy' is not part of the recording "
                                                    "format"):
        record.load(copy)
    del members["adam-plain-f64-forloop-cpu/lrs"]
    forge(copy, ADAM_FILE, lambda archive: write_members(archive, members))
    with pytest.raises(record.RecordingError, match="member adam-plain-f64-forloop-cpu/lrs.npy is missing"):
        record.load(copy)


def test_a_member_longer_than_its_case_is_refused(copy):
    members = members_of(copy, ADAM_FILE)
    members["adam-plain-f64-forloop-cpu/loss"] = np.zeros(11)
    forge(copy, ADAM_FILE, lambda archive: write_members(archive, members))
    with pytest.raises(record.RecordingError, match=r"member 'adam-plain-f64-forloop-cpu/loss.npy' declares shape "
                                                    r"\(11,\); its case allows at most \(10,\)"):
        record.load(copy)


def test_the_bounds_hold_every_file_of_the_golden_recording():
    """The bounds are sound: the golden recording (the whole CPU matrix) is well inside them."""
    golden = manifest_of(GOLDEN)
    for listed in golden["files"]:
        cases = [(record.case_from_definition(entry["definition"], "", 1), entry["steps"])
                 for entry in golden["cases"] if entry["file"] == listed["path"]]
        limits = checks.file_limits(cases)
        with zipfile.ZipFile(os.path.join(GOLDEN, listed["path"])) as archive:
            assert sum(info.file_size for info in archive.infolist()) < checks.MAX_FILE_BYTES / 50
            assert sorted(info.filename[:-4] for info in archive.infolist()) == sorted(limits)


# --- 7: no links ---------------------------------------------------------------------------------------------------

def test_a_data_file_that_is_a_link_is_refused(copy, tmp_path):
    outside = tmp_path / "outside.npz"
    os.replace(copy / ADAM_FILE, outside)
    os.symlink(outside, copy / ADAM_FILE)   # the same bytes, the same hash: still refused
    with pytest.raises(record.RecordingError, match=f"{ADAM_FILE} is a symbolic link"):
        record.load(copy)


def test_a_manifest_or_cases_folder_that_is_a_link_is_refused(copy, tmp_path):
    os.replace(copy / "manifest.json", tmp_path / "manifest.json")
    os.symlink(tmp_path / "manifest.json", copy / "manifest.json")
    with pytest.raises(record.RecordingError, match="manifest.json is a symbolic link"):
        record.load(copy)
    os.remove(copy / "manifest.json")
    os.replace(tmp_path / "manifest.json", copy / "manifest.json")
    os.replace(copy / "cases", tmp_path / "cases")
    os.symlink(tmp_path / "cases", copy / "cases")
    with pytest.raises(record.RecordingError, match="cases/ is a symbolic link"):
        record.load(copy)


def test_a_data_file_that_is_not_a_regular_file_is_refused(copy):
    os.remove(copy / ADAM_FILE)
    os.mkfifo(copy / ADAM_FILE)   # reading it would block forever
    with pytest.raises(record.RecordingError, match=f"{ADAM_FILE} is not a regular file"):
        record.load(copy)


def test_the_recording_directory_itself_may_be_a_link(recorded, tmp_path):
    os.symlink(recorded, tmp_path / "link")
    assert list(record.load(tmp_path / "link").cases) == CASES


# --- the command line ----------------------------------------------------------------------------------------------

def run_cli(argv):
    out, err = io.StringIO(), io.StringIO()
    code = cli.validate(argv, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()
