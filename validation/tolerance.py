r"""Tolerances: how far refwd and torch may differ, derived by forward error analysis, in ULPs of the dtype.

This is the one place that decides "close enough". Nothing here is tuned per case.

The idea
--------
torch and refwd evaluate the same formula on the same inputs with different operation orders (torch fuses
multiply-adds and takes MKL's square root; refwd rounds every product and sum separately, or, for
float16/bfloat16, computes in float64 and rounds once; both form the moving averages with ``lerp``). Each
evaluation has a rounding error, and standard
forward error analysis (Wilkinson's *running error analysis*, Higham, *Accuracy and Stability of Numerical
Algorithms*, 2nd ed., §3.3) bounds it elementwise, to first order in the unit roundoff u:

    |fl(q) − q| ≤ u · S_q

where the **error scale** S_q is accumulated while the formula is evaluated on the actual inputs:

======================  =====================================================================================
operation               error scale of the result (inputs a, b with scales S_a, S_b; r the rounded result)
======================  =====================================================================================
a ± b                   S_a + S_b + |r|
a · b                   |b|·S_a + |a|·S_b + |r|
c · a, c a Python float |c|·S_a + |r| (+ |r| again when c is not exactly representable in the dtype)
a / b                   S_a/|b| + |a|·S_b/b² + |r|
√a                      min(S_a / (2√a), √(S_a/u)) + 2|r|       (MKL's √ is within 1 ulp, not ½)
max(a, b)               max(S_a, S_b)                            (exact, 1-Lipschitz)
x·Wᵀ, length-n sums     |x|·S_Wᵀ + S_x·|W|ᵀ + n·|x|·|W|ᵀ          (γ_n ≈ n·u, any summation order)
tanh(z)                 (1 − tanh²z)·S_z + 2|r|                  (libm tanh is within 1 ulp)
======================  =====================================================================================

Every rounding also carries an absolute underflow term η/u (η half the smallest subnormal), which only matters
for float16 (η/u = 2⁻¹⁴): a float16 ``exp_avg_sq`` of 1e-9 is zero, and the bound says so.

The error scale is a sum of absolute values of the terms that form the quantity, weighted by how much each
rounding propagates into it. Where the formula cancels it is much larger than |q|, and that is the point:
coupled decay g + λθ with g ≈ −λθ, or centered RMSprop's √(v − ḡ²) with ḡ² ≈ v, really are that sensitive,
in torch as in refwd. A naive scale such as max(|old|, |new|) calls the resulting differences "40 ulp";
against S_q they are below 1.

Both torch and refwd stay within u·S_q of the exact value (refwd in float64 for float16/bfloat16 is within
u_dtype·|q|, after its one final rounding), so

    |refwd − torch| ≤ 2u·S_q = ε·S_q,   ε = 2u = the dtype's machine epsilon (the ULP of 1).

The harness reports ``ulps = |refwd − torch| / (ε · S_q)``: the difference in ULPs of the error scale. The
analysis says ≤ 1; :data:`BUDGET` allows 2, because the analysis is first order and models torch's fused
multiply-adds and ``lerp`` by refwd's plain form (which rounds at least as often; see the derivation per
optimizer below). Every case's measured worst ULPs are in docs/oracle.md; none comes near the budget, and a
real bug (any mutant of the catalogue) is thousands to trillions of ULPs away.

The error scales are computed from **torch's** inputs (params, grads and optimizer state at step t) by the
functions below, which spell the reference formulas a second time in error-scale arithmetic. They never look at
refwd's result, so a mutated rule cannot widen its own tolerance.

Three checks, one budget
------------------------
- *lock-step*: inputs are exact (both sides start from torch's tensors), S from one optimizer step.
- *gradients and loss*: inputs exact (torch's params, the shared data), S from the forward and backward pass,
  where the length-n sums of the matrix products give the summation-length-dependent n·|x|·|W| terms.
- *free-running*: refwd's own trajectory against torch's. Inputs carry the error scales accumulated so far
  (params and state from the previous step, gradients from the backward pass with the params' scales), so
  S grows along the trajectory exactly as the first-order error of the whole training run does.
"""
import functools
import math

