"""Identities that hold bit for bit, and non-finite gradients propagating as torch propagates them.

Bit for bit, because each identity runs the same floating-point operations on the same values: negation is
exact, so maximize(g) and minimize(−g) round identically; AdamW *is* Adam's rule with the decoupled flag; with
λ = 0 neither decay branch runs.
"""
import warnings

import numpy as np
import pytest

from refwd.optim import SGD, Adam, AdamW, RMSprop, adam_step, adamw_step

SHAPES = {"weight": (3, 4), "bias": (3,)}
DTYPES = ["float64", "float32"]


def make_params(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return {name: rng.normal(size=shape).astype(dtype) for name, shape in SHAPES.items()}


def make_grads(step, dtype, seed=50):
    rng = np.random.default_rng(seed + step)
    return {name: rng.normal(size=shape).astype(dtype) for name, shape in SHAPES.items()}


def trajectory(opt, dtype, steps=5, negate=False):
    params, out = make_params(dtype), []
    for step in range(steps):
        grads = make_grads(step, dtype)
        if negate:
            grads = {name: -grad for name, grad in grads.items()}
        params = opt.step(params, grads)
        out.append((params, {name: dict(state) for name, state in opt.state.items()}))
    return out


def assert_bitwise_equal(a, b):
    for (params_a, state_a), (params_b, state_b) in zip(a, b, strict=True):
        for name in params_a:
            assert params_a[name].dtype == params_b[name].dtype
            np.testing.assert_array_equal(params_a[name], params_b[name], err_msg=name)
        assert state_a.keys() == state_b.keys()
        for name in state_a:
            assert state_a[name].keys() == state_b[name].keys()
            for key in state_a[name]:
                np.testing.assert_array_equal(state_a[name][key], state_b[name][key], err_msg=f"{name} {key}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kwargs", [dict(), dict(lr=0.01, weight_decay=0.1), dict(amsgrad=True, weight_decay=0.3),
                                    dict(maximize=True, weight_decay=0.1), dict(weight_decay=0.0),
                                    dict(lr=0.1, betas=(0.5, 0.9), eps=1e-3, weight_decay=0.2, amsgrad=True,
                                         maximize=True)], ids=str)
def test_adam_decoupled_is_adamw(kwargs, dtype):
    kwargs = {"weight_decay": 1e-2, **kwargs}   # AdamW's default decay, given to both
    assert_bitwise_equal(trajectory(Adam(list(SHAPES), decoupled_weight_decay=True, **kwargs), dtype),
                         trajectory(AdamW(list(SHAPES), **kwargs), dtype))


def test_adamw_step_is_adam_step_with_decoupled_decay():
    theta, grad = np.array([0.5, -1.0]), np.array([0.25, 0.125])
    state_a = state_b = {}
    for _ in range(3):
        theta_a, state_a = adam_step(theta, grad, state_a, lr=0.1, weight_decay=0.3, decoupled_weight_decay=True)
        theta_b, state_b = adamw_step(theta, grad, state_b, lr=0.1, weight_decay=0.3)
        np.testing.assert_array_equal(theta_a, theta_b)
        theta = theta_a


MAXIMIZE_CONFIGS = [
    (SGD, dict(lr=0.1)),
    (SGD, dict(lr=0.1, momentum=0.9, dampening=0.3)),
    (SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
    (RMSprop, dict()),
    (RMSprop, dict(momentum=0.5, centered=True, alpha=0.9)),
    (Adam, dict(lr=0.01)),
    (Adam, dict(lr=0.01, amsgrad=True, betas=(0.5, 0.9))),
    (AdamW, dict(lr=0.01, weight_decay=0.0)),
    (AdamW, dict(lr=0.01, weight_decay=0.0, amsgrad=True)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls, kwargs", MAXIMIZE_CONFIGS, ids=lambda value: getattr(value, "__name__", str(value)))
def test_maximize_g_is_minimize_minus_g(cls, kwargs, dtype):
    assert kwargs.get("weight_decay", 0) == 0   # the decay term keeps its sign under maximize, so λ must be 0
    assert_bitwise_equal(trajectory(cls(list(SHAPES), maximize=True, **kwargs), dtype),
                         trajectory(cls(list(SHAPES), **kwargs), dtype, negate=True))


@pytest.mark.parametrize("cls", [SGD, RMSprop, Adam, AdamW], ids=lambda cls: cls.__name__)
def test_maximize_keeps_the_sign_of_the_decay(cls):
    # With λ ≠ 0 maximize is not minimize(−g): the decay still pulls θ to 0. A zero gradient shows it alone.
    lr, wd, theta = 0.1, 0.5, np.array([2.0, -2.0])
    for maximize in (False, True):
        opt = cls(["w"], lr=lr, weight_decay=wd, maximize=maximize)
        new = opt.step({"w": theta}, {"w": np.zeros(2)})["w"]
        assert np.all(np.abs(new) < np.abs(theta))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kwargs", [dict(), dict(amsgrad=True), dict(maximize=True, betas=(0.5, 0.9), lr=0.1)],
                         ids=str)
def test_without_decay_coupled_and_decoupled_adam_are_identical(kwargs, dtype):
    assert_bitwise_equal(trajectory(Adam(list(SHAPES), weight_decay=0.0, **kwargs), dtype),
                         trajectory(Adam(list(SHAPES), weight_decay=0.0, decoupled_weight_decay=True, **kwargs),
                                    dtype))
    assert_bitwise_equal(trajectory(Adam(list(SHAPES), weight_decay=0, **kwargs), dtype),
                         trajectory(AdamW(list(SHAPES), weight_decay=0, **kwargs), dtype))


# ----------------------------------------------------------------------------------------------------------------
# NaN and Inf in gradients are never fixed: they propagate as in torch, silently.

NONFINITE_CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1)),
    ("RMSprop", dict()),
    ("RMSprop", dict(momentum=0.5, centered=True)),
    ("Adam", dict()),
    ("Adam", dict(amsgrad=True)),
    ("AdamW", dict(amsgrad=True, maximize=True)),
]
# Each element sees one non-finite value at step 1, then finite gradients: nan, +inf, -inf, finite.
NONFINITE_GRADS = [np.array([np.nan, np.inf, -np.inf, 0.5]), np.array([0.3, 0.3, 0.3, 0.3]),
                   np.array([-0.2, -0.2, -0.2, -0.2])]


