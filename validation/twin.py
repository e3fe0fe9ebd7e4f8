"""The torch twin of a case, and the shared pieces both sides build from: initial params, data, param groups.

refwd draws the initial params (NumPy, seeded) and the data; the twin copies them into torch.nn.Linear or
torch.nn.Sequential (no transposes: refwd's weights already have torch's (out_features, in_features) shape)
and builds torch's optimizer with the same hyperparameters and param groups, parameter names standing for
tensors. :func:`torch_trajectory` runs torch and yields one :class:`TorchStep` per step: everything one step
consumed and produced, as NumPy arrays, and nothing from earlier steps (memory stays flat).
"""
from dataclasses import dataclass

import numpy as np

import refwd

TORCH_CLASSES = {"sgd": "SGD", "rmsprop": "RMSprop", "adam": "Adam", "adamw": "AdamW"}
REFWD_CLASSES = {"sgd": refwd.optim.SGD, "rmsprop": refwd.optim.RMSprop, "adam": refwd.optim.Adam,
                 "adamw": refwd.optim.AdamW}


class CudaUnavailableError(RuntimeError):
    """The case asks for cuda and torch has no CUDA device."""


def import_torch():
    import torch
    return torch


def compute_dtype(dtype):
    """The NumPy dtype refwd computes in: the case's own for float64/float32, float64 for float16/bfloat16."""
    return np.dtype(dtype) if dtype in ("float64", "float32") else np.dtype("float64")


def to_numpy(tensor, dtype):
    """A torch tensor as a NumPy array in :func:`compute_dtype` (float16/bfloat16 upcast exactly)."""
    tensor = tensor.detach()
    if tensor.device.type != "cpu":
        tensor = tensor.cpu()
    if dtype in ("float16", "bfloat16"):
        return tensor.double().numpy()
    return tensor.numpy().copy()


def round_to(array, dtype):
    """Round a float64 array to ``dtype`` and back (torch does the rounding: NumPy has no bfloat16)."""
    if dtype not in ("float16", "bfloat16"):
        return np.asarray(array, dtype=dtype)
    torch = import_torch()
    array = np.asarray(array, dtype=np.float64)
    rounded = torch.from_numpy(np.ascontiguousarray(array)).to(getattr(torch, dtype)).double().numpy()
    return rounded.reshape(array.shape)


def refwd_model(case):
    if len(case.model) == 2:
        return refwd.Linear(*case.model)
    return refwd.MLP(list(case.model), activation=case.activation)


def initial_params(case):
    """The initial params in refwd's compute dtype (float16/bfloat16: drawn in float32, rounded, upcast)."""
    model = refwd_model(case)
    if case.lowp:
        params = model.init(seed=case.seed, dtype="float32")
        return {name: round_to(value.astype(np.float64), case.dtype) for name, value in params.items()}
    return model.init(seed=case.seed, dtype=case.dtype)


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


def batch_in(case, step):
    """The batch of ``step`` as refwd uses it: rounded to the case's dtype, in the compute dtype."""
    x, y = batch(case, step)
    dt = compute_dtype(case.dtype)
    return round_to(x, case.dtype).astype(dt), round_to(y, case.dtype).astype(dt)


def loss_scale(case, step):
    """The factor on the loss at 1-based ``step``: loss_scale · loss_decay^(step − 1)."""
    return case.loss_scale * case.loss_decay ** (step - 1)


def layer_names(case):
    return [""] if len(case.model) == 2 else [str(2 * i) for i in range(len(case.model) - 1)]


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
    """refwd's optimizer for the case; ``rule`` (a per-tensor step function) replaces its rule if given."""
    groups = [dict(overrides, params=chosen) for chosen, overrides in group_names(case, names)]
    optimizer = REFWD_CLASSES[case.optimizer](groups, **case.kwargs)
    if rule is not None:
        optimizer.rule = rule
    return optimizer


def torch_impl_kwargs(case):
    if case.impl == "forloop":
        return {"foreach": False}
    if case.impl == "foreach":
        return {"foreach": True}
    return {"fused": True}


