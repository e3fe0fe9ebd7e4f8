"""Models, loss, penalties and gradients: names and shapes as torch's, initialisation, activations, MSE, and
autograd gradients checked against central finite differences (float64) and against torch's autograd."""
import math
import warnings

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
import scipy.stats

import refwd
from refwd.models import relu

ACTIVATIONS = ["relu", "tanh", "sigmoid", "identity"]
TORCH_ACTIVATIONS = {"relu": "ReLU", "tanh": "Tanh", "sigmoid": "Sigmoid", "identity": "Identity"}


def torch_twin(torch, model):
    """The torch module refwd's model mirrors: nn.Linear, or nn.Sequential(Linear, act, ..., Linear)."""
    if isinstance(model, refwd.Linear):
        return torch.nn.Linear(model.in_features, model.out_features)
    layers = []
    for i, (n_in, n_out) in enumerate(zip(model.sizes[:-1], model.sizes[1:])):
        if i:
            layers.append(getattr(torch.nn, TORCH_ACTIVATIONS[model.activation])())
        layers.append(torch.nn.Linear(n_in, n_out))
    return torch.nn.Sequential(*layers)


def load_into(torch, module, params):
    if next(iter(params.values())).dtype == np.float64:
        module = module.double()
    with torch.no_grad():
        for name, tensor in module.named_parameters():
            tensor.copy_(torch.from_numpy(params[name]))
    return module


MODELS = [refwd.Linear(4, 3), refwd.Linear(1, 1), refwd.MLP([4, 8, 1]), refwd.MLP([3, 5, 4, 2], activation="tanh"),
          refwd.MLP([2, 3, 3, 3, 1], activation="sigmoid")]


# ----------------------------------------------------------------------------------------------------------------
# Names, shapes, order

def test_linear_names_and_shapes():
    params = refwd.Linear(4, 3).init(seed=0)
    assert list(params) == ["weight", "bias"]
    assert params["weight"].shape == (3, 4) and params["bias"].shape == (3,)


def test_mlp_names_and_shapes():
    params = refwd.MLP([4, 32, 16, 1]).init(seed=0)
    assert [(name, value.shape) for name, value in params.items()] == [
        ("0.weight", (32, 4)), ("0.bias", (32,)), ("2.weight", (16, 32)), ("2.bias", (16,)),
        ("4.weight", (1, 16)), ("4.bias", (1,))]


@pytest.mark.torch
@pytest.mark.parametrize("model", MODELS, ids=repr)
def test_names_shapes_and_order_match_torch(model):
    torch = pytest.importorskip("torch")
    twin = torch_twin(torch, model)
    expected = [(name, tuple(tensor.shape)) for name, tensor in twin.named_parameters()]
    assert [(name, value.shape) for name, value in model.init(seed=0).items()] == expected
    # and a torch state_dict converts 1:1
    assert list(twin.state_dict()) == list(model.init(seed=0))


@pytest.mark.parametrize("kwargs, message", [
    (dict(sizes=[4]), "at least an input and an output size"),
    (dict(sizes=[4, 0, 1]), r"sizes\[1\] must be a positive int, got 0"),
    (dict(sizes=[4, 2.0]), r"sizes\[1\] must be a positive int, got 2.0"),
    (dict(sizes=[4, 1], activation="gelu"), "activation must be one of .* got 'gelu'"),
])
def test_mlp_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        refwd.MLP(**kwargs)


def test_linear_bad_arguments_and_dtype():
    with pytest.raises(ValueError, match="in_features must be a positive int, got True"):
        refwd.Linear(True, 1)
    with pytest.raises(ValueError, match="dtype must be one of .* got 'float16'"):
        refwd.Linear(1, 1).init(dtype="float16")


# ----------------------------------------------------------------------------------------------------------------
# Initialisation: torch.nn.Linear's U(−1/√fan_in, 1/√fan_in) for weight and bias, seeded

