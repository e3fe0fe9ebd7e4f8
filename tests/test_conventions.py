"""Each convention keyword of the rules against its formula written out by hand, the profiles' wiring, and the
error models of every profile (refwd in float32 within u·S of refwd in float64, S from validation/tolerance.py).

The expected values are the written formulas on a few elements, never a call to refwd. torch's defaults are
covered by the rest of the suite, which runs unchanged.
"""
import functools
import math

import numpy as np
import pytest

from refwd.optim import adam_step, adamw_step, rmsprop_step, rmspropw_step, sgd_step, sgdw_step
from refwd.optim.profiles import FLOAT32_HYPERPARAMETERS, PROFILES
from refwd.optim.rounding import hyperparameters_in_float32
from refwd_validation import tolerance

THETA = np.array([1.0, -2.0, 0.5])
G1 = np.array([0.5, 0.25, -1.0])
G2 = np.array([-1.0, 0.5, 0.3])
RULES = {"sgd": sgd_step, "rmsprop": rmsprop_step, "adam": adam_step, "adamw": adamw_step, "sgdw": sgdw_step,
         "rmspropw": rmspropw_step}
ERROR_RULES = {"sgd": tolerance.sgd, "rmsprop": tolerance.rmsprop, "adam": tolerance.adam, "adamw": tolerance.adamw,
               "sgdw": tolerance.sgdw, "rmspropw": tolerance.rmspropw}


def two_steps(rule, lrs=(0.1, 0.2), **hyperparameters):
    param, state = rule(THETA, G1, {}, lr=lrs[0], **hyperparameters)
    first = param
    param, state = rule(param, G2, state, lr=lrs[1], **hyperparameters)
    return first, param, state


# ------------------------------------------------------------------------------------------------ SGD
def test_sgd_lr_in_momentum_with_a_changing_lr():
    """Keras/Sutskever: b ← μb + γg, θ ← θ − b; the old velocity keeps the old lr."""
    mu = 0.9
    first, second, state = two_steps(sgd_step, momentum=mu, lr_placement="in_momentum")
    b1 = 0.1 * G1
    b2 = mu * b1 + 0.2 * G2
    np.testing.assert_allclose(first, THETA - b1, rtol=1e-15)
    np.testing.assert_allclose(second, THETA - b1 - b2, rtol=1e-15)
    np.testing.assert_allclose(state["momentum_buffer"], b2, rtol=1e-15)
    torch_second = THETA - 0.1 * G1 - 0.2 * (mu * G1 + G2)       # torch: the new lr rescales the whole buffer
    assert np.max(np.abs(second - torch_second)) > 1e-2


def test_sgd_lr_in_momentum_nesterov():
    mu = 0.9
    first, second, _ = two_steps(sgd_step, momentum=mu, nesterov=True, lr_placement="in_momentum")
    b1 = 0.1 * G1
    b2 = mu * b1 + 0.2 * G2
    np.testing.assert_allclose(first, THETA - (0.1 * G1 + mu * b1), rtol=1e-15)
    np.testing.assert_allclose(second, first - (0.2 * G2 + mu * b2), rtol=1e-15)


@pytest.mark.parametrize("lr_placement", ["outside_momentum", "in_momentum"])
def test_sgd_zero_initialised_buffer_dampens_the_first_step(lr_placement):
    mu, tau = 0.9, 0.3
    first, second, state = two_steps(sgd_step, momentum=mu, dampening=tau, momentum_init="zero",
                                     lr_placement=lr_placement)
    if lr_placement == "outside_momentum":
        b1 = (1 - tau) * G1                                       # μ·0 + (1 − τ)g₁ (torch's b₁ = g₁)
        b2 = mu * b1 + (1 - tau) * G2
        expected = (THETA - 0.1 * b1, THETA - 0.1 * b1 - 0.2 * b2)
    else:
        b1 = (1 - tau) * 0.1 * G1
        b2 = mu * b1 + (1 - tau) * 0.2 * G2
        expected = (THETA - b1, THETA - b1 - b2)
    np.testing.assert_allclose(first, expected[0], rtol=1e-15)
    np.testing.assert_allclose(second, expected[1], rtol=1e-15)
    np.testing.assert_allclose(state["momentum_buffer"], b2, rtol=1e-15)


def test_sgd_zero_init_without_dampening_is_torch():
    a = two_steps(sgd_step, momentum=0.9, momentum_init="zero")
    b = two_steps(sgd_step, momentum=0.9)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-15)


