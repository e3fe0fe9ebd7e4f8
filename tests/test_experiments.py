"""Each experiment's conclusion, asserted on its result (experiments/, docs/experiments.md).

Every experiment runs once per session (module-scoped fixtures); together they take about 10 s. Where a conclusion
is an identity, the expected value comes from the formula and the tolerance from a rounding count (Higham's γ_k,
as in tests/test_properties.py); where it is a qualitative conclusion ("far apart", "narrows the gap"), the
threshold is stated next to the measured value, with a wide margin, so that the test fails only if the
conclusion does.
"""
import importlib
import math

import numpy as np
import pytest

from experiments import (NAMES, adamw_as_rmsprop, coupled_vs_decoupled, effective_decay, fixed_points,
                               overfitting)
from experiments.common import flat, mlp_regression

U = 2.0 ** -53  # unit roundoff of float64, in which every experiment runs


def gamma(k):
    """Higham's γ_k = k·u/(1 − k·u) in float64: the relative error of k successive roundings."""
    return k * U / (1 - k * U)


@pytest.fixture(scope="module")
def coupled_vs_decoupled_result():
    return coupled_vs_decoupled.run()


@pytest.fixture(scope="module")
def effective_decay_result():
    return effective_decay.run()


@pytest.fixture(scope="module")
def adamw_as_rmsprop_result():
    return adamw_as_rmsprop.run()


@pytest.fixture(scope="module")
def fixed_points_result():
    return fixed_points.run()


@pytest.fixture(scope="module")
def overfitting_result():
    return overfitting.run()


# --- 1. coupled vs decoupled ----------------------------------------------------------------------------------------

def test_sgd_coupled_and_decoupled_agree_to_rounding_at_every_step(coupled_vs_decoupled_result):
    """SGD and SGDW are one update written two ways: after every step their gap is within the identity's rounding
    bound (γ₄ + γ₄)·Σ_s ((1 + γλ)|θ_{s-1}| + γ|g_s|) in float64 (tests/test_properties.py derives it; measured:
    at most 0.12 of it)."""
    pair = coupled_vs_decoupled_result.pairs["SGD"]
    steps = len(pair.gap)
    bound = 2 * gamma(4) * pair.error_scale / (1 - 2 * steps * gamma(4)) * (1 + gamma(3 * steps))
    assert np.all(pair.gap <= bound)


@pytest.mark.parametrize("name", ["RMSprop", "Adam"])
def test_adaptive_coupled_and_decoupled_first_step_gap_is_the_formula(coupled_vs_decoupled_result, name):
    r"""At step 1, from θ₀ and g = ∇L(θ₀), with x = g + λθ₀ and R = 1/√(1 − α) for RMSprop (v₁ = (1 − α)x²),
    R = 1 for Adam (m̂₁ = x, √v̂₁ = |x|):

        θ_coupled − θ_decoupled = γλθ₀ − γx/(|x|/R + ε) + γg/(|g|/R + ε),

    about 2γR wherever g and g + λθ₀ have opposite signs. Tolerance: the two runs and this float64 evaluation are
    each within γ₂₀·((1 + γλ)|θ₀| + 2γR) of the exact value per element (Adam's longest path in a first step: x 2,
    m 4, v 4, the square root and the bias corrections 5, the quotient and the update 3 roundings: 18 < 20; the
    quotient x/(|x| + ε) is insensitive to the absolute error of x as |g|, |x| ≥ 1e-4 ≫ ε here, asserted).
    """
    pair = coupled_vs_decoupled_result.pairs[name]
    _, params, loss_and_grad = mlp_regression(seed=0)
    theta, grad = flat(params), flat(loss_and_grad(params)[1])
    lr, weight_decay = pair.lr, coupled_vs_decoupled_result.weight_decay
    r = 1 / math.sqrt(1 - 0.99) if name == "RMSprop" else 1.0        # RMSprop's α = 0.99 (its default)
    eps = 1e-8
    x = grad + weight_decay * theta
    assert min(np.min(np.abs(grad)), np.min(np.abs(x))) >= 1e-4
    difference = lr * weight_decay * theta - lr * x / (np.abs(x) / r + eps) + lr * grad / (np.abs(grad) / r + eps)
    tolerance = 3 * gamma(20) * np.max((1 + lr * weight_decay) * np.abs(theta) + 2 * lr * r)
    assert abs(pair.gap[0] - np.max(np.abs(difference))) <= tolerance
    assert np.max(np.abs(difference)) > 1.9 * lr * r               # some sign flipped: measured 2.00γR


@pytest.mark.parametrize("name", ["RMSprop", "Adam"])
def test_adaptive_coupled_and_decoupled_end_far_apart(coupled_vs_decoupled_result, name):
    pair = coupled_vs_decoupled_result.pairs[name]
    assert pair.gap[-1] > 10 * pair.gap[0]       # the runs drift further apart (measured ×29 and ×235)
    assert pair.relative_final_gap > 0.3         # ‖θ_c − θ_d‖/‖θ_d‖ at the end (measured 0.87 and 0.71)


