"""The MSE loss (torch.nn.MSELoss) and explicit penalty terms for coupled regularisation."""
import autograd.numpy as anp

REDUCTIONS = ("mean", "sum", "none")


def mse(pred, target, reduction="mean"):
    """ℓ = mean((pred − target)²), or its sum, or the elementwise squares, as torch.nn.MSELoss.

    Unlike torch, which only warns and then broadcasts, shapes must match exactly: an (N, 1) prediction
    against an (N,) target silently becomes an (N, N) loss in torch and is almost always a bug.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if anp.shape(pred) != anp.shape(target):
        raise ValueError(f"mse: pred has shape {anp.shape(pred)} but target has shape {anp.shape(target)}")
    squared_error = (pred - target) ** 2
    if reduction == "mean":
        return anp.mean(squared_error)
    if reduction == "sum":
        return anp.sum(squared_error)
    return squared_error


def _selected(params, names):
    names = list(params) if names is None else list(names)
    unknown = [name for name in names if name not in params]
    if unknown:
        raise KeyError(f"penalty names {unknown} are not in params (known: {list(params)})")
    return [params[name] for name in names]


def l2_penalty(params, weight_decay, names=None):
    """λ/2 · Σ‖θ‖² over ``names`` (all params by default); its gradient is λθ, torch's coupled decay."""
    return 0.5 * weight_decay * sum(anp.sum(theta ** 2) for theta in _selected(params, names))


def l1_penalty(params, weight_decay, names=None):
    """λ · Σ‖θ‖₁ over ``names`` (all params by default); its (sub)gradient is λ·sign(θ)."""
    return weight_decay * sum(anp.sum(anp.abs(theta)) for theta in _selected(params, names))
