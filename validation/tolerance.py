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

import numpy as np

from .dtypes import round_to

# ε (the ULP of 1.0, 2u), the smallest positive subnormal and the largest finite value of each dtype: NumPy's finfo,
# and bfloat16's (8 significand bits, float32's exponent) written out, as ml_dtypes.finfo gives them
# (tests/test_validation_tolerance.py checks that it does; ml_dtypes is slow to import)
_FINFO = {name: np.finfo(name) for name in ("float64", "float32", "float16")}
EPS = {name: float(info.eps) for name, info in _FINFO.items()} | {"bfloat16": 2.0 ** -7}
TINY = {name: float(info.smallest_subnormal) for name, info in _FINFO.items()} | {"bfloat16": 2.0 ** -133}
_LARGEST = {name: float(info.max) for name, info in _FINFO.items()} | {"bfloat16": (2 - 2.0 ** -7) * 2.0 ** 127}
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
        """The result of one rounding to the dtype: add |r| and the underflow term η/u (to ``scale`` in place: the
        caller's own new array, so that an operation allocates one scale, not three). A result beyond the dtype's
        largest finite value overflows where torch stores it (a float16 g² or activation, say), while the
        reference, computing in float64, does not: its error is unbounded, the element indeterminate."""
        magnitude = np.abs(value)
        if isinstance(scale, np.ndarray) and scale.ndim and scale.shape == magnitude.shape and scale.dtype == np.float64:
            scale += magnitude          # every caller passes a scale it has just computed: add in place
            scale += _underflow(self.dtype)
        else:   # a scalar (the loss) or a broadcast: a new 0-d or full array, as np.where makes it
            return Scaled(value, np.where(magnitude > _LARGEST[self.dtype], np.inf,
                                          scale + magnitude + _underflow(self.dtype)), self.dtype)
        overflow = magnitude > _LARGEST[self.dtype]
        return Scaled(value, np.where(overflow, np.inf, scale) if overflow.any() else scale, self.dtype)

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
         initial_lr=None, scalar_dtype="float64"):
    """``scalar_dtype``: where torch computes the bias corrections and the step size. On its tensor paths
    (capturable, differentiable, and the step under torch.compile) they are 0-d float32 tensors made from the
    float32 step count (:func:`tensor_scalar_error`)."""
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
    update = (step_size * exp_avg) / denom
    if scalar_dtype != "float64":
        relative = tensor_scalar_error(betas, step, scalar_dtype, param.dtype)
        update = Scaled(update.value, update.scale + relative * np.abs(update.value), update.dtype)
    out["param"] = param - update
    return out


def tensor_scalar_error(betas, step, scalar_dtype, dtype):
    """How far Adam's update moves, relative to itself and in units of the param dtype's u, when its scalars are
    0-d ``scalar_dtype`` tensors, as on torch's capturable/differentiable/compiled paths:

    - bcᵢ = 1 − fl(fl(βᵢ)ᵗ): βᵢ rounded to the scalar dtype (t·u_s in the power), the power within 1 ulp and the
      subtraction rounded, so |δbcᵢ| ≤ u_s·((t + 2)·βᵢᵗ + bcᵢ), which relative to bcᵢ is large where βᵢᵗ is near
      1 (bc₂ = 1 − 0.999 at step 1: 3,000 u_s);
    - the update is proportional to 1/bc₁ and to √bc₂ (half bc₂'s relative error), where √bc₂ ≤ bc₂'s weight in
      the denominator √v/√bc₂ + ε;
    - four more roundings of 0-d tensors: the step size lr/bc₁, √bc₂, their product, and ε over the step size
      (torch writes the denominator as √v/(√bc₂·(−step size)) + ε/(−step size)).
    """
    beta1, beta2 = betas
    powers = [beta ** step for beta in (beta1, beta2)]
    corrections = [1 - power for power in powers]
    relative_bc1 = ((step + 2) * powers[0] + corrections[0]) / corrections[0] if powers[0] else 0.0
    relative_bc2 = ((step + 2) * powers[1] + corrections[1]) / corrections[1] if powers[1] else 0.0
    units = relative_bc1 + relative_bc2 / 2 + 4
    return units * unit_roundoff(scalar_dtype) / unit_roundoff(dtype)


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