@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_init_bounds_dtype_and_distribution(dtype):
    model = refwd.MLP([16, 400, 3])
    params = model.init(seed=1, dtype=dtype)
    for layer, fan_in in (("0", 16), ("2", 400)):
        # float32: the draw is rounded to float32, which may round up to float32(bound) itself.
        bound = np.asarray(1 / math.sqrt(fan_in), dtype=dtype)
        for kind in ("weight", "bias"):
            value = params[f"{layer}.{kind}"]
            assert value.dtype == np.dtype(dtype)
            assert np.all(np.abs(value) <= bound)
    # 6400 weights of layer 0: a Kolmogorov-Smirnov test against U(-1/4, 1/4). With a fixed seed the p-value
    # is a fixed number; 1e-3 only fails for a wrong distribution (e.g. bound 1/fan_in or a normal law).
    weights = params["0.weight"].astype(np.float64).ravel()
    assert scipy.stats.kstest(weights, scipy.stats.uniform(loc=-0.25, scale=0.5).cdf).pvalue > 1e-3
    assert weights.min() < -0.24 and weights.max() > 0.24     # the bound is reached, not a narrower one


def test_init_is_seeded():
    model = refwd.MLP([3, 5, 1])
    first, again, other = model.init(seed=7), model.init(seed=7), model.init(seed=8)
    for name in first:
        np.testing.assert_array_equal(first[name], again[name])
        assert not np.array_equal(first[name], other[name])
    # No hidden global state: another model's init in between changes nothing.
    refwd.Linear(3, 3).init(seed=7)
    np.testing.assert_array_equal(model.init(seed=7)["0.weight"], first["0.weight"])


# ----------------------------------------------------------------------------------------------------------------
# Activations, through a 2-2-1 MLP whose layers pass values straight through: output = act(x₁) + act(x₂)

ACTIVATION_FORMULAS = {
    "relu": lambda z: max(z, 0.0),
    "tanh": math.tanh,
    "sigmoid": lambda z: 1 / (1 + math.exp(-z)),
    "identity": lambda z: z,
}
PASS_THROUGH = {"0.weight": np.eye(2), "0.bias": np.zeros(2), "2.weight": np.ones((1, 2)), "2.bias": np.zeros(1)}
ACTIVATION_INPUTS = np.array([[-3.0, 0.5], [2.0, -0.25], [0.0, 1.5], [-20.0, 20.0]])


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_formula(activation):
    out = refwd.MLP([2, 2, 1], activation=activation)(PASS_THROUGH, ACTIVATION_INPUTS)
    formula = ACTIVATION_FORMULAS[activation]
    expected = [[formula(a) + formula(b)] for a, b in ACTIVATION_INPUTS]
    np.testing.assert_allclose(out, expected, rtol=4 * 2 ** -52, atol=0)


@pytest.mark.torch
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_matches_torch(activation):
    torch = pytest.importorskip("torch")
    model = refwd.MLP([2, 2, 1], activation=activation)
    twin = load_into(torch, torch_twin(torch, model), PASS_THROUGH)
    expected = twin(torch.from_numpy(ACTIVATION_INPUTS)).detach().numpy()
    np.testing.assert_allclose(model(PASS_THROUGH, ACTIVATION_INPUTS), expected, rtol=4 * 2 ** -52, atol=0)


# ----------------------------------------------------------------------------------------------------------------
# MSE

PRED = np.array([[1.0, -2.0], [0.5, 3.0], [0.0, 0.25]])
TARGET = np.array([[0.5, -1.0], [0.5, 1.0], [-1.0, 0.0]])


def test_mse_reductions_by_formula():
    squares = [[(p - t) ** 2 for p, t in zip(pr, tr)] for pr, tr in zip(PRED, TARGET)]
    np.testing.assert_array_equal(refwd.mse(PRED, TARGET, reduction="none"), squares)
    assert refwd.mse(PRED, TARGET, reduction="sum") == pytest.approx(sum(map(sum, squares)), rel=2 ** -50)
    assert refwd.mse(PRED, TARGET) == pytest.approx(sum(map(sum, squares)) / 6, rel=2 ** -50)


