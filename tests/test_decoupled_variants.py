"""SGDW and RMSpropW, the decoupled variants torch does not ship: formulas by hand, conventions, the shell.

They are refwd-only (no torch twin), so the formulas written out here are their only oracle. The formulas by hand
are evaluated in Python floats in the order torch evaluates its own optimizers (the EMA of ḡ as torch's ``lerp``,
γ·g before the division by d), which is also refwd's; IEEE arithmetic then gives the same bits, so they are compared
exactly. Where two evaluations differ in order, the tolerance is a rounding bound derived in the test.
"""
import math

import numpy as np
import pytest

from refwd.optim import SGD, SGDW, RMSprop, RMSpropW, rmspropw_step, sgdw_step
from refwd.optim.decoupled import decay_rate

THETA0 = [1.0, -2.0]
GRADS = [[0.5, 0.25], [-1.0, 0.5], [0.25, -0.5]]


def run(optimizer_class, steps=3, lr_at=None, dtype="float64", **hyper):
    """Run ``steps`` steps on θ₀ = THETA0 with GRADS; ``lr_at(t)`` sets the group lr before step t."""
    params = {"θ": np.array(THETA0, dtype=dtype)}
    optimizer = optimizer_class(params, **hyper)
    out = []
    for t, grad in enumerate(GRADS[:steps], start=1):
        if lr_at is not None:
            optimizer.param_groups[0]["lr"] = lr_at(t)
        params = optimizer.step(params, {"θ": np.array(grad, dtype=dtype)})
        out.append(params["θ"])
    return out, optimizer


# --- Formulas by hand ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("nesterov", [False, True])
def test_sgdw_first_steps_by_hand(nesterov):
    lr, mu, wd = 0.1, 0.9, 0.5
    thetas, _ = run(SGDW, lr=lr, momentum=mu, weight_decay=wd, nesterov=nesterov)
    for i in range(2):
        theta, buffer = THETA0[i], None
        for t, grads in enumerate(GRADS):
            g = grads[i]
            theta = theta * (1 - lr * wd)                           # shrink first, with the pre-step θ
            buffer = g if buffer is None else mu * buffer + 1.0 * g   # b_1 = g_1; then μb + (1 − 0)g; no λθ inside
            theta = theta - lr * (g + mu * buffer if nesterov else buffer)
            assert thetas[t][i] == theta


def test_sgdw_with_dampening_by_hand():
    lr, mu, tau, wd = 0.05, 0.8, 0.3, 0.2
    thetas, _ = run(SGDW, lr=lr, momentum=mu, dampening=tau, weight_decay=wd)
    theta, buffer = THETA0[0], None
    for t, grads in enumerate(GRADS):
        theta = theta * (1 - lr * wd)
        buffer = grads[0] if buffer is None else mu * buffer + (1 - tau) * grads[0]   # no dampening on step 1
        theta = theta - lr * buffer
        assert thetas[t][0] == theta


@pytest.mark.parametrize("centered, momentum", [(False, 0.0), (True, 0.0), (False, 0.5), (True, 0.5)])
def test_rmspropw_first_steps_by_hand(centered, momentum):
    lr, alpha, eps, wd = 0.01, 0.9, 1e-8, 0.5
    thetas, _ = run(RMSpropW, lr=lr, alpha=alpha, eps=eps, weight_decay=wd, centered=centered, momentum=momentum)
    for i in range(2):
        theta, v, g_avg, buffer = THETA0[i], 0.0, 0.0, 0.0
        for t, grads in enumerate(GRADS):
            g = grads[i]                                            # λθ enters neither v nor the step
            theta = theta * (1 - lr * wd)
            v = alpha * v + (1 - alpha) * g * g
            g_avg = g_avg + (1 - alpha) * (g - g_avg)               # αḡ + (1 − α)g, as torch's lerp (weight < ½)
            d = math.sqrt(v - g_avg * g_avg if centered else v) + eps
            buffer = momentum * buffer + g / d
            theta = theta - lr * buffer if momentum > 0 else theta - lr * g / d
            assert thetas[t][i] == theta


def test_paper_convention_follows_the_schedule_multiplier_by_hand():
    """'paper': θ shrinks by η_t·λ with η_t = γ_t/γ₀, not by γ_t·λ; the gradient step still uses γ_t."""
    base_lr, wd = 0.1, 0.05
    multipliers = {1: 1.0, 2: 0.5, 3: 0.25}
    thetas, optimizer = run(SGDW, lr=base_lr, weight_decay=wd, decay_convention="paper",
                            lr_at=lambda t: base_lr * multipliers[t])
    assert optimizer.param_groups[0]["initial_lr"] == base_lr
    theta = THETA0[1]
    for t, grads in enumerate(GRADS, start=1):
        lr = base_lr * multipliers[t]                               # halvings: γ/γ₀ is the multiplier exactly
        theta = theta * (1 - multipliers[t] * wd) - lr * grads[1]
        assert thetas[t - 1][1] == theta


