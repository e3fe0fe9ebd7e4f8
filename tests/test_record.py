"""refwd_validation.recording: recording torch's trajectories, replaying them under another torch, bad recordings."""
import dataclasses
import hashlib
import io
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from recordings import (AdamWrongSecondMoment, damageable_copy, make_recording, manifest,  # noqa: E402
                        write_manifest)
from refwd_validation import cli, defects  # noqa: E402
from refwd_validation import recording as record  # noqa: E402
from refwd_validation.cases import CASE_IDS, select  # noqa: E402
from refwd_validation.report import environment  # noqa: E402

pytestmark = pytest.mark.torch

CASES = ["adam-plain-f64-forloop-cpu", "adam-plain-f64-foreach-cpu",      # foreach = for-loop: stored once
         "sgd-grad-none-late-f64-fused-cpu",                              # torch raises at step 4 (recorded)
         "rmsprop-plain-f32-forloop-cpu", "lowp-adamw-bf16-forloop-cpu"]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    return make_recording(tmp_path_factory.mktemp("recording") / "rec", CASES)


@pytest.fixture
def copy(recorded, tmp_path):
    """A copy of the recording that a test may damage."""
    return damageable_copy(recorded, tmp_path)


def by_ids(ids):
    return lambda cases: select(cases, case=ids)


def compare(directory, ids=CASES):
    recording = record.load(directory)
    return {c.case.id: c for c in record.compare(recording, record.cases_to_compare(recording, by_ids(ids)),
                                                 reference=False)}


def nondeterministic_defect(*case_ids):
    return defects.KnownDefect(id="test-nondeterminism", summary="for the test", torch_min="2.0", torch_max=None,
                               reference="none", cases=case_ids, outcome="fail", nondeterministic=True)


# --- recording ---------------------------------------------------------------------------------------------------

def test_the_manifest_says_what_was_recorded_where(recorded):
    data = manifest(recorded)
    assert data["format"] == "refwd-torch-recording" and data["schema_version"] == 2
    assert data["environment"]["torch"] == torch.__version__ and data["environment"]["numpy"] == np.__version__
    assert {"python", "platform", "cpu", "torch_cpu_capability", "cuda"} <= set(data["environment"])
    assert data["devices"] == ["cpu"]
    assert [entry["id"] for entry in data["cases"]] == CASES
    assert [entry["file"] for entry in data["cases"]] == [
        "cases/000-adam-plain.npz", "cases/000-adam-plain.npz", "cases/001-sgd-grad-none-late.npz",
        "cases/002-rmsprop-plain.npz", "cases/003-lowp-adamw.npz"]
    for listed in data["files"]:
        assert listed["sha256"] == hashlib.sha256((recorded / listed["path"]).read_bytes()).hexdigest()
    assert all(entry["definition"]["id"] == entry["id"] for entry in data["cases"])
    sgd = next(entry for entry in data["cases"] if entry["id"] == "sgd-grad-none-late-f64-fused-cpu")
    assert sgd["steps"] == 3 and sgd["error"].startswith("TypeError: expected Tensor as element 1")


def test_the_recording_holds_torchs_trajectory_exactly(recorded):
    recording = record.load(recorded)
    case = CASE_IDS["rmsprop-plain-f32-forloop-cpu"]
    steps, _ = record.record_trajectory(case)
    arrays = recording.cases[case.id]
    assert arrays.steps == len(steps) == case.steps
    for t, step in enumerate(steps):
        assert arrays.arrays["loss"][t] == step.loss
        for name in step.params:
            assert arrays.tensor(f"param/{name}", t).dtype == np.float32
            np.testing.assert_array_equal(arrays.tensor(f"param/{name}", t), step.params[name])
            np.testing.assert_array_equal(arrays.tensor(f"param/{name}", t + 1), step.new_params[name])
            np.testing.assert_array_equal(arrays.tensor(f"grad/{name}", t + 1), step.all_grads[name])
            np.testing.assert_array_equal(arrays.tensor(f"state/{name}/square_avg", t + 1),
                                          step.new_state[name]["square_avg"])
            assert arrays.arrays[f"count/{name}"][t] == step.new_state[name]["step"]


