"""``refwd validate``: exit codes, filters, reports (JSON, JUnit XML), bad input."""
import io
import json
import sys
import time
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import refwd
from refwd_validation import cli
from refwd_validation.cases import CASES, select

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")

SMALL = "sgd-plain-f64-forloop-cpu"
OTHER = "adam-plain-f32-fused-cpu"


def run(*argv):
    """``refwd validate ARGV`` in this process (``--jobs 1`` unless given: the tests' monkeypatches live here)."""
    out, err = io.StringIO(), io.StringIO()
    argv = list(argv) if "--jobs" in argv else ["--jobs", "1", *argv]
    code = cli.validate(argv, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_the_pool_gives_what_one_process_gives(tmp_path):
    reports = {}
    for jobs in ("1", "2"):
        path = tmp_path / f"jobs{jobs}.json"
        code, out, err = run("--jobs", jobs, "--quick", "--optimizer", "sgd,adamw", "--json", str(path))
        assert code == 0, out + err
        reports[jobs] = [(case["id"], case["status"], case["worst_ulps"], case["steps"])
                         for case in json.loads(path.read_text())["cases"]]
    assert reports["1"] == reports["2"] and len(reports["1"]) > 10   # the same cases, in case order, same numbers


def test_ctrl_c_ends_the_pool_at_once():
    from refwd_validation import runner
    from refwd_validation.cases import quick_cases

    class InterruptAfterTwo:
        def start(self, cases):
            self.seen = 0

        def result(self, result):
            self.seen += 1
            if self.seen == 2:
                raise KeyboardInterrupt

        def finish(self, results, seconds):
            raise AssertionError("an interrupted run is not finished")

    started = time.perf_counter()
    results, _, interrupted = runner.run(list(quick_cases()), [InterruptAfterTwo()], jobs=2)
    assert interrupted and len(results) == 2   # the second result was kept, then Ctrl-C
    assert time.perf_counter() - started < 60   # no wait for the queued cases (about 10 s of them)


def test_bad_jobs_is_a_usage_error():
    code, out, err = run("--jobs", "0", "--case", SMALL)
    assert code == 2 and "--jobs must be at least 1" in err


def test_passing_run_exits_0_with_summary_and_reports(tmp_path):
    json_path, junit_path = tmp_path / "r.json", tmp_path / "r.xml"
    code, out, err = run("--case", SMALL, "--case", OTHER, "--json", str(json_path), "--junit", str(junit_path))
    assert code == 0, out + err
    assert "2 cases" in out and "passed 2, failed 0, errors 0, known torch defects 0" in out
    assert "worst ULPs" in out and "result: OK" in out
    report = json.loads(json_path.read_text())
    assert report["summary"]["run"] == 2 and report["summary"]["passed"] == 2
    assert report["environment"]["torch"] == torch.__version__
    assert {case["id"] for case in report["cases"]} == {SMALL, OTHER}
    first = report["cases"][0]
    assert first["status"] == "pass" and first["worst"] and first["failure"] is None
    suites = ET.parse(junit_path).getroot()
    assert suites.tag == "testsuites" and suites.get("tests") == "2" and suites.get("failures") == "0"
    names = [case.get("name") for case in suites.iter("testcase")]
    assert sorted(names) == sorted([SMALL, OTHER])


@pytest.fixture
def broken_sgd(monkeypatch):
    """refwd's SGD rule with lr doubled: the lock-step check must catch it through the CLI."""
    original = refwd.optim.sgd_step

    def doubled(param, grad, state, *, lr, **kwargs):
        return original(param, grad, state, lr=2 * lr, **kwargs)

    monkeypatch.setattr(refwd.optim.SGD, "rule", staticmethod(doubled))


def test_a_failing_case_exits_1_and_is_pinpointed(tmp_path, broken_sgd):
    json_path, junit_path = tmp_path / "r.json", tmp_path / "r.xml"
    code, out, err = run("--case", SMALL, "--case", OTHER, "--json", str(json_path), "--junit", str(junit_path))
    assert code == 1
    assert "passed 1, failed 1" in out and "result: FAILED" in out
    assert f"{SMALL} [fail]: lockstep: step 1, weight, param" in out
    assert SMALL in err  # progress reports the failure as it happens
    case = next(c for c in json.loads(json_path.read_text())["cases"] if c["id"] == SMALL)
    assert case["status"] == "fail"
    failure = case["failure"]
    assert failure["check"] == "lockstep" and failure["step"] == 1 and failure["parameter"] == "weight"
    assert failure["key"] == "param"
    assert failure["ulps"] == "inf" or failure["ulps"] > failure["budget"]
    assert failure["refwd"] != failure["torch"]
    suites = ET.parse(junit_path).getroot()
    assert suites.get("failures") == "1"
    failed = [c for c in suites.iter("testcase") if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == [SMALL]


@pytest.mark.parametrize("argv,needle", [
    (["--optimizer", "lamb"], "unknown optimizer 'lamb'"),
    (["--impl", "jit"], "unknown impl 'jit'; choose from forloop, foreach, fused, compiled, capturable, "
                        "differentiable, tensor-lr, grad-scaler"),   # capturable too, which needs cuda
    (["--dtype", "float8"], "unknown dtype 'float8'"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--case", "no-such-case"], "unknown case 'no-such-case'"),
    (["--nesterov"], "unrecognized arguments: --nesterov"),
    (["--optimizer", "rmsprop", "--impl", "fused"], "no case matches"),
    (["--dtype", ""], "--dtype needs a value; choose from float64, float32, float16, bfloat16"),
    (["--optimizer", ","], "--optimizer needs a value; choose from sgd, rmsprop, adam, adamw"),
    (["--impl", "fused", "--impl", " "], "--impl needs a value; choose from forloop, foreach, fused"),
    (["--device", ""], "--device needs a value; choose from cpu, cuda"),
    (["--case", ""], "--case needs a value; 'refwd validate --list' shows the case ids"),
    (["--against", "nowhere", "--dtype", ""], "--dtype needs a value"),
])
def test_bad_input_is_one_line_and_exit_2(argv, needle):
    code, out, err = run(*argv)
    assert code == 2
    assert needle in err
    assert len(err.strip().splitlines()) == 1 and out == ""


def test_cuda_asked_and_absent_is_exit_2():
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    code, out, err = run("--device", "cuda")
    assert code == 2 and "cuda" in err and len(err.strip().splitlines()) == 1


def test_a_cuda_case_without_cuda_is_exit_2():
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    code, out, err = run("--case", "adam-plain-f64-fused-cuda")
    assert code == 2 and "needs cuda" in err and len(err.strip().splitlines()) == 1


def test_torch_missing_is_exit_2_with_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    code, out, err = run("--quick")
    assert code == 2
    assert "python -m pip install torch" in err and len(err.strip().splitlines()) == 1


def test_filters_combine_with_each_other_and_with_quick():
    code, out, _ = run("--list", "--optimizer", "adam,adamw", "--impl", "fused", "--dtype", "float32")
    assert code == 0
    ids = [line.split()[0] for line in out.splitlines()]
    assert ids and all(("adam" in i) and "-f32-fused-cpu" in i for i in ids)
    assert ids == [c.id for c in select(optimizer=["adam", "adamw"], impl="fused", dtype="float32", device="cpu")]
    code, out, _ = run("--list", "--quick", "--optimizer", "sgd", "--optimizer", "rmsprop")
    quick_ids = [line.split()[0] for line in out.splitlines()]
    assert quick_ids == [c.id for c in select(optimizer=["sgd", "rmsprop"], quick=True, device="cpu")]
    assert all(c.quick for c in CASES if c.id in quick_ids)


def test_refwd_cli_delegates_validate():
    assert cli.main(["validate", "--list", "--case", SMALL]) == 0
    assert cli.main(["validate", "--optimizer", "nope"]) == 2


def test_help_exits_0(capsys):
    assert cli.validate(["--help"]) == 0
    assert "Exit codes" in capsys.readouterr().out


def test_known_defect_is_reported_not_failed(tmp_path):
    """The fused float16 SGD case is a listed upstream defect on this torch: exit 0, shown, JUnit skipped."""
    from refwd_validation.defects import defect_for
    case_id = "lowp-sgd-f16-fused-cpu"
    junit_path = tmp_path / "r.xml"
    code, out, err = run("--case", case_id, "--junit", str(junit_path))
    if defect_for(case_id, torch.__version__) is None:
        pytest.skip("not a listed defect for this torch version")
    if "known torch defects 0" in out:
        assert code == 0  # fixed in this torch: it simply passes
        return
    assert code == 0 and "known torch defects 1" in out and "pytorch/pytorch/issues/191763" in out
    skipped = [c for c in ET.parse(junit_path).getroot().iter("testcase") if c.find("skipped") is not None]
    assert [c.get("name") for c in skipped] == [case_id]


def test_json_report_is_valid_json_with_no_nan(tmp_path):
    path = tmp_path / "r.json"
    run("--case", "free-adam-f64-forloop-cpu", "--json", str(path))
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(text)
    worst = {(w["check"], w["quantity"]): w["ulps"] for w in data["cases"][0]["worst"]}
    assert ("free-running", "param") in worst and ("lockstep", "exp_avg_sq") in worst
    assert all(isinstance(v, float) or v == "inf" for v in worst.values())
    assert np.isfinite(data["seconds"])


# --- paths that cannot be written, and Ctrl-C ----------------------------------------------------------------------

@pytest.fixture
def no_case_runs(monkeypatch):
    """Any case run fails the test: the bad path must be found before the run."""
    from refwd_validation import harness
    monkeypatch.setattr(harness, "run_case", lambda *a, **k: pytest.fail("a case ran before the path was checked"))


@pytest.mark.parametrize("where", ["a file's child", "/proc"])
def test_record_into_a_path_that_cannot_be_created_is_exit_2(tmp_path, where, no_case_runs):
    (tmp_path / "file").write_text("")
    path = str(tmp_path / "file" / "rec") if where == "a file's child" else "/proc/refwd-rec"
    code, out, err = run("--case", SMALL, "--record", path, "-q")
    assert code == 2 and f"cannot record into {path}" in err and "Traceback" not in err


@pytest.mark.parametrize("flag", ["--json", "--junit"])
@pytest.mark.parametrize("where", ["a directory", "a file's child", "/proc"])
def test_a_report_path_that_cannot_be_written_is_exit_2_before_any_case_runs(tmp_path, flag, where, no_case_runs):
    (tmp_path / "file").write_text("")
    path = {"a directory": str(tmp_path), "a file's child": str(tmp_path / "file" / "r.json"),
            "/proc": "/proc/refwd-report"}[where]
    code, out, err = run("--case", SMALL, flag, path, "-q")
    assert code == 2 and f"cannot write a report to {path}" in err and out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]   # nothing left behind


def test_a_report_path_in_a_new_directory_is_fine(tmp_path):
    code, out, err = run("--case", SMALL, "--json", str(tmp_path / "new" / "r.json"), "-q")
    assert code == 0 and json.loads((tmp_path / "new" / "r.json").read_text())["cases"]


@pytest.mark.parametrize("broken, expected", [(False, 2), (True, 1)])
def test_a_report_that_fails_at_the_end_keeps_the_summary_and_a_failing_verdict(tmp_path, monkeypatch, request,
                                                                             broken, expected):
    if broken:
        request.getfixturevalue("broken_sgd")
    from refwd_validation import report

    def full_disk(path, *args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report, "write_json", full_disk)
    code, out, err = run("--case", SMALL, "--json", str(tmp_path / "r.json"), "-q")
    assert code == expected
    assert "refwd validate: torch" in out and "passed" in out                  # the verdict is not thrown away
    assert f"cannot write the report {tmp_path / 'r.json'}: No space left on device" in err


def test_ctrl_c_summarises_the_finished_cases_and_exits_130(tmp_path, interrupt_after):
    interrupt_after(2)
    code, out, err = run("--optimizer", "sgd", "--quick", "--json", str(tmp_path / "r.json"), "-q")
    assert code == 130 and "Traceback" not in err
    assert ": 2 cases in" in out and "passed 2, failed 0" in out
    assert "interrupted after 2 of" in out and "no report was written" in out
    assert not (tmp_path / "r.json").exists()


def test_ctrl_c_while_comparing_with_a_recording_exits_130(tmp_path, interrupt_after, monkeypatch):
    ids = "sgd-plain-f64-forloop-cpu,sgd-plain-f64-foreach-cpu,sgd-plain-f32-forloop-cpu"
    assert run("--case", ids, "--record", str(tmp_path / "rec"), "-q")[0] == 0
    from refwd_validation.recording import replay
    interrupt_after(2)
    monkeypatch.setattr(replay, "run_case", __import__("refwd_validation.harness").harness.run_case)
    code, out, err = run("--against", str(tmp_path / "rec"), "--case", ids, "-q")
    assert code == 130 and "Traceback" not in err
    assert "interrupted after 2 of 3 cases" in out and out.count("| sgd-plain-") == 2


@pytest.mark.parametrize("version, supported", [("2.3.1", False), ("2.4.0", True), ("2.4.1+cu121", True),
                                                ("2.13.0+cpu", True), ("2.14.1", True), ("3.0.0", False),
                                                ("1.13.1", False), ("2.15.0.dev20261201", True)])
def test_the_supported_torch_range(version, supported):
    message = cli.unsupported_torch(version)
    assert (message is None) == supported
    if not supported:
        assert version in message and cli.SUPPORTED_TORCH in message


def test_an_older_torch_is_a_usage_error_naming_both_versions(monkeypatch):
    import torch
    monkeypatch.setattr(torch, "__version__", "2.3.1+cpu")
    code, out, err = run("--case", SMALL)
    assert code == 2 and "torch 2.3.1+cpu is installed" in err and ">=2.4,<3" in err


def test_setup_py_states_the_same_range():
    from pathlib import Path
    setup = (Path(__file__).resolve().parents[1] / "setup.py").read_text()
    assert f'"torch{cli.SUPPORTED_TORCH}"' in setup