# ------------------------------------------------------------------------------------------------ RMSprop
def test_rmsprop_eps_inside_root_plain_and_centered():
    alpha, eps = 0.9, 0.3
    param, _ = rmsprop_step(THETA, G1, {}, lr=0.1, alpha=alpha, eps=eps, eps_placement="inside_root")
    v = (1 - alpha) * G1 ** 2
    np.testing.assert_allclose(param, THETA - 0.1 * G1 / np.sqrt(v + eps), rtol=1e-15)
    param, _ = rmsprop_step(THETA, G1, {}, lr=0.1, alpha=alpha, eps=eps, centered=True, eps_placement="inside_root")
    mean = (1 - alpha) * G1
    np.testing.assert_allclose(param, THETA - 0.1 * G1 / np.sqrt(v - mean ** 2 + eps), rtol=1e-15)


def test_rmsprop_lr_in_momentum_with_a_changing_lr():
    alpha, eps, mu = 0.9, 1e-3, 0.5
    first, second, state = two_steps(rmsprop_step, alpha=alpha, eps=eps, momentum=mu, lr_placement="in_momentum")
    v1 = (1 - alpha) * G1 ** 2
    v2 = alpha * v1 + (1 - alpha) * G2 ** 2
    b1 = 0.1 * G1 / (np.sqrt(v1) + eps)
    b2 = mu * b1 + 0.2 * G2 / (np.sqrt(v2) + eps)
    np.testing.assert_allclose(first, THETA - b1, rtol=1e-15)
    np.testing.assert_allclose(second, THETA - b1 - b2, rtol=1e-14)
    np.testing.assert_allclose(state["momentum_buffer"], b2, rtol=1e-15)


def test_rmsprop_square_average_starting_at_one():
    """TF1's RMSPropOptimizer: the "rms" slot starts at ones, so the first steps are about γg, not γ·sign(g)/√(1−α)."""
    alpha, eps = 0.9, 1e-10
    first, second, state = two_steps(rmsprop_step, alpha=alpha, eps=eps, initial_square_avg=1.0,
                                     eps_placement="inside_root")
    v1 = alpha * 1.0 + (1 - alpha) * G1 ** 2
    v2 = alpha * v1 + (1 - alpha) * G2 ** 2
    np.testing.assert_allclose(first, THETA - 0.1 * G1 / np.sqrt(v1 + eps), rtol=1e-15)
    np.testing.assert_allclose(second, first - 0.2 * G2 / np.sqrt(v2 + eps), rtol=1e-15)
    np.testing.assert_allclose(state["square_avg"], v2, rtol=1e-15)


# ------------------------------------------------------------------------------------------------ Adam
B1, B2, EPS = 0.8, 0.9, 0.3   # a large ε, so that every placement gives a visibly different step


def adam_denominators(v, t):
    root = np.sqrt(v)
    corrected = root / math.sqrt(1 - B2 ** t)
    return {"after_root": corrected + EPS, "inside_root": np.sqrt(v / (1 - B2 ** t) + EPS),
            "floor": np.maximum(corrected, EPS)}


@pytest.mark.parametrize("placement", ["after_root", "inside_root", "floor", "hat"])
def test_adam_eps_placements_on_two_steps(placement):
    first, second, state = two_steps(adam_step, betas=(B1, B2), eps=EPS, eps_placement=placement)
    m1, v1 = (1 - B1) * G1, (1 - B2) * G1 ** 2
    m2, v2 = B1 * m1 + (1 - B1) * G2, B2 * v1 + (1 - B2) * G2 ** 2
    expected = []
    param = THETA
    for t, (m, v, lr) in enumerate(((m1, v1, 0.1), (m2, v2, 0.2)), start=1):
        if placement == "hat":          # γ√(1−β₂ᵗ)/(1−β₁ᵗ) · m/(√v + ε̂)
            param = param - lr * math.sqrt(1 - B2 ** t) / (1 - B1 ** t) * m / (np.sqrt(v) + EPS)
        else:
            param = param - lr / (1 - B1 ** t) * m / adam_denominators(v, t)[placement]
        expected.append(param)
    np.testing.assert_allclose(first, expected[0], rtol=1e-14)
    np.testing.assert_allclose(second, expected[1], rtol=1e-14)
    if placement != "after_root":
        torch_first, _ = adam_step(THETA, G1, {}, lr=0.1, betas=(B1, B2), eps=EPS)
        assert np.max(np.abs(first - torch_first)) > 1e-3


