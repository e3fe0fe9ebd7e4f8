"""Checking any optimizer against refwd (``refwd_validation.check``): torch-style classes and factories from any
library, plain NumPy functions, renamed hyperparameters, mapped state, params-only mode, and targets that misbehave.

Expected verdicts come from what the target computes: a correct implementation (torch's own classes, or refwd's
rule wrapped as a foreign kernel) must pass; one with a known, deliberate error must fail where that error shows.
"""
import numpy as np
import pytest

import refwd
from refwd_validation.statemap import StateMap, StateMapError
from refwd_validation.targets import FUNCTION, TORCH_STYLE, TargetError, load, make_target

torch = pytest.importorskip("torch")

from refwd_validation.check import check, target_cases  # noqa: E402
from refwd_validation.watch import WatchError, watch  # noqa: E402

pytestmark = pytest.mark.torch


def failing(results):
    return [(result.case.id, str(result.status), result.detail) for result in results if not result.ok]


# --- targets that agree -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, reference", [("torch.optim:SGD", "sgd"), ("torch.optim:RMSprop", "rmsprop"),
                                             ("torch.optim:Adam", "adam"), ("torch.optim:AdamW", "adamw")])
def test_torchs_own_classes_as_targets_agree(spec, reference):
    results = check(spec, reference, quick=True)
    assert results and failing(results) == []
    assert all(result.case.impl == "target" and "-target-cpu" in result.case.id for result in results)


def test_a_torch_class_re_exported_by_another_library_is_recognised():
    target = make_target("torch.optim:AdamW", "adamw")
    assert target.kind == TORCH_STYLE and target.torch_builtin == "torch.optim.AdamW"
    assert make_target(torch.optim.Optimizer, "adam").torch_builtin is None


class RenamedAdamW(torch.optim.Optimizer):
    """A third-party AdamW: its own hyperparameter names (betas split in two) and state keys (t, m, v)."""

    def __init__(self, params, learning_rate=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, decay=1e-2, amsgrad=False,
                 maximize=False):
        super().__init__(params, dict(learning_rate=learning_rate, beta1=beta1, beta2=beta2, eps=eps, decay=decay,
                                      amsgrad=amsgrad, maximize=maximize))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = -param.grad if group["maximize"] else param.grad
                state = self.state[param]
                if not state:
                    state.update(t=0, m=torch.zeros_like(param), v=torch.zeros_like(param))
                    if group["amsgrad"]:
                        state["v_max"] = torch.zeros_like(param)
                state["t"] += 1
                param.mul_(1 - group["learning_rate"] * group["decay"])
                state["m"].lerp_(grad, 1 - group["beta1"])
                state["v"].mul_(group["beta2"]).addcmul_(grad, grad, value=1 - group["beta2"])
                v = state["v"]
                if group["amsgrad"]:
                    torch.maximum(state["v_max"], v, out=state["v_max"])
                    v = state["v_max"]
                denom = (v.sqrt() / (1 - group["beta2"] ** state["t"]) ** 0.5).add_(group["eps"])
                param.addcdiv_(state["m"], denom, value=-group["learning_rate"] / (1 - group["beta1"] ** state["t"]))


HYPER = {"lr": "learning_rate", "betas": "beta1,beta2", "weight_decay": "decay"}
STATE = ["step=t", "exp_avg=m", "exp_avg_sq=v", "max_exp_avg_sq=v_max"]


def test_a_foreign_class_with_renamed_hyperparameters_and_state_agrees():
    results = check(RenamedAdamW, "adamw", hyper=HYPER, state_map=STATE)
    assert len(results) >= 8 and failing(results) == []


def test_a_foreign_class_is_watched_in_a_training_loop():
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    optimizer = RenamedAdamW(model.parameters(), learning_rate=0.01, amsgrad=True)
    with watch(optimizer, model, reference="adamw", hyper=HYPER, state_map=STATE) as watcher:
        for _ in range(4):
            optimizer.zero_grad()
            model(torch.randn(16, 4)).pow(2).mean().backward()
            optimizer.step()
    assert watcher.steps == 4 and watcher.mismatches == [] and watcher.worst["max_exp_avg_sq"] <= 2


def refwd_adamw_kernel(param, grad, state, **hyperparameters):
    """A kernel "written elsewhere": refwd's own rule behind the plain-function interface."""
    return refwd.optim.adamw_step(param, grad, state, **hyperparameters)


