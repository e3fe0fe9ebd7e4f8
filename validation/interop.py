"""Converters between torch and refwd: params, grads, optimizers and their state.

torch tensors are identified by object; refwd names them. The bridge is the model's ``named_parameters()``:
the tensor ``model[0].weight`` is refwd's ``"0.weight"``, with the same shape and dtype.

- :func:`params_from_torch` / :func:`grads_from_torch`: a model (or a state_dict, or ``(name, tensor)``
  pairs) to a refwd params mapping of NumPy copies.
- :func:`copy_params_to_torch`: refwd params into a torch model, in place.
- :func:`optimizer_from_torch`: a torch SGD, RMSprop, Adam or AdamW instance to the equivalent refwd
  optimizer: its hyperparameters, its param groups by name, and its state from its ``state_dict()``.
- :func:`torch_state_dict` / :func:`optimizer_to_torch`: back, to a dict that ``torch_optimizer.load_state_dict``
  takes (``step`` a 0-d tensor as torch keeps it, the group keys of the installed torch's own optimizer), or
  straight to a torch optimizer over a model.

Every array crosses as a copy: nothing refwd holds aliases a torch tensor, or the other way round.
"""
import inspect
from collections.abc import Mapping

import numpy as np
import torch

from .optimizers import spec_for_refwd, spec_for_torch

NUMPY_DTYPES = {torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64}


def check_dtype(tensor, what="tensor"):
    if tensor.dtype not in NUMPY_DTYPES:
        raise TypeError(f"{what} has dtype {tensor.dtype}; refwd compares float16, float32 and float64 "
                        "tensors (NumPy has no bfloat16, and refwd's rules are real-valued)")


def to_numpy(tensor, what="tensor"):
    """A NumPy copy of a dense floating-point torch tensor (detached, on the CPU, dtype kept)."""
    if tensor.layout != torch.strided:
        raise TypeError(f"{what} is a {_layout_name(tensor)} tensor; refwd's rules take dense tensors")
    check_dtype(tensor, what)
    return tensor.detach().cpu().clone().numpy()


def local(tensor):
    """This rank's shard of a DTensor (FSDP2's params, grads and state); any other tensor itself."""
    to_local = getattr(tensor, "to_local", None)
    return to_local() if callable(to_local) else tensor


def take(tensor, positions=None, what="tensor", *, copy=True, out=None):
    """The elements of ``tensor`` at the flat ``positions`` (an int64 array; None: all of them, in its shape) as
    NumPy, checked as :func:`to_numpy` checks. A subset is always a new array; all of it is a copy unless ``copy``
    is False, where a CPU tensor's memory is read in place (valid until torch next writes the tensor). A copy goes
    into ``out`` where that is an array of the same shape and dtype (a watcher's copy from the step before)."""
    tensor = local(tensor)
    if tensor.layout != torch.strided:
        raise TypeError(f"{what} is a {_layout_name(tensor)} tensor; refwd's rules take dense tensors")
    check_dtype(tensor, what)
    tensor = tensor.detach()
    if positions is not None:
        index = torch.from_numpy(positions).to(tensor.device)
        return tensor.reshape(-1).index_select(0, index).cpu().numpy()
    if tensor.device.type != "cpu":
        return tensor.cpu().numpy()
    array = tensor.resolve_neg().numpy()
    if not copy:
        return array
    if out is not None and out.shape == array.shape and out.dtype == array.dtype:
        np.copyto(out, array)   # memory already mapped: a new 16 MB array costs twice the copy in page faults
        return out
    return array.copy()


def grad_to_numpy(name, param, positions=None, out=None):
    """A NumPy copy of ``param.grad`` (None stays None), or of its elements at ``positions`` (:func:`take`).

    A gradient refwd's rules cannot take is a TypeError naming the parameter: a sparse one (``nn.Embedding(
    sparse=True)``; torch's for-loop SGD adds it index by index, with a sparse momentum buffer) or another
    non-strided layout, and one on another device than its parameter (torch refuses to assign either of the
    last two to ``.grad``; the check is a guard).
    """
    grad = param.grad
    if grad is None:
        return None
    if grad.layout != torch.strided:
        raise TypeError(f"parameter {name!r} has a {_layout_name(grad)} gradient; refwd's rules take dense "
                        "gradients")
    if grad.device != param.device:
        raise TypeError(f"parameter {name!r} is on {param.device} but its gradient is on {grad.device}; refwd "
                        "takes a gradient on its parameter's device, as torch's optimizers do")
    return take(grad, positions, f"grad of {name!r}", out=out)


def params_from_torch(source):
    """refwd params ``{name: ndarray}`` from a torch model, a state_dict, or ``(name, tensor)`` pairs.

    A ``torch.nn.Module`` gives its ``named_parameters()`` (not its buffers); a mapping (a ``state_dict()``)
    gives every entry. Names, order, shapes and dtypes are kept; the arrays are copies.
    """
    if isinstance(source, torch.nn.Module):
        pairs = list(source.named_parameters())
    elif isinstance(source, Mapping):
        pairs = list(source.items())
    else:
        pairs = list(source)
    params = {}
    for name, tensor in pairs:
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{name!r} is a {type(tensor).__name__}, not a torch.Tensor")
        params[name] = to_numpy(tensor, f"parameter {name!r}")
    if not params:
        raise ValueError(f"no parameters found in {type(source).__name__}")
    return params


