"""Linear interpolation exactly as torch.lerp evaluates it, for the exponential moving averages."""
from .rounding import as_kernel_scalar, fma


def lerp(start, end, weight):
    r"""start + w·(end − start), evaluated in torch's two branches.

    An exponential moving average β·m + (1 − β)·g is ``lerp(m, g, 1 − β)``, and that is how torch computes
    Adam's ``exp_avg`` and centered RMSprop's ``grad_avg``. torch (ATen's ``lerp`` kernel) uses
    start + w·(end − start) when |w| < ½ and end − (1 − w)·(end − start) otherwise, so the result is exact
    at both ends. Writing it the same way keeps refwd within an ulp of torch, and, unlike β·m + (1 − β)·g,
    it propagates non-finite values as torch does: after an infinite gradient, m = ∞ and end − start is
    NaN at the next step, so torch's moment becomes NaN, where β·m + (1 − β)·g would stay infinite.

    The kernel first rounds w to its compute type (float32 for a float32 tensor) and forms 1 − w from that
    rounded value, so a float32 lerp's coefficient is 1 − ↓w, not ↓(1 − w): for w = 1 − β₁ = 0.999 the
    two differ by 6e-5 relative (docs/findings-scalars.md). Both branches are one fused multiply-add in
    torch and here (:func:`~refwd.optim.rounding.fma`).
    """
    weight = as_kernel_scalar(weight, end)  # ↓w, and the branch is chosen on ↓w as in torch
    if abs(weight) < 0.5:
        return fma(weight, end - start, start)           # start + w·(end − start)
    return fma(weight - 1, end - start, end)             # end − (1 − w)·(end − start)