@pytest.mark.torch
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_matches_torch(reduction, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    pred, target = rng.normal(size=(2, 100, 3)).astype(dtype)
    expected = torch.nn.functional.mse_loss(torch.from_numpy(pred), torch.from_numpy(target), reduction=reduction)
    ours = refwd.mse(pred, target, reduction=reduction)
    assert np.asarray(ours).dtype == np.dtype(dtype)
    # Summation order differs (NumPy pairwise, torch vectorised): a sum of 300 positive terms, each order
    # within ~log2(300) ≈ 9 roundings relative. 32 ulps relative.
    np.testing.assert_allclose(ours, expected.numpy(), rtol=32 * np.finfo(dtype).eps, atol=0)


def test_mse_errors():
    with pytest.raises(ValueError, match=r"mse: pred has shape \(4, 1\) but target has shape \(4,\)"):
        refwd.mse(np.zeros((4, 1)), np.zeros(4))
    with pytest.raises(ValueError, match="reduction must be one of .* got 'avg'"):
        refwd.mse(PRED, TARGET, reduction="avg")


# ----------------------------------------------------------------------------------------------------------------
# Penalties: coupled L2 λ/2·Σθ² (gradient λθ) and L1 λ·Σ|θ| (gradient λ·sign θ)

PENALTY_PARAMS = {"0.weight": np.array([[0.5, -2.0], [0.0, 1.5]]), "0.bias": np.array([-0.75, 0.25])}


def test_l2_penalty_value_and_gradient():
    lam = 0.1
    value, grads = refwd.value_and_grad(lambda p: refwd.l2_penalty(p, lam))(PENALTY_PARAMS)
    assert value == pytest.approx(lam / 2 * (0.25 + 4 + 0 + 2.25 + 0.5625 + 0.0625), rel=2 ** -50)
    for name, theta in PENALTY_PARAMS.items():
        np.testing.assert_allclose(grads[name], lam * theta, rtol=2 ** -52)


def test_l1_penalty_value_and_gradient():
    lam = 0.1
    value, grads = refwd.value_and_grad(lambda p: refwd.l1_penalty(p, lam))(PENALTY_PARAMS)
    assert value == pytest.approx(lam * (0.5 + 2 + 0 + 1.5 + 0.75 + 0.25), rel=2 ** -50)
    for name, theta in PENALTY_PARAMS.items():
        # sign(0) = 0, the subgradient 0, exactly; elsewhere 1 ulp (autograd forms λ·θ/|θ|).
        np.testing.assert_allclose(grads[name], lam * np.sign(theta), rtol=2 ** -52, atol=0)


def test_penalty_over_chosen_names():
    value, grads = refwd.value_and_grad(lambda p: refwd.l2_penalty(p, 1.0, names=["0.bias"]))(PENALTY_PARAMS)
    assert value == pytest.approx(0.5 * (0.5625 + 0.0625))
    np.testing.assert_array_equal(grads["0.weight"], np.zeros((2, 2)))
    np.testing.assert_array_equal(grads["0.bias"], PENALTY_PARAMS["0.bias"])
    with pytest.raises(KeyError, match=r"penalty names \['2.weight'\] are not in params"):
        refwd.l1_penalty(PENALTY_PARAMS, 1.0, names=["2.weight"])


def test_l2_penalty_gradient_plus_sgd_is_coupled_weight_decay():
    # SGD on loss + λ/2‖θ‖² is SGD(weight_decay=λ) on the loss, to rounding.
    model = refwd.Linear(3, 2)
    params = model.init(seed=0)
    x, y = np.random.default_rng(1).normal(size=(2, 5, 3))[0], np.random.default_rng(2).normal(size=(5, 2))
    with_penalty = refwd.value_and_grad(lambda p: refwd.mse(model(p, x), y) + refwd.l2_penalty(p, 0.1))
    plain = refwd.value_and_grad(lambda p: refwd.mse(model(p, x), y))
    a = refwd.optim.SGD(params, lr=0.1).step(params, with_penalty(params)[1])
    b = refwd.optim.SGD(params, lr=0.1, weight_decay=0.1).step(params, plain(params)[1])
    for name in params:
        np.testing.assert_allclose(a[name], b[name], rtol=0, atol=8 * 2 ** -52)


# ----------------------------------------------------------------------------------------------------------------
# Gradients: autograd vs central finite differences (float64) and vs torch's autograd

def problem(model, dtype="float64", seed=0):
    n_in = model.in_features if isinstance(model, refwd.Linear) else model.sizes[0]
    n_out = model.out_features if isinstance(model, refwd.Linear) else model.sizes[-1]
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(6, n_in)).astype(dtype)
    y = rng.normal(size=(6, n_out)).astype(dtype)
    return model.init(seed=seed, dtype=dtype), x, y