def grads_from_torch(model):
    """refwd grads ``{name: ndarray or None}`` from the ``.grad`` of a model's parameters (None stays None)."""
    return {name: grad_to_numpy(name, param) for name, param in model.named_parameters()}


def copy_params_to_torch(params, model):
    """Write refwd params into a torch model's parameters, in place; names, shapes and dtypes must match."""
    torch_params = dict(model.named_parameters())
    unknown = [name for name in params if name not in torch_params]
    if unknown:
        raise KeyError(f"params {unknown} are not parameters of the model (it has {list(torch_params)})")
    with torch.no_grad():
        for name, array in params.items():
            target = torch_params[name]
            array = np.asarray(array)
            if tuple(array.shape) != tuple(target.shape) or NUMPY_DTYPES.get(target.dtype) != array.dtype:
                raise ValueError(f"param {name!r} is {array.dtype} {array.shape} but the model's is "
                                 f"{target.dtype} {tuple(target.shape)}")
            target.copy_(torch.from_numpy(array.copy()))


def refwd_class_for(torch_optimizer):
    """The refwd optimizer class for a torch optimizer instance (subclasses count as their base)."""
    return spec_for_torch(torch_optimizer, torch).refwd_class


def torch_class_for(refwd_optimizer):
    """The torch optimizer class for a refwd optimizer instance."""
    return spec_for_refwd(refwd_optimizer).torch_optimizer_class(torch)


def parameter_names(torch_optimizer, model=None):
    """The refwd name of every parameter of every param group: a list of name lists, in torch's order.

    Names come from ``model.named_parameters()``; without a model, from the groups' ``param_names`` (an
    optimizer built from named parameters has them).
    """
    if model is not None:
        name_of = {id(param): name for name, param in model.named_parameters()}
    names = []
    for index, group in enumerate(torch_optimizer.param_groups):
        if model is None:
            if "param_names" not in group:
                raise ValueError(f"param group {index} of the {type(torch_optimizer).__name__} has no "
                                 "'param_names'; pass the model so that its parameters can be named")
            names.append(list(group["param_names"]))
            continue
        group_names = []
        for position, param in enumerate(group["params"]):
            if id(param) not in name_of:
                raise ValueError(f"param group {index}, parameter {position} (shape {tuple(param.shape)}, "
                                 f"{param.dtype}) of the {type(torch_optimizer).__name__} is not a parameter "
                                 f"of the model {type(model).__name__}")
            group_names.append(name_of[id(param)])
        names.append(group_names)
    return names


def optimizer_from_torch(torch_optimizer, model=None):
    """The refwd optimizer equivalent to a torch SGD, RMSprop, Adam or AdamW, state and all.

    The constructor defaults are the torch optimizer's ``defaults``; each group keeps its own values
    (including torch's implementation keys such as ``foreach`` or ``fused``, which refwd carries and
    ignores); the state comes from ``torch_optimizer.state_dict()`` with ``step`` as an int and every
    tensor as a NumPy copy. Tensor-valued hyperparameters (a tensor ``lr``) become the Python number that
    torch reads from them with ``.item()``.
    """
    names = parameter_names(torch_optimizer, model)
    for group, group_names in zip(torch_optimizer.param_groups, names):
        for param, name in zip(group["params"], group_names):
            check_dtype(param, f"parameter {name!r}")
    return refwd_optimizer_like(torch_optimizer, names, numpy_state_dict(torch_optimizer.state_dict()))


def refwd_optimizer_like(torch_optimizer, names, saved):
    """refwd's optimizer of ``torch_optimizer``'s class over the parameter ``names`` (a list per group), with the
    torch optimizer's ``defaults``, loaded from ``saved`` (a :func:`numpy_state_dict`)."""
    refwd_class = refwd_class_for(torch_optimizer)
    accepted = set(inspect.signature(refwd_class.__init__).parameters) - {"self", "params"}
    defaults = {key: python_value(value) for key, value in torch_optimizer.defaults.items() if key in accepted}
    optimizer = refwd_class([{"params": group_names} for group_names in names], **defaults)
    optimizer.load_state_dict(saved)
    return optimizer


def numpy_param_state(param_state, positions=None, *, copy=True, what="state", out=None):
    """One parameter's torch optimizer state as NumPy: ``step`` as an int, each tensor at the flat ``positions``
    (:func:`take`; None: all of it, a copy unless ``copy`` is False, into ``out[key]`` where that fits), other
    values as they are."""
    numpy_state = {}
    for key, value in param_state.items():
        if value is None:  # older torch kept "momentum_buffer": None for SGD without momentum
            continue
        if key == "step":
            numpy_state[key] = int(python_value(value))
        elif isinstance(value, torch.Tensor):
            numpy_state[key] = take(value, positions, f"{what}[{key!r}]", copy=copy, out=(out or {}).get(key))
        else:
            numpy_state[key] = value
    return numpy_state


