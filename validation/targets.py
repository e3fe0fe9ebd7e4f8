"""Targets: any implementation that performs optimizer steps, run through the harness's scenarios as torch is.

A target is one of

- a **torch-style optimizer**: a ``torch.optim.Optimizer`` subclass from any library, or a factory with torch's
  constructor shape ``factory(params, **hyperparameters)``; torch's autograd gives its gradients, as for torch's
  own classes, so the gradient check runs too;
- a **plain function** ``(param, grad, state, **hyperparameters) -> (new_param, new_state)`` on NumPy arrays
  (a kernel written in anything else, wrapped by its author); refwd's autograd gives the gradients.

Named on the command line as ``module:attribute``. A target yields the harness's
:class:`refwd_validation.twin.TorchStep` stream from its own trajectory, its state mapped to refwd's keys
(:mod:`refwd_validation.statemap`), and the harness checks it lock-step against refwd's rule.
"""
import importlib
import inspect
from dataclasses import dataclass, field

import numpy as np

import refwd

from . import scenario, twin
from .dtypes import round_to
from .optimizers import OPTIMIZERS
from refwd.optim.profiles import PROFILES

from .statemap import StateMap

# optax's optimizers that have a refwd rule: refwd's hyperparameter names in optax's, where optax keeps each state
# tensor (refwd_validation.targets_optax.state_view), and the hyperparameters optax's optimizer does not have.
OPTAX_KNOWN = {
    "sgd": dict(hyper={"lr": "learning_rate", "momentum": "momentum", "nesterov": "nesterov"},
                state=["momentum_buffer=0.trace"], lacks=("dampening", "weight_decay", "maximize")),
    "adam": dict(hyper={"lr": "learning_rate", "betas": "b1,b2", "eps": "eps"},
                 state=["step=0.count", "exp_avg=0.mu", "exp_avg_sq=0.nu"],
                 lacks=("weight_decay", "amsgrad", "maximize", "decoupled_weight_decay")),
    "rmsprop": dict(hyper={"lr": "learning_rate", "alpha": "decay", "eps": "eps", "momentum": "momentum",
                           "centered": "centered"},
                    state=["step=", "square_avg=0.nu", "grad_avg=0.mu", "momentum_buffer=2.trace:negated"],
                    lacks=("weight_decay", "maximize")),
    "adamw": dict(hyper={"lr": "learning_rate", "betas": "b1,b2", "eps": "eps", "weight_decay": "weight_decay",
                         "decoupled_weight_decay": ""},                  # optax.adamw's decay is decoupled
                  state=["step=0.count", "exp_avg=0.mu", "exp_avg_sq=0.nu"], lacks=("amsgrad", "maximize")),
}

TORCH_STYLE, FUNCTION, OPTAX = "torch-style optimizer", "function", "optax transformation"


class TargetError(Exception):
    """A target that cannot be imported or built, or is used wrongly: the message names it. Exit code 2."""


class TargetStepError(RuntimeError):
    """The target misbehaved inside a step (raised, returned the wrong thing, changed its inputs): the message
    names the target, step and parameter. The case is an error; the run goes on."""


@dataclass
class Target:
    """What is checked (``implementation``), against which of refwd's rules (``reference``), and how its names
    and state map to refwd's."""

    name: str
    implementation: object
    reference: str                                  # a key of refwd_validation.optimizers.OPTIMIZERS
    kwargs: dict = field(default_factory=dict)      # extra keywords for every construction or call
    hyper: dict = field(default_factory=dict)       # refwd hyperparameter -> the target's name(s); "" drops it
    state_map: StateMap = field(default_factory=StateMap)
    params_only: bool = False                       # the target's state is not compared (nor given to refwd)
    lacks: tuple = ()                               # refwd hyperparameters the target does not have
    profile: str = "torch"                          # the conventions of refwd's rule (refwd.optim.profiles)

    @property
    def kind(self):
        if getattr(self.implementation, "__module__", "").split(".")[0] == "optax":
            return OPTAX
        return FUNCTION if _is_function(self.implementation) else TORCH_STYLE

    def runs(self, case):
        """Whether the target can run ``case``: every hyperparameter it lacks at its default (off or zero), and no
        gradient of None for a target that steps all its params at once (optax)."""
        used = {key for key, value in case.hyperparameters if value} | {
            key for _, overrides in case.groups for key, value in overrides if value}
        return not used.intersection(self.lacks) and not (self.kind == OPTAX and case.grad_none)

    @property
    def torch_builtin(self):
        """The torch.optim class this target is (re-exported under another name), or None."""
        torch = twin.import_torch()
        for spec in OPTIMIZERS.values():
            if spec.torch_class and self.implementation is spec.torch_optimizer_class(torch):
                return f"torch.optim.{spec.torch_class}"
        return None

    def hyperparameters(self, refwd_hyperparameters):
        """refwd's hyperparameters under the target's names (``betas`` may split into two), plus ``kwargs``."""
        out = {}
        implied = OPTIMIZERS[self.reference].implied   # AdamW's decoupled decay, SGDW's decay convention
        for key, value in refwd_hyperparameters.items():
            names = self.hyper.get(key, key)
            if names == "" or key in self.lacks or key in implied:   # a case that needs a lacked one: not run
                continue
            if "," in names:
                out.update(zip(names.split(","), value))
            else:
                out[names] = value
        return {**out, **self.kwargs}


