"""The first steps of every optimizer and flag against the formula written out by hand (float64).

Each case of ``CASES`` runs three steps on four elements, through the optimizer class and through the pure
rule, and compares params and every state entry with the update written below in plain scalar Python, one
element at a time, in the textbook order of the algorithm (m̂ = m/(1−β₁ᵗ), v̂ = v/(1−β₂ᵗ),
θ − γ·m̂/(√v̂ + ε), ...), not in the rule's order (γ/(1−β₁ᵗ)·m / (√v/√(1−β₂ᵗ) + ε)). A second set of tests
checks closed forms that need no step-by-step simulation at all (Adam's first step is −γ·g/(|g| + ε), ...).

Tolerance (in ULPs of float64, ``TOLERANCE_ULPS_PER_STEP`` per step, accumulated over steps)
-------------------------------------------------------------------------------------------
Both sides evaluate the same real-number expression; they differ only in the order of the roundings. On one
step the longest chain (Adam with amsgrad and decay) has 16 correctly rounded operations on the hand side and
about as many on the rule side; each contributes at most 1 ulp of the quantity it rounds, relative. The
quantities that end in θ are either θ itself or the update Δ, and |Δ| ≤ |θ_{t−1}| + |θ_t| ≤ 2·scale, where
scale = the largest |θ| the element has had so far. So one step differs by at most 2 × 16 ulps of 2·scale, and
carried errors add up over steps: 64·t ulps of scale after t steps. States (moments, buffers) are
two-term linear combinations, so their scale is the largest |value| they have had, with the same budget.
A semantic error (ε inside the root, a missing bias correction, dampening on the first SGD step) moves the
result by 1e-4 relative or more, i.e. ~1e12 ulps, so the bound still separates rounding from mistakes.

Measured worst (this file, float64): 1 ulp of scale for params and 1 ulp for states, over all cases and steps;
most cases are bit-identical.
"""
import math

import numpy as np
import pytest

import refwd
from refwd.optim import adam_step, adamw_step, rmsprop_step, sgd_step

TOLERANCE_ULPS_PER_STEP = 64

THETA0 = [0.5, -1.5, 2.0, -0.25]
# One row per step. Each element keeps its sign across the steps, so no moment cancels; element 2 has a large
# first gradient and then small ones, so amsgrad's running max differs from v from step 2 on.
GRADS = [
    [0.3, -0.7, 3.0, -0.02],
    [0.5, -0.4, 0.05, -0.03],
    [0.2, -0.9, 0.04, -0.01],
]

OPTIMIZERS = {"SGD": refwd.optim.SGD, "RMSprop": refwd.optim.RMSprop, "Adam": refwd.optim.Adam,
              "AdamW": refwd.optim.AdamW}
RULES = {"SGD": sgd_step, "RMSprop": rmsprop_step, "Adam": adam_step, "AdamW": adamw_step}