# --- Conventions ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("optimizer_class", [SGDW, RMSpropW])
def test_paper_lambda_is_torch_lambda_over_the_base_lr(optimizer_class):
    r"""The two conventions differ only in λ's scale: 'paper' with λ is 'torch' with λ/γ₀, under any schedule.

    In exact arithmetic the decay rates (γ_t/γ₀)·λ and γ_t·(λ/γ₀) are equal, so the runs are one exact trajectory.
    Each computed run is within γ₇·Σ_t E_t of it (float64): the monomial through the rate has 2 roundings in the
    rate, 1 in 1 − ρ, the product with θ and, after it, γ·g, /d (RMSprop; d is the same on both sides, as v does
    not depend on θ) and −; E_t = (1 + ρ_t)|θ_{t-1}| + γ_t|g_t|/d_t (d = 1 for SGDW),
    and 1 − ρ ≤ 1 keeps earlier errors from growing. So the runs differ by at most 2γ₇·Σ_t E_t (d recomputed here
    from the gradients, as the rule computes it; its own rounding is shared by both runs).
    """
    base_lr, wd = 0.2, 0.1
    schedule = lambda t: base_lr * 0.5 ** t
    paper, _ = run(optimizer_class, lr=base_lr, weight_decay=wd, decay_convention="paper", lr_at=schedule)
    torch_style, _ = run(optimizer_class, lr=base_lr, weight_decay=wd / base_lr, lr_at=schedule)
    u = 2.0 ** -53
    gamma_7 = 7 * u / (1 - 7 * u)
    theta, scale, v = np.abs(np.array(THETA0)), np.zeros(2), np.zeros(2)
    for t, (grad, a, b) in enumerate(zip(GRADS, paper, torch_style), start=1):
        grad = np.array(grad)
        rate = schedule(t) / base_lr * wd
        if optimizer_class is SGDW:
            d = 1.0
        else:                                              # RMSprop's denominator at its defaults α = 0.99, ε = 1e-8
            v = 0.99 * v + (1 - 0.99) * grad * grad
            d = np.sqrt(v) + 1e-8
        scale += (1 + rate) * theta + schedule(t) * np.abs(grad) / d
        theta = np.abs(a)
        assert np.all(np.abs(a - b) <= 2 * gamma_7 * scale)


def test_decay_rate_conventions():
    assert decay_rate(lr=0.1, weight_decay=0.01) == 0.1 * 0.01
    assert decay_rate(lr=0.05, weight_decay=0.01, decay_convention="paper", initial_lr=0.1) == 0.5 * 0.01
    with pytest.raises(ValueError, match="initial_lr"):
        decay_rate(lr=0.1, weight_decay=0.01, decay_convention="paper")
    with pytest.raises(ValueError, match="decay_convention must be one of"):
        decay_rate(lr=0.1, weight_decay=0.01, decay_convention="Paper")


def test_initial_lr_is_each_groups_own_lr_unless_given():
    optimizer = SGDW([{"params": ["a"]}, {"params": ["b"], "lr": 0.5}, {"params": ["c"], "initial_lr": 2.0}],
                     lr=0.1, decay_convention="paper")
    assert [group["initial_lr"] for group in optimizer.param_groups] == [0.1, 0.5, 2.0]
    assert [group["decay_convention"] for group in optimizer.param_groups] == ["paper"] * 3


def test_convention_per_group():
    params = {"a": np.ones(1), "b": np.ones(1)}
    optimizer = SGDW([{"params": ["a"]}, {"params": ["b"], "decay_convention": "paper"}], lr=0.1, weight_decay=0.5)
    new = optimizer.step(params, {"a": np.zeros(1), "b": np.zeros(1)})
    assert new["a"][0] == 1 - 0.1 * 0.5       # torch: γλ
    assert new["b"][0] == 1 - 1.0 * 0.5       # paper: η_t λ with η_t = 1


# --- Relations to the coupled optimizers ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("coupled, decoupled, hyper", [
    (SGD, SGDW, dict(lr=0.1, momentum=0.9, nesterov=True)),
    (SGD, SGDW, dict(lr=0.1, momentum=0.9, dampening=0.5)),
    (RMSprop, RMSpropW, dict(lr=0.01, momentum=0.5, centered=True)),
])
def test_without_decay_the_decoupled_variant_is_the_coupled_optimizer_bit_for_bit(coupled, decoupled, hyper, dtype):
    a, _ = run(coupled, dtype=dtype, weight_decay=0.0, **hyper)
    b, _ = run(decoupled, dtype=dtype, weight_decay=0.0, **hyper)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y, strict=True)