def load(spec):
    """The object named by ``module:attribute`` (dotted attributes allowed)."""
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise TargetError(f"target {spec!r} is not module:attribute (e.g. torch.optim:AdamW, my_kernels:adamw_step)")
    try:
        value = importlib.import_module(module_name)
    except Exception as error:  # ImportError, or anything the module raises while importing
        raise TargetError(f"target {spec!r}: cannot import {module_name!r}: {type(error).__name__}: {error}") from None
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise TargetError(f"target {spec!r}: {module_name!r} has no attribute {attribute!r}")
        value = getattr(value, part)
    if not callable(value):
        raise TargetError(f"target {spec!r} is a {type(value).__name__}, not an optimizer class, factory or function")
    return value


def make_target(implementation, reference, *, name=None, kwargs=None, hyper=None, state_map=None, params_only=False,
                lacks=()):
    """A :class:`Target` from an object or a ``module:attribute`` string, checked against refwd's rule names.

    optax's own optimizers (``optax:adamw``) come with their hyperparameter names, state map and the
    hyperparameters they lack (:data:`refwd_validation.targets_optax.KNOWN`), unless given here.
    """
    reference, profile = parse_reference(reference)
    if isinstance(implementation, str):
        name = name or implementation
        implementation = load(implementation)
    name = name or getattr(implementation, "__qualname__", repr(implementation))
    known = OPTAX_KNOWN.get(getattr(implementation, "__name__", "")) if getattr(
        implementation, "__module__", "").split(".")[0] == "optax" else None
    if known:
        hyper, state_map = hyper or known["hyper"], state_map or known["state"]
        lacks = tuple(lacks) + known["lacks"]
    return Target(name=name, implementation=implementation, reference=reference, kwargs=dict(kwargs or {}),
                  hyper=dict(hyper or {}), state_map=state_map if isinstance(state_map, StateMap)
                  else StateMap.parse(state_map), params_only=params_only, lacks=tuple(lacks), profile=profile)


def parse_reference(reference):
    """``"rmsprop"`` or ``"rmsprop:optax"`` as (rule key, profile), both checked."""
    key, _, profile = reference.partition(":")
    if key not in OPTIMIZERS:
        raise TargetError(f"--as {key!r}: refwd's rules are {', '.join(OPTIMIZERS)}")
    profile = profile or "torch"
    if profile not in PROFILES or key not in PROFILES[profile]:
        known = [name for name, rules in PROFILES.items() if key in rules]
        raise TargetError(f"--as {key}:{profile}: the profiles that have {key} are {', '.join(known)}")
    return key, profile


