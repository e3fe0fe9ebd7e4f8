"""``refwd validate --fuzz``: hypothesis-drawn configurations against torch, shrunk failures, rejections, Ctrl-C."""
import io

import pytest

import refwd
from refwd_validation import cli, fuzz
from refwd_validation.cases import Case

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = cli.validate(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def broken_sgd(monkeypatch):
    """refwd's SGD rule with lr·1.001: every SGD configuration that takes a step must fail."""
    original = refwd.optim.sgd_step

    def off(param, grad, state, *, lr, **kwargs):
        return original(param, grad, state, lr=1.001 * lr, **kwargs)

    monkeypatch.setattr(refwd.optim.SGD, "rule", staticmethod(off))


def test_a_small_fuzz_run_passes():
    code, out, err = run("--fuzz", "10", "--seed", "1", "--dtype", "float64,float32", "-q")
    assert code == 0, out + err
    assert "--fuzz 10 --seed 1" in out and ": 10 configurations in" in out and "per minute" in out
    assert "failed 0" in out and "result: OK" in out


def test_a_broken_rule_is_found_and_shrunk_to_a_minimal_case(broken_sgd):
    code, out, err = run("--fuzz", "15", "--seed", "0", "--optimizer", "sgd", "--dtype", "float64,float32", "-q")
    assert code == 1 and "result: FAILED" in out
    literals = [line.strip() for line in out.splitlines() if line.strip().startswith("Case(")]
    assert literals, out
    case = eval(literals[0], {"Case": Case})
    # the simplest configuration the strategies draw: a (1, 1) Linear, one step, defaults, float64, for-loop
    assert case.model == (1, 1) and case.steps == 1 and case.hyperparameters == (("lr", 0.01),)
    assert (case.dtype, case.impl, case.groups, case.grad_none, case.lr_schedule) == ("float64", "forloop", (), (), ())
    assert fuzz.check(case).status == "fail"
    assert "rerun: python -c" in out and fuzz.literal(case) in out


def test_the_reproducer_reruns_with_replay(capsys):
    case = Case(id="fuzz-1-sgd-f64-forloop-cpu", config="fuzz", optimizer="sgd", hyperparameters=(("lr", 0.01),),
                model=(1, 1), steps=1)
    assert eval(fuzz.literal(case), {"Case": Case}) == case
    with pytest.raises(SystemExit) as done:
        fuzz.replay(case)
    assert done.value.code == 0 and "fuzz-1-sgd-f64-forloop-cpu: pass" in capsys.readouterr().out


def test_torch_rejections_are_counted_not_crashes():
    nesterov = Case(id="fuzz-1-sgd-f64-forloop-cpu", config="fuzz", optimizer="sgd",
                    hyperparameters=(("lr", 0.01), ("nesterov", True)), model=(1, 1), steps=1)
    outcome = fuzz.check(nesterov)
    assert outcome.status == fuzz.REJECTED and outcome.detail.startswith("torch rejects: Nesterov")
    beta = Case(id="fuzz-2-adam-f64-forloop-cpu", config="fuzz", optimizer="adam",
                hyperparameters=(("lr", 0.01), ("betas", (1.0, 0.999))), model=(1, 1), steps=1)
    assert fuzz.check(beta).status == fuzz.REJECTED
    code, out, err = run("--fuzz", "40", "--seed", "3", "--dtype", "float64", "-q")
    rejected = int(out.split("rejected by both ")[1].split(",")[0])
    assert code == 0 and rejected > 0 and "Traceback" not in err


def test_refwd_accepting_what_torch_rejects_is_a_failure(monkeypatch):
    monkeypatch.setattr(fuzz.scenario, "refwd_optimizer", lambda case, names, rule=None: None)
    case = Case(id="fuzz-1-sgd-f64-forloop-cpu", config="fuzz", optimizer="sgd",
                hyperparameters=(("lr", -0.01),), model=(1, 1), steps=1)
    outcome = fuzz.check(case)
    assert outcome.failed and outcome.detail == "torch rejects: ValueError: Invalid learning rate: -0.01; refwd accepts it"


def test_a_known_defect_is_recognised_by_its_conditions():
    from refwd_validation.defects import KNOWN_DEFECTS
    from refwd_validation.harness import CaseResult
    from refwd_validation.outcomes import Status
    defect = KNOWN_DEFECTS[0]

    class Failure:
        def describe(self):
            return "lockstep: step 1, weight, param"

    case = Case(id="fuzz-1-sgd-f16-fused-cpu", config="fuzz", optimizer="sgd", dtype="float16", impl="fused")
    result = fuzz.known_defect(CaseResult(case=case, status=Status.FAIL, failure=Failure(), torch_version="2.13.0"))
    assert result.status == Status.KNOWN_DEFECT and result.defect is defect
    other = Case(id="fuzz-2-sgd-f32-fused-cpu", config="fuzz", optimizer="sgd", dtype="float32", impl="fused")
    result = fuzz.known_defect(CaseResult(case=other, status=Status.FAIL, failure=Failure(), torch_version="2.13.0"))
    assert result.status == Status.FAIL


def test_ctrl_c_with_nothing_failed_exits_130(interrupt_after):
    interrupt_after(3)
    code, out, err = run("--fuzz", "20", "--seed", "1", "--dtype", "float64", "-q")
    assert code == 130 and "Traceback" not in err
    assert "interrupted" in out and "failed 0" in out


def test_ctrl_c_after_a_failure_exits_1_and_shows_it(interrupt_after, broken_sgd):
    interrupt_after(2)
    code, out, err = run("--fuzz", "20", "--seed", "0", "--optimizer", "sgd", "--dtype", "float64", "-q")
    assert code == 1 and "interrupted" in out and "Case(" in out


@pytest.mark.parametrize("argv", [("--fuzz", "5", "--record", "x"), ("--fuzz", "5", "--against", "x"),
                                  ("--seed", "3"), ("--fuzz", "0"), ("--fuzz", "5", "--optimizer", "lion")])
def test_fuzz_usage_errors_exit_2(argv):
    code, out, err = run(*argv)
    assert code == 2 and "refwd validate:" in err