import ml_dtypes
import numpy as np

from .dtypes import round_to

# ε (the ULP of 1.0, 2u) and the smallest positive subnormal of each dtype, from NumPy's and ml_dtypes' finfo.
_FINFO = {"float64": np.finfo(np.float64), "float32": np.finfo(np.float32), "float16": np.finfo(np.float16),
          "bfloat16": ml_dtypes.finfo(ml_dtypes.bfloat16)}
EPS = {dtype: float(info.eps) for dtype, info in _FINFO.items()}
TINY = {dtype: float(info.smallest_subnormal) for dtype, info in _FINFO.items()}
_LARGEST = {dtype: float(info.max) for dtype, info in _FINFO.items()}
DTYPES = tuple(EPS)
QUANTITIES = ("param", "state", "grad", "loss")

# The budget in ULPs of the error scale, per dtype and quantity. The analysis gives 1 for all of them; 2 leaves
# room for its first-order terms and its modelling of torch's fused operations by refwd's plainer form.
# An override would name its measured cause next to it. There is none.
BUDGET = {dtype: {quantity: 2.0 for quantity in QUANTITIES} for dtype in DTYPES}


def budget(dtype, quantity):
    """The allowed difference, in ULPs of the error scale, for ``quantity`` ("param", a state key, "grad", "loss")."""
    table = BUDGET[dtype]
    return table.get(quantity, table["state"])


def unit_roundoff(dtype):
    return EPS[dtype] / 2


def ulps(refwd, torch, scale, dtype):
    """Elementwise |refwd − torch| / (ε · scale), float64. Equal values (NaN and ±inf included) are 0 ULPs apart.

    A zero scale means the quantity is computed exactly (a copy, an exact negation): any difference is infinite.
    An infinite scale means the quantity is indeterminate at this step (see :func:`sqrt`): it is 0 ULPs.
    """
    refwd = np.asarray(refwd, dtype=np.float64)
    torch = np.asarray(torch, dtype=np.float64)
    with np.errstate(all="ignore"):
        diff = np.abs(refwd - torch)
        same = (refwd == torch) | (np.isnan(refwd) & np.isnan(torch))
        scale = np.asarray(scale, dtype=np.float64)
        scale = np.where(np.isnan(scale), np.inf, scale)
        out = diff / (EPS[dtype] * scale)
    out = np.where(same | np.isinf(scale), 0.0, out)
    return np.where(np.isnan(out), np.inf, out)


def relative_error(refwd, torch):
    """Elementwise |refwd − torch| / max(|refwd|, |torch|), 0 where both are equal."""
    refwd = np.asarray(refwd, dtype=np.float64)
    torch = np.asarray(torch, dtype=np.float64)
    with np.errstate(all="ignore"):
        same = (refwd == torch) | (np.isnan(refwd) & np.isnan(torch))
        out = np.abs(refwd - torch) / np.maximum(np.abs(refwd), np.abs(torch))
    out = np.where(same, 0.0, out)
    return np.where(np.isnan(out), np.inf, out)


# ---------------------------------------------------------------------------------------------------------------
# Error-scale arithmetic