GRAD_MODELS = [refwd.Linear(3, 2)] + [refwd.MLP([3, 4, 4, 2], activation=activation) for activation in ACTIVATIONS]

# Central differences: (f(θ+h) − f(θ−h))/2h = f'(θ) + h²/6·f'''(ξ) + (δ₊ − δ₋)/2h, where δ± are the rounding
# errors of the two loss evaluations. Truncation: the losses here (MSE of a depth-3 net with |θ| ≤ 1,
# |x| ≲ 3) have |f'''| ≤ M₃ = 100 (generous; a tanh/sigmoid net's third derivatives are O(1) per path), so
# ≤ h²/6·100. Rounding: each loss is a few hundred operations on O(1) values, |δ| ≤ 1e3·u·|f| with
# u = 2⁻⁵³ ≈ 1.1e-16, so ≤ 1e3·1.1e-16·|f|/h. With h = 1e-5: truncation ≤ 1.7e-9, rounding ≤ 1.1e-8·|f|.
# Tolerance: 2e-8·(1 + |f|), absolute, per gradient entry (|f| ≤ 10 here). relu is piecewise linear:
# f''' = 0 away from the kinks, and the test asserts no pre-activation lies within h·(sum of |x|) of one.
# Measured worst |FD − autograd|: 1.9e-11 (Linear and MLP identity; tanh 1.2e-11), against a tolerance of 3e-8:
# the loss rounding is a few u·|f|, not 1e3·u·|f|, so the bound has a factor ~1000 of room; a wrong gradient
# (a missing factor 2, a transposed weight) is off by O(|g|) ~ 0.1.
FD_STEP = 1e-5


def fd_tolerance(loss):
    return 2e-8 * (1 + abs(loss))


def pre_activations(model, params, x):
    if isinstance(model, refwd.Linear):
        return []
    out, z = [], x
    for name in model.layer_names[:-1]:
        z = z @ params[f"{name}.weight"].T + params[f"{name}.bias"]
        out.append(z)
        z = np.maximum(z, 0) if model.activation == "relu" else z   # only relu's kinks matter here
    return out


@pytest.mark.parametrize("model", GRAD_MODELS, ids=repr)
def test_gradients_match_central_finite_differences(model):
    params, x, y = problem(model)
    if isinstance(model, refwd.MLP) and model.activation == "relu":
        margin = FD_STEP * (1 + np.abs(x).sum(axis=1).max()) * 10
        assert all(np.min(np.abs(z)) > margin for z in pre_activations(model, params, x))

    def loss(p):
        return refwd.mse(model(p, x), y)

    value, grads = refwd.value_and_grad(loss)(params)
    assert value == loss(params)
    for name, theta in params.items():
        assert grads[name].shape == theta.shape and grads[name].dtype == theta.dtype
        numeric = np.zeros_like(theta)
        for index in np.ndindex(theta.shape):
            plus, minus = dict(params), dict(params)
            plus[name], minus[name] = theta.copy(), theta.copy()
            plus[name][index] += FD_STEP
            minus[name][index] -= FD_STEP
            numeric[index] = (loss(plus) - loss(minus)) / (2 * FD_STEP)
        np.testing.assert_allclose(grads[name], numeric, rtol=0, atol=fd_tolerance(value), err_msg=name)


