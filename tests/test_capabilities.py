"""What the installed torch cannot run is "unsupported", counted apart; what it can run keeps every check.

The probes are exercised against the installed torch's real refusals (capturable on the CPU), and an older torch's
missing pieces (``Adam(decoupled_weight_decay=...)`` in 2.4 and 2.6, ``mse_loss`` of float16/bfloat16 on the CPU in
2.4) are simulated by making the probe's view of torch lack them: the run, the report, the exit code and the drift
report must then say "unsupported" (or use the written-out loss) instead of failing. The version sweep
(docs/version-sweep.md) shows the same on the real old versions.
"""
import dataclasses
import io
import json

import pytest

torch = pytest.importorskip("torch")

from refwd_validation import capabilities, cli, recording  # noqa: E402
from refwd_validation.cases import CASE_IDS, CASES  # noqa: E402
from refwd_validation.harness import run_case  # noqa: E402
from refwd_validation.outcomes import Drift, Status  # noqa: E402
from refwd_validation.twin import torch_impl_kwargs  # noqa: E402

pytestmark = pytest.mark.torch


def _without_decoupled_adam(monkeypatch):
    """The probe's view of torch.optim.Adam without decoupled_weight_decay, as in torch 2.4."""
    real = capabilities._arguments

    def arguments(optimizer):
        names = real(optimizer)
        return names - {"decoupled_weight_decay"} if optimizer == "adam" else names
    monkeypatch.setattr(capabilities, "_arguments", arguments)


@pytest.fixture
def torch_without_decoupled_adam(monkeypatch):
    _without_decoupled_adam(monkeypatch)


@pytest.fixture
def torch_without_low_precision_mse(monkeypatch):
    """The probe's view of torch without mse_loss for float16/bfloat16 on the CPU, as in torch 2.4."""
    real = capabilities.mse_loss_supported
    monkeypatch.setattr(capabilities, "mse_loss_supported",
                        lambda dtype, device: dtype not in ("float16", "bfloat16") and real(dtype, device))


def test_every_case_of_the_matrix_runs_on_this_torch():
    unsupported = {case.id: capabilities.unsupported(case, torch_impl_kwargs(case)) for case in CASES
                   if case.device == "cpu"}
    assert {case_id: reason for case_id, reason in unsupported.items() if reason} == {}


def test_a_missing_argument_is_unsupported_named_and_counted_apart(torch_without_decoupled_adam):
    case = CASE_IDS["adam-decoupled-f64-forloop-cpu"]
    result = run_case(case)
    assert result.status == Status.UNSUPPORTED and result.ok and not result.passed
    assert result.unsupported == "Adam has no argument 'decoupled_weight_decay'"
    assert result.detail == f"unsupported by torch {torch.__version__}: Adam has no argument 'decoupled_weight_decay'"
    assert run_case(CASE_IDS["adam-plain-f64-forloop-cpu"]).status == Status.PASS   # the others keep every check


def test_the_cli_exits_0_and_reports_unsupported_cases_apart(torch_without_decoupled_adam, tmp_path):
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["validate", "--case", "adam-decoupled-f64-forloop-cpu,adam-plain-f64-forloop-cpu",
                     "--jobs", "1", "--json", str(tmp_path / "r.json"), "--junit", str(tmp_path / "r.xml")],
                    stdout=out, stderr=err)
    assert code == 0, out.getvalue() + err.getvalue()
    text = out.getvalue()
    assert "passed 1, failed 0, errors 0, known torch defects 0, unsupported by this torch 1" in text
    assert "1 case: Adam has no argument 'decoupled_weight_decay' (e.g. adam-decoupled-f64-forloop-cpu)" in text
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["summary"]["unsupported"] == 1
    assert {c["id"]: c["status"] for c in report["cases"]}["adam-decoupled-f64-forloop-cpu"] == "unsupported"
    assert 'skipped="1"' in (tmp_path / "r.xml").read_text()


def test_a_kernel_torch_refuses_is_probed_not_guessed():
    """capturable=True on CPU params: torch's own AssertionError, found by a one-step probe."""
    case = dataclasses.replace(CASE_IDS["adam-plain-f64-capturable-cuda"], device="cpu")
    reason = capabilities.unsupported(case, torch_impl_kwargs(case))
    assert reason.startswith("capturable step in float64 on cpu: AssertionError: If capturable=True")


def test_the_mse_of_low_precision_is_written_out_where_torch_lacks_it(torch_without_low_precision_mse):
    result = run_case(CASE_IDS["lowp-adam-f16-forloop-cpu"])
    assert result.status == Status.PASS, result.detail
    assert result.fallbacks == ("mse_loss in float16 on cpu written as ((output - target) ** 2).mean()",)
    assert run_case(CASE_IDS["adam-plain-f32-forloop-cpu"]).fallbacks == ()


def test_a_recording_names_what_its_torch_could_not_run_and_stores_nothing_of_it(torch_without_decoupled_adam,
                                                                                 tmp_path):
    ids = ["adam-decoupled-f64-forloop-cpu", "adam-plain-f64-forloop-cpu"]
    code = cli.main(["validate", "--case", ",".join(ids), "--jobs", "1", "-q", "--record", str(tmp_path / "rec")],
                    stdout=io.StringIO(), stderr=io.StringIO())
    assert code == 0
    loaded = recording.load(tmp_path / "rec")
    assert list(loaded.cases) == ["adam-plain-f64-forloop-cpu"]
    assert loaded.manifest["unsupported_when_recorded"] == {
        "adam-decoupled-f64-forloop-cpu": "Adam has no argument 'decoupled_weight_decay'"}
    # replayed where torch can run everything: the case not recorded is said, not an error
    chosen = recording.cases_to_compare(loaded, lambda cases: [c for c in cases if c.id in ids])
    assert chosen == ["adam-plain-f64-forloop-cpu"]


def test_a_replay_of_what_this_torch_cannot_run_is_not_compared(tmp_path, monkeypatch):
    ids = ["adam-decoupled-f64-forloop-cpu", "adam-plain-f64-forloop-cpu"]
    code = cli.main(["validate", "--case", ",".join(ids), "--jobs", "1", "-q", "--record", str(tmp_path / "rec")],
                    stdout=io.StringIO(), stderr=io.StringIO())
    assert code == 0
    loaded = recording.load(tmp_path / "rec")
    _without_decoupled_adam(monkeypatch)   # recorded by a torch that has it, replayed by one that has not
    comparisons = {c.case.id: c for c in recording.compare(loaded, ids)}
    skipped = comparisons["adam-decoupled-f64-forloop-cpu"]
    assert skipped.status == Drift.UNSUPPORTED and skipped.ok
    assert "Adam has no argument 'decoupled_weight_decay'" in skipped.error
    assert comparisons["adam-plain-f64-forloop-cpu"].status == Drift.IDENTICAL
    verdict = recording.verdict(list(comparisons.values()))
    assert verdict.startswith("torch's numbers are unchanged") and "1 recorded case(s) need" in verdict
