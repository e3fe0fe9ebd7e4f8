"""The tolerance module: the ULP metric, the error-scale arithmetic, and that its bounds hold.

The bound tests are the derivation checked numerically: for the four optimizers (every flag) and for the
gradients of an MLP, refwd evaluated in float32 stays within u·S of the same formula evaluated in float64 from
the same float32 inputs, where S is the error scale tolerance.py computes. That is the inequality the budget
rests on (|fl(q) − q| ≤ u·S_q, for torch as for refwd).
"""
import itertools

import numpy as np
import pytest

import refwd
from refwd_validation import gradient_scales, tolerance
from refwd_validation.optimizers import OPTIMIZERS

torch = pytest.importorskip("torch")  # the float32 representability check of coefficients asks torch


def test_ulps_metric():
    s = np.ones(6)
    refwd_value = np.array([1.0, np.nan, np.nan, np.inf, 1.0, 1.0 + 2 ** -52])
    torch_value = np.array([1.0, np.nan, 1.0, np.inf, 1.0 + 2 ** -51, 1.0])
    out = tolerance.ulps(refwd_value, torch_value, s, "float64")
    assert list(out) == [0.0, 0.0, np.inf, 0.0, 2.0, 1.0]


def test_zero_scale_means_exact_and_infinite_scale_means_indeterminate():
    assert tolerance.ulps(np.array([1.0]), np.array([1.0 + 2 ** -52]), np.array([0.0]), "float64")[0] == np.inf
    assert tolerance.ulps(np.array([np.nan]), np.array([3.0]), np.array([np.inf]), "float64")[0] == 0.0
    assert tolerance.ulps(np.array([0.0]), np.array([0.0]), np.array([0.0]), "float64")[0] == 0.0


def test_ulps_are_in_units_of_the_dtype():
    for dtype, eps in (("float64", 2 ** -52), ("float32", 2 ** -23), ("float16", 2 ** -10), ("bfloat16", 2 ** -7)):
        assert tolerance.ulps(np.array([1.0]), np.array([1.0 + 3 * eps]), np.array([1.0]), dtype)[0] == 3.0


def test_budget_table_covers_every_dtype_and_quantity():
    for dtype in ("float64", "float32", "float16", "bfloat16"):
        for quantity in ("param", "exp_avg", "momentum_buffer", "grad", "loss"):
            assert 1.0 <= tolerance.budget(dtype, quantity) <= 4.0


def test_error_scale_of_single_operations():
    u = tolerance.Scaled.exact
    a, b = u(np.array([3.0]), "float64"), u(np.array([-1.0]), "float64")
    assert (a + b).scale[0] == pytest.approx(2.0)              # one rounding of |a + b|
    assert (a * b).scale[0] == pytest.approx(3.0)
    assert (0.5 * a).scale[0] == pytest.approx(1.5)            # 0.5 is exact: only the product's rounding
    assert (0.1 * a).scale[0] == pytest.approx(0.3)            # a Python float is a double: exact in float64
    assert (0.1 * u(np.array([3.0]), "float32")).scale[0] == pytest.approx(0.6)   # ↓0.1 in float32: two
    assert (-a).scale[0] == 0.0


def test_cancellation_gives_a_large_scale():
    """Coupled decay g + λθ with g ≈ −λθ: the scale is |g| + |λθ|-sized, not |g + λθ|-sized."""
    theta = tolerance.Scaled.exact(np.array([1.0]), "float64")
    grad = tolerance.Scaled.exact(np.array([-0.1 + 1e-9]), "float64")
    total = grad + 0.1 * theta
    assert abs(total.value[0]) < 1e-8
    assert total.scale[0] > 0.1


def test_sqrt_of_a_possibly_negative_argument_is_indeterminate():
    a = tolerance.Scaled(np.array([1e-20, 4.0]), np.array([1.0, 0.0]), "float64")
    out = tolerance.sqrt(a)
    assert out.scale[0] == np.inf and out.scale[1] == pytest.approx(4.0)


def test_division_by_a_denominator_known_only_to_its_own_size_is_unbounded():
    a = tolerance.Scaled.exact(np.array([1.0, 1.0]), "float16")
    b = tolerance.Scaled(np.array([1e-3, 1.0]), np.array([1e9, 0.0]), "float16")
    out = a / b
    assert out.scale[0] == np.inf and np.isfinite(out.scale[1])


