"""Roundings NumPy does not make by itself: torch kernels' scalar operands and FMAs, float32-held hyperparameters.

Every rule stays written as the math; these helpers only make a line round where torch's kernel rounds.
"""
import numpy as np


def as_kernel_scalar(scalar, array):
    """The Python float a torch CPU kernel computes with when given ``scalar`` next to ``array``.

    ATen converts a Scalar operand to the op's compute ("opmath") type before any arithmetic on it: double
    for a float64 tensor, float32 for float32, float16 and bfloat16 tensors. The result is exactly
    representable in that type, so Python arithmetic on it (1 − w for ½ ≤ |w| ≤ 2) is exact, as in torch.
    """
    if np.asarray(array).dtype == np.float64:
        return scalar
    return float(np.float32(scalar))


def fma(a, b, c):
    """a·b + c with one rounding, as torch computes ``c.add(b, alpha=a)`` and ``c.addcmul(a, b)`` on FMA CPUs.

    Why it matters beyond an ulp: the product is never rounded on its own, so where a·b alone would overflow
    and c is infinite, the result is c (torch) and not ∞ − ∞ = NaN (docs/findings-scalars.md). Arrays
    narrower than float64 are evaluated exactly in float64 (the product of two float32 is exact there) and
    rounded once; float64 has no wider NumPy type, so it is rounded twice, except that an infinite c with
    finite a and b gives c, as the fused operation does.
    """
    dtype = np.result_type(a, b, c)  # Python scalars are weak (NEP 50): this is the arrays' dtype
    if dtype != np.float64:
        a, b, c = (np.asarray(x, dtype=dtype) for x in (a, b, c))   # scalars rounded as torch does
        return (np.multiply(a, b, dtype=np.float64) + c).astype(dtype)  # a·b exact in float64, + c, rounded
    return np.where(np.isinf(c) & np.isfinite(a) & np.isfinite(b), c, a * b + c)


def hyperparameters_in_float32(hyperparameters, names):
    """``hyperparameters`` with the entries ``names`` rounded to float32 (Python floats; a tuple entry elementwise).

    Some libraries hold a hyperparameter in a float32 variable or tensor and cast it to the weights' dtype
    at each step (Keras 3's ``learning_rate``; TF1's every hyperparameter): for float64 weights the rule then
    computes with ↓₃₂γ, not γ. That is not a line of the rule but a property of its inputs, so the caller
    applies it: ``rule(param, grad, state, **hyperparameters_in_float32(h, FLOAT32_HYPERPARAMETERS[p]))``
    (:data:`refwd.optim.profiles.FLOAT32_HYPERPARAMETERS`). Names absent from ``hyperparameters`` are skipped.
    """
    def rounded(value):
        if isinstance(value, (tuple, list)):
            return type(value)(rounded(v) for v in value)
        return float(np.float32(value))

    return {key: rounded(value) if key in names else value for key, value in hyperparameters.items()}
