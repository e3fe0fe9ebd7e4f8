"""The harness: pinpointing, rule injection, error isolation, known defects, the case matrix's coverage, memory."""
import dataclasses
import tracemalloc

import numpy as np
import pytest

import refwd
from refwd_validation import defects
from refwd_validation.cases import CASE_IDS, CASES, IMPLS, OPTIMIZERS, quick_cases, select
from refwd_validation.compare import Mismatch
from refwd_validation.harness import CaseResult
from refwd_validation.optimizers import OPTIMIZERS as REGISTRY

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")

from refwd_validation.harness import run_case  # noqa: E402  (after the torch skip)
from refwd_validation.twin import torch_trajectory  # noqa: E402

ADAM = CASE_IDS["adam-betas-f64-forloop-cpu"]          # MLP (5, 17, 33, 1), 10 steps


def corrupt_at(step_to_break, name_shape, index):
    """Adam's rule, with one element of the param nudged by 1e-9 (relative) on the given call."""
    calls = {"n": 0}

    def rule(param, grad, state, **hyper):
        new_param, new_state = refwd.optim.adam_step(param, grad, state, **hyper)
        if param.shape == name_shape:
            calls["n"] += 1
            if new_state["step"] == step_to_break:
                new_param = new_param.copy()
                new_param[index] *= 1 + 1e-9
        return new_param, new_state

    return rule


def test_a_tiny_error_is_pinpointed_to_step_parameter_key_and_element():
    rule = corrupt_at(4, (33, 17), (7, 3))
    result = run_case(ADAM, rules={"adam": rule})
    assert result.status == "fail" and not result.passed
    f = result.failure
    assert (f.check, f.step, f.parameter, f.key, f.index) == ("lockstep", 4, "2.weight", "param", (7, 3))
    assert f.ulps > f.budget and f.first != f.second and f.sides == ("refwd", "torch")
    assert result.steps == 4  # stopped at the end of the failing step
    text = f.describe()
    assert "lockstep: step 4, 2.weight, param[7, 3]" in text and "ulp" in text


def test_rules_for_other_optimizers_are_ignored():
    broken = {"sgd": lambda *a, **k: (_ for _ in ()).throw(AssertionError("not called"))}
    assert run_case(ADAM, rules=broken).status == "pass"


def test_state_key_differences_are_failures():
    def extra_key(param, grad, state, **hyper):
        new_param, new_state = refwd.optim.adam_step(param, grad, state, **hyper)
        return new_param, dict(new_state, exp_avg_sq_typo=new_state["exp_avg_sq"])

    result = run_case(ADAM, rules={"adam": extra_key})
    assert result.status == "fail"
    assert "state keys differ" in result.failure.message and "exp_avg_sq_typo" in result.failure.message


def test_step_count_is_compared_exactly():
    def shared_count(param, grad, state, **hyper):
        new_param, new_state = refwd.optim.adam_step(param, grad, state, **hyper)
        return new_param, dict(new_state, step=new_state["step"] + 1)

    result = run_case(ADAM, rules={"adam": shared_count})
    assert result.status == "fail" and result.failure.key == "step"


def test_the_injected_rule_reaches_the_free_running_check():
    case = dataclasses.replace(CASE_IDS["free-adam-f64-forloop-cpu"], steps=0, free_steps=6)
    rule = corrupt_at(3, (33,), (5,))
    result = run_case(case, rules={"adam": rule})
    assert result.status == "fail"
    assert (result.failure.check, result.failure.step) == ("free-running", 3)


def test_an_exception_in_a_case_is_that_cases_error_and_the_rest_still_runs():
    def crash(*args, **kwargs):
        raise RuntimeError("boom inside the rule")

    cases = [ADAM, CASE_IDS["sgd-plain-f64-forloop-cpu"]]
    results = [run_case(case, rules={"adam": crash}) for case in cases]
    assert results[0].status == "error" and "RuntimeError: boom inside the rule" in results[0].error
    assert results[1].status == "pass"


def test_a_torch_crash_is_an_error_with_the_exception_text():
    case = dataclasses.replace(CASE_IDS["sgd-grad-none-late-f64-fused-cpu"], expect_error="")
    result = run_case(case)
    assert result.status == "error"
    assert "TypeError" in result.error and "NoneType" in result.error


def test_the_documented_fused_sgd_crash_is_an_expected_error_with_its_steps_checked():
    result = run_case(CASE_IDS["sgd-grad-none-late-f64-fused-cpu"])
    assert result.status == "pass" and "step 4" in result.note and "TypeError" in result.note
    assert result.steps == 3 and result.worst[("lockstep", "param")].compared > 0


def test_a_cuda_case_without_cuda_is_an_error_not_a_crash():
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    result = run_case(CASE_IDS["adam-plain-f64-fused-cuda"])
    assert result.status == "error" and "CudaUnavailableError" in result.error