def _is_function(implementation):
    """A plain rule takes (param, grad, state, ...); a torch-style factory takes (params, ...) or is a class."""
    if inspect.isclass(implementation):
        return False
    try:
        positional = [p for p in inspect.signature(implementation).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return False
    return len(positional) >= 3


def refwd_state_keys(case, hyperparameters):
    """The state keys refwd's rule keeps for a parameter with these hyperparameters (from one step of the rule)."""
    return set(OPTIMIZERS[case.optimizer].rule(np.ones(2), np.ones(2), {}, **hyperparameters)[1])


def given_hyperparameters(reference, group):
    """A refwd group's hyperparameters (``group`` a param group or the defaults), every one, refwd's defaults
    included."""
    return {key: group[key] for key in reference.defaults}


def torch_style_trajectory(target, case):
    torch = twin.import_torch()
    reference = scenario.refwd_optimizer(case, list(scenario.initial_params(case)))

    def make_optimizer(named):
        # every hyperparameter given explicitly, refwd's defaults included: a target's other default is not
        # the question, its math is (and a target that ignores a hyperparameter it is given shows)
        groups = [dict(target.hyperparameters(given_hyperparameters(reference, group)),
                       params=[named[name] for name in group["params"]]) for group in reference.param_groups]
        defaults = target.hyperparameters(given_hyperparameters(reference, reference.defaults))
        try:
            optimizer = target.implementation(groups, **defaults)
        except Exception as error:
            raise TargetStepError(f"target {target.name} cannot be built for case {case.id} with {defaults}: "
                                  f"{type(error).__name__}: {error}") from None
        if not isinstance(optimizer, torch.optim.Optimizer) and not hasattr(optimizer, "step"):
            raise TargetStepError(f"target {target.name} built a {type(optimizer).__name__}, not an optimizer")
        return optimizer

    steps_taken = dict.fromkeys(scenario.initial_params(case), 0)

    def read_state(optimizer, name, tensor, lrs, stepped):
        steps_taken[name] += stepped
        hyperparameters = scenario.group_hyperparameters(reference, lrs)[name]
        native = optimizer.state.get(tensor, {})
        if target.params_only:
            return {}
        return target.state_map.to_refwd(numpy_state(native, case.dtype), refwd_state_keys(case, hyperparameters),
                                         hyperparameters, steps_taken[name])

    lr_key = target.hyper.get("lr", "lr") or "lr"
    return twin.torch_trajectory(case, make_optimizer=make_optimizer, read_state=read_state, lr_key=lr_key,
                                 transformed=target.state_map.transformed)


def numpy_state(state, dtype):
    """A torch-style optimizer's state of one parameter as NumPy (0-d tensors as numbers; nested dicts too)."""
    torch = twin.import_torch()

    def convert(value):
        if isinstance(value, torch.Tensor):
            return value.item() if value.numel() == 1 and value.dim() == 0 else twin.to_numpy(value, dtype)
        if isinstance(value, dict):
            return {key: convert(item) for key, item in value.items()}
        return value

    return {key: convert(value) for key, value in state.items()}


def function_trajectory(target, case):
    """A plain function's run: refwd's autograd gives the gradients at the function's own params; the function
    keeps its own state per parameter."""
    if case.lowp:
        raise TargetError(f"case {case.id}: a function target runs in float64 or float32, not {case.dtype}")
    model = scenario.refwd_model(case)
    dtype = np.dtype(case.dtype)
    params = scenario.initial_params(case)
    reference = scenario.refwd_optimizer(case, list(params))
    base_lrs = [group["lr"] for group in reference.param_groups]
    native = {name: {} for name in params}
    state = {name: {} for name in params}   # in refwd's keys, mapped with the hyperparameters of the step that wrote it
    steps_taken = dict.fromkeys(params, 0)
    for step in range(1, case.steps + 1):
        lrs, hyperparameters, x, y, scale, loss, all_grads = step_inputs(case, model, reference, base_lrs, params, step)
        grads = {name: None if case.grad_is_none(name, step) else grad for name, grad in all_grads.items()}
        new_params, new_native, new_state = {}, {}, {}
        for name, param in params.items():
            if grads[name] is None:
                new_params[name], new_native[name], new_state[name] = param, native[name], state[name]
                continue
            new_params[name], new_native[name] = _call(target, case, step, name, param, grads[name], native[name],
                                                       hyperparameters[name], dtype)
            steps_taken[name] += 1
            new_state[name] = {} if target.params_only else target.state_map.to_refwd(
                new_native[name], refwd_state_keys(case, hyperparameters[name]), hyperparameters[name],
                steps_taken[name])
        yield twin.TorchStep(step=step, lrs=lrs, loss_scale=scale, x=x, y=y, params=params, all_grads=all_grads,
                             grads=grads, loss=float(loss), state=state, new_params=new_params, new_state=new_state,
                             gradients_checked=False, transformed=target.state_map.transformed)
        state = new_state
        params, native = new_params, new_native


def step_inputs(case, model, reference, base_lrs, params, step):
    """What a target that is not torch is given at ``step``: the groups' lrs and hyperparameters, the batch in the
    case's dtype, the loss scale, and refwd's loss and gradients (autograd) at the target's own ``params``."""
    lrs = [lr * case.lr_factor(step) for lr in base_lrs]
    x, y = (round_to(value, case.dtype) for value in scenario.batch(case, step))
    scale = scenario.loss_scale(case, step)
    loss, grads = refwd.value_and_grad(lambda p: refwd.mse(model(p, x), y) * scale)(params)
    return lrs, scenario.group_hyperparameters(reference, lrs), x, y, scale, loss, grads


def _call(target, case, step, name, param, grad, state, hyperparameters, dtype):
    """One call of a function target, with its contract checked: inputs untouched, a (param, state) pair back."""
    where = f"target {target.name}, case {case.id}, step {step}, parameter {name!r}"
    given = (param.copy(), grad.copy())
    try:
        result = target.implementation(param.copy(), grad, dict(state), **target.hyperparameters(hyperparameters))
    except Exception as error:
        raise TargetStepError(f"{where}: raised {type(error).__name__}: {error}") from None
    if not np.array_equal(grad, given[1], equal_nan=True):
        raise TargetStepError(f"{where}: the target changed the gradient it was given")
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict)):
        raise TargetStepError(f"{where}: returned {type(result).__name__}, not (new_param, new_state dict)")
    new_param = np.asarray(result[0])
    if new_param.shape != param.shape or new_param.dtype != dtype:
        raise TargetStepError(f"{where}: returned a {new_param.dtype} {new_param.shape} param for a {dtype} "
                              f"{param.shape} one")
    return new_param, result[1]