FLAGS = {
    "sgd": [dict(lr=0.1), dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.1),
            dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.5, maximize=True)],
    "rmsprop": [dict(lr=0.01), dict(lr=0.01, alpha=0.9, centered=True, momentum=0.5, weight_decay=0.1),
                dict(lr=0.01, eps=1e-3, maximize=True, weight_decay=1.0)],
    "adam": [dict(lr=0.01), dict(lr=0.01, betas=(0.5, 0.9), weight_decay=0.1, amsgrad=True, maximize=True),
             dict(lr=0.1, weight_decay=2.0, decoupled_weight_decay=True, eps=1e-2)],
    "adamw": [dict(lr=0.01), dict(lr=0.05, betas=(0.0, 0.99), weight_decay=0.5, amsgrad=True)],
}
RULES = {"sgd": refwd.optim.sgd_step, "rmsprop": refwd.optim.rmsprop_step, "adam": refwd.optim.adam_step,
         "adamw": refwd.optim.adamw_step}


def _state(optimizer, rng, shape, dtype, hyper):
    """A plausible state after a few steps, in ``dtype``."""
    def positive():
        return (rng.random(shape) ** 2 * 0.1).astype(dtype)

    def signed():
        return (rng.normal(size=shape) * 0.1).astype(dtype)

    if optimizer == "sgd":
        return {"momentum_buffer": signed()} if hyper.get("momentum") else {}
    if optimizer == "rmsprop":
        state = {"step": 3, "square_avg": positive()}
        if hyper.get("centered"):
            state["grad_avg"] = (signed() * 0.5).astype(dtype)
            state["square_avg"] = (state["square_avg"] + state["grad_avg"] ** 2).astype(dtype)
        if hyper.get("momentum"):
            state["momentum_buffer"] = signed()
        return state
    state = {"step": 4, "exp_avg": signed(), "exp_avg_sq": positive()}
    if hyper.get("amsgrad"):
        state["max_exp_avg_sq"] = (state["exp_avg_sq"] * 1.5).astype(dtype)
    return state


@pytest.mark.parametrize("optimizer,index", [(opt, i) for opt, configs in FLAGS.items()
                                             for i in range(len(configs))])
def test_step_error_bound_holds_for_refwd_in_float32(optimizer, index):
    hyper = FLAGS[optimizer][index]
    rng = np.random.default_rng(index)
    shape = (4000,)
    param = rng.normal(size=shape).astype(np.float32)
    grad = rng.normal(size=shape).astype(np.float32)
    grad[:500] = (-hyper.get("weight_decay", 0.0) * param[:500] * (1 + 1e-3 * rng.normal(size=500))).astype(
        np.float32)  # coupled decay nearly cancels here
    state = _state(optimizer, rng, shape, np.float32, hyper)
    new32, state32 = RULES[optimizer](param, grad, state, **hyper)
    state64 = {k: (v.astype(np.float64) if isinstance(v, np.ndarray) else v) for k, v in state.items()}
    new64, state64 = RULES[optimizer](param.astype(np.float64), grad.astype(np.float64), state64, **hyper)
    scales = tolerance.step_scales(OPTIMIZERS[optimizer].error_scale_rule, param, grad, state, hyper, "float32")
    u = tolerance.unit_roundoff("float32")
    for key, (low, exact) in {"param": (new32, new64), **{k: (state32[k], state64[k]) for k in state32
                                                            if k != "step"}}.items():
        error = np.abs(low.astype(np.float64) - exact)
        assert np.all(error <= u * scales[key] + 1e-300), (key, float(np.max(error / (u * scales[key]))))


@pytest.mark.parametrize("activation,sizes", [("tanh", [5, 17, 33, 1]), ("relu", [10, 100, 7, 3]),
                                              ("identity", [3, 2])])