def test_cuda_cases_mirror_the_cpu_matrix():
    cpu = {c.id[:-len("-cpu")] for c in CASES if c.device == "cpu" and c.kind == "trajectory"}
    cuda = {c.id[:-len("-cuda")] for c in CASES if c.device == "cuda" and c.impl != "capturable"}
    assert cpu == cuda   # the constructor checks run on the cpu only, capturable on cuda only


def test_known_defect_table_hides_nothing_else():
    listed = defects.KNOWN_DEFECTS[0]
    case = CASE_IDS[listed.cases[0]]
    version = torch.__version__

    def result(case, status, **fields):
        r = CaseResult(case=case, status=status, torch_version=version, **fields)
        return defects.classify(r)

    mismatch = Mismatch("lockstep", 1, "0.weight", "param", (0, 0), 1.0, 2.0, 99.0, 2.0)
    if listed.applies(version):
        assert result(case, "fail", failure=mismatch).status == "known-defect"
    # another kind of outcome on the listed case, a listed outcome on an unlisted case, and a pass: unchanged
    assert result(case, "error", error="RuntimeError: other").status == "error"
    other = CASE_IDS["lowp-sgd-f16-forloop-cpu"]
    assert result(other, "fail", failure=mismatch).status == "fail"
    assert result(case, "pass").status == "pass"
    too_old = dataclasses.replace(listed, torch_min="99.0")
    assert not too_old.applies(version)


def test_known_defect_entries_have_references_and_existing_cases():
    for defect in defects.KNOWN_DEFECTS:
        assert defect.reference.startswith("https://github.com/")
        assert defect.cases and all(case in CASE_IDS for case in defect.cases)
        assert defect.outcome in ("fail", "error")


def test_twin_has_refwds_names_and_initial_values():
    case = CASE_IDS["adam-wide-f32-forloop-cpu"]
    step = next(torch_trajectory(case, steps=1))
    from refwd_validation.scenario import initial_params
    params = initial_params(case)
    assert list(step.params) == list(params) == ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]
    for name in params:
        np.testing.assert_array_equal(step.params[name], params[name])
        assert step.params[name].dtype == np.float32


def test_memory_stays_flat_as_steps_grow(monkeypatch):
    """Memory in use at step 80 is what it was at step 20: no per-step history is kept.

    Keeping only the params of each step (two tiny arrays here) would add ~12 KB over these 60 steps, and the
    whole record of a step (params, grads, state, batch) ~100 KB; the allowance is 8 KB (torch's profiler
    bookkeeping adds a few bytes per step).
    """
    import gc

    from refwd_validation import harness
    case = dataclasses.replace(CASE_IDS["seed-line-f64-forloop-cpu"], steps=80, free_steps=80)
    run_case(case)  # warm caches
    original = harness.torch_trajectory
    in_use = {}

    def traced(case, steps=None):
        for ts in original(case, steps):
            if ts.step in (20, 80):
                gc.collect()
                in_use[ts.step] = tracemalloc.get_traced_memory()[0]
            yield ts

    monkeypatch.setattr(harness, "torch_trajectory", traced)
    tracemalloc.start()
    try:
        assert run_case(case).status == "pass"
    finally:
        tracemalloc.stop()
    assert in_use[80] - in_use[20] < 8_000, in_use


# --- the matrix covers what the issue asks for

def _cpu(cases):
    return [c for c in cases if c.device == "cpu"]


def _has(case, name, test=bool):
    return name in case.kwargs and test(case.kwargs[name])


FLAGS = {
    "sgd": ["momentum", "dampening", "nesterov", "maximize", "weight_decay"],
    "rmsprop": ["momentum", "centered", "maximize", "weight_decay"],
    "adam": ["amsgrad", "maximize", "weight_decay", "decoupled_weight_decay"],
    "adamw": ["amsgrad", "maximize", "weight_decay"],
    "sgdw": ["momentum", "nesterov", "maximize", "weight_decay", "decay_convention"],
    "rmspropw": ["momentum", "centered", "maximize", "weight_decay", "decay_convention"],
}