def test_a_plain_function_agrees():
    target = make_target(refwd_adamw_kernel, "adamw")
    assert target.kind == FUNCTION
    results = check(target, "adamw")
    assert {result.case.dtype for result in results} == {"float64", "float32"}   # NumPy arrays: no float16
    assert failing(results) == []
    assert all(not any(key[0] == "gradient" for key in result.worst) for result in results)  # refwd's own grads


# --- targets that differ -----------------------------------------------------------------------------------------

def adamw_with_a_wrong_lr(param, grad, state, *, lr, **hyperparameters):
    return refwd.optim.adamw_step(param, grad, state, lr=lr * (1 + 1e-4), **hyperparameters)


def test_a_wrong_kernel_is_pinpointed():
    results = check(adamw_with_a_wrong_lr, "adamw", quick=True)
    assert results and all(str(result.status) == "fail" for result in results)
    first = results[0].failure
    assert (str(first.check), first.step, first.key, first.sides) == ("lockstep", 1, "param", ("refwd", "target"))
    assert "vs target" in first.describe()


def keras_like_sgd(param, grad, state, *, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
                   maximize=False):
    """An SGD that keeps γ·b in its buffer (the lr inside, as Keras does), else torch's math."""
    stored = {key: value / lr for key, value in state.items()}
    new_param, new_state = refwd.optim.sgd_step(param, grad, stored, lr=lr, momentum=momentum, dampening=dampening,
                                                weight_decay=weight_decay, nesterov=nesterov, maximize=maximize)
    return new_param, {key: value * lr for key, value in new_state.items()}


def test_an_unmapped_storage_convention_is_named_not_taken_for_wrong_math():
    results = check(keras_like_sgd, "sgd", quick=True)
    failed = [result for result in results if not result.ok]
    assert failed and all(result.failure.key == "momentum_buffer" for result in failed)
    assert all("a scaling convention" in result.note and "lr_scaled" in result.note for result in failed)


def test_the_mapped_storage_convention_agrees_while_the_lr_is_constant():
    target = make_target(keras_like_sgd, "sgd", state_map=["momentum_buffer=momentum_buffer:lr_scaled"])
    constant_lr = [case.id for case in target_cases(target) if not case.lr_schedule]
    assert failing(check(target, "sgd", case=constant_lr)) == []
    assert failing(check(keras_like_sgd, "sgd", params_only=True, case=constant_lr)) == []


@pytest.mark.parametrize("options", [dict(params_only=True),
                                     dict(state_map=["momentum_buffer=momentum_buffer:lr_scaled"])])
def test_the_lr_inside_the_buffer_shows_when_the_lr_changes(options):
    """The stored γ·b is read with the γ of the step that wrote it; when γ changes, the buffer is rescaled (Keras):
    a real difference of the math, found at the second step both with the state mapped and params only."""
    target = make_target(keras_like_sgd, "sgd", **options)
    scheduled = [case.id for case in target_cases(target) if case.lr_schedule and case.kwargs.get("momentum")]
    results = check(target, "sgd", case=scheduled)
    assert results and all(str(result.status) == "fail" for result in results)
    assert all(result.failure.key == "param" and result.failure.step == 2 for result in results)


# --- bad targets: a clear verdict naming target, case, step and parameter; the run goes on --------------------------

def raises(param, grad, state, **hyperparameters):
    raise ZeroDivisionError("inside the kernel")


def changes_its_grad(param, grad, state, **hyperparameters):
    grad *= 2
    return param, state


def wrong_shape(param, grad, state, **hyperparameters):
    return param.reshape(-1), state


def nan_param(param, grad, state, **hyperparameters):
    return param * np.nan, state


@pytest.mark.parametrize("kernel, words", [(raises, "raised ZeroDivisionError: inside the kernel"),
                                           (changes_its_grad, "changed the gradient it was given"),
                                           (wrong_shape, "returned a float")])
def test_a_misbehaving_target_is_that_cases_error(kernel, words):
    results = check(kernel, "sgd", quick=True)
    assert len(results) > 1 and all(str(result.status) == "error" for result in results)  # every case ran
    assert words in results[0].error and "case sgd-" in results[0].error and "step 1" in results[0].error
    assert "parameter 'weight'" in results[0].error or "parameter '0.weight'" in results[0].error


def test_a_nan_is_a_failure_not_a_pass():
    results = check(nan_param, "sgd", quick=True)
    assert all(str(result.status) == "fail" for result in results)


