"""The thin, torch-shaped shell around the pure update rules: param groups, per-parameter state, state_dict.

It holds no math. ``step`` loops over the groups and delegates each parameter with a gradient to the
optimizer's pure rule ``(param, grad, state, **hyperparameters) -> (new_param, new_state)``.

Parameters are named: a torch ``Tensor`` corresponds to a refwd name such as ``"0.weight"``. Where torch
accepts params as an iterable of tensors or of group dicts, refwd accepts a mapping of names to arrays, a
list of names, or a list of group dicts whose ``"params"`` list names.
"""
import copy
from collections.abc import Mapping

import numpy as np

# Group keys that torch keeps for its implementations (not for the math). They may appear in a torch
# state_dict or in groups written for torch; refwd carries them along and ignores them.
TORCH_IMPLEMENTATION_KEYS = frozenset(
    {"foreach", "fused", "differentiable", "capturable", "initial_lr", "param_names"})


class Optimizer:
    """Base class: subclasses set ``rule`` (the pure per-tensor step) and validate in ``__init__``."""

    rule = None  # the pure per-tensor update, a function of (param, grad, state, **hyperparameters)

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.state = {}
        self.param_groups = []
        for group in _as_groups(params):
            self.add_param_group(group)

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {key}: {value}" for key, value in group.items() if key != "params"]
            lines.append(f"    params: {group['params']}")
        return "\n".join(lines + [")"])

    def add_param_group(self, param_group):
        """Add a group, filling missing hyperparameters from the defaults (torch's add_param_group)."""
        index = len(self.param_groups)
        if not isinstance(param_group, Mapping):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        if "params" not in param_group:
            raise KeyError(f"param group {index} has no 'params' key (keys: {sorted(param_group)})")
        unknown = set(param_group) - set(self.defaults) - {"params"} - TORCH_IMPLEMENTATION_KEYS
        if unknown:
            raise ValueError(f"param group {index} has unknown hyperparameters {sorted(unknown)}; "
                             f"{type(self).__name__} takes {list(self.defaults)}")
        names = _as_names(param_group["params"], f"param group {index}")
        if not names:
            raise ValueError(f"param group {index} has an empty 'params' list")
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"param group {index} names {repeated} more than once")
        taken = {name for group in self.param_groups for name in group["params"]}
        clash = [name for name in names if name in taken]
        if clash:
            raise ValueError(f"some parameters appear in more than one parameter group: {clash}")
        group = {key: value for key, value in param_group.items() if key != "params"}
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        group["params"] = names
        self.param_groups.append(group)

    def step(self, params, grads):
        """One optimizer step: return new params (a new dict, inputs untouched).

        A parameter whose grad is missing or None is skipped entirely, as in torch: no state is created,
        its step count does not move and no weight decay is applied.
        """
        if not isinstance(params, Mapping):
            raise TypeError(f"step() params must be a mapping of names to arrays, got {type(params).__name__}")
        if not isinstance(grads, Mapping):
            raise TypeError(f"step() grads must be a mapping of names to arrays, got {type(grads).__name__}")
        unknown = [name for name in grads if name not in params]
        if unknown:
            raise KeyError(f"grads has entries {unknown} that are not in params")
        new_params = dict(params)
        for index, group in enumerate(self.param_groups):
            hyperparameters = {key: _python_scalar(group[key]) for key in self.defaults}
            for name in group["params"]:
                if name not in params:
                    raise KeyError(f"parameter {name!r} of param group {index} is not in the params given to step()")
                grad = grads.get(name)
                if grad is None:
                    continue
                param = params[name]
                _check_grad(name, param, grad)
                state = self.state.get(name, {})
                _check_state(name, param, state)
                with np.errstate(all="ignore"):  # torch neither checks nor warns: NaN and Inf propagate
                    new_params[name], new_state = self.rule(param, grad, state, **hyperparameters)
                if new_state or name in self.state:  # as torch, SGD without momentum keeps no state at all
                    self.state[name] = new_state
        return new_params

    def state_dict(self):
        """torch's layout: ``{"state": {index: {...}}, "param_groups": [{..., "params": [indices]}]}``.

        Indices count the parameters in group order from 0; ``param_names`` gives the names. Unlike torch,
        the result is a deep copy: changing it does not change the optimizer.
        """
        index_of = {}
        groups = []
        for group in self.param_groups:
            for name in group["params"]:
                index_of.setdefault(name, len(index_of))
            packed = {key: copy.deepcopy(value) for key, value in group.items() if key != "params"}
            packed["params"] = [index_of[name] for name in group["params"]]
            packed["param_names"] = list(group["params"])
            groups.append(packed)
        state = {index_of[name]: copy.deepcopy(self.state[name]) for name in index_of if name in self.state}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Load a ``state_dict()`` of refwd, or of torch with its tensors converted to NumPy arrays.

        As in torch, the saved groups' hyperparameters replace the current ones, the saved indices map to
        the current parameters by position, and ``step`` may be a 0-d array or a number (kept as an int).
        """
        if not isinstance(state_dict, Mapping) or not {"state", "param_groups"} <= set(state_dict):
            raise ValueError("state_dict must be a mapping with keys 'state' and 'param_groups'")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        name_of = {}
        for group, saved in zip(self.param_groups, saved_groups):
            if len(group["params"]) != len(saved["params"]):
                raise ValueError("loaded state dict contains a parameter group that doesn't match the size "
                                 "of optimizer's group")
            name_of.update(zip(saved["params"], group["params"]))
        unmatched = [index for index in state_dict["state"] if index not in name_of]
        if unmatched:
            raise ValueError(f"loaded state dict has state for indices {unmatched} that are in no parameter group")
        self.state = {name_of[index]: _loaded_state(value) for index, value in state_dict["state"].items()}
        new_groups = []
        for group, saved in zip(self.param_groups, saved_groups):
            loaded = {key: copy.deepcopy(value) for key, value in saved.items()
                      if key not in ("params", "param_names")}
            for key, value in self.defaults.items():
                loaded.setdefault(key, value)
            loaded["params"] = list(group["params"])
            new_groups.append(loaded)
        self.param_groups = new_groups
        self._fix_loaded_groups()

    def _fix_loaded_groups(self):
        """Hook for subclasses that force a group key after loading (AdamW forces decoupled decay)."""


def _as_groups(params):
    """params → a list of group dicts, as torch's Optimizer.__init__ turns its argument into groups."""
    if isinstance(params, np.ndarray) or isinstance(params, str):
        raise TypeError("params argument given to the optimizer should be a mapping of names to arrays, a list of "
                        f"names or a list of group dicts, but got {type(params).__name__}")
    if isinstance(params, Mapping):
        params = list(params)
    elif isinstance(params, (set, frozenset)):
        raise TypeError("optimizer parameters need to be organized in ordered collections, but the ordering of "
                        "names in sets will change between runs. Please use a list instead.")
    else:
        params = list(params)
    if not params:
        raise ValueError("optimizer got an empty parameter list")
    if not isinstance(params[0], Mapping):
        return [{"params": params}]
    return params