@pytest.mark.torch
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("model", GRAD_MODELS, ids=repr)
def test_gradients_match_torch_autograd(model, dtype):
    torch = pytest.importorskip("torch")
    params, x, y = problem(model, dtype)
    twin = load_into(torch, torch_twin(torch, model), params)
    loss = torch.nn.functional.mse_loss(twin(torch.from_numpy(x)), torch.from_numpy(y))
    loss.backward()
    value, grads = refwd.value_and_grad(lambda p: refwd.mse(model(p, x), y))(params)
    # Same maths, different summation orders (BLAS vs NumPy): each entry is a sum over the 6 samples and ≤ 4
    # hidden units per layer, a few dozen roundings relative to the largest term, plus ~1 ulp per tanh/exp call
    # (libm vs ATen): 64 ulps of the largest entry of that gradient, absolutely. Measured worst: 20 (MLP identity,
    # float64; MLP tanh, float32); the loss within 2 ulps.
    eps = float(np.finfo(dtype).eps)
    assert float(value) == pytest.approx(loss.item(), rel=64 * eps)
    for name, tensor in twin.named_parameters():
        expected = tensor.grad.numpy()
        assert grads[name].dtype == expected.dtype
        np.testing.assert_allclose(grads[name], expected, rtol=0, atol=64 * eps * np.abs(expected).max(),
                                   err_msg=name)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_gradients_keep_the_dtype(dtype):
    model = refwd.MLP([3, 4, 1], activation="sigmoid")
    params, x, y = problem(model, dtype)
    value, grads = refwd.value_and_grad(lambda p: refwd.mse(model(p, x), y) + refwd.l2_penalty(p, 0.1)
                                        + refwd.l1_penalty(p, 0.1))(params)
    assert np.asarray(value).dtype == np.dtype(dtype)
    assert list(grads) == list(params)
    assert all(grads[name].dtype == np.dtype(dtype) for name in params)


def test_value_and_grad_leaves_params_alone():
    model = refwd.MLP([3, 4, 1])
    params, x, y = problem(model)
    before = {name: value.copy() for name, value in params.items()}
    refwd.value_and_grad(lambda p: refwd.mse(model(p, x), y))(params)
    for name in params:
        np.testing.assert_array_equal(params[name], before[name])


# ----------------------------------------------------------------------------------------------------------------
# Edges where the activation's derivative must be torch's

@pytest.mark.torch
def test_relu_derivative_at_zero_is_torchs():
    torch = pytest.importorskip("torch")
    model = refwd.MLP([2, 2, 1], activation="relu")
    x = np.array([[0.0, 1.0]])
    _, grads = refwd.value_and_grad(lambda p: refwd.mse(model(p, x), np.zeros((1, 1))))(PASS_THROUGH)
    assert grads["0.bias"][0] != 0.0 or grads["0.bias"][1] != 0.0
    twin = load_into(torch, torch_twin(torch, model), PASS_THROUGH)
    torch.nn.functional.mse_loss(twin(torch.from_numpy(x)), torch.zeros(1, 1, dtype=torch.float64)).backward()
    for name, tensor in twin.named_parameters():
        np.testing.assert_array_equal(grads[name], tensor.grad.numpy(), err_msg=name)


@pytest.mark.parametrize("dtype, z", [("float32", -100.0), ("float64", -800.0)])
def test_saturated_sigmoid_has_a_zero_gradient_and_no_warning(dtype, z):
    model = refwd.MLP([1, 1, 1], activation="sigmoid")
    params = {"0.weight": np.ones((1, 1), dtype), "0.bias": np.zeros(1, dtype), "2.weight": np.ones((1, 1), dtype),
              "2.bias": np.zeros(1, dtype)}
    x = np.array([[z]], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, grads = refwd.value_and_grad(lambda p: refwd.mse(model(p, x), np.zeros((1, 1), dtype)))(params)
    for name, grad in grads.items():
        assert np.all(np.isfinite(grad)), name
    assert grads["0.weight"][0, 0] == 0.0


@pytest.mark.torch
def test_relu_propagates_nan_forward_and_backward_as_torch():
    """torch's relu is a threshold (0 where z ≤ 0, else z): relu(NaN) is NaN and its gradient passes. A relu
    written as where(z > 0, z, 0) turns NaN into 0 and hides a diverged float16 run (found by refwd validate
    --fuzz: Adam in float16 with ε = 1e-8 and a dead unit gives NaN params in torch)."""
    torch = pytest.importorskip("torch")
    z = np.array([np.nan, -1.0, 0.0, 2.0])
    t = torch.tensor(z, requires_grad=True)
    torch.relu(t).mul(torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)).sum().backward()
    grad = autograd.grad(lambda v: anp.sum(relu(v) * np.array([1.0, 2.0, 3.0, 4.0])))(z)
    np.testing.assert_array_equal(relu(z), torch.relu(torch.tensor(z)).numpy())       # NaN where torch's is NaN
    np.testing.assert_array_equal(grad, t.grad.numpy())                                # NaN passes, 0 at z ≤ 0