@pytest.mark.parametrize("spec, words", [("no_such_module_xyz:Opt", "cannot import 'no_such_module_xyz'"),
                                         ("torch.optim:NoSuchOptimizer", "has no attribute 'NoSuchOptimizer'"),
                                         ("torch.optim", "is not module:attribute"),
                                         ("math:pi", "not an optimizer class, factory or function")])
def test_a_target_that_cannot_be_loaded_is_named(spec, words):
    with pytest.raises(TargetError, match=words):
        load(spec)


def test_an_unknown_rule_and_an_unknown_case_are_named():
    with pytest.raises(TargetError, match="--as 'lamb'"):
        make_target("torch.optim:SGD", "lamb")
    with pytest.raises(TargetError, match="unknown case 'nope'"):
        target_cases(make_target("torch.optim:SGD", "sgd"), case="nope")


def test_a_factory_that_rejects_the_hyperparameters_is_an_error_naming_them():
    results = check(lambda params, lr: torch.optim.SGD(params, lr=lr), "sgd", case=["sgd-momentum-f64-target-cpu"])
    assert str(results[0].status) == "error" and "cannot be built" in results[0].error
    assert "momentum" in results[0].error


# --- state maps ----------------------------------------------------------------------------------------------------

def test_state_map_renames_nests_and_undoes_stored_conventions():
    state_map = StateMap.parse(["step=count", "exp_avg=moments.first:bias_corrected1", "exp_avg_sq=moments.second"])
    native = {"count": 2, "moments": {"first": np.array([1.0, 2.0]), "second": np.array([4.0, 9.0])}}
    out = state_map.to_refwd(native, {"step", "exp_avg", "exp_avg_sq"}, {"lr": 0.1, "betas": (0.5, 0.9)})
    assert out["step"] == 2
    np.testing.assert_array_equal(out["exp_avg"], np.array([1.0, 2.0]) * (1 - 0.5 ** 2))   # m = m̂·(1 − β₁ᵗ)
    np.testing.assert_array_equal(out["exp_avg_sq"], [4.0, 9.0])
    assert state_map.transformed == {"exp_avg"}


@pytest.mark.parametrize("items, words", [(["exp_avg"], "is not refwd_key=target_key"),
                                          (["exp_avg=m:sideways"], "unknown transform 'sideways'"),
                                          (["exp_avg=a..b"], "the target's key is empty")])
def test_a_bad_state_map_is_named(items, words):
    with pytest.raises(StateMapError, match=words):
        StateMap.parse(items)


def test_a_watched_foreign_optimizer_that_is_wrong_is_caught():
    class HalfLr(RenamedAdamW):
        @torch.no_grad()
        def step(self):
            for group in self.param_groups:
                group["learning_rate"] /= 2
            super().step()
            for group in self.param_groups:
                group["learning_rate"] *= 2

    model = torch.nn.Linear(3, 1)
    optimizer = HalfLr(model.parameters(), learning_rate=0.01)
    with pytest.raises(WatchError, match="lockstep: step 1"):
        with watch(optimizer, model, reference="adamw", hyper=HYPER, state_map=STATE):
            model(torch.randn(8, 3)).pow(2).mean().backward()
            optimizer.step()


# --- the command line --------------------------------------------------------------------------------------------

def run_cli(*argv):
    import io

    from refwd_validation import cli
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["check", *argv], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_refwd_check_exit_0_with_a_summary_and_reports(tmp_path):
    code, out, err = run_cli("torch.optim:Adam", "--as", "adam", "--quick", "-q", "--json", str(tmp_path / "r.json"),
                             "--junit", str(tmp_path / "r.xml"))
    assert code == 0, out + err
    assert out.startswith("refwd check torch.optim:Adam --as adam: torch ") and "result: OK" in out
    assert "is torch.optim.Adam itself" in out
    import json
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["tool"] == "refwd check torch.optim:Adam --as adam" and report["summary"]["failed"] == 0
    assert (tmp_path / "r.xml").read_text().count("<testcase") == report["summary"]["run"]


def test_refwd_check_exit_1_names_the_difference(monkeypatch):
    import sys
    import types
    module = types.ModuleType("kernels_under_test")
    module.adamw = adamw_with_a_wrong_lr
    monkeypatch.setitem(sys.modules, "kernels_under_test", module)
    code, out, _ = run_cli("kernels_under_test:adamw", "--as", "adamw", "--quick", "-q")
    assert code == 1 and "failures:" in out and "vs target" in out and "result: FAILED" in out