class Scaled:
    """A float64 value (torch's, upcast) with its first-order error scale S in units of u: |fl(x) − x| ≤ u·S."""

    __slots__ = ("value", "scale", "dtype")

    def __init__(self, value, scale, dtype):
        self.value = value
        self.scale = scale
        self.dtype = dtype

    @classmethod
    def exact(cls, value, dtype):
        value = np.asarray(value, dtype=np.float64)
        return cls(value, np.zeros_like(value), dtype)

    def _rounded(self, value, scale):
        """The result of one rounding to the dtype: add |r| and the underflow term η/u. A result beyond the dtype's
        largest finite value overflows where torch stores it (a float16 g² or activation, say), while the
        reference, computing in float64, does not: its error is unbounded, the element indeterminate."""
        scale = scale + np.abs(value) + _underflow(self.dtype)
        return Scaled(value, np.where(np.abs(value) > _LARGEST[self.dtype], np.inf, scale), self.dtype)

    def __neg__(self):
        return Scaled(-self.value, self.scale, self.dtype)

    def __add__(self, other):
        if not isinstance(other, Scaled):  # a Python scalar, rounded to the dtype first
            other = _coefficient(other, self.dtype, like=self.value)
        return self._rounded(self.value + other.value, self.scale + other.scale)

    __radd__ = __add__

    def __sub__(self, other):
        return self + (-other if isinstance(other, Scaled) else -other)

    def __rsub__(self, other):
        return (-self) + other

    def __mul__(self, other):
        if not isinstance(other, Scaled):  # c·a: |c|·S_a, plus |c·a| more when ↓c ≠ c
            value = other * self.value
            scale = abs(other) * self.scale + _coefficient_error(other, self.dtype) * np.abs(value)
            return self._rounded(value, scale)
        with np.errstate(invalid="ignore"):  # 0 · ∞ (an indeterminate scale) is NaN, which ulps() reads as ∞
            value = self.value * other.value
            return self._rounded(value, np.abs(other.value) * self.scale + np.abs(self.value) * other.scale)

    __rmul__ = __mul__

    def __truediv__(self, other):
        if not isinstance(other, Scaled):
            other = _coefficient(other, self.dtype, like=self.value)
        u = unit_roundoff(self.dtype)
        with np.errstate(all="ignore"):
            value = self.value / other.value
            # |a/b − a/(b ± δ)| ≤ |a|·δ / (|b|·(|b| − δ)) for δ = u·S_b < |b|: exact, not first order, so that a
            # denominator known only to within its own size (a float16 v that underflowed) gives no false bound.
            margin = np.abs(other.value) - u * other.scale
            scale = self.scale / np.abs(other.value) + np.where(
                margin > 0, np.abs(self.value) * other.scale / (np.abs(other.value) * margin), np.inf)
        return self._rounded(value, scale)


def _underflow(dtype):
    return TINY[dtype] / 2 / unit_roundoff(dtype)


@functools.lru_cache(maxsize=4096)
def _coefficient_error(c, dtype):
    """How far a Python-float coefficient moves when a kernel holds it in ``dtype``, relative to |c|, in units of u:
    0 if c is representable, at most 1 for a normal rounding, and more where ↓c is subnormal (torch's float16 SGD
    holds lr = 1e-6 as 1.0133e-6: 27 u; found by refwd validate --fuzz)."""
    c = float(c)
    if dtype == "float64" or c == 0 or not math.isfinite(c):
        return 0.0
    rounded = float(round_to(c, dtype))
    if not math.isfinite(rounded):
        return math.inf
    return max(abs(rounded - c) / (abs(c) * unit_roundoff(dtype)), 1.0 if rounded != c else 0.0)


def _coefficient(c, dtype, like):
    c = float(c)
    value = np.full_like(like, c)
    return Scaled(value, _coefficient_error(c, dtype) * np.abs(value), dtype)


def sqrt(a, mkl=True):
    """√a; a perturbation of a by u·S_a moves √a by at most min(u·S_a/(2√a), √(u·S_a)).

    Where the argument's error bound reaches below zero (a < u·S_a: centered RMSprop's v − ḡ² when the
    variance is at rounding level, or float16 moments that underflowed), √ of the exact argument may be
    undefined: one side may give NaN and the other a number. Such elements get an infinite scale: they are
    indeterminate at this step, and not compared.
    """
    u = unit_roundoff(a.dtype)
    positive = np.maximum(a.value, 0.0)
    value = np.sqrt(positive)
    with np.errstate(all="ignore"):
        propagated = np.minimum(a.scale / (2 * value), np.sqrt(a.scale / u))
    propagated = np.where(np.isnan(propagated), 0.0, propagated)
    rounding = (2.0 if mkl else 1.0) * value + _underflow(a.dtype)
    indeterminate = (a.scale > 0) & (a.value < u * a.scale)
    return Scaled(value, np.where(indeterminate, np.inf, propagated + rounding), a.dtype)


def maximum(a, b):
    return Scaled(np.maximum(a.value, b.value), np.maximum(a.scale, b.scale), a.dtype)


