"""Linear and MLP models as pure functions of a flat, ordered params mapping.

Parameters carry torch's names and shapes, so a refwd model and its torch twin line up name for name:

- ``Linear(in_features, out_features)`` is ``torch.nn.Linear``: params ``"weight"`` of shape
  (out_features, in_features) and ``"bias"`` of shape (out_features,), and ``y = x Wᵀ + b``.
- ``MLP([n0, n1, ..., nL])`` is ``torch.nn.Sequential(Linear, act, Linear, act, ..., Linear)``: the
  Linear layers sit at the even indices, so the params are ``"0.weight"``, ``"0.bias"``, ``"2.weight"``, ...

Initialisation follows torch.nn.Linear's default distribution (``reset_parameters``): weight and bias
are drawn i.i.d. from U(-1/√fan_in, 1/√fan_in), where fan_in = in_features. (torch writes this for the
weight as kaiming_uniform_ with a = √5, which is the same bound.) The draws come from NumPy's seeded
``default_rng``, not torch's generator, so the numbers differ from torch's; a twin copies refwd's.
"""
import math

import autograd.numpy as anp
import numpy as np
import scipy.special
from autograd.extend import defvjp, primitive


def relu(z):
    """max(z, 0), as torch's ``threshold``: 0 where z ≤ 0, else z, so a NaN passes through (forward and backward),
    and the derivative is 0 at z = 0 (``anp.maximum`` would split it, ½ each side)."""
    return anp.where(z <= 0, 0.0, z)


@primitive
def tanh(z):
    return np.tanh(z)


# torch's backward, g·(1 − y²): autograd's own g/cosh²(z) overflows for |z| > 44 in float32.
defvjp(tanh, lambda y, z: lambda g: g * (1 - y * y))


@primitive
def sigmoid(z):
    """1/(1 + e^(−z)), evaluated without overflow (1/(1 + exp(−z)) gives NaN gradients below z ≈ −88 in float32)."""
    return scipy.special.expit(z)


defvjp(sigmoid, lambda y, z: lambda g: g * y * (1 - y))

ACTIVATIONS = {"relu": relu, "tanh": tanh, "sigmoid": sigmoid, "identity": lambda z: z}
DTYPES = ("float32", "float64")


def _check_dtype(dtype):
    name = np.dtype(dtype).name
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    return name


def _check_features(argument, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{argument} must be a positive int, got {value!r}")
    return int(value)


def _uniform_linear_init(rng, in_features, out_features, dtype):
    """torch.nn.Linear.reset_parameters: weight and bias ~ U(-1/√fan_in, 1/√fan_in)."""
    bound = 1.0 / math.sqrt(in_features)
    weight = rng.uniform(-bound, bound, size=(out_features, in_features)).astype(dtype)
    bias = rng.uniform(-bound, bound, size=(out_features,)).astype(dtype)
    return weight, bias


def linear(weight, bias, x):
    """y = x Wᵀ + b, as torch.nn.functional.linear."""
    return anp.dot(x, weight.T) + bias


class Linear:
    """y = x Wᵀ + b, the twin of ``torch.nn.Linear(in_features, out_features)``."""

    def __init__(self, in_features, out_features):
        self.in_features = _check_features("in_features", in_features)
        self.out_features = _check_features("out_features", out_features)

    def init(self, seed=0, dtype="float64"):
        """Return ``{"weight", "bias"}`` drawn as torch.nn.Linear does, seeded, in ``dtype``."""
        rng = np.random.default_rng(seed)
        weight, bias = _uniform_linear_init(rng, self.in_features, self.out_features, _check_dtype(dtype))
        return {"weight": weight, "bias": bias}

    def __call__(self, params, x):
        return linear(params["weight"], params["bias"], x)

    def __repr__(self):
        return f"Linear({self.in_features}, {self.out_features})"


class MLP:
    """Linear layers with an activation between them (none after the last), like nn.Sequential."""

    def __init__(self, sizes, activation="relu"):
        sizes = list(sizes)
        if len(sizes) < 2:
            raise ValueError(f"sizes must list at least an input and an output size, got {sizes!r}")
        self.sizes = [_check_features(f"sizes[{i}]", n) for i, n in enumerate(sizes)]
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.activation = activation

    @property
    def layer_names(self):
        """The nn.Sequential index of each Linear layer: 0, 2, 4, ..."""
        return [str(2 * i) for i in range(len(self.sizes) - 1)]

    def init(self, seed=0, dtype="float64"):
        """Return ``{"0.weight", "0.bias", "2.weight", ...}`` drawn as torch.nn.Linear does."""
        dtype = _check_dtype(dtype)
        rng = np.random.default_rng(seed)
        params = {}
        for name, n_in, n_out in zip(self.layer_names, self.sizes[:-1], self.sizes[1:]):
            params[f"{name}.weight"], params[f"{name}.bias"] = _uniform_linear_init(rng, n_in, n_out, dtype)
        return params

    def __call__(self, params, x):
        act = ACTIVATIONS[self.activation]
        names = self.layer_names
        for i, name in enumerate(names):
            x = linear(params[f"{name}.weight"], params[f"{name}.bias"], x)
            if i < len(names) - 1:
                x = act(x)
        return x

    def __repr__(self):
        return f"MLP({self.sizes}, activation={self.activation!r})"