@pytest.mark.parametrize("argv, words", [
    (["no_module_here:X", "--as", "sgd"], "cannot import 'no_module_here'"),
    (["torch.optim:SGD", "--as", "lamb"], "--as 'lamb'"),
    (["torch.optim:SGD"], "the following arguments are required: --as"),
    (["torch.optim:SGD", "--as", "sgd", "--kwargs", "[1]"], "--kwargs must be a JSON object"),
    (["torch.optim:SGD", "--as", "sgd", "--kwargs", "{nope"], "Expecting property name"),
    (["torch.optim:SGD", "--as", "sgd", "--state", "momentum_buffer=b:sideways"], "unknown transform"),
    (["torch.optim:SGD", "--as", "sgd", "--dtype", ""], "--dtype needs a value"),
    (["torch.optim:SGD", "--as", "sgd", "--kwargs", '{"no_such_argument": 1}'], "cannot be built"),
])
def test_refwd_check_bad_input_is_exit_2_in_one_line(argv, words):
    code, out, err = run_cli(*argv)
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1 and out == ""


def test_refwd_check_list_and_filters():
    code, out, _ = run_cli("torch.optim:SGD", "--as", "sgd", "--list", "--dtype", "float32")
    ids = [line.split()[0] for line in out.splitlines()]
    assert code == 0 and ids and all(i.endswith("-f32-target-cpu") for i in ids)


# --- diagnosis: a convention named, or a finding narrowed ------------------------------------------------------------

def rmsprop_eps_inside_the_root(param, grad, state, **hyperparameters):
    """RMSprop as TensorFlow and optax write it: √(v + ε), else torch's."""
    return refwd.optim.rmsprop_step(param, grad, state, eps_placement="inside_root", **hyperparameters)


def test_a_convention_is_named_by_the_diagnosis():
    from refwd_validation.check import check_case
    from refwd_validation.diagnose import diagnose
    target = make_target(rmsprop_eps_inside_the_root, "rmsprop")
    # without momentum, ε inside the root is all there is to optax's (and Keras's) RMSprop
    results = [r for r in check(target, "rmsprop", quick=True) if not r.case.kwargs.get("momentum")]
    assert results and all(str(result.status) == "fail" for result in results)
    diagnosis = diagnose(target, results, check_case)
    assert diagnosis.explained and "eps_placement=inside_root" in diagnosis.describe()
    assert "optax" in [profile for profile, _ in diagnosis.explained_by]
    assert failing(check(target, "rmsprop:optax", case=[r.case.id for r in results])) == []


def adam_with_a_bug_under_amsgrad(param, grad, state, *, amsgrad=False, **hyperparameters):
    new_param, new_state = refwd.optim.adam_step(param, grad, state, amsgrad=amsgrad, **hyperparameters)
    return (new_param * (1 + 1e-6) if amsgrad else new_param), new_state


def test_a_finding_is_narrowed_to_the_hyperparameters_it_needs():
    from refwd_validation.check import check_case
    from refwd_validation.diagnose import diagnose
    target = make_target(adam_with_a_bug_under_amsgrad, "adam")
    results = check(target, "adam", quick=True)
    diagnosis = diagnose(target, results, check_case)
    assert diagnosis is not None and not diagnosis.explained
    assert "a finding" in diagnosis.describe() and "it shows only with amsgrad set" in diagnosis.describe()
    assert all(flags == ["amsgrad"] for flags in diagnosis.needs.values())


def adam_with_float32_hyperparameters(param, grad, state, *, lr, betas, **hyperparameters):
    """A kernel that stores lr and β in float32 even for float64 weights."""
    as32 = lambda value: float(np.float32(value))  # noqa: E731
    return refwd.optim.adam_step(param, grad, state, lr=as32(lr), betas=(as32(betas[0]), as32(betas[1])),
                                 **hyperparameters)


def test_float32_hyperparameters_are_named_by_the_diagnosis():
    from refwd_validation.check import check_case
    from refwd_validation.diagnose import diagnose
    target = make_target(adam_with_float32_hyperparameters, "adam")
    results = [r for r in check(target, "adam", dtype="float64") if str(r.status) == "fail"]
    assert results                                   # float64 weights: ↓₃₂β shows
    diagnosis = diagnose(target, results, check_case)
    assert diagnosis.explained and "lr, betas held in float32" in diagnosis.describe()