# ---------------------------------------------------------------------------------------------------------------
# The optimizers, in error-scale arithmetic. Each mirrors the per-tensor rule of refwd/optim (and torch's
# for-loop): one line per line of the algorithm. Inputs are Scaled; the outputs are {"param": ..., key: ...}.
# torch's fused multiply-add, lerp and addcmul (and refwd's lerp) round at most as often as the plain form
# spelled here, and the terms they round are no larger (lerp's w·|b − a| with w ≤ ½ in either branch is covered
# by the two scaled products β·m and (1 − β)·g), so both errors are within the same scale.
# The convention keywords (eps_placement, lr_placement, momentum_init, initial_square_avg, decay_convention) are
# refwd's names and values (refwd.optim.profiles): each branch here is the same line in error-scale arithmetic.


def _filled(like, value):
    """A constant state (a moment's initial value) or a Python-float operand: exact unless ↓value ≠ value."""
    return _coefficient(value, like.dtype, like=like.value)


def _decoupled_rate(lr, weight_decay, decay_convention, initial_lr):
    """The fraction decoupled decay removes, a Python double: γλ ("torch"), (γ/γ₀)λ ("paper"), λ ("independent")."""
    if decay_convention == "paper":
        return lr / initial_lr * weight_decay
    if decay_convention == "independent":
        return weight_decay
    return lr * weight_decay


def _shrunk(param, rate):
    """Decoupled decay's θ(1 − ρ), in both forms: refwd multiplies by 1 − ρ (the coefficient rounded in the param's
    dtype), torch's fused kernel subtracts γ(λθ), whose product is rounded even where 1 − ρ is exact (ρ = 1:
    refwd's 0, the kernel's residual of about u·|θ|): the scale is the first form's plus |ρθ|."""
    shrunk = (1 - rate) * param
    return Scaled(shrunk.value, shrunk.scale + abs(rate) * np.abs(param.value), shrunk.dtype)


def sgd(param, grad, state, *, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
        maximize=False, lr_placement="outside_momentum", momentum_init="first_grad"):
    if maximize:
        grad = -grad
    if weight_decay != 0:
        grad = grad + weight_decay * param
    if lr_placement == "in_momentum":
        grad = lr * grad
    out = {}
    if momentum != 0:
        if state.get("momentum_buffer") is None and momentum_init == "first_grad":
            buf = grad                                                      # a copy: exact
        else:
            previous = state.get("momentum_buffer") or _filled(param, 0.0)
            buf = momentum * previous + (1 - dampening) * grad
        out["momentum_buffer"] = buf
        grad = grad + momentum * buf if nesterov else buf
    out["param"] = param - grad if lr_placement == "in_momentum" else param - lr * grad
    return out


def rmsprop(param, grad, state, *, lr, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
            maximize=False, eps_placement="after_root", lr_placement="outside_momentum", initial_square_avg=0.0):
    zeros = Scaled.exact(np.zeros_like(param.value), param.dtype)
    if maximize:
        grad = -grad
    if weight_decay != 0:
        grad = grad + weight_decay * param
    square_avg = alpha * state.get("square_avg", _filled(param, initial_square_avg)) + (1 - alpha) * (grad * grad)
    out = {"square_avg": square_avg}
    if centered:
        grad_avg = alpha * state.get("grad_avg", zeros) + (1 - alpha) * grad
        out["grad_avg"] = grad_avg
        mean_square = square_avg - grad_avg * grad_avg
    else:
        mean_square = square_avg
    avg = sqrt(mean_square + eps) if eps_placement == "inside_root" else sqrt(mean_square) + eps
    if momentum > 0 and lr_placement == "in_momentum":
        buf = momentum * state.get("momentum_buffer", zeros) + (lr * grad) / avg
        out["momentum_buffer"] = buf
        out["param"] = param - buf
    elif momentum > 0:
        buf = momentum * state.get("momentum_buffer", zeros) + grad / avg
        out["momentum_buffer"] = buf
        out["param"] = param - lr * buf
    else:
        out["param"] = param - (lr * grad) / avg
    return out


