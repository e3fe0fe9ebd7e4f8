"""scalars: docs/findings-scalars.md's grid of extreme hyperparameters, and torch's CPU square root against NumPy's.

Every setting of ``GRID`` runs 5 steps on one float32 param of 67 elements (params and gradients standard normal,
seed 0) in torch's for-loop, foreach and (SGD, Adam, AdamW) fused implementations and in refwd's rule
(``refwd.optim.*_step``). Differences to the for-loop are in float32 ulps of each value ("value") and of the
tensor's largest magnitude ("scale"), the worst over the 5 steps. The square root: every float32 in [1, 4) (two
binades: a root's rounding depends only on the mantissa and the exponent's parity, so this is every positive normal
float32) and 2**22 float64 of uniformly random mantissa in [1, 4) (seed 0), torch.sqrt against np.sqrt.
"""
import numpy as np

from .formats import key_of, rounded

F32 = np.float32
SIZE, STEPS, SEED = 67, 5, 0
BETA1 = (1e-5, 1e-3, 0.02, 0.3, 0.5 - 1e-9, 0.9)
BETA2 = (1e-5, 1e-3, 0.02, 0.999999)
ALPHA = (1e-5, 1e-3, 0.02, 0.5, 0.99, 1.5)
LERP_BETA1 = (1e-5, 1e-3, 0.02, 0.9)       # the lerp fix's table: Adam's exp_avg
LERP_ALPHA = (1e-5, 1e-3, 0.02)            # and centered RMSprop's grad_avg
TINY_ALPHA = (1e-5, 1e-3, 0.02)            # centered RMSprop whose v − ḡ² cancels
LERP_KEYS = {"Adam": "exp_avg", "RMSprop": "grad_avg"}


def grid():
    """(optimizer, hyperparameters) for the extremes the page lists at its top."""
    cases = [("Adam", dict(lr=1e-3, betas=(b1, 0.999))) for b1 in BETA1]
    cases += [("Adam", dict(lr=1e-3, betas=(0.9, b2))) for b2 in BETA2]
    cases += [("Adam", dict(lr=1e-3, betas=(1e-3, 1e-3), amsgrad=True, weight_decay=1e-7)),
              ("Adam", dict(lr=1e-3, weight_decay=1e-9)), ("Adam", dict(lr=1e-3, eps=1e-40)),
              ("Adam", dict(lr=1e-3, eps=0.3, amsgrad=True)),
              ("AdamW", dict(lr=1e-3, betas=(0.02, 0.999), weight_decay=1e-6)),
              ("AdamW", dict(lr=1e-3, weight_decay=3e-6)),
              ("AdamW", dict(lr=1e-3, betas=(1e-5, 1e-5), weight_decay=1e-2, amsgrad=True))]
    for centered in (False, True):
        cases += [("RMSprop", dict(lr=1e-3, alpha=alpha, centered=centered)) for alpha in ALPHA]
        cases += [("RMSprop", dict(lr=1e-3, alpha=0.99, centered=centered, momentum=mu, weight_decay=1e-9))
                  for mu in (1e-5, 0.999999)]
    cases += [("RMSprop", dict(lr=1e-3, eps=eps)) for eps in (1e-40, 0.3)]
    cases += [("SGD", dict(lr=1e-3, momentum=mu, dampening=tau, weight_decay=1e-9))
              for mu in (1e-5, 0.999999) for tau in (1e-5, 0.99999)]
    cases += [("SGD", dict(lr=1e-3, momentum=0.999999, nesterov=True)), ("SGD", dict(lr=1e-3, weight_decay=1e-9))]
    return cases


def inputs():
    rng = np.random.default_rng(SEED)
    return rng.standard_normal(SIZE).astype(F32), [rng.standard_normal(SIZE).astype(F32) for _ in range(STEPS)]