def numpy_state_dict(torch_state_dict):
    """A torch optimizer state_dict with tensors turned into NumPy arrays and scalar tensors into numbers."""
    state = {index: numpy_param_state(param_state, what=f"state[{index}]")
             for index, param_state in torch_state_dict["state"].items()}
    groups = [{key: python_value(value) for key, value in group.items()}
              for group in torch_state_dict["param_groups"]]
    return {"state": state, "param_groups": groups}


def torch_state_dict(refwd_optimizer, *, param_names=False):
    """A state_dict that the matching torch optimizer's ``load_state_dict`` takes, from a refwd optimizer.

    State tensors are copies; ``step`` is a 0-d tensor of torch's scalar dtype (float32, or float64 when
    torch's default dtype is float64). Each group has the keys, in the order, that the installed torch's
    own optimizer gives it, implementation keys (``foreach``, ``fused``, ...) included: refwd's value where
    refwd has one (carried from a torch state_dict), torch's default otherwise; keys of the user's own
    that a loaded torch state_dict had are carried back. ``param_names=True`` adds
    each group's parameter names, as torch does for an optimizer built from named parameters.
    """
    torch_class = torch_class_for(refwd_optimizer)
    refwd_dict = refwd_optimizer.state_dict()
    template = _torch_group_template(torch_class)
    groups = []
    for index, group in enumerate(refwd_dict["param_groups"]):
        torch_group = {}
        for key, value in group.items():
            if key in ("params", "param_names"):
                continue
            if key in refwd_optimizer.defaults and key not in template:
                if _implied_by_torch(torch_class, key, value):
                    continue
                raise ValueError(f"param group {index} has {key}={value!r}, which torch {torch.__version__}'s "
                                 f"{torch_class.__name__} has no key for")
            torch_group[key] = value  # keys of the user's own (a group "name", a scheduler's "initial_lr") too
        for key, value in template.items():
            torch_group.setdefault(key, value)
        torch_group["params"] = list(group["params"])
        if param_names:
            torch_group["param_names"] = list(group["param_names"])
        groups.append(torch_group)
    state = {}
    for group in groups:
        # torch's _get_scalar_dtype: float32 for fused and capturable steps, else per the default dtype
        fused_or_capturable = bool(group.get("fused") or group.get("capturable"))
        step_dtype = torch.float64 if torch.get_default_dtype() == torch.float64 and not fused_or_capturable \
            else torch.float32
        for index in group["params"]:
            if index not in refwd_dict["state"]:
                continue
            state[index] = {key: torch.tensor(float(value), dtype=step_dtype) if key == "step"
                            else torch.from_numpy(np.array(value, copy=True))
                            for key, value in refwd_dict["state"][index].items()}
    return {"state": state, "param_groups": groups}


def optimizer_to_torch(refwd_optimizer, model):
    """A torch optimizer over ``model``'s parameters, equivalent to a refwd optimizer, state and all."""
    torch_class = torch_class_for(refwd_optimizer)
    torch_params = dict(model.named_parameters())
    groups = []
    for index, group in enumerate(refwd_optimizer.param_groups):
        missing = [name for name in group["params"] if name not in torch_params]
        if missing:
            raise KeyError(f"param group {index} names {missing}, which are not parameters of the model "
                           f"(it has {list(torch_params)})")
        groups.append({"params": [torch_params[name] for name in group["params"]]})
    torch_optimizer = torch_class(groups)
    torch_optimizer.load_state_dict(torch_state_dict(refwd_optimizer))
    return torch_optimizer


def _torch_group_template(torch_class):
    """The param group that torch's own ``torch_class`` makes with its defaults: its keys, in its order."""
    probe = torch_class([torch.zeros(1, requires_grad=True)])
    return {key: value for key, value in probe.state_dict()["param_groups"][0].items() if key != "params"}


def _implied_by_torch(torch_class, key, value):
    """True for a refwd group key that an older torch lacks but whose value its class implies.

    torch added ``decoupled_weight_decay`` to Adam in 2.6; before, Adam was coupled and AdamW decoupled.
    """
    return key == "decoupled_weight_decay" and value == (torch_class is torch.optim.AdamW)


def _layout_name(tensor):
    """"sparse (torch.sparse_coo)" for torch's sparse layouts, the layout's own name for the others."""
    return f"sparse ({tensor.layout})" if "sparse" in str(tensor.layout) else f"{tensor.layout}-layout"


def python_value(value):
    """torch's ``.item()`` for 1-element tensors (also inside tuples); anything else as it is."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"a hyperparameter tensor must have one element, got shape {tuple(value.shape)}")
        return value.item()
    if isinstance(value, tuple):
        return tuple(python_value(item) for item in value)
    return value