def test_a_repeated_trajectory_is_stored_once(recorded):
    recording = record.load(recorded)
    forloop, foreach = recording.cases["adam-plain-f64-forloop-cpu"], recording.cases["adam-plain-f64-foreach-cpu"]
    assert forloop.file == foreach.file  # one file per configuration
    with np.load(recorded / forloop.file, allow_pickle=False) as data:
        index = data["adam-plain-f64-forloop-cpu/index"]
        assert np.array_equal(data["adam-plain-f64-foreach-cpu/index"], index)  # the same chunks
        assert data["chunk_sizes"].size == np.unique(index[index >= 0]).size
    forloop, foreach = recording.cases["adam-plain-f64-forloop-cpu"], recording.cases["adam-plain-f64-foreach-cpu"]
    np.testing.assert_array_equal(foreach.tensor("param/weight", 10), forloop.tensor("param/weight", 10))


def test_the_recording_is_small_and_has_no_pickles(recorded):
    total = sum(path.stat().st_size for path in recorded.rglob("*") if path.is_file())
    assert total < 200_000
    for path in (recorded / "cases").glob("*.npz"):
        with np.load(path, allow_pickle=False) as data:
            assert all(data[name].dtype != object for name in data.files)


def test_recording_into_a_used_directory_is_refused(recorded):
    with pytest.raises(record.RecordingError, match="exists and is not an empty directory"):
        record.Writer(recorded)


# --- comparing -------------------------------------------------------------------------------------------------

def test_the_same_torch_is_bit_identical(recorded):
    for case_id, comparison in compare(recorded).items():
        assert comparison.status == "identical", (case_id, comparison.first_difference, comparison.error)
        assert comparison.compared > 0 and comparison.differing == 0