# (id, optimizer, constructor kwargs). Every flag appears on its own and in combination.
CASES = [
    ("sgd-plain", "SGD", dict(lr=0.1)),
    ("sgd-momentum", "SGD", dict(lr=0.1, momentum=0.9)),
    ("sgd-dampening", "SGD", dict(lr=0.1, momentum=0.9, dampening=0.5)),
    ("sgd-nesterov", "SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("sgd-weight_decay", "SGD", dict(lr=0.1, weight_decay=0.1)),
    ("sgd-maximize", "SGD", dict(lr=0.1, maximize=True)),
    ("sgd-maximize-weight_decay", "SGD", dict(lr=0.1, weight_decay=0.1, maximize=True)),
    ("sgd-momentum-weight_decay", "SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.1)),
    ("sgd-nesterov-weight_decay-maximize", "SGD", dict(lr=0.1, momentum=0.5, nesterov=True, weight_decay=0.1,
                                                      maximize=True)),
    ("sgd-all", "SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.1, maximize=True)),
    ("rmsprop-defaults", "RMSprop", dict()),
    ("rmsprop-alpha", "RMSprop", dict(lr=0.01, alpha=0.5)),
    ("rmsprop-eps", "RMSprop", dict(lr=0.01, eps=0.1)),
    ("rmsprop-weight_decay", "RMSprop", dict(lr=0.01, weight_decay=0.1)),
    ("rmsprop-momentum", "RMSprop", dict(lr=0.01, momentum=0.5)),
    ("rmsprop-centered", "RMSprop", dict(lr=0.01, centered=True)),
    ("rmsprop-centered-alpha", "RMSprop", dict(lr=0.01, alpha=0.3, centered=True)),
    ("rmsprop-maximize", "RMSprop", dict(lr=0.01, maximize=True)),
    ("rmsprop-centered-momentum-weight_decay", "RMSprop", dict(lr=0.01, centered=True, momentum=0.1,
                                                                weight_decay=0.1)),
    ("rmsprop-all", "RMSprop", dict(lr=0.01, alpha=0.9, eps=1e-3, centered=True, momentum=0.1, weight_decay=0.1,
                                    maximize=True)),
    ("adam-defaults", "Adam", dict()),
    ("adam-lr", "Adam", dict(lr=0.1)),
    ("adam-betas", "Adam", dict(lr=0.01, betas=(0.5, 0.9))),
    ("adam-eps", "Adam", dict(lr=0.01, eps=0.1)),
    ("adam-weight_decay", "Adam", dict(lr=0.01, weight_decay=0.1)),
    ("adam-amsgrad", "Adam", dict(lr=0.01, amsgrad=True)),
    ("adam-maximize", "Adam", dict(lr=0.01, maximize=True)),
    ("adam-decoupled", "Adam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    ("adam-weight_decay-amsgrad-maximize", "Adam", dict(lr=0.01, weight_decay=0.1, amsgrad=True, maximize=True)),
    ("adam-all", "Adam", dict(lr=0.01, betas=(0.8, 0.95), eps=1e-3, weight_decay=0.1, amsgrad=True, maximize=True,
                              decoupled_weight_decay=True)),
    ("adamw-defaults", "AdamW", dict()),
    ("adamw-weight_decay", "AdamW", dict(lr=0.01, weight_decay=0.1)),
    ("adamw-amsgrad", "AdamW", dict(lr=0.01, amsgrad=True)),
    ("adamw-maximize", "AdamW", dict(lr=0.01, weight_decay=0.1, maximize=True)),
    ("adamw-betas-eps", "AdamW", dict(lr=0.01, betas=(0.5, 0.9), eps=0.1)),
]

DEFAULTS = {
    "SGD": dict(lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False),
    "RMSprop": dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False, maximize=False),
    "Adam": dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False,
                 decoupled_weight_decay=False),
    "AdamW": dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, maximize=False,
                  decoupled_weight_decay=True),
}


# ----------------------------------------------------------------------------------------------------------------
# The formulas, by hand: scalar Python floats, one element at a time, textbook order.

def sgd_by_hand(theta, grads, lr, momentum, dampening, weight_decay, nesterov, maximize):
    """θ ← θ − γ·d with d = b (or g + μb with Nesterov), b₁ = g₁, b_t = μ·b_{t−1} + (1−τ)·g_t."""
    trajectory, buf = [], None
    for g in grads:
        if maximize:
            g = -g
        g = g + weight_decay * theta
        if momentum != 0:
            buf = g if buf is None else momentum * buf + (1 - dampening) * g
            direction = g + momentum * buf if nesterov else buf
        else:
            direction = g
        theta = theta - lr * direction
        trajectory.append((theta, {} if buf is None else {"momentum_buffer": buf}))
    return trajectory


def rmsprop_by_hand(theta, grads, lr, alpha, eps, weight_decay, momentum, centered, maximize):
    """v ← αv + (1−α)g², ḡ ← αḡ + (1−α)g, d = √(v − ḡ²) + ε or √v + ε; θ ← θ − γ·g/d (or via b ← μb + g/d)."""
    trajectory, v, gbar, buf = [], 0.0, 0.0, 0.0
    for t, g in enumerate(grads, start=1):
        if maximize:
            g = -g
        g = g + weight_decay * theta
        v = alpha * v + (1 - alpha) * g ** 2
        state = {"step": t, "square_avg": v}
        if centered:
            gbar = alpha * gbar + (1 - alpha) * g
            state["grad_avg"] = gbar
            denom = math.sqrt(v - gbar ** 2) + eps
        else:
            denom = math.sqrt(v) + eps
        if momentum > 0:
            buf = momentum * buf + g / denom
            state["momentum_buffer"] = buf
            theta = theta - lr * buf
        else:
            theta = theta - lr * g / denom
        trajectory.append((theta, state))
    return trajectory


def adam_by_hand(theta, grads, lr, betas, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay):
    """m̂ = m/(1−β₁ᵗ), v̂ = v/(1−β₂ᵗ) (or v̂ᵐᵃˣ/(1−β₂ᵗ)), θ ← θ − γ·m̂/(√v̂ + ε); decay coupled or decoupled."""
    beta1, beta2 = betas
    trajectory, m, v, v_max = [], 0.0, 0.0, 0.0
    for t, g in enumerate(grads, start=1):
        if maximize:
            g = -g
        if decoupled_weight_decay:
            theta = theta - lr * weight_decay * theta
        else:
            g = g + weight_decay * theta
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g ** 2
        v_max = max(v_max, v)
        m_hat = m / (1 - beta1 ** t)
        v_hat = (v_max if amsgrad else v) / (1 - beta2 ** t)
        theta = theta - lr * m_hat / (math.sqrt(v_hat) + eps)
        state = {"step": t, "exp_avg": m, "exp_avg_sq": v}
        if amsgrad:
            state["max_exp_avg_sq"] = v_max
        trajectory.append((theta, state))
    return trajectory


BY_HAND = {"SGD": sgd_by_hand, "RMSprop": rmsprop_by_hand, "Adam": adam_by_hand, "AdamW": adam_by_hand}


def hand_trajectory(optimizer, kwargs):
    """Per step: (θ as an array over the elements, {state key: array or step count})."""
    hyperparameters = {**DEFAULTS[optimizer], **kwargs}
    per_element = [BY_HAND[optimizer](theta, [row[i] for row in GRADS], **hyperparameters)
                   for i, theta in enumerate(THETA0)]
    steps = []
    for t in range(len(GRADS)):
        theta = np.array([element[t][0] for element in per_element])
        keys = per_element[0][t][1].keys()
        state = {key: (per_element[0][t][1][key] if key == "step"
                       else np.array([element[t][1][key] for element in per_element])) for key in keys}
        steps.append((theta, state))
    return steps


# ----------------------------------------------------------------------------------------------------------------

def ulps(actual, expected, scale):
    """|actual − expected| in units of the last place of ``scale`` (elementwise, the worst returned)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype == np.float64
    return float(np.max(np.abs(actual - expected) / np.spacing(np.abs(scale))))


def run_optimizer(optimizer, kwargs):
    params = {"theta": np.array(THETA0)}
    opt = OPTIMIZERS[optimizer](params, **kwargs)
    trajectory = []
    for row in GRADS:
        params = opt.step(params, {"theta": np.array(row)})
        trajectory.append((params["theta"], dict(opt.state.get("theta", {}))))
    return trajectory


def run_rule(optimizer, kwargs):
    hyperparameters = {**DEFAULTS[optimizer], **kwargs}
    if optimizer == "AdamW":
        del hyperparameters["decoupled_weight_decay"]  # adamw_step fixes it
    theta, state, trajectory = np.array(THETA0), {}, []
    for row in GRADS:
        theta, state = RULES[optimizer](theta, np.array(row), state, **hyperparameters)
        trajectory.append((theta, state))
    return trajectory


@pytest.mark.parametrize("optimizer, kwargs", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_first_steps_match_the_formula_by_hand(optimizer, kwargs):
    expected = hand_trajectory(optimizer, kwargs)
    through_shell = run_optimizer(optimizer, kwargs)
    through_rule = run_rule(optimizer, kwargs)
    theta_scale = np.abs(np.array(THETA0))
    state_scale = {}
    for t, ((theta, state), (shell_theta, shell_state), (rule_theta, rule_state)) in enumerate(
            zip(expected, through_shell, through_rule), start=1):
        # The shell only loops and delegates: the rule alone gives the same bits.
        np.testing.assert_array_equal(shell_theta, rule_theta)
        assert shell_state.keys() == rule_state.keys()
        for key in shell_state:
            np.testing.assert_array_equal(shell_state[key], rule_state[key])

        theta_scale = np.maximum(theta_scale, np.maximum(np.abs(theta), np.abs(shell_theta)))
        assert ulps(shell_theta, theta, theta_scale) <= TOLERANCE_ULPS_PER_STEP * t, f"step {t}: θ"
        assert shell_state.keys() == state.keys(), f"step {t}: state keys"
        for key, value in state.items():
            if key == "step":
                assert shell_state["step"] == value
                continue
            state_scale[key] = np.maximum(state_scale.get(key, 0.0), np.abs(value))
            assert ulps(shell_state[key], value, state_scale[key]) <= TOLERANCE_ULPS_PER_STEP * t, \
                f"step {t}: state {key!r}"


def test_the_table_exercises_amsgrad():
    """Guard on the data: with these gradients amsgrad's running max is not v itself from step 2 on."""
    state = run_optimizer("Adam", dict(lr=0.01, amsgrad=True))[-1][1]
    assert np.any(state["max_exp_avg_sq"] > state["exp_avg_sq"])
    plain = run_optimizer("Adam", dict(lr=0.01))[-1][0]
    amsgrad = run_optimizer("Adam", dict(lr=0.01, amsgrad=True))[-1][0]
    assert not np.array_equal(plain, amsgrad)


def test_every_flag_changes_the_result():
    """Guard on the data: each case differs from its optimizer's defaults, so no flag is tested vacuously."""
    for case_id, optimizer, kwargs in CASES:
        if not kwargs:
            continue
        lr_only = {"lr": kwargs["lr"]} if "lr" in kwargs else {}
        if set(kwargs) == set(lr_only):
            continue
        flagged = run_optimizer(optimizer, kwargs)[-1][0]
        baseline = run_optimizer(optimizer, lr_only)[-1][0]
        assert not np.array_equal(flagged, baseline), case_id


# ----------------------------------------------------------------------------------------------------------------
# Closed forms: what the first steps must be, derived on paper, with no step-by-step simulation.
# Tolerance: each closed form is a handful (≤ 8) of correctly rounded operations and the refwd side ≤ 16;
# 2 × 16 = 32 ulps of the scale per step, as above.

CLOSED_FORM_ULPS_PER_STEP = 32
GRAD = np.array([0.3, -0.7, 3.0, -0.02])


def run(opt, theta0, grads):
    params = {"theta": np.array(theta0)}
    thetas = []
    for grad in grads:
        params = opt.step(params, {"theta": np.array(grad)})
        thetas.append(params["theta"])
    return thetas, opt.state.get("theta", {})


def assert_close_in_ulps(actual, expected, steps, theta0=THETA0):
    scale = np.maximum.reduce([np.abs(theta0), np.abs(actual), np.abs(expected)])
    assert ulps(actual, expected, scale) <= CLOSED_FORM_ULPS_PER_STEP * steps


def test_sgd_without_momentum_is_the_sum_of_gradients():
    thetas, state = run(refwd.optim.SGD(["theta"], lr=0.1), THETA0, GRADS)
    assert_close_in_ulps(thetas[-1], np.array(THETA0) - 0.1 * np.sum(GRADS, axis=0), 3)
    assert state == {}


def test_sgd_momentum_with_a_constant_gradient():
    # b_t = g·(1 + μ + … + μ^{t−1}): the first buffer is g itself (no dampening, no μ), even with τ = 0.5.
    mu, tau, lr = 0.9, 0.5, 0.1
    thetas, state = run(refwd.optim.SGD(["theta"], lr=lr, momentum=mu), THETA0, [GRAD] * 3)
    buffers = [GRAD, GRAD * (1 + mu), GRAD * (1 + mu + mu ** 2)]
    assert_close_in_ulps(thetas[-1], np.array(THETA0) - lr * sum(buffers), 3)
    # With dampening τ the first buffer is still g itself; the second is μg + (1 − τ)g.
    _, first = run(refwd.optim.SGD(["theta"], lr=lr, momentum=mu, dampening=tau), THETA0, [GRAD])
    np.testing.assert_array_equal(first["momentum_buffer"], GRAD)
    _, second = run(refwd.optim.SGD(["theta"], lr=lr, momentum=mu, dampening=tau), THETA0, [GRAD] * 2)
    assert_close_in_ulps(second["momentum_buffer"], (mu + 1 - tau) * GRAD, 2, theta0=GRAD)


def test_sgd_nesterov_first_step_is_one_plus_mu_gradient():
    # b₁ = g, then the Nesterov direction g + μ·b₁ = (1 + μ)·g.
    thetas, _ = run(refwd.optim.SGD(["theta"], lr=0.1, momentum=0.9, nesterov=True), THETA0, [GRAD])
    assert_close_in_ulps(thetas[0], np.array(THETA0) - 0.1 * 1.9 * GRAD, 1)


def test_rmsprop_first_step():
    # v₁ = (1−α)g², so θ₁ = θ₀ − γ·g/(√(1−α)·|g| + ε): about 10γ·sign(g) with α = 0.99 (no bias correction).
    lr, alpha, eps = 0.01, 0.99, 1e-8
    thetas, state = run(refwd.optim.RMSprop(["theta"], lr=lr, alpha=alpha, eps=eps), THETA0, [GRAD])
    assert_close_in_ulps(thetas[0], np.array(THETA0) - lr * GRAD / (math.sqrt(1 - alpha) * np.abs(GRAD) + eps), 1)
    assert state["step"] == 1


def test_centered_rmsprop_first_step():
    # v₁ − ḡ₁² = (1−α)g² − (1−α)²g² = α(1−α)g².
    lr, alpha, eps = 0.01, 0.9, 1e-8
    thetas, _ = run(refwd.optim.RMSprop(["theta"], lr=lr, alpha=alpha, eps=eps, centered=True), THETA0, [GRAD])
    expected = np.array(THETA0) - lr * GRAD / (math.sqrt(alpha * (1 - alpha)) * np.abs(GRAD) + eps)
    assert_close_in_ulps(thetas[0], expected, 1)


def test_rmsprop_momentum_buffer_starts_at_zero():
    # Unlike SGD's, RMSprop's buffer starts at 0: b₁ = 0·μ + g/d, the same step as without momentum.
    with_momentum, _ = run(refwd.optim.RMSprop(["theta"], momentum=0.9), THETA0, [GRAD])
    without, _ = run(refwd.optim.RMSprop(["theta"]), THETA0, [GRAD])
    assert_close_in_ulps(with_momentum[0], without[0], 1)


@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.5, 0.9), (0.0, 0.5)])
def test_adam_with_a_constant_gradient_moves_lr_per_step(betas):
    # With g constant, m̂_t = g and v̂_t = g² for every t, so θ_t = θ₀ − t·γ·g/(|g| + ε) whatever the betas.
    lr, eps = 0.01, 1e-8
    thetas, state = run(refwd.optim.Adam(["theta"], lr=lr, betas=betas, eps=eps), THETA0, [GRAD] * 3)
    for t, theta in enumerate(thetas, start=1):
        assert_close_in_ulps(theta, np.array(THETA0) - t * lr * GRAD / (np.abs(GRAD) + eps), t)
    assert state["step"] == 3