def ulps(actual, expected):
    """(worst |actual − expected| in float32 ulps of each expected value, in ulps of its largest finite magnitude);
    elements equal (NaN in both included) differ by 0, a NaN or infinity in one only by ∞."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    same = (actual == expected) | (np.isnan(actual) & np.isnan(expected))
    if same.all():
        return 0.0, 0.0
    with np.errstate(invalid="ignore"):
        difference = np.where(same, 0.0, np.abs(actual - expected))
    difference[np.isnan(difference)] = np.inf
    finite = np.abs(expected[np.isfinite(expected)])
    value = difference / np.spacing(np.abs(np.nan_to_num(expected)).astype(F32)).astype(np.float64)
    return float(value.max()), float(difference.max() / np.spacing(F32(finite.max() if finite.size else 0)))


def torch_run(name, kwargs, impl, theta, grads):
    """[(param, state)] after each step of torch.optim.``name`` in ``impl`` (forloop, foreach or fused)."""
    import torch
    p = torch.nn.Parameter(torch.tensor(theta))
    flag = {"forloop": dict(foreach=False), "foreach": dict(foreach=True), "fused": dict(fused=True)}[impl]
    opt = getattr(torch.optim, name)([p], **flag, **kwargs)
    steps = []
    for grad in grads:       # torch takes NaN square roots (α > 1, v − ḡ² rounded below 0) without a warning
        p.grad = torch.tensor(grad)
        opt.step()
        steps.append((p.detach().numpy().copy(),
                      {k: v.numpy().copy() for k, v in opt.state[p].items() if k != "step"}))
    return steps


def refwd_run(name, kwargs, theta, grads, rule=None):
    """[(param, state)] after each step of refwd's rule for ``name``."""
    import refwd
    rule = rule or getattr(refwd.optim, name.lower() + "_step")
    param, state, steps = theta, {}, []
    for grad in grads:
        with np.errstate(invalid="ignore"):      # as torch: a NaN square root where v (or v − ḡ²) is below 0
            param, state = rule(param, grad, state, **kwargs)
        steps.append((param, {k: v for k, v in state.items() if k != "step"}))
    return steps


def compare(steps, reference):
    """{key: (ulps of value, ulps of scale)}, the worst over the steps, for the param and every state key."""
    worst = {}
    for (param, state), (ref_param, ref_state) in zip(steps, reference):
        for key, actual, expected in [("param", param, ref_param)] + [(k, state[k], v) for k, v in ref_state.items()]:
            worst_of(worst, key, *ulps(actual, expected))
    return worst


def centered_rmsprop_with_fma(param, grad, state, *, lr, alpha):
    """Centered RMSprop with v and v − ḡ² as one fused multiply-add each, as torch's ``addcmul`` (refwd's
    rmsprop_step rounds product and sum separately): the variant the page measures and leaves out."""
    from refwd.optim.lerp import lerp
    from refwd.optim.rounding import fma
    square_avg = fma((1 - alpha) * grad, grad, alpha * state.get("square_avg", np.zeros_like(param)))   # v_t
    grad_avg = lerp(state.get("grad_avg", np.zeros_like(param)), grad, 1 - alpha)      # ḡ_t
    avg = np.sqrt(fma(-grad_avg, grad_avg, square_avg)) + F32(1e-8)                    # √(v − ḡ²) + ε
    return param - lr * grad / avg, {"square_avg": square_avg, "grad_avg": grad_avg}


def hyper_key(prefix, value):
    """beta1_1e_05, alpha_0_02: a hyperparameter's value as a key part."""
    return prefix + key_of(f"{value:g}").replace("-", "_")


def plain_centered(name, kwargs, alphas):
    """Centered RMSprop at one of ``alphas``, without momentum or decay."""
    return name == "RMSprop" and set(kwargs) == {"lr", "alpha", "centered"} and kwargs["centered"] \
        and kwargs["alpha"] in alphas


def lerp_row(name, kwargs):
    """(table, key) of the lerp fix's table a setting fills, or None."""
    if name == "Adam" and set(kwargs) == {"lr", "betas"} and kwargs["betas"][1] == 0.999 \
            and kwargs["betas"][0] in LERP_BETA1:
        return "adam_exp_avg", hyper_key("beta1_", kwargs["betas"][0])
    if plain_centered(name, kwargs, LERP_ALPHA):
        return "rmsprop_grad_avg", hyper_key("alpha_", kwargs["alpha"])
    return None