@pytest.mark.parametrize("optimizer_class", [SGDW, RMSpropW])
def test_decay_shrinks_zero_gradient_params_and_maximize_does_not_flip_it(optimizer_class):
    params = {"θ": np.array([2.0, -4.0])}
    for maximize in (False, True):
        optimizer = optimizer_class(params, lr=0.1, weight_decay=0.5, maximize=maximize)
        new = optimizer.step(params, {"θ": np.zeros(2)})
        np.testing.assert_array_equal(new["θ"], params["θ"] * (1 - 0.1 * 0.5))


@pytest.mark.parametrize("optimizer_class", [SGDW, RMSpropW])
def test_a_none_grad_skips_the_param_and_its_decay(optimizer_class):
    params = {"a": np.ones(2), "b": np.ones(2)}
    optimizer = optimizer_class(params, lr=0.1, weight_decay=0.5)
    new = optimizer.step(params, {"a": np.ones(2), "b": None})
    assert new["b"] is params["b"] and "b" not in optimizer.state


# --- The pure rules and the shell -----------------------------------------------------------------------------------

@pytest.mark.parametrize("rule, hyper", [
    (sgdw_step, dict(lr=0.1, momentum=0.9, weight_decay=0.1)),
    (rmspropw_step, dict(lr=0.01, momentum=0.9, centered=True, weight_decay=0.1)),
])
def test_rules_keep_float32_and_leave_inputs_untouched(rule, hyper):
    param, grad = np.array([1.0, -2.0], dtype="float32"), np.array([0.5, 0.25], dtype="float32")
    state = {}
    for _ in range(2):
        copies = (param.copy(), grad.copy(), {k: np.copy(v) for k, v in state.items()})
        new_param, new_state = rule(param, grad, state, **hyper)
        np.testing.assert_array_equal(param, copies[0])
        np.testing.assert_array_equal(grad, copies[1])
        assert state.keys() == copies[2].keys()
        assert new_param.dtype == np.float32
        assert all(v.dtype == np.float32 for v in new_state.values() if isinstance(v, np.ndarray))
        param, state = new_param, new_state


@pytest.mark.parametrize("make, message", [
    (lambda p: SGDW(p, lr=-1), "Invalid learning rate: -1"),
    (lambda p: SGDW(p, momentum=-0.5), "Invalid momentum value: -0.5"),
    (lambda p: SGDW(p, weight_decay=-1.0), "Invalid weight_decay value: -1.0"),
    (lambda p: SGDW(p, nesterov=True), "Nesterov momentum requires a momentum and zero dampening"),
    (lambda p: SGDW(p, decay_convention="optax"), "decay_convention must be one of"),
    (lambda p: RMSpropW(p, alpha=-0.5), "Invalid alpha value: -0.5"),
    (lambda p: RMSpropW(p, eps=-1e-8), "Invalid epsilon value"),
    (lambda p: RMSpropW(p, decay_convention=None), "decay_convention must be one of"),
])
def test_invalid_hyperparameters_raise_before_params_are_read(make, message):
    with pytest.raises(ValueError, match=message):
        make(None)   # as in torch's own error tests: the check comes before params are looked at


def test_an_unknown_convention_in_a_group_is_rejected_when_the_group_is_added():
    with pytest.raises(ValueError, match="decay_convention must be one of"):
        SGDW([{"params": ["θ"], "decay_convention": "keras"}])


def test_defaults_follow_adamw():
    params = {"θ": np.ones(1)}
    assert SGDW(params).defaults["weight_decay"] == 1e-2 and SGDW(params).defaults["decay_convention"] == "torch"
    assert RMSpropW(params).defaults["weight_decay"] == 1e-2 and RMSpropW(params).defaults["lr"] == 1e-2


@pytest.mark.parametrize("optimizer_class", [SGDW, RMSpropW])
def test_state_dict_round_trip_keeps_the_convention(optimizer_class):
    thetas, optimizer = run(optimizer_class, steps=2, lr=0.1, momentum=0.9, weight_decay=0.1,
                            decay_convention="paper")
    restored = optimizer_class({"θ": np.zeros(2)}, lr=0.3)
    restored.load_state_dict(optimizer.state_dict())
    assert restored.param_groups[0]["decay_convention"] == "paper"
    assert restored.param_groups[0]["initial_lr"] == 0.1
    grad = {"θ": np.array(GRADS[2])}
    np.testing.assert_array_equal(restored.step({"θ": thetas[-1]}, grad)["θ"],
                                  optimizer.step({"θ": thetas[-1]}, grad)["θ"])