def test_adam_eps_sits_outside_the_bias_corrected_root():
    # θ₁ = θ₀ − γ·g/(|g| + ε) with ε = 0.1 and tiny g: the "ε̂" form γ·√(1−β₂)/(1−β₁)·m/(√v + ε) would give
    # a step ~30 times smaller here.
    lr, eps, grad = 0.01, 0.1, np.array([1e-3, -2e-3, 5e-2, 0.0])
    thetas, _ = run(refwd.optim.Adam(["theta"], lr=lr, eps=eps), THETA0, [grad])
    assert_close_in_ulps(thetas[0], np.array(THETA0) - lr * grad / (np.abs(grad) + eps), 1)


def test_adamw_first_step_shrinks_then_moves():
    # θ₁ = (1 − γλ)·θ₀ − γ·g/(|g| + ε): the decay uses θ₀ and never enters m or v.
    lr, wd, eps = 0.01, 0.1, 1e-8
    thetas, state = run(refwd.optim.AdamW(["theta"], lr=lr, weight_decay=wd, eps=eps), THETA0, [GRAD])
    assert_close_in_ulps(thetas[0], (1 - lr * wd) * np.array(THETA0) - lr * GRAD / (np.abs(GRAD) + eps), 1)
    np.testing.assert_allclose(state["exp_avg"], 0.1 * GRAD, rtol=4 * 2 ** -52)