@pytest.mark.parametrize("name", ["RMSprop", "Adam"])
def test_with_the_same_lambda_coupled_decay_is_the_stronger(coupled_vs_decoupled_result, name):
    pair = coupled_vs_decoupled_result.pairs[name]
    # |θ| < 0.01 at the end: measured 0.33 vs 0.05 (RMSprop) and 0.29 vs 0.04 (Adam)
    assert pair.near_zero_fraction("coupled") > 3 * pair.near_zero_fraction("decoupled")
    assert np.linalg.norm(pair.coupled_final) < np.linalg.norm(pair.decoupled_final)


# --- 2. effective decay ---------------------------------------------------------------------------------------------

def test_adam_l2_decays_each_parameter_at_its_own_rate(effective_decay_result):
    quantiles = effective_decay_result.quantiles((0.05, 0.95))
    assert quantiles[1] / quantiles[0] > 10      # the middle 90 % of the rates span more than a decade (measured 31)
    assert np.all(effective_decay_result.relative_decay > 1)   # √v̂ < 1 here: every rate exceeds AdamW's γλ (min 3.1)


def test_effective_decay_is_the_formula_of_the_state(effective_decay_result):
    """k = γλ/(√v̂ + ε), elementwise, with √v̂ as recorded (two roundings: +ε and the quotient)."""
    result = effective_decay_result
    expected = result.lr * result.weight_decay / (result.sqrt_v_hat + 1e-8)
    np.testing.assert_allclose(result.effective_decay, expected, rtol=2 * gamma(2), atol=0)


def test_high_gradient_parameters_decay_least(effective_decay_result):
    # v̂ is an average of the squared coupled gradient, so k falls as the loss gradient's RMS grows (measured −0.86)
    assert effective_decay_result.spearman_with_gradient_rms < -0.7


def test_the_effective_decay_varies_over_time(effective_decay_result):
    # per parameter, k at step 300 against step 30: more than 2× apart for most parameters (measured 78 %)
    assert effective_decay_result.changed_fraction(30, 300) > 0.5


# --- 3. AdamW with β₁ = 0 against RMSpropW --------------------------------------------------------------------------

def test_ratio_thresholds_derived_and_measured(adamw_as_rmsprop_result):
    thresholds = adamw_as_rmsprop_result.thresholds
    # By hand: 1 − √(1 − αᵗ) < 0.01 ⇔ t > ln(1 − 0.99²)/ln α = 37.2, 389.7, 3915.2.
    assert {alpha: r.derived_step for alpha, r in thresholds.items()} == {0.9: 38, 0.99: 390, 0.999: 3916}
    for alpha, r in thresholds.items():
        assert r.measured_step == r.derived_step
        # θ = 0, lr = 1: each update has one rounding (the quotient by its denominator), the measured ratio one
        # more, the formula one (its denominators have the rules' bits): |measured − formula| ≤ (γ₃ + γ₁)·ρ, ρ ≤ 1.
        assert r.worst_formula_error <= gamma(3) + gamma(1)
        # ρ₁ = (√(1−α)|g| + ε)/(|g| + ε) ≥ √(1 − α); its minimum over elements is at the largest |g| (> 1 in this
        # draw of 200), within ε/(√(1 − α)·|g|) ≤ 3.2e-7 relative of √(1 − α).
        assert r.first_ratio == pytest.approx(math.sqrt(1 - alpha), rel=1e-6)


def test_ratio_on_a_training_run_follows_the_formula_and_the_runs_stay_apart(adamw_as_rmsprop_result):
    training = adamw_as_rmsprop_result.training
    steps = np.arange(1, len(training.ratio_min) + 1)
    lower = np.sqrt(1 - training.alpha ** steps)
    # Updates measured from θ = 0 (exact 0 − Δ): two roundings each (γ·g or γ·m, then the quotient), the ratio one.
    assert training.worst_formula_error <= gamma(5) + gamma(1)
    # ρ ∈ [√(1 − αᵗ), 1] in exact arithmetic; the computed denominators (√v shared, the root of 1 − αᵗ by pow within
    # an ulp, a quotient and +ε on each side) and the measurement add at most 10 roundings.
    assert np.all(training.ratio_min >= lower * (1 - gamma(10)))
    assert np.all(training.ratio_max <= 1 + gamma(10))
    assert training.ratio_min[389] >= 0.99 > training.ratio_min[388]   # t = 390, the derived threshold
    assert training.distance[-1] > 0.1           # close per step at the end, but the early steps left their mark