class AdamOneUlpOff(torch.optim.Adam):
    """A new torch whose Adam rounds the other way now and then: a change within tolerance."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = super().step(closure)
        for group in self.param_groups:
            for param in group["params"]:
                param.copy_(torch.nextafter(param, torch.full_like(param, np.inf)))
        return loss


def test_a_change_within_tolerance(recorded, monkeypatch):
    monkeypatch.setattr(torch.optim, "Adam", AdamOneUlpOff)
    comparison = compare(recorded, ["adam-plain-f64-forloop-cpu"])["adam-plain-f64-forloop-cpu"]
    assert comparison.status == "within"
    assert 0 < comparison.worst_ulps <= 2
    first = comparison.first_difference
    assert (first.check, first.step, first.key) == ("lockstep", 1, "param")
    assert comparison.first_beyond is None


def test_a_change_beyond_tolerance_is_pinpointed(recorded, monkeypatch):
    monkeypatch.setattr(torch.optim, "Adam", AdamWrongSecondMoment)
    comparison = compare(recorded, ["adam-plain-f64-forloop-cpu"])["adam-plain-f64-forloop-cpu"]
    assert comparison.status == "beyond" and comparison.worst_ulps > 1e6
    beyond = comparison.first_beyond
    assert (beyond.check, beyond.step, beyond.parameter, beyond.key) == ("lockstep", 1, "weight", "exp_avg_sq")
    assert "lockstep: step 1, weight, exp_avg_sq[0, " in beyond.describe()


def test_a_gradient_change_is_told_apart_from_an_optimizer_change(recorded, monkeypatch):
    mse_loss = torch.nn.functional.mse_loss
    monkeypatch.setattr(torch.nn.functional, "mse_loss", lambda a, b: mse_loss(a, b) * (1 + 2.0 ** -50))
    comparison = compare(recorded, ["adam-plain-f64-forloop-cpu"])["adam-plain-f64-forloop-cpu"]
    assert (comparison.first_difference.check, comparison.first_difference.key) == ("gradient", "loss")
    assert comparison.status == "within"  # a relative change of 4 ulps, below the loss's error scale
    # the optimizer is given the recorded gradients, so its steps stay bit-identical
    assert comparison.differing == comparison.case.steps * 3  # the loss and the two gradients of every step


def test_a_torch_that_stops_raising_has_changed(copy):
    data = manifest(copy)
    entry = next(entry for entry in data["cases"] if entry["id"] == "sgd-grad-none-late-f64-fused-cpu")
    entry["error"] = "TypeError: some other message"
    entry["reference"]["status"] = "error"   # as the harness judged a torch raising an undocumented error
    write_manifest(copy, data)
    comparison = compare(copy, ["sgd-grad-none-late-f64-fused-cpu"])["sgd-grad-none-late-f64-fused-cpu"]
    assert comparison.status == "error"
    assert "the recorded torch raised 'TypeError: some other message'" in comparison.error


def test_the_reference_is_checked_against_the_recorded_torch(recorded):
    recording = record.load(recorded)
    for case_id, recorded_case in recording.cases.items():
        result = record.check_reference(recorded_case)
        assert result.ok, (case_id, result.detail)
        assert result.steps == recorded_case.steps
    # a recording torch got wrong is a failure of the recorded torch, pinned like a live one
    broken = recording.cases["adam-plain-f64-forloop-cpu"]
    broken.arrays["state/weight/exp_avg_sq"][2] = broken.arrays["state/weight/exp_avg_sq"][2] * 1.001
    result = record.check_reference(broken)
    assert result.status == "fail"
    assert (result.failure.check, result.failure.step, result.failure.key) == ("lockstep", 2, "exp_avg_sq")


def test_a_torch_that_differs_from_itself_is_flagged_not_failed(recorded, copy, monkeypatch):
    # a claim of irreproducibility must be excused by a known defect (test_an_unexcused_irreproducible_step...)
    monkeypatch.setattr(defects, "KNOWN_DEFECTS", (nondeterministic_defect("adam-plain-f64-forloop-cpu"),))
    steps, _ = record.record_trajectory(CASE_IDS["adam-plain-f64-forloop-cpu"])
    again, _ = record.record_trajectory(CASE_IDS["adam-plain-f64-forloop-cpu"])
    assert record.first_irreproducible_step(steps, again) is None
    again[4].new_state["weight"]["exp_avg"] = again[4].new_state["weight"]["exp_avg"] + 1e-9
    assert record.first_irreproducible_step(steps, again) == 5
    monkeypatch.setattr(torch.optim, "Adam", AdamWrongSecondMoment)
    data = manifest(copy)
    data["cases"][0]["irreproducible_step"] = 1   # the recorded torch differed from itself from step 1 on
    write_manifest(copy, data)
    comparison = compare(copy, ["adam-plain-f64-forloop-cpu"])["adam-plain-f64-forloop-cpu"]
    assert comparison.status == "nondeterministic" and comparison.ok and comparison.differing == 0
    data["cases"][0]["irreproducible_step"] = 2   # from step 2 on: step 1 still tells
    write_manifest(copy, data)
    comparison = compare(copy, ["adam-plain-f64-forloop-cpu"])["adam-plain-f64-forloop-cpu"]
    assert comparison.status == "beyond" and comparison.first_beyond.step == 1 and comparison.unreliable > 0


def test_a_torch_fix_is_a_change_beyond_tolerance_that_passes(tmp_path, monkeypatch):
    case = CASE_IDS["adam-plain-f64-forloop-cpu"]
    with monkeypatch.context() as patch:                 # recorded under a wrong torch
        patch.setattr(torch.optim, "Adam", AdamWrongSecondMoment)
        writer = record.Writer(tmp_path / "rec")
        writer.add(case, *record.record_trajectory(case), {"status": "fail"})
        writer.finish()
    recording = record.load(tmp_path / "rec")
    [comparison] = record.compare(recording, [case.id])  # compared under the real one
    assert comparison.status == "beyond" and comparison.reference.status == "pass"
    assert comparison.fixed and comparison.ok
    assert "1 case(s) that failed the reference when recorded now pass it" in record.verdict([comparison])
    assert "(a fix: failed the reference when recorded)" in record.markdown([comparison], recording, {})


def test_reports(recorded, monkeypatch):
    monkeypatch.setattr(torch.optim, "Adam", AdamWrongSecondMoment)
    recording = record.load(recorded)
    ids = record.cases_to_compare(recording, by_ids(CASES))
    comparisons = list(record.compare(recording, ids))
    env = environment()
    text = record.markdown(comparisons, recording, env)
    assert "torch changed and is now wrong" in text
    assert "| adam-plain-f64-forloop-cpu | changed beyond tolerance |" in text
    assert "| rmsprop-plain-f32-forloop-cpu | bit-identical | 0 | pass (" in text
    report = record.json_report(comparisons, recording, env)
    json.dumps(report)  # serialisable
    assert report["counts"] == {"identical": 3, "within": 0, "beyond": 2, "nondeterministic": 0, "error": 0,
                                "unsupported": 0}
    adam = next(c for c in report["cases"] if c["id"] == "adam-plain-f64-forloop-cpu")
    assert adam["first_beyond_tolerance"]["key"] == "exp_avg_sq"
    assert adam["reference"]["status"] == "fail"  # the installed (patched) torch is now wrong against refwd


# --- bad recordings: a clear error naming the file or case, never a silent skip -----------------------------------

def test_no_manifest(tmp_path):
    with pytest.raises(record.RecordingError, match="manifest.json not found: .* is not a refwd recording"):
        record.load(tmp_path)


def test_a_manifest_that_is_not_json(copy):
    (copy / "manifest.json").write_text("{ not json")
    with pytest.raises(record.RecordingError, match="manifest.json is not valid JSON"):
        record.load(copy)


@pytest.mark.parametrize("version, message", [(3, "schema version 3 is newer than this refwd reads"),
                                              (0, "unknown schema version 0"), ("1", "unknown schema version '1'")])
def test_a_newer_or_unknown_schema(copy, version, message):
    data = manifest(copy)
    data["schema_version"] = version
    write_manifest(copy, data)
    with pytest.raises(record.RecordingError, match=message):
        record.load(copy)


def test_a_tampered_file_fails_its_hash(copy):
    path = copy / "cases/002-rmsprop-plain.npz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(record.RecordingError, match=r"cases/002-rmsprop-plain.npz: SHA-256 mismatch"):
        record.load(copy)


def test_a_truncated_file_fails_its_hash(copy):
    path = copy / "cases/000-adam-plain.npz"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(record.RecordingError, match="000-adam-plain.npz: SHA-256 mismatch"):
        record.load(copy)


def test_a_missing_or_unlisted_file(copy):
    (copy / "cases/extra.npz").write_bytes(b"")
    with pytest.raises(record.RecordingError, match="cases/extra.npz: a file in the recording that manifest.json "
                                                    "does not list"):
        record.load(copy)
    (copy / "cases/extra.npz").unlink()
    (copy / "cases/003-lowp-adamw.npz").unlink()
    with pytest.raises(record.RecordingError, match="003-lowp-adamw.npz: listed in manifest.json but "
                                                    "missing"):
        record.load(copy)


def test_a_file_name_outside_the_recording_is_refused(copy):
    data = manifest(copy)
    data["files"][0]["path"] = "../../etc/passwd"
    write_manifest(copy, data)
    with pytest.raises(record.RecordingError, match=r"file entry '../../etc/passwd' is not a file name inside cases/"):
        record.load(copy)


def test_a_pickle_in_a_recording_is_never_loaded(copy):
    """Even with a matching hash (a forged manifest), an object array is refused, not unpickled."""
    path = copy / "cases/002-rmsprop-plain.npz"
    with np.load(path, allow_pickle=False) as data:
        members = {name: data[name] for name in data.files}
    members["rmsprop-plain-f32-forloop-cpu/loss"] = np.array([print] * 10, dtype=object)
    forge(copy, path, members)
    with pytest.raises(record.RecordingError, match="002-rmsprop-plain.npz: member 'rmsprop-plain-f32-forloop-cpu/"
                                                    "loss.npy' has dtype object, which the format does not write"):
        record.load(copy)
    np.savez(path, loss=np.array([print], dtype=object))   # not even a member of the format
    forge(copy, path)
    with pytest.raises(record.RecordingError, match="002-rmsprop-plain.npz: member 'loss.npy' is not part of the "
                                                    "recording format"):
        record.load(copy)


def forge(directory, path, members=None):
    """Write ``members`` (if given) into the data file ``path`` and put its SHA-256 into the manifest, as a
    forger would."""
    if members is not None:
        buffer = io.BytesIO()
        np.savez(buffer, **members)
        path.write_bytes(buffer.getvalue())
    data = manifest(directory)
    for entry in data["files"]:
        if (directory / entry["path"]) == path:
            entry["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    write_manifest(directory, data)


def test_a_case_only_in_the_recording(tmp_path):
    renamed = dataclasses.replace(CASE_IDS["rmsprop-plain-f32-forloop-cpu"], id="rmsprop-renamed-f32-forloop-cpu")
    writer = record.Writer(tmp_path / "rec")
    for case in (CASE_IDS["rmsprop-plain-f32-forloop-cpu"], renamed):
        writer.add(case, *record.record_trajectory(case))
    writer.finish()
    recording = record.load(tmp_path / "rec")
    with pytest.raises(record.RecordingError, match="case 'rmsprop-renamed-f32-forloop-cpu' is in the recording but "
                                                    "not in this refwd's case matrix"):
        record.cases_to_compare(recording, lambda cases: select(cases, optimizer="rmsprop", dtype="float32",
                                                                impl="forloop", quick=True))


def test_a_case_only_in_the_matrix(recorded):
    recording = record.load(recorded)
    with pytest.raises(record.RecordingError, match="is in the case matrix but not in the recording"):
        record.cases_to_compare(recording, lambda cases: select(cases, optimizer="adam"))


def test_a_case_whose_definition_changed(copy):
    data = manifest(copy)
    data["cases"][0]["definition"]["seed"] = 3
    write_manifest(copy, data)
    recording = record.load(copy)
    with pytest.raises(record.RecordingError, match=r"case 'adam-plain-f64-forloop-cpu': its definition changed "
                                                    r"since the recording \(seed\)"):
        record.cases_to_compare(recording, by_ids(CASES))


def test_another_device_than_recorded(recorded):
    recording = record.load(recorded)
    with pytest.raises(record.RecordingError, match="recorded on cpu, but cuda was asked for"):
        record.cases_to_compare(recording, by_ids(CASES), devices=["cuda"])


# --- the command line --------------------------------------------------------------------------------------------

def run_cli(argv):
    out, err = io.StringIO(), io.StringIO()
    code = cli.validate(argv, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_record_then_compare_from_the_command_line(tmp_path):
    directory = tmp_path / "rec"
    code, out, err = run_cli(["--record", str(directory), "--case", "adamw-plain-f32-forloop-cpu", "-q"])
    assert code == 0 and (directory / "manifest.json").is_file()
    code, out, err = run_cli(["--against", str(directory), "-q", "--json", str(tmp_path / "r.json"),
                              "--markdown", str(tmp_path / "r.md"), "--case", "adamw-plain-f32-forloop-cpu"])
    assert code == 0, err
    assert "bit-identical to the recording in every case, and correct" in out
    assert (tmp_path / "r.md").read_text() + "\n" == out
    assert json.loads((tmp_path / "r.json").read_text())["counts"]["identical"] == 1


@pytest.mark.parametrize("argv", [["--markdown", "x.md"], ["--against", "DIR", "--record", "other"],
                                  ["--against", "DIR", "--junit", "x.xml"]])
def test_options_that_do_not_combine(argv):
    code, out, err = run_cli(argv)
    assert code == 2 and "--markdown goes with --against" in err


def test_the_command_line_exits_2_on_a_bad_recording(copy, tmp_path):
    code, out, err = run_cli(["--record", str(copy), "--case", "adamw-plain-f32-forloop-cpu", "-q"])
    assert code == 2 and "exists and is not an empty directory" in err
    code, out, err = run_cli(["--against", str(copy)])  # the whole matrix, but only 5 cases recorded
    assert code == 2 and "is in the case matrix but not in the recording" in err
    (copy / "cases/000-adam-plain.npz").write_bytes(b"corrupt")
    code, out, err = run_cli(["--against", str(copy), "--case", ",".join(CASES)])
    assert code == 2 and "000-adam-plain.npz: SHA-256 mismatch" in err
    code, out, err = run_cli(["--against", str(tmp_path / "nowhere")])
    assert code == 2 and "is not a refwd recording" in err


def test_the_command_line_exits_1_when_torch_changed_beyond_tolerance(recorded, monkeypatch):
    monkeypatch.setattr(torch.optim, "Adam", AdamWrongSecondMoment)
    code, out, err = run_cli(["--against", str(recorded), "-q", "--case", ",".join(CASES)])
    assert code == 1
    assert "torch changed and is now wrong" in out