def refwd_nonfinite_run(optimizer, kwargs, dtype):
    opt = {"SGD": SGD, "RMSprop": RMSprop, "Adam": Adam, "AdamW": AdamW}[optimizer](["w"], **kwargs)
    params, out = {"w": np.array([1.0, -1.0, 2.0, 0.5], dtype=dtype)}, []
    with warnings.catch_warnings():
        warnings.simplefilter("error")     # torch neither checks nor warns; refwd must not warn either
        for grad in NONFINITE_GRADS:
            params = opt.step(params, {"w": grad.astype(dtype)})
            out.append((params["w"], {key: value for key, value in opt.state.get("w", {}).items() if key != "step"}))
    return out


@pytest.mark.parametrize("dtype", DTYPES)
def test_nonfinite_gradients_as_documented(dtype):
    sgd = refwd_nonfinite_run("SGD", dict(lr=0.1, momentum=0.9), dtype)
    for theta, state in sgd:  # nan → nan, +inf → −inf, −inf → +inf, and they stay in the buffer
        assert np.isnan(theta[0]) and theta[1] == -np.inf and theta[2] == np.inf and np.isfinite(theta[3])
        assert np.isnan(state["momentum_buffer"][0]) and np.isinf(state["momentum_buffer"][1:3]).all()
    for optimizer, kwargs in [("RMSprop", {}), ("Adam", {}), ("Adam", dict(amsgrad=True))]:
        theta, state = refwd_nonfinite_run(optimizer, kwargs, dtype)[-1]
        assert np.isnan(theta[:3]).all() and np.isfinite(theta[3])   # inf/inf = nan
    _, state = refwd_nonfinite_run("Adam", dict(amsgrad=True), dtype)[-1]
    assert np.isnan(state["max_exp_avg_sq"][0])                      # maximum() keeps a NaN for ever
    assert np.all(state["max_exp_avg_sq"][1:3] == np.inf)            # an infinite g gives v = +inf, not NaN


def assert_same_nonfinite(ours, theirs, dtype, what):
    """The same NaN positions and the same infinities (with their signs); finite entries agree to rounding
    (a few ulps after three steps, as the harness measures; rtol here is ~100 ulps, far below any real error)."""
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs), err_msg=f"{what}: NaN positions")
    np.testing.assert_array_equal(np.where(np.isinf(ours), ours, 0), np.where(np.isinf(theirs), theirs, 0),
                                  err_msg=f"{what}: infinities")
    finite = np.isfinite(theirs)
    np.testing.assert_allclose(ours[finite], theirs[finite], rtol=1e-5 if dtype == "float32" else 1e-13,
                               err_msg=what)


def torch_nonfinite_run(torch, optimizer, kwargs, dtype):
    param = torch.nn.Parameter(torch.tensor([1.0, -1.0, 2.0, 0.5], dtype=getattr(torch, dtype)))
    opt = getattr(torch.optim, optimizer)([param], foreach=False, **kwargs)
    out = []
    for grad in NONFINITE_GRADS:
        param.grad = torch.from_numpy(grad.astype(dtype))
        opt.step()
        out.append((param.detach().numpy().copy(),
                    {key: value.numpy().copy() for key, value in opt.state[param].items() if key != "step"}))
    return out


@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("optimizer, kwargs", NONFINITE_CONFIGS, ids=lambda value: str(value))
def test_nonfinite_gradients_reach_the_params_as_in_torch(optimizer, kwargs, dtype):
    torch = pytest.importorskip("torch")
    for step, ((ours, _), (theirs, _)) in enumerate(zip(refwd_nonfinite_run(optimizer, kwargs, dtype),
                                                       torch_nonfinite_run(torch, optimizer, kwargs, dtype)), 1):
        assert_same_nonfinite(ours, theirs, dtype, f"step {step}: param")




@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("optimizer, kwargs", NONFINITE_CONFIGS, ids=lambda value: str(value))
def test_nonfinite_gradients_reach_the_state_as_in_torch(optimizer, kwargs, dtype):
    torch = pytest.importorskip("torch")
    for step, ((_, ours), (_, theirs)) in enumerate(zip(refwd_nonfinite_run(optimizer, kwargs, dtype),
                                                       torch_nonfinite_run(torch, optimizer, kwargs, dtype)), 1):
        assert ours.keys() == theirs.keys()
        for key in ours:
            assert_same_nonfinite(ours[key], theirs[key], dtype, f"step {step}: state {key!r}")
