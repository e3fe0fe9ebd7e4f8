"""Linear interpolation exactly as torch.lerp evaluates it, for the exponential moving averages."""


def lerp(start, end, weight):
    r"""start + w·(end − start), evaluated in torch's two branches.

    An exponential moving average β·m + (1 − β)·g is ``lerp(m, g, 1 − β)``, and that is how torch computes
    Adam's ``exp_avg`` and centered RMSprop's ``grad_avg``. torch (ATen's ``lerp`` kernel) uses
    start + w·(end − start) when |w| < ½ and end − (1 − w)·(end − start) otherwise, so the result is exact
    at both ends. Writing it the same way keeps refwd within an ulp of torch, and, unlike β·m + (1 − β)·g,
    it propagates non-finite values as torch does: after an infinite gradient, m = ∞ and end − start is
    NaN at the next step, so torch's moment becomes NaN, where β·m + (1 − β)·g would stay infinite.
    """
    if abs(weight) < 0.5:
        return start + weight * (end - start)
    return end - (1 - weight) * (end - start)
