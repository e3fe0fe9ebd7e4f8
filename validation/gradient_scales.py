"""The error scales of the loss and the gradients: the MLP's forward and backward pass in error-scale arithmetic.

The same first-order analysis as :mod:`refwd_validation.tolerance` (which holds the arithmetic, :class:`Scaled`,
and the optimizers' rules), for the gradient check: the scale of every entry of a matrix product carries the
γ_n ≈ n·u of its length-n sum, and the activations theirs (libm within 1 ulp).
"""
import numpy as np

from .tolerance import _LARGEST, Scaled, _underflow, unit_roundoff


def _matmul(a, b, length):
    """a @ b with a length-``length`` sum per entry: γ_n ≈ n·u times |a|·|b|, plus the inputs' scales. Where
    |a|·|b| exceeds the dtype's range, a partial sum may overflow in torch's dtype (∞ − ∞ = NaN in a float16
    weight gradient, found by refwd validate --fuzz) while the float64 reference does not: indeterminate."""
    value = a.value @ b.value
    absolute = np.abs(a.value) @ np.abs(b.value)
    with np.errstate(invalid="ignore"):  # an indeterminate (infinite) input scale makes inf·0 = NaN: still unbounded
        scale = a.scale @ np.abs(b.value) + np.abs(a.value) @ b.scale + length * absolute
    scale = np.where(np.isnan(scale) | (absolute > _LARGEST[a.dtype]), np.inf, scale)
    return Scaled(value, scale + _underflow(a.dtype), a.dtype)


def _sum_rows(a):
    n = a.value.shape[0]
    absolute = np.abs(a.value).sum(axis=0)
    scale = a.scale.sum(axis=0) + n * absolute + _underflow(a.dtype)
    return Scaled(a.value.sum(axis=0), np.where(absolute > _LARGEST[a.dtype], np.inf, scale), a.dtype)


def loss_and_grad_scales(layers, activation, x, y, dtype, *, loss_scale=1.0, param_scales=None):
    """Error scales of the MSE loss and of every parameter's gradient for an MLP (a Linear is one layer).

    ``layers`` is a list of (weight, bias) float64 arrays (torch's values), ``x`` and ``y`` the batch,
    ``loss_scale`` a factor the loss is multiplied by, ``param_scales`` optionally the params' own scales as
    [(S_weight, S_bias), ...]. Returns (S_loss, [(S_grad_weight, S_grad_bias), ...]).

    The same sums appear in torch (BLAS, pairwise reductions) and in refwd (NumPy's BLAS) in different orders;
    the γ_n bound holds for every order. tanh's derivative: torch forms 1 − h², which cancels where |h| ≈ 1,
    refwd's autograd divides by cosh²; the scale of 1 − h² below covers the cancelling form.
    """
    param_scales = param_scales or [(None, None)] * len(layers)

    def scaled(value, scale=None):
        value = np.asarray(value, dtype=np.float64)
        return Scaled(value, np.zeros_like(value) if scale is None else scale, dtype)

    h = scaled(x)
    inputs, pre = [], []
    for i, ((weight, bias), (s_weight, s_bias)) in enumerate(zip(layers, param_scales)):
        w, b = scaled(weight, s_weight), scaled(bias, s_bias)
        z = _matmul(h, Scaled(w.value.T, w.scale.T, dtype), w.value.shape[1]) + b
        inputs.append(h)
        pre.append(z)
        if i < len(layers) - 1:
            h = _activation(z, activation)
        else:
            h = z
    residual = h - scaled(y)
    count = residual.value.size
    squares = residual * residual
    absolute = np.abs(squares.value).sum()
    total = Scaled(squares.value.sum(), np.inf if absolute > _LARGEST[dtype] else
                   squares.scale.sum() + count * absolute, dtype)
    loss = (total / float(count)) * loss_scale if loss_scale != 1.0 else total / float(count)
    # backward: dℓ/dpred = 2·scale·r / count, formed in two or three roundings
    grad_out = residual * (2.0 * loss_scale / count)
    grad_out = grad_out._rounded(grad_out.value, grad_out.scale.copy())   # (_rounded adds to its scale in place)
    grads = [None] * len(layers)
    for i in range(len(layers) - 1, -1, -1):
        weight, bias = layers[i]
        s_weight = param_scales[i][0]
        h_in = inputs[i]
        g_weight = _matmul(Scaled(grad_out.value.T, grad_out.scale.T, dtype), h_in, grad_out.value.shape[0])
        g_bias = _sum_rows(grad_out)   # a 0-d bias (broadcast) gets the same sum, as a 0-d array
        grads[i] = (g_weight.scale, g_bias.scale.reshape(np.shape(bias)))
        if i > 0:
            grad_h = _matmul(grad_out, scaled(weight, s_weight), weight.shape[0])
            grad_out = _activation_backward(grad_h, pre[i - 1], inputs[i], activation)
    return loss.scale, grads


def _activation(z, activation):
    if activation == "tanh":
        value = np.tanh(z.value)
        return Scaled(value, (1 - value * value) * z.scale + 2 * np.abs(value) + _underflow(z.dtype), z.dtype)
    if activation == "relu":
        positive = z.value > 0
        return Scaled(np.where(positive, z.value, 0.0), np.where(positive, z.scale, 0.0)
                      + _undecided_kink(z, z), z.dtype)
    if activation == "identity":
        return z
    if activation == "sigmoid":
        value = 1 / (1 + np.exp(-z.value))
        return Scaled(value, value * (1 - value) * z.scale + 4 * np.abs(value) + _underflow(z.dtype), z.dtype)
    raise ValueError(f"no error model for activation {activation!r}")


def _undecided_kink(z, out):
    """Where |z| is within its own rounding error of relu's kink (u·S_z ≥ |z|), the computed z may lie on either
    side of 0 in torch's dtype: the output may be ``out`` or 0, so its error scale gains |out|/u + S_out there
    (found by refwd validate --fuzz: a bfloat16 pre-activation of −1e-4 computed as +1e-4 by torch)."""
    undecided = np.abs(z.value) <= unit_roundoff(z.dtype) * z.scale
    return np.where(undecided, np.abs(out.value) / unit_roundoff(z.dtype) + out.scale, 0.0)


def _activation_backward(grad_h, z, h, activation):
    if activation == "tanh":
        derivative = 1 - h * h                       # torch's 1 − h²: the cancelling form bounds both
        derivative = Scaled(derivative.value, derivative.scale + 4 * np.abs(derivative.value), z.dtype)
        return grad_h * derivative
    if activation == "relu":
        positive = z.value > 0
        return Scaled(np.where(positive, grad_h.value, 0.0), np.where(positive, grad_h.scale, 0.0)
                      + _undecided_kink(z, grad_h), z.dtype)
    if activation == "identity":
        return grad_h
    if activation == "sigmoid":
        derivative = h * (1 - h)
        derivative = Scaled(derivative.value, derivative.scale + 4 * np.abs(derivative.value), z.dtype)
        return grad_h * derivative
    raise ValueError(f"no error model for activation {activation!r}")