def test_adam_coupled_decay_enters_the_moments():
    # g' = g + λθ₀ is what m₁ and v₁ see.
    wd = 0.1
    _, state = run(refwd.optim.Adam(["theta"], lr=0.01, weight_decay=wd), THETA0, [GRAD])
    effective = GRAD + wd * np.array(THETA0)
    np.testing.assert_allclose(state["exp_avg"], 0.1 * effective, rtol=4 * 2 ** -52)
    np.testing.assert_allclose(state["exp_avg_sq"], 0.001 * effective ** 2, rtol=8 * 2 ** -52)


def test_amsgrad_divides_by_the_running_max_of_raw_v():
    # Step 1 with g = 3, step 2 with g = 0.05 (β = 0.5, 0.9): v₂ = 0.9·0.9 + 0.1·0.0025 = 0.81025 < v₁ = 0.9, so
    # step 2 divides by √(0.9/(1 − 0.81)) (the max of the raw v, corrected by the current 1 − β₂²).
    lr, eps = 0.01, 1e-8
    thetas, state = run(refwd.optim.Adam(["theta"], lr=lr, betas=(0.5, 0.9), eps=eps, amsgrad=True),
                        [1.0], [[3.0], [0.05]])
    m2 = 0.5 * (0.5 * 3.0) + 0.5 * 0.05
    theta1 = 1.0 - lr * 3.0 / (3.0 + eps)
    theta2 = theta1 - lr * (m2 / 0.75) / (math.sqrt(0.9 / 0.19) + eps)
    assert_close_in_ulps(thetas[1], np.array([theta2]), 2, theta0=[1.0])
    np.testing.assert_allclose(state["max_exp_avg_sq"], [0.9], rtol=4 * 2 ** -52)
    np.testing.assert_allclose(state["exp_avg_sq"], [0.81025], rtol=4 * 2 ** -52)
