"""What both sides of a case draw from, without torch: initial params, batches, loss scales, param groups.

refwd draws the initial params (NumPy, seeded) and the data; the torch twin (:mod:`refwd_validation.twin`)
copies them. Everything here is a pure function of the case, so a step's inputs are recomputed, never stored.
"""
import numpy as np

import refwd

from .dtypes import round_to
from .optimizers import OPTIMIZERS

def refwd_model(case):
    """refwd's model of the case: two sizes are one ``Linear``, more an ``MLP``."""
    if len(case.model) == 2:
        return refwd.Linear(*case.model)
    return refwd.MLP(list(case.model), activation=case.activation)


def activation(case):
    """The activation between layers (a Linear has none)."""
    return case.activation if len(case.model) > 2 else "identity"


def layers(case, params):
    """``params`` as [(weight, bias), ...] per Linear layer, in order (the error-scale MLP's layout)."""
    return [(params[weight], params[bias]) for weight, bias in layer_names(case)]


def by_name(case, per_layer):
    """The inverse of :func:`layers`: {parameter name: value}."""
    out = {}
    for (weight, bias), (weight_value, bias_value) in zip(layer_names(case), per_layer):
        out[weight], out[bias] = weight_value, bias_value
    return out


def layer_names(case):
    """[(weight name, bias name), ...] per Linear layer, as torch names them."""
    model = refwd_model(case)
    if isinstance(model, refwd.Linear):
        return [("weight", "bias")]
    return [(f"{layer}.weight", f"{layer}.bias") for layer in model.layer_names]


def initial_params(case):
    """The initial params in refwd's compute dtype (float16/bfloat16: drawn in float32, rounded, upcast); with
    ``scalar_bias``, the last bias as a 0-d array (refwd's ``x Wᵀ + b`` broadcasts it)."""
    model = refwd_model(case)
    if case.lowp:
        params = model.init(seed=case.seed, dtype="float32")
        params = {name: round_to(value, case.dtype) for name, value in params.items()}
    else:
        params = model.init(seed=case.seed, dtype=case.dtype)
    if case.scalar_bias:
        last_bias = layer_names(case)[-1][1]
        if params[last_bias].shape != (1,):
            raise ValueError(f"case {case.id}: scalar_bias needs a last layer of one output, not {case.model}")
        params[last_bias] = params[last_bias].reshape(())
    return params


def batch(case, step):
    """The (x, y) batch of 1-based ``step``, float64, a pure function of (seed, step): nothing is stored."""
    n_in, n_out = case.model[0], case.model[-1]
    if case.data == "line":
        x = np.arange(1.0, case.batch + 1.0).reshape(-1, 1)
        return x, 2.0 * x + 1.0
    teacher = np.random.default_rng([case.seed, 1])
    a = teacher.normal(size=(n_in, 8)) / np.sqrt(n_in)
    b = teacher.normal(size=(8, n_out))
    rng = np.random.default_rng([case.seed, 2, step])
    x = rng.normal(size=(case.batch, n_in))
    y = np.sin(2.0 * x @ a) @ b + 0.1 * rng.normal(size=(case.batch, n_out))
    return x, y


def loss_scale(case, step):
    """The factor on the loss at 1-based ``step``: loss_scale · loss_decay^(step − 1)."""
    return case.loss_scale * case.loss_decay ** (step - 1)


def group_names(case, names):
    """The param-group layout as lists of parameter names, with each group's overrides: [(names, overrides)]."""
    if not case.groups:
        return [(list(names), {})]
    groups, taken = [], set()
    for selector, overrides in case.groups:
        chosen = [name for name in names if _selected(selector, name)]
        if not chosen:
            raise ValueError(f"case {case.id}: group selector {selector!r} selects no parameter of {list(names)}")
        clash = taken.intersection(chosen)
        if clash:
            raise ValueError(f"case {case.id}: parameters {sorted(clash)} are in more than one group")
        taken.update(chosen)
        groups.append((chosen, dict(overrides)))
    missing = [name for name in names if name not in taken]
    if missing:
        raise ValueError(f"case {case.id}: parameters {missing} are in no group")
    return groups


def _selected(selector, name):
    if isinstance(selector, tuple):
        return name in selector
    if selector == "all":
        return True
    if selector == "weights":
        return name.endswith("weight")
    if selector == "biases":
        return name.endswith("bias")
    if selector.startswith("layer:"):
        return name.startswith(selector[len("layer:"):] + ".")
    return selector == name


def refwd_optimizer(case, names, rule=None):
    """refwd's optimizer for the case; ``rule`` replaces its rule if given (a per-tensor step function), or its
    class (a refwd optimizer class: the mutants of the class's constructor or shell)."""
    groups = [dict(overrides, params=chosen) for chosen, overrides in group_names(case, names)]
    refwd_class = rule if isinstance(rule, type) else OPTIMIZERS[case.optimizer].refwd_class
    optimizer = refwd_class(groups, **case.kwargs)
    if rule is not None and not isinstance(rule, type):
        optimizer.rule = rule
    return optimizer


def group_hyperparameters(optimizer, lrs):
    """{parameter name: its group's hyperparameters} of a refwd optimizer, with each group's lr from ``lrs``."""
    out = {}
    for group, lr in zip(optimizer.param_groups, lrs):
        hyperparameters = {key: group[key] for key in optimizer.defaults}
        hyperparameters["lr"] = lr
        for name in group["params"]:
            out[name] = hyperparameters
    return out