def test_adam_floor_and_amsgrad_use_the_running_max():
    state = {"step": 1, "exp_avg": np.zeros(3), "exp_avg_sq": np.full(3, 4.0), "max_exp_avg_sq": np.full(3, 9.0)}
    param, new = adam_step(THETA, G1, state, lr=0.1, betas=(B1, B2), eps=EPS, amsgrad=True, eps_placement="floor")
    m = (1 - B1) * G1
    v_max = np.maximum(9.0, B2 * 4.0 + (1 - B2) * G1 ** 2)
    np.testing.assert_allclose(param, THETA - 0.1 / (1 - B1 ** 2) * m / np.maximum(np.sqrt(v_max / (1 - B2 ** 2)), EPS),
                               rtol=1e-15)
    np.testing.assert_allclose(new["max_exp_avg_sq"], v_max, rtol=1e-15)


@pytest.mark.parametrize("convention,rate", [("torch", 0.2 * 0.1), ("paper", 0.2 / 0.05 * 0.1), ("independent", 0.1)])
def test_decoupled_decay_conventions_in_every_decoupled_rule(convention, rate):
    """θ ← (1 − ρ)θ before the step, with ρ = γλ, (γ/γ₀)λ or λ; here γ = 0.2, γ₀ = 0.05, λ = 0.1."""
    shrunk = (1 - rate) * THETA
    hyper = dict(lr=0.2, weight_decay=0.1, decay_convention=convention, initial_lr=0.05)
    param, _ = adamw_step(THETA, G1, {}, betas=(B1, B2), eps=EPS, **hyper)
    m, v = (1 - B1) * G1, (1 - B2) * G1 ** 2
    np.testing.assert_allclose(param, shrunk - 0.2 / (1 - B1) * m / (np.sqrt(v) / math.sqrt(1 - B2) + EPS), rtol=1e-15)
    param, _ = sgdw_step(THETA, G1, {}, **hyper)
    np.testing.assert_allclose(param, shrunk - 0.2 * G1, rtol=1e-15)
    param, _ = rmspropw_step(THETA, G1, {}, alpha=0.9, eps=EPS, **hyper)
    np.testing.assert_allclose(param, shrunk - 0.2 * G1 / (np.sqrt(0.1 * G1 ** 2) + EPS), rtol=1e-15)


@pytest.mark.parametrize("rule,keywords", [
    (sgd_step, dict(momentum=0.9, lr_placement="inside")), (sgd_step, dict(momentum=0.9, momentum_init="zeros")),
    (rmsprop_step, dict(eps_placement="hat")), (rmsprop_step, dict(lr_placement="in")),
    (adam_step, dict(eps_placement="after")), (sgdw_step, dict(weight_decay=0.1, decay_convention="keras"))])
def test_a_misspelt_convention_raises(rule, keywords):
    name = [key for key in keywords if key not in ("momentum", "weight_decay")][0]
    with pytest.raises(ValueError, match=name):
        rule(THETA, G1, {}, lr=0.1, **keywords)


# ------------------------------------------------------------------------------------------------ profiles
PROFILE_RULES = [(profile, key) for profile, rules in PROFILES.items() for key in rules]


def test_every_profile_names_known_rules_and_float32_names():
    assert set(FLOAT32_HYPERPARAMETERS) == set(PROFILES)
    assert set(PROFILES["torch"]) == set(RULES) and all(not keywords for keywords in PROFILES["torch"].values())
    for profile, rules in PROFILES.items():
        assert set(rules) <= set(RULES), profile


def test_hyperparameters_in_float32():
    out = hyperparameters_in_float32({"lr": 0.1, "betas": (0.9, 0.999), "eps": 1e-8, "nesterov": True},
                                     ("lr", "betas"))
    assert out["lr"] == float(np.float32(0.1)) != 0.1 and type(out["lr"]) is float
    assert out["betas"] == (float(np.float32(0.9)), float(np.float32(0.999)))
    assert out["eps"] == 1e-8 and out["nesterov"] is True


def hyperparameters_for(key):
    """Hyperparameters under which every convention of the rule shows: momentum, dampening, centered, amsgrad, decay."""
    return {
        "sgd": [dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.1), dict(lr=0.1, momentum=0.9, nesterov=True)],
        "sgdw": [dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.1, initial_lr=0.05)],
        "rmsprop": [dict(lr=0.01, alpha=0.9, eps=1e-3, momentum=0.5, centered=True, weight_decay=0.1),
                    dict(lr=0.01, alpha=0.9, eps=1e-6, momentum=0.5)],
        "rmspropw": [dict(lr=0.01, alpha=0.9, eps=1e-3, momentum=0.5, weight_decay=0.1, initial_lr=0.02)],
        "adam": [dict(lr=0.01, betas=(0.5, 0.9), eps=1e-3, weight_decay=0.1, amsgrad=True), dict(lr=0.01)],
        "adamw": [dict(lr=0.05, betas=(0.8, 0.99), eps=1e-3, weight_decay=0.5, initial_lr=0.1, amsgrad=True)],
    }[key]