def torch_device(case):
    torch = import_torch()
    if case.device == "cuda" and not torch.cuda.is_available():
        raise CudaUnavailableError("cuda was asked for, but torch.cuda.is_available() is False")
    return torch.device(case.device)


def torch_model(case, params):
    """nn.Linear or nn.Sequential(Linear, act, ..., Linear) holding a copy of refwd's ``params``."""
    torch = import_torch()
    nn = torch.nn
    sizes = case.model
    if len(sizes) == 2:
        model = nn.Linear(*sizes)
    else:
        activations = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "identity": nn.Identity}
        layers = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(n_in, n_out))
            if i < len(sizes) - 2:
                layers.append(activations[case.activation]())
        model = nn.Sequential(*layers)
    model = model.to(device=torch_device(case), dtype=getattr(torch, case.dtype))
    named = dict(model.named_parameters())
    if list(named) != list(params):
        raise AssertionError(f"torch names {list(named)} differ from refwd's {list(params)}")
    with torch.no_grad():
        for name, tensor in named.items():
            tensor.copy_(torch.from_numpy(np.asarray(params[name], dtype=np.float64)))
    return model, named


@dataclass
class TorchStep:
    """One torch step: its inputs (before) and outputs (after), as NumPy arrays in refwd's compute dtype.

    ``state`` and ``new_state`` map each parameter name to its optimizer state with torch's keys; ``step``
    counts are Python ints. ``grads`` holds None for a parameter whose grad was None at this step;
    ``all_grads`` holds every gradient autograd computed (before the None schedule was applied).
    """

    step: int
    lrs: list
    loss_scale: float
    x: np.ndarray
    y: np.ndarray
    params: dict
    all_grads: dict
    grads: dict
    loss: float
    state: dict
    new_params: dict
    new_state: dict


def _state_numpy(state, dtype):
    out = {}
    for key, value in state.items():
        if key == "step":
            out[key] = int(value.item()) if hasattr(value, "item") else int(value)
        else:
            out[key] = to_numpy(value, dtype)
    return out


def torch_trajectory(case, steps=None):
    """Run the torch twin for ``steps`` (default: the case's) and yield a :class:`TorchStep` per step."""
    torch = import_torch()
    params = initial_params(case)
    model, named = torch_model(case, params)
    names = list(named)
    groups = group_names(case, names)
    torch_groups = [dict(overrides, params=[named[n] for n in chosen]) for chosen, overrides in groups]
    optimizer = getattr(torch.optim, TORCH_CLASSES[case.optimizer])(torch_groups, **case.kwargs,
                                                                    **torch_impl_kwargs(case))
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    device = torch_device(case)
    tdtype = getattr(torch, case.dtype)
    dt = case.dtype
    current = {name: to_numpy(t, dt) for name, t in named.items()}
    current_state = {name: {} for name in names}
    for step in range(1, (steps or case.total_steps) + 1):
        factor = case.lr_factor(step)
        lrs = [lr * factor for lr in base_lrs]
        for group, lr in zip(optimizer.param_groups, lrs):
            group["lr"] = lr
        x64, y64 = batch(case, step)
        x = torch.from_numpy(x64).to(device=device, dtype=tdtype)
        y = torch.from_numpy(y64).to(device=device, dtype=tdtype)
        scale = loss_scale(case, step)
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(model(x), y)
        if scale != 1.0:
            loss = loss * scale
        loss.backward()
        all_grads = {name: to_numpy(t.grad, dt) for name, t in named.items()}
        grads = {}
        for name, tensor in named.items():
            if case.grad_is_none(name, step):
                tensor.grad = None
                grads[name] = None
            else:
                grads[name] = all_grads[name]
        optimizer.step()
        new_params = {name: to_numpy(t, dt) for name, t in named.items()}
        new_state = {name: _state_numpy(optimizer.state[t], dt) if t in optimizer.state else {}
                     for name, t in named.items()}
        yield TorchStep(step=step, lrs=lrs, loss_scale=scale, x=to_numpy(x, dt), y=to_numpy(y, dt),
                        params=current, all_grads=all_grads, grads=grads, loss=float(loss.item()),
                        state=current_state, new_params=new_params, new_state=new_state)
        current, current_state = new_params, new_state