def test_gradient_error_bound_holds_for_refwd_in_float32(activation, sizes):
    rng = np.random.default_rng(1)
    model = refwd.MLP(sizes, activation=activation)
    params = model.init(seed=2, dtype="float32")
    x = rng.normal(size=(32, sizes[0])).astype(np.float32)
    y = rng.normal(size=(32, sizes[-1])).astype(np.float32)
    loss32, grads32 = refwd.value_and_grad(lambda p: refwd.mse(model(p, x), y))(params)
    p64 = {k: v.astype(np.float64) for k, v in params.items()}
    loss64, grads64 = refwd.value_and_grad(lambda p: refwd.mse(model(p, x.astype(np.float64)),
                                                               y.astype(np.float64)))(p64)
    layers = [(p64[f"{2 * i}.weight"], p64[f"{2 * i}.bias"]) for i in range(len(sizes) - 1)]
    s_loss, s_grads = gradient_scales.loss_and_grad_scales(layers, activation, x.astype(np.float64),
                                                     y.astype(np.float64), "float32")
    u = tolerance.unit_roundoff("float32")
    assert abs(float(loss32) - float(loss64)) <= u * s_loss
    for i, (s_w, s_b) in enumerate(s_grads):
        for name, scale in ((f"{2 * i}.weight", s_w), (f"{2 * i}.bias", s_b)):
            error = np.abs(grads32[name].astype(np.float64) - grads64[name])
            assert np.all(error <= u * scale), name


def test_scales_never_depend_on_refwd_results():
    """step_scales takes torch's inputs only: a mutated rule cannot widen its own tolerance."""
    import inspect
    parameters = list(inspect.signature(tolerance.step_scales).parameters)
    assert parameters[:6] == ["rule", "param", "grad", "state", "hyperparameters", "dtype"]


def test_every_flag_combination_has_an_error_model():
    rng = np.random.default_rng(0)
    p, g = rng.normal(size=5), rng.normal(size=5)
    for momentum, nesterov, maximize, wd in itertools.product((0.0, 0.9), (False, True), (False, True), (0, 0.1)):
        if nesterov and not momentum:
            continue
        hyperparameters = dict(lr=0.1, momentum=momentum, nesterov=nesterov, maximize=maximize, weight_decay=wd)
        out = tolerance.step_scales(OPTIMIZERS["sgd"].error_scale_rule, p, g, {}, hyperparameters, "float64")
        assert np.all(np.isfinite(out["param"]))


def test_an_overflowing_fma_is_undecidable_not_a_false_alarm():
    """λθ alone overflows next to an opposite infinite gradient: torch's FMA keeps the infinity (−∞), refwd's
    rounded product gives NaN; the error scale there is infinite, so the element counts 0 ULPs, and the others
    keep their finite scales (docs/findings-scalars.md)."""
    torch = pytest.importorskip("torch")
    param = np.array([3e38, 1.0, -3e38], dtype=np.float32)
    grad = np.array([-np.inf, 1.0, np.inf], dtype=np.float32)
    hyperparameters = dict(lr=0.1, momentum=0.0, dampening=0.0, weight_decay=10.0, nesterov=False, maximize=False)
    with np.errstate(all="ignore"):
        refwd_param, _ = refwd.optim.sgd_step(param, grad, {}, **hyperparameters)
        scales = tolerance.step_scales(OPTIMIZERS["sgd"].error_scale_rule, param, grad, {}, hyperparameters,
                                       "float32")
    tensor = torch.tensor(param.copy(), requires_grad=True)
    tensor.grad = torch.tensor(grad.copy())
    torch.optim.SGD([tensor], lr=0.1, weight_decay=10.0, foreach=False).step()
    torch_param = tensor.detach().numpy()
    assert np.isnan(refwd_param[[0, 2]]).all() and list(torch_param[[0, 2]]) == [np.inf, -np.inf]
    assert np.isinf(scales["param"][[0, 2]]).all() and np.isfinite(scales["param"][1])
    ulps = tolerance.ulps(refwd_param, torch_param, scales["param"], "float32")
    assert ulps[0] == ulps[2] == 0.0 and ulps[1] <= tolerance.budget("float32", "param")
    # and a wrong finite element next to them is still caught
    refwd_param[1] = np.nextafter(refwd_param[1], np.float32(1), dtype=np.float32) * np.float32(1.001)
    assert tolerance.ulps(refwd_param, torch_param, scales["param"], "float32")[1] > tolerance.budget("float32",
                                                                                                        "param")


def test_bfloat16s_limits_are_ml_dtypes_finfo():
    """tolerance.py writes bfloat16's ε, smallest subnormal and largest value out (ml_dtypes is slow to import)."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    info = ml_dtypes.finfo(ml_dtypes.bfloat16)
    assert tolerance.EPS["bfloat16"] == float(info.eps)
    assert tolerance.TINY["bfloat16"] == float(info.smallest_subnormal)
    assert tolerance._LARGEST["bfloat16"] == float(info.max)