def adam(param, grad, state, *, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
         maximize=False, decoupled_weight_decay=False, eps_placement="after_root", decay_convention="torch",
         initial_lr=None):
    beta1, beta2 = betas
    step = state.get("step", 0) + 1
    zeros = Scaled.exact(np.zeros_like(param.value), param.dtype)
    if maximize:
        grad = -grad
    if weight_decay != 0:
        if decoupled_weight_decay:
            param = _shrunk(param, _decoupled_rate(lr, weight_decay, decay_convention, initial_lr))
        else:
            grad = grad + weight_decay * param
    exp_avg = beta1 * state.get("exp_avg", zeros) + (1 - beta1) * grad
    exp_avg_sq = beta2 * state.get("exp_avg_sq", zeros) + (1 - beta2) * (grad * grad)
    out = {"exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}
    bias_correction1 = 1 - beta1 ** step
    bias_correction2 = 1 - beta2 ** step
    second_moment = exp_avg_sq
    if amsgrad:
        max_exp_avg_sq = maximum(state.get("max_exp_avg_sq", zeros), exp_avg_sq)
        out["max_exp_avg_sq"] = second_moment = max_exp_avg_sq
    step_size = lr / bias_correction1
    if eps_placement == "inside_root":
        denom = sqrt(second_moment / bias_correction2 + eps)
    elif eps_placement == "floor":
        denom = maximum(sqrt(second_moment) / math.sqrt(bias_correction2), _filled(param, eps))
    elif eps_placement == "hat":
        step_size = step_size * math.sqrt(bias_correction2)
        denom = sqrt(second_moment) + eps
    else:
        denom = sqrt(second_moment) / math.sqrt(bias_correction2) + eps
    out["param"] = param - (step_size * exp_avg) / denom
    return out


adamw = functools.partial(adam, decoupled_weight_decay=True)   # as refwd's adamw_step


def sgdw(param, grad, state, *, lr, weight_decay=0.0, decay_convention="torch", initial_lr=None, **sgd_keywords):
    """SGDW: the decoupled shrink, then SGD without L2 (refwd's sgdw_step)."""
    if weight_decay != 0:
        param = _shrunk(param, _decoupled_rate(lr, weight_decay, decay_convention, initial_lr))
    return sgd(param, grad, state, lr=lr, **sgd_keywords)


def rmspropw(param, grad, state, *, lr, weight_decay=0.0, decay_convention="torch", initial_lr=None,
             **rmsprop_keywords):
    """RMSpropW: the decoupled shrink, then RMSprop without L2 (refwd's rmspropw_step)."""
    if weight_decay != 0:
        param = _shrunk(param, _decoupled_rate(lr, weight_decay, decay_convention, initial_lr))
    return rmsprop(param, grad, state, lr=lr, **rmsprop_keywords)


def step_scales(rule, param, grad, state, hyperparameters, dtype, *, scales=None):
    """Error scales of one optimizer step on torch's (float64-upcast) ``param``, ``grad`` and ``state``.

    ``rule`` is one of the rules above (:data:`refwd_validation.optimizers.OPTIMIZERS` says which), called as
    refwd's rules are: (param, grad, state with its ``step`` count, **the group's hyperparameters**).

    ``scales`` optionally gives the inputs' own error scales ({"param": S, "grad": S, key: S}) for the
    free-running bound; without it the inputs are exact (lock-step). Returns {"param": S, key: S, ...}.
    """
    scales = scales or {}

    def scaled(name, value):
        value = np.asarray(value, dtype=np.float64)
        given = scales.get(name)
        return Scaled(value, np.zeros_like(value) if given is None else given, dtype)

    tensors = {key: int(value) if key == "step" else scaled(key, value) for key, value in state.items()}
    out = rule(scaled("param", param), scaled("grad", grad), tensors, **hyperparameters)
    return {key: value.scale for key, value in out.items()}


# ---------------------------------------------------------------------------------------------------------------
# Gradients and loss: the MLP's forward and backward pass in error-scale arithmetic.

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
    grad_out = grad_out._rounded(grad_out.value, grad_out.scale)
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
