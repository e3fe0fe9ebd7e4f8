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
    # torch's RMSprop and Adam step a complex param as (real, imag) pairs (torch.view_as_real); SGD runs
    # complex arithmetic. A subclass that sets this gets real views in its rule and complex arrays back.
    complex_as_real_pairs = False
    # Hyperparameters torch passes to a kernel as a checked Scalar (add's alpha, addcdiv's value): a value
    # outside the range of that kernel's type raises at step(). "param": the param's own dtype (add);
    # "compute": float32 for float32/float16/bfloat16 params (addcmul, addcdiv). Coupled decay only.
    overflow_checked = {}

    def __init__(self, params, defaults):
        for key, value in defaults.items():
            _python_scalar(value, key)
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
        for key, value in param_group.items():
            if key in self.defaults:
                _python_scalar(value, key)
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
            hyperparameters = {key: _python_scalar(group[key], key) for key in self.defaults}
            for name in group["params"]:
                if name not in params:
                    raise KeyError(f"parameter {name!r} of param group {index} is not in the params given to step()")
                grad = grads.get(name)
                if grad is None:
                    continue
                param = params[name]
                _check_param(name, param)
                _check_grad(name, param, grad)
                state = self.state.get(name, {})
                _check_state(name, param, state)
                self._check_overflow(name, param, hyperparameters)
                with np.errstate(all="ignore"):  # torch neither checks nor warns: NaN and Inf propagate
                    new_params[name], new_state = self._step_one(param, grad, state, hyperparameters)
                if param.ndim == 0:  # NumPy's arithmetic on 0-d arrays gives scalars: give back 0-d arrays
                    new_params[name] = np.asarray(new_params[name])
                    new_state = {key: np.asarray(value) if isinstance(value, np.generic) else value
                                 for key, value in new_state.items()}
                if new_state or name in self.state:  # as torch, SGD without momentum keeps no state at all
                    self.state[name] = new_state
        return new_params

    def _step_one(self, param, grad, state, hyperparameters):
        """The rule on one param; a complex one as real pairs where torch does that (the rule stays real)."""
        if not (self.complex_as_real_pairs and np.iscomplexobj(param)):
            return self.rule(param, grad, state, **hyperparameters)
        real_state = {key: _as_real_pairs(value) if isinstance(value, np.ndarray) else value
                      for key, value in state.items()}
        new_param, new_state = self.rule(_as_real_pairs(param), _as_real_pairs(grad), real_state, **hyperparameters)
        return _as_complex(new_param, param.dtype), {
            key: _as_complex(value, param.dtype) if isinstance(value, np.ndarray) else value
            for key, value in new_state.items()}

    def _check_overflow(self, name, param, hyperparameters):
        for key, kind in self.overflow_checked.items():
            value = hyperparameters[key]
            if key == "weight_decay" and (value == 0 or hyperparameters.get("decoupled_weight_decay")):
                continue  # not passed to a checked kernel argument (decoupled decay is a plain multiply)
            dtype = param.dtype if kind == "param" or param.dtype == np.float64 else np.dtype(np.float32)
            largest = float(np.finfo(dtype).max) if dtype.kind in "fc" else float(np.finfo(np.float32).max)  # bfloat16
            if np.isfinite(value) and abs(value) > largest:
                raise RuntimeError(f"{key}={value!r} cannot be converted to type {dtype} without overflow "
                                   f"(parameter {name!r} is {param.dtype}); torch raises here too")

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
        for index, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if "params" not in saved:
                raise KeyError(f"loaded state dict's param group {index} has no 'params' key (keys: {sorted(saved)})")
            # torch fills in only its flags when loading, and fails at step() with a KeyError for a missing
            # number (another optimizer's state dict: SGD's has no betas, Adam's no momentum); refwd fails here.
            missing = [key for key, value in self.defaults.items() if key not in saved
                       and isinstance(value, (int, float, tuple)) and not isinstance(value, bool)]
            if missing:
                raise KeyError(f"loaded state dict's param group {index} lacks {missing}, which "
                               f"{type(self).__name__} needs: is it another optimizer's state dict?")
            if len(group["params"]) != len(saved["params"]):
                raise ValueError("loaded state dict contains a parameter group that doesn't match the size "
                                 "of optimizer's group")
            name_of.update(zip(saved["params"], group["params"]))
        unmatched = [index for index in state_dict["state"] if index not in name_of]
        if unmatched:
            raise ValueError(f"loaded state dict has state for indices {unmatched} that are in no parameter group")
        self.state = {name_of[index]: _loaded_state(value, name_of[index])
                      for index, value in state_dict["state"].items()}
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


def _python_scalar(value, key):
    """NumPy scalars → Python numbers, so that a float32 array is never upcast by a float64 scalar (NEP 50).

    Anything else that is not a Python number (a Fraction, a 1-element array, a torch tensor) is refused with
    a TypeError naming the hyperparameter: NumPy would turn it into object arrays or broadcast the param.
    """
    if isinstance(value, (tuple, list)):
        return type(value)(_python_scalar(item, key) for item in value)
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "biuf":
        value = value.item()
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    kind = "a tensor (convert it with float(...))" if hasattr(value, "item") or hasattr(value, "__array__") else \
        f"a {type(value).__name__}"
    raise TypeError(f"hyperparameter {key!r} must be a Python or NumPy real scalar, got {kind}: {value!r}")


def _check_param(name, param):
    if not isinstance(param, np.ndarray):
        raise TypeError(f"parameter {name!r} must be a numpy array, got {type(param).__name__}")
    if param.dtype.kind not in "fc" and param.dtype.name != "bfloat16":
        # torch: "Only Tensors of floating point and complex dtype can require gradients"
        raise RuntimeError(f"parameter {name!r} has dtype {param.dtype}: only arrays of floating point and complex "
                           "dtype can be optimized")


def _as_real_pairs(array):
    """A complex array as a real one with a trailing axis of (real, imag), as torch.view_as_real."""
    return np.stack([array.real, array.imag], axis=-1)


def _as_complex(pairs, dtype):
    """Back from (real, imag) pairs, without complex arithmetic (which would mix an ∞ into NaN)."""
    return np.ascontiguousarray(pairs).view(dtype)[..., 0]


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


def _loaded_state(state, name):
    loaded = {}
    for key, value in state.items():
        if key == "step":
            step = np.asarray(value)
            if step.ndim != 0 or step.dtype.kind not in "iuf" or not np.isfinite(step) or step != int(step) or step < 0:
                raise ValueError(f"loaded state of parameter {name!r} has a step of {value!r}; it must be a "
                                 "non-negative whole number (int, float or a 0-d array)")
            loaded[key] = int(step)
        else:
            loaded[key] = np.array(value, copy=True)
    return loaded