@pytest.mark.parametrize("profile,key", PROFILE_RULES)
def test_every_profile_builds_with_partial_for_the_rule_and_its_error_model(profile, key):
    rule = functools.partial(RULES[key], **PROFILES[profile][key])
    error_rule = functools.partial(ERROR_RULES[key], **PROFILES[profile][key])
    for hyper in hyperparameters_for(key):
        hyper = hyperparameters_in_float32(hyper, FLOAT32_HYPERPARAMETERS[profile])
        param, state = rule(THETA, G1, {}, **hyper)
        assert np.all(np.isfinite(param)) and param.dtype == THETA.dtype
        scales = tolerance.step_scales(error_rule, THETA, G1, {}, hyper, "float64")
        assert set(scales) == {"param", *(k for k in state if k != "step")}


def plausible_state(key, hyper, rng, shape):
    """A state after a few steps, in float32 (the first step, with no state at all, is checked too)."""
    state = {}
    if key in ("sgd", "sgdw"):
        return {"momentum_buffer": (rng.normal(size=shape) * 0.1).astype(np.float32)}
    if key in ("rmsprop", "rmspropw"):
        state = {"step": 3, "square_avg": (rng.random(shape) ** 2 * 0.1).astype(np.float32),
                 "momentum_buffer": (rng.normal(size=shape) * 0.1).astype(np.float32)}
        if hyper.get("centered"):
            state["grad_avg"] = (rng.normal(size=shape) * 0.05).astype(np.float32)
            state["square_avg"] = (state["square_avg"] + state["grad_avg"] ** 2).astype(np.float32)
        return state
    state = {"step": 4, "exp_avg": (rng.normal(size=shape) * 0.1).astype(np.float32),
             "exp_avg_sq": (rng.random(shape) ** 2 * 0.1).astype(np.float32)}
    if hyper.get("amsgrad"):
        state["max_exp_avg_sq"] = (state["exp_avg_sq"] * 1.5).astype(np.float32)
    return state


@pytest.mark.parametrize("profile,key", PROFILE_RULES)
@pytest.mark.parametrize("first_step", [True, False], ids=["first-step", "later-step"])
def test_error_model_bounds_refwd_in_float32_for_every_profile(profile, key, first_step):
    """|refwd in float32 − refwd in float64 from the same inputs| ≤ u·S, S from the profile's error model."""
    rule = functools.partial(RULES[key], **PROFILES[profile][key])
    error_rule = functools.partial(ERROR_RULES[key], **PROFILES[profile][key])
    u = tolerance.unit_roundoff("float32")
    for index, hyper in enumerate(hyperparameters_for(key)):
        hyper = hyperparameters_in_float32(hyper, FLOAT32_HYPERPARAMETERS[profile])
        rng = np.random.default_rng(index)
        shape = (3000,)
        param = rng.normal(size=shape).astype(np.float32)
        grad = rng.normal(size=shape).astype(np.float32)
        grad[:300] = (-hyper.get("weight_decay", 0.0) * param[:300] * (1 + 1e-3 * rng.normal(size=300))).astype(
            np.float32)                                           # coupled decay nearly cancels here
        grad[300:400] *= 1e-4                                     # √v comparable to ε: the placements differ
        state = {} if first_step else plausible_state(key, hyper, rng, shape)
        new32, state32 = rule(param, grad, state, **hyper)
        state64 = {k: (v.astype(np.float64) if isinstance(v, np.ndarray) else v) for k, v in state.items()}
        new64, state64 = rule(param.astype(np.float64), grad.astype(np.float64), state64, **hyper)
        scales = tolerance.step_scales(error_rule, param, grad, state, hyper, "float32")
        pairs = {"param": (new32, new64), **{k: (state32[k], state64[k]) for k in state32 if k != "step"}}
        for name, (low, exact) in pairs.items():
            assert low.dtype == np.float32, name
            error = np.abs(low.astype(np.float64) - exact)
            assert np.all(error <= u * scales[name] + 1e-300), (name, float(np.max(error / (u * scales[name]))))