def worst_of(table, key, value, scale):
    old = table.get(key, (0.0, 0.0))
    table[key] = (max(old[0], value), max(old[1], scale))


def measure_grid():
    theta, grads = inputs()
    foreach, fused, others, tiny = {}, {}, {}, {}
    lerp_fix, every_other = {"adam_exp_avg": {}, "rmsprop_grad_avg": {}}, 0.0
    for name, kwargs in grid():
        forloop = torch_run(name, kwargs, "forloop", theta, grads)
        for key, (value, scale) in compare(torch_run(name, kwargs, "foreach", theta, grads), forloop).items():
            worst_of(foreach, key, value, scale)
        if name != "RMSprop":                    # torch has no fused RMSprop
            for key, (value, scale) in compare(torch_run(name, kwargs, "fused", theta, grads), forloop).items():
                worst_of(fused, f"{'sgd' if name == 'SGD' else 'adam'}_{key}", value, scale)
        row, cancelling = lerp_row(name, kwargs), plain_centered(name, kwargs, TINY_ALPHA)
        for key, (value, scale) in compare(refwd_run(name, kwargs, theta, grads), forloop).items():
            if row and key == LERP_KEYS[name]:
                lerp_fix[row[0]][row[1]] = rounded(value)
            if key != "param" and key != LERP_KEYS.get(name):
                every_other = max(every_other, scale)
            if cancelling and key == "param":
                tiny[hyper_key("param_scale_alpha_", kwargs["alpha"])] = rounded(scale)
            elif cancelling:
                tiny["states_scale"] = rounded(max(tiny.get("states_scale", 0.0), scale))
            else:
                worst_of(others, key, value, scale)
    tiny["fma_param_scale"] = rounded(max(
        compare(refwd_run("RMSprop", dict(lr=1e-3, alpha=alpha), theta, grads, centered_rmsprop_with_fma),
                torch_run("RMSprop", dict(lr=1e-3, alpha=alpha, centered=True), "forloop", theta, grads)
                )["param"][1] for alpha in TINY_ALPHA))
    return {
        "settings": len(grid()), "foreach_worst_value": rounded(max(value for value, _ in foreach.values())),
        "fused": {key: {"value": rounded(value), "scale": rounded(scale)}
                  for key, (value, scale) in sorted(fused.items())},
        "lerp_fix": lerp_fix, "every_other_state_scale": rounded(every_other),
        "other_scalars_scale": rounded(max(scale for _, scale in others.values())), "centered_tiny_alpha": tiny,
    }


def differing(torch_root, numpy_root):
    """(fraction of inputs whose roots differ, the most ulps they differ by)."""
    steps = np.abs(torch_root.view(f"i{torch_root.itemsize}").astype(np.int64)
                   - numpy_root.view(f"i{numpy_root.itemsize}").astype(np.int64))
    return float(np.mean(steps != 0)), int(steps.max())


def measure_sqrt():
    import torch
    float32 = (np.arange(2 ** 24, dtype=np.uint32) + np.uint32(0x3F800000)).view(np.float32)   # all of [1, 4)
    rng = np.random.default_rng(SEED)
    count = 2 ** 22
    mantissas = rng.integers(0, 2 ** 53, size=count, dtype=np.uint64)   # 52 mantissa bits and the exponent's parity
    float64 = (mantissas + np.uint64(0x3FF0000000000000)).view(np.float64)
    out = {"float64_inputs": count}
    for name, x in (("float32", float32), ("float64", float64)):
        fraction, most = differing(torch.sqrt(torch.from_numpy(x)).numpy(), np.sqrt(x))
        out[f"{name}_percent"], out[f"{name}_most_ulps"] = rounded(100 * fraction, 3), most
    return out


def measure_scalars():
    import torch
    return {"scalars": {"environment": {"torch": torch.__version__,
                                        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()},
                        **measure_grid(), "sqrt": measure_sqrt()}}
