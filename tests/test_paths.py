"""torch's other implementation paths: compiled, differentiable, a Tensor lr, GradScaler (capturable is cuda only).

The twin drives torch down each path as a user would, the harness checks each as any path, a bug in the reference
shows on each, and the two models the paths need (GradScaler's skipped steps, Adam's float32 scalars) are checked
against what they model: GradScaler's documented scale rule, and float32 arithmetic.
"""
import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from refwd_validation import tolerance, twin  # noqa: E402
from refwd_validation.cases import CASE_IDS, CASES  # noqa: E402
from refwd_validation.harness import run_case  # noqa: E402
from refwd_validation.mutants import MUTANTS  # noqa: E402
from refwd_validation.mutation import cheapest_case  # noqa: E402
from refwd_validation.outcomes import Status  # noqa: E402

pytestmark = pytest.mark.torch

MUTANT = {mutant.id: mutant for mutant in MUTANTS}


@pytest.mark.parametrize("path", ["compiled", "differentiable", "tensor-lr", "grad-scaler"])
@pytest.mark.parametrize("mutant_id", ["adam-step-off-by-one", "adam-betas-swapped", "sgd-nesterov-old-buffer"])
def test_a_bug_in_the_reference_shows_on_every_path(path, mutant_id):
    mutant = MUTANT[mutant_id]
    case = cheapest_case(mutant, [case for case in CASES if case.device == "cpu" and case.impl == path])
    assert case is not None, (mutant_id, path)
    plain, mutated = run_case(case), run_case(case, rules=mutant.rules())
    assert plain.status == Status.PASS and not plain.note, plain.detail
    assert mutated.status == Status.FAIL, (case.id, mutated.detail)


def test_a_skipped_step_that_moves_anything_fails():
    """Fused SGD with momentum whose first step GradScaler skips: torch makes a momentum buffer (of memory it never
    wrote) where nothing may change. Declared as a documented difference in the matrix; without it, a failure."""
    case = dataclasses.replace(CASE_IDS["scaler-sgd-momentum-first-skipped-f32-grad-scaler-cpu"], expect_error="")
    result = run_case(case)
    assert result.status == Status.FAIL
    assert result.failure.step == 1 and "only in torch ['momentum_buffer']" in result.failure.describe()


def test_grad_scaler_unscales_exactly_and_follows_its_scale_rule():
    """Scale 2¹⁰, doubled after every 2 clean steps, halved on a step with an inf or NaN (steps 3 and 5)."""
    case = CASE_IDS["scaler-adam-off-f32-grad-scaler-cpu"]
    steps = list(twin.torch_trajectory(case))
    expected, scale, clean = [], 2.0 ** 10, 0
    for step in range(1, case.steps + 1):
        expected.append(scale)
        skipped = any(at == step for _, at, _, _ in case.inject)
        clean = 0 if skipped else clean + 1
        scale = scale / 2 if skipped else scale * 2 if clean == 2 else scale
        clean = 0 if clean == 2 else clean
    assert [step.grad_scale for step in steps] == expected
    plain = list(twin.torch_trajectory(dataclasses.replace(case, impl="fused", inject=())))
    np.testing.assert_array_equal(steps[0].grads["0.weight"], plain[0].grads["0.weight"])   # unscaled: exact


def test_a_tensor_lr_is_filled_in_place_and_the_lock_step_takes_its_rounded_value():
    case = CASE_IDS["adamw-bias-excluded-f32-tensor-lr-cpu"]
    assert case.lr_schedule
    steps = list(twin.torch_trajectory(case))
    base = dict(case.groups[0][1]).get("lr", case.kwargs["lr"])
    for step in steps:
        assert step.lrs[0] == float(np.float32(base * case.lr_factor(step.step)))


@settings(max_examples=300, deadline=None)
@given(beta1=st.floats(0.0, 0.9999), beta2=st.floats(0.5, 0.99999), step=st.integers(1, 5000))
def test_the_float32_scalar_model_bounds_float32_scalars(beta1, beta2, step):
    """torch's tensor paths form bc₁, bc₂, the step size and √bc₂ in float32 from a float32 step: the resulting
    factor lr·√bc₂/bc₁ stays within tensor_scalar_error·u of the float64 one (the formula's other four terms
    are covered by the model's constant)."""
    f32 = np.float32
    bc1, bc2 = f32(1) - f32(beta1) ** f32(step), f32(1) - f32(beta2) ** f32(step)
    if bc1 == 0 or bc2 == 0:
        return
    lr = 1e-3
    factor32 = float((f32(lr) / bc1) * np.sqrt(bc2))
    exact = lr / (1 - beta1 ** step) * np.sqrt(1 - beta2 ** step)
    bound = tolerance.tensor_scalar_error((beta1, beta2), step, "float32", "float64") * \
        tolerance.unit_roundoff("float64")
    assert abs(factor32 - exact) <= bound * exact