@pytest.mark.parametrize("cases", [CASES, quick_cases()], ids=["matrix", "quick"])
def test_every_optimizer_flag_and_impl_is_covered(cases):
    cpu = _cpu(cases)
    for optimizer in OPTIMIZERS:
        mine = [c for c in cpu if c.optimizer == optimizer]
        for flag in FLAGS[optimizer]:
            assert any(_has(c, flag) for c in mine), (optimizer, flag)
        impls = {c.impl for c in mine if c.kind == "trajectory"}
        fused = {"fused", "grad-scaler"} if REGISTRY[optimizer].fused else set()
        kernels = {"forloop", "foreach"} | (fused & {"fused"})
        paths = {"differentiable", "tensor-lr", "compiled"} | fused if REGISTRY[optimizer].torch_class else set()
        if cases is CASES:   # capturable is cuda only
            assert impls == kernels | paths, (optimizer, impls)
        else:
            assert kernels <= impls <= kernels | paths, (optimizer, impls)
        assert set(IMPLS) == {"forloop", "foreach", "fused", "capturable", "differentiable", "tensor-lr", "compiled",
                              "grad-scaler"}
        assert {"float64", "float32"} <= {c.dtype for c in mine}
        assert any(_has(c, "weight_decay") and _has(c, "maximize") for c in mine), (optimizer, "maximize with decay")
        assert any(not _has(c, "weight_decay") for c in mine) or optimizer in ("adamw", "sgdw", "rmspropw"), (
            optimizer, "no decay")


def test_quick_is_a_fraction_of_the_matrix():
    assert 0 < len(quick_cases()) < len(_cpu(CASES)) / 3
    assert {c.dtype for c in quick_cases()} == {"float64", "float32"}


def test_matrix_has_the_required_shapes_layouts_and_schedules():
    cpu = _cpu(CASES)
    assert {c.dtype for c in cpu} == {"float64", "float32", "float16", "bfloat16"}
    assert {c.device for c in CASES} == {"cpu", "cuda"}
    assert all(c.steps >= 4 for c in cpu if c.kind == "trajectory")
    sizes = set()
    for c in cpu:
        for n_in, n_out in zip(c.model[:-1], c.model[1:]):
            sizes.update({n_in * n_out, n_out})
    assert {17, 33, 1000} <= sizes
    assert any(len(c.model) == 2 for c in cpu) and any(len(c.model) >= 4 for c in cpu)  # Linear, 2+ hidden
    assert any(not c.groups for c in cpu)
    layouts = {tuple(sel for sel, _ in c.groups) for c in cpu}
    assert ("weights", "biases") in layouts and ("layer:0", "layer:2", "layer:4") in layouts
    assert any(dict(c.groups[1][1]).get("weight_decay") == 0.0 for c in cpu if c.groups[1:])  # biases excluded
    assert any(c.grad_none for c in cpu) and any(c.lr_schedule for c in cpu) and any(c.loss_decay < 1 for c in cpu)
    assert all(c.free_steps >= 100 for c in cpu if c.free_steps)
    assert {c.optimizer for c in cpu if c.free_steps} == {"sgd", "rmsprop", "adam", "adamw"}   # torch's four
    betas = [c.kwargs["betas"] for c in cpu if "betas" in c.kwargs]
    assert (0.0, 0.99) in betas and any(b1 != b2 for b1, b2 in betas) and any(b2 <= 0.5 for _, b2 in betas)
    assert any(c.kwargs.get("eps", 0) >= 1e-3 for c in cpu)
    assert any(c.kwargs.get("lr", 0) * c.kwargs.get("weight_decay", 0) >= 0.1 for c in cpu)


def test_seed_cases_are_present():
    ids = set(CASE_IDS)
    assert {"seed-line-f64-forloop-cpu", "adam-groups-f64-forloop-cpu", "sgd-per-layer-decay-f64-forloop-cpu",
            "adamw-betas0-f64-forloop-cpu"} <= ids


def test_seed_line_script_prints_the_same_digits_as_torch():
    """docs/examples/linear_regression.py's numbers (loss and weights to 6 decimals) from torch and refwd."""
    case = CASE_IDS["seed-line-f64-forloop-cpu"]
    from refwd_validation.scenario import initial_params
    params = initial_params(case)
    x = np.arange(1.0, 5.0).reshape(4, 1)
    y = 2 * x + 1
    model = refwd.Linear(1, 1)
    optimizer = refwd.optim.SGD(params, lr=0.1, weight_decay=0.01)
    loss_and_grad = refwd.value_and_grad(lambda p: refwd.mse(model(p, x), y))
    for step in torch_trajectory(case, steps=10):
        loss, grads = loss_and_grad(params)
        params = optimizer.step(params, grads)
        assert f"{loss:.6f}" == f"{step.loss:.6f}"
    assert f"{params['weight'][0, 0]:.6f} {params['bias'][0]:.6f}" == \
        f"{step.new_params['weight'][0, 0]:.6f} {step.new_params['bias'][0]:.6f}"


def test_select_rejects_unknown_values_in_one_line():
    from refwd_validation.cases import UnknownFilterError
    for kwargs in (dict(optimizer="lamb"), dict(impl="cuda"), dict(dtype="half"), dict(device="mps"),
                   dict(case="x")):
        with pytest.raises(UnknownFilterError) as info:
            select(**kwargs)
        assert "\n" not in str(info.value)