# --- 4. fixed points ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("label", ["SGD", "SGD momentum 0.9", "Adam + L2"])
def test_coupled_l2_converges_to_the_ridge_solution(fixed_points_result, label):
    # 1e-9: converged (measured 2e-15 to 6e-12, the rounding floor times the conditioning); the other candidate
    # fixed points (λ(1 − μ) ridge, AdamW's) are more than 0.1 away
    assert fixed_points_result.distance(label, fixed_points_result.ridge) < 1e-9


def test_sgdw_with_momentum_converges_to_ridge_with_lambda_times_one_minus_mu(fixed_points_result):
    result = fixed_points_result
    assert result.distance("SGDW momentum 0.9", result.ridge_of["SGDW momentum 0.9"]) < 1e-9
    assert result.distance("SGDW momentum 0.9", result.ridge) > 0.1


def test_adamw_converges_to_its_characterised_fixed_point_not_to_ridge(fixed_points_result):
    result = fixed_points_result
    eps = 1e-8
    # As ε → 0 the fixed point tends to the box solution: the barrier ε·φ moves an active coordinate inside by
    # ε|θ_i|/|∇L_i| (3ε here) and the interior ones through the Hessian by a few ε more (measured 3.1ε in all).
    assert np.max(np.abs(result.adamw_predicted - result.box)) < 100 * eps
    assert np.any(np.isclose(np.abs(result.box), 1 / result.weight_decay))  # the box is active
    # A fixed point of adamw_step: Newton leaves a residual of ~1e-15 in ∇L, which the step g/(|g| + ε) amplifies
    # by at most ε/(|g| + ε)² ≈ 2.5e7 at the interior coordinates (|g| ≈ 2e-8): a move of ~3e-8·γ at most
    # (measured 7.5e-9·γ). Ridge is not a fixed point: a steady-state step moves it by 0.85γ.
    assert result.adamw_move_at_prediction < 1e-6 * result.adamw_lr
    assert result.adamw_move_at_ridge > 0.1 * result.adamw_lr
    # Adam's sign-like steps circle the fixed point at the interior coordinates: within one step size of it
    assert result.distance("AdamW", result.adamw_predicted, last=fixed_points.TAIL) < result.adamw_lr
    assert result.distance("AdamW", result.ridge) > 0.1


# --- 5. overfitting -------------------------------------------------------------------------------------------------

def test_without_decay_train_loss_falls_while_validation_loss_rises(overfitting_result):
    run = overfitting_result.runs["no decay"]
    best = int(np.argmin(run.validation_loss))
    assert run.final_train < 0.05 * run.train_loss[0]
    assert best < 0.2 * len(run.validation_loss)                 # the validation minimum comes early
    assert run.final_validation > 2 * run.validation_loss[best]  # and then the network fits the noise


def test_weight_decay_on_weights_narrows_the_gap(overfitting_result):
    runs = list(overfitting_result.runs.values())
    no_decay, decayed = runs[0], runs[1]
    assert decayed.gap < 0.5 * no_decay.gap
    assert decayed.final_validation < no_decay.final_validation
    assert decayed.weight_norm < no_decay.weight_norm


def test_early_stopping_returns_the_best_validation_point(overfitting_result):
    runs = list(overfitting_result.runs.values())
    no_decay, stopped = runs[0], runs[2]
    best = int(np.argmin(no_decay.validation_loss))
    assert stopped.stopped_at == best + overfitting_result.patience + 1
    assert stopped.final_validation == no_decay.validation_loss[best]   # the same run, stopped, best weights kept


# --- Every experiment: a pure run, a report, a main ----------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_each_experiment_has_run_report_and_main(name):
    module = importlib.import_module(f"experiments.{name}")
    assert callable(module.run) and callable(module.report) and callable(module.main)


def test_reports_name_their_conclusions(coupled_vs_decoupled_result, effective_decay_result, adamw_as_rmsprop_result,
                                       fixed_points_result, overfitting_result):
    texts = [coupled_vs_decoupled.report(coupled_vs_decoupled_result), effective_decay.report(effective_decay_result),
             adamw_as_rmsprop.report(adamw_as_rmsprop_result), fixed_points.report(fixed_points_result),
             overfitting.report(overfitting_result)]
    for number, text in enumerate(texts, start=1):
        assert text.startswith(f"Experiment {number}:")
    assert "3916" in texts[2] and "ridge" in texts[3]


def test_runs_are_deterministic():
    first, second = effective_decay.run(steps=20), effective_decay.run(steps=20)
    assert effective_decay.report(first) == effective_decay.report(second)
    np.testing.assert_array_equal(first.effective_decay, second.effective_decay)


def test_experiments_never_import_torch():
    import subprocess
    import sys
    code = ("import sys\n"
            "class NoTorch:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'torch': raise ImportError('torch is blocked')\n"
            "sys.meta_path.insert(0, NoTorch())\n"
            "import experiments.coupled_vs_decoupled, experiments.effective_decay, "
            "experiments.adamw_as_rmsprop, experiments.fixed_points, experiments.overfitting")
    subprocess.run([sys.executable, "-c", code], check=True)