def _as_names(params, where):
    if isinstance(params, str):
        return [params]
    if isinstance(params, (set, frozenset)):
        raise TypeError(f"{where}: optimizer parameters need to be organized in ordered collections, but the "
                        "ordering of names in sets will change between runs. Please use a list instead.")
    names = list(params)  # a mapping gives its names
    bad = [name for name in names if not isinstance(name, str)]
    if bad:
        raise TypeError(f"{where}: params must be parameter names (str), but got {type(bad[0]).__name__}")
    return names


def _python_scalar(value):
    """NumPy scalars → Python numbers, so that a float32 array is never upcast by a float64 scalar (NEP 50)."""
    if isinstance(value, (tuple, list)):
        return type(value)(_python_scalar(item) for item in value)
    if isinstance(value, np.generic) or (isinstance(value, np.ndarray) and value.ndim == 0):
        return value.item()
    return value


def _check_grad(name, param, grad):
    if not isinstance(grad, np.ndarray):
        raise TypeError(f"grad of {name!r} must be a numpy array, got {type(grad).__name__}")
    if grad.shape != np.shape(param):
        raise ValueError(f"grad of {name!r} has shape {grad.shape} but the parameter has shape {np.shape(param)}")
    if grad.dtype != np.asarray(param).dtype:
        raise ValueError(f"grad of {name!r} has dtype {grad.dtype} but the parameter has dtype "
                         f"{np.asarray(param).dtype}")


def _check_state(name, param, state):
    for key, value in state.items():
        if isinstance(value, np.ndarray) and (value.shape != param.shape or value.dtype != param.dtype):
            raise ValueError(f"state[{name!r}][{key!r}] has shape {value.shape} and dtype {value.dtype}, but the "
                             f"parameter has shape {param.shape} and dtype {param.dtype}")


def _loaded_state(state):
    loaded = {}
    for key, value in state.items():
        if key == "step":
            step = float(np.asarray(value))
            if step != int(step) or step < 0:
                raise ValueError(f"loaded state has a step of {value!r}; it must be a non-negative whole number")
            loaded[key] = int(step)
        else:
            loaded[key] = np.array(value, copy=True)
    return loaded
