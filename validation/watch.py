"""Watch live torch training: check every optimizer step lock-step against refwd.

Attached to a torch SGD, RMSprop, Adam or AdamW through torch's step hooks, the watcher

1. before each step, copies the params, their grads, the optimizer state and the group hyperparameters
   (as they are then: a scheduler's lr included) into the equivalent refwd optimizer (:mod:`refwd_validation.interop`);
2. lets torch step, and steps refwd from the same copies;
3. compares torch's params and every state tensor, per parameter, with refwd's, in ULPs.

Under ``torch.amp.GradScaler`` a fused Adam, AdamW or SGD gets the still-scaled grads and, as attributes
``grad_scale`` and ``found_inf``, the scale to divide them by and whether the scaler found an inf or NaN; the
watcher reads them as torch's step does, divides its copies of the grads by the scale, and expects a step
with ``found_inf`` nonzero to leave params and state exactly as they were. (Any other optimizer gets grads
that ``GradScaler.unscale_`` has already unscaled, and no step at all when an inf was found.)

Each step starts again from torch's own numbers, so a difference never accumulates: what is measured is
one step of torch against one step of the reference. A difference beyond the budget raises
:class:`WatchError` (``on_mismatch="raise"``, the default) or is logged (``"log"``), with the pinpoint:
step, parameter name, state key, element index, refwd value, torch value, ULPs.

In a test suite::

    from refwd_validation.watch import watch

    with watch(optimizer, model):          # raises WatchError at the first step that disagrees
        for x, y in batches:
            ...; optimizer.step()

The watcher copies every parameter, gradient and state tensor each step and runs the NumPy rule on the
CPU: it is meant for tests and short checks, not for production training (``benchmarks/bench_watch.py``
measures the overhead).
"""
import functools
import logging
import math
import sys

import numpy as np

from . import interop, tolerance
from .compare import Comparer
from .outcomes import Check
from .optimizers import OPTIMIZERS, spec_for_refwd
from .targets import make_target, numpy_state

logger = logging.getLogger(__name__)


class WatchError(AssertionError):
    """torch's step disagreed with refwd's beyond the budget; ``mismatches`` lists where."""

    def __init__(self, mismatches):
        self.mismatches = list(mismatches)
        lines = [f"torch's optimizer step disagrees with refwd at {len(self.mismatches)} tensor(s):"]
        lines += [f"  {mismatch.describe()}" for mismatch in self.mismatches]
        super().__init__("\n".join(lines))


class Watcher:
    """Checks each step of ``optimizer`` (torch SGD, RMSprop, Adam or AdamW) lock-step against refwd.

    ``model`` names the parameters (its ``named_parameters()``); without it the optimizer's groups must
    carry ``param_names``. ``on_mismatch`` is ``"raise"`` (:class:`WatchError` out of ``optimizer.step()``,
    after torch has stepped) or ``"log"`` (a warning on ``logger``; the watcher goes on). The comparison is
    the harness's lock-step check: ULPs of the error scale of one step (:func:`refwd_validation.tolerance.step_scales`)
    against :func:`refwd_validation.tolerance.budget`. Every mismatch is kept in ``mismatches``; ``worst`` keeps the
    largest difference seen per state key, within budget or not, and ``agreement`` the worst ULPs per
    parameter and key of the last step checked.
    """

    def __init__(self, optimizer, model=None, *, on_mismatch="raise", logger=logger, reference=None, hyper=None,
                 state_map=None):
        if on_mismatch not in ("raise", "log"):
            raise ValueError(f"on_mismatch must be 'raise' or 'log', got {on_mismatch!r}")
        # any torch-style optimizer: checked against refwd's rule ``reference``, names and state mapped
        self.target = None if reference is None else make_target(
            type(optimizer), reference, hyper=hyper, state_map=state_map)
        if self.target is None:
            interop.refwd_class_for(optimizer)      # an unsupported optimizer fails here, not at its first step
        names = interop.parameter_names(optimizer, model)   # and so does a parameter the model does not have
        for group, group_names in zip(optimizer.param_groups, names):
            for param, name in zip(group["params"], group_names):
                interop.check_dtype(param, f"parameter {name!r}")   # and a bfloat16 one
        self.optimizer = optimizer
        self.model = model
        self.on_mismatch = on_mismatch
        self.logger = logger
        self.steps = 0
        self.mismatches = []
        self.worst = {}
        self.agreement = {}   # the last step checked: {parameter name: {key: worst ULPs}} (0.0: bit-identical)
        self._handles = []
        self._steps_taken = {}    # a target's parameters' step counts, for a target that keeps none (``step=``)
        self._outer_frame = None  # torch's step wrapper of the step being checked; None between steps
        self._before = None

    def attach(self):
        if not self._handles:
            self._handles = [self.optimizer.register_step_pre_hook(self._before_step),
                             self.optimizer.register_step_post_hook(self._after_step)]
        return self

    def detach(self):
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._outer_frame = None

    def __enter__(self):
        return self.attach()

    def __exit__(self, *exc_info):
        self.detach()
        return False

    def summary(self):
        """One line: steps checked, mismatches, and the worst ULPs seen per key."""
        worst = ", ".join(f"{key} {ulps:.3g}" for key, ulps in sorted(self.worst.items()))
        return f"{self.steps} steps checked against refwd, {len(self.mismatches)} mismatches; worst ulps: {worst}"

    def _before_step(self, optimizer, args, kwargs):
        if self._inside_checked_step():
            return None  # a subclass's step calling super().step(): the outer step is the one checked
        self._outer_frame = sys._getframe(1)
        names = interop.parameter_names(optimizer, self.model)
        tensors = {name: param for group, group_names in zip(optimizer.param_groups, names)
                   for name, param in zip(group_names, group["params"])}
        self._before = {"tensors": tensors,
                        "params": interop.params_from_torch(tensors),
                        "optimizer": interop.optimizer_from_torch(optimizer, self.model) if self.target is None
                        else self._reference_of_target(optimizer, names),
                        "grads": self._grads(tensors),
                        # read as torch's step reads them: GradScaler sets them on a fused optimizer
                        "grad_scale": _scalar(getattr(optimizer, "grad_scale", None)),
                        "found_inf": _scalar(getattr(optimizer, "found_inf", None))}
        closure = kwargs.get("closure", args[1] if len(args) > 1 else None)
        if closure is None:
            return None

        def closure_then_copy_grads():  # torch calls the closure inside step(), after this hook
            loss = closure()
            self._before["grads"] = self._grads(tensors)
            return loss

        if "closure" in kwargs:
            return args, {**kwargs, "closure": closure_then_copy_grads}
        return (args[0], closure_then_copy_grads, *args[2:]), kwargs

    def _after_step(self, optimizer, args, kwargs):
        if self._outer_frame is not sys._getframe(1):
            return  # the end of a nested super().step(), not of the step being checked
        self._outer_frame = None
        before, self._before = self._before, None
        self.steps += 1
        reference = before["optimizer"]
        state_before = dict(reference.state)  # step() replaces each entry, it does not change it
        if before["found_inf"]:
            expected_params = self._skipped_step(reference, before)
        else:
            if before["grad_scale"] is not None:
                before["grads"] = _unscaled(before["grads"], before["grad_scale"])
            expected_params = reference.step(before["params"], before["grads"])
        if not before["found_inf"]:
            for name, grad in before["grads"].items():
                self._steps_taken[name] = self._steps_taken.get(name, 0) + (grad is not None)
        torch_state = interop.numpy_state_dict(optimizer.state_dict())["state"] if self.target is None else {
            index: self._target_state(optimizer, tensor, reference, name)
            for index, (name, tensor) in enumerate(before["tensors"].items())}
        mismatches = []
        self.agreement = {}
        for index, (name, tensor) in enumerate(before["tensors"].items()):
            torch_values = {"param": interop.to_numpy(tensor), **torch_state.get(index, {})}
            refwd_values = {"param": expected_params[name], **reference.state.get(name, {})}
            scales = functools.cache(functools.partial(self._scales, reference, name, before,
                                                       state_before.get(name, {}), refwd_values))
            comparer = Comparer(before["params"][name].dtype.name)
            self.agreement[name] = {}
            for key in sorted(set(torch_values) | set(refwd_values)):
                self.agreement[name][key] = self._compare(comparer, name, key, refwd_values.get(key),
                                                          torch_values.get(key), scales)
                if key != "step" and key in torch_values and key in refwd_values:
                    self.worst[key] = max(self.worst.get(key, 0.0), self.agreement[name][key])
            mismatches += comparer.mismatches
        if mismatches:
            self.mismatches += mismatches
            if self.on_mismatch == "raise":
                raise WatchError(mismatches)
            for mismatch in mismatches:
                self.logger.warning("refwd watch: %s", mismatch.describe())

    def _reference_of_target(self, optimizer, names):
        """refwd's optimizer equivalent to a target's: its groups' hyperparameters and its state, mapped."""
        target = self.target
        refwd_class = OPTIMIZERS[target.reference].refwd_class
        groups = []
        for group, group_names in zip(optimizer.param_groups, names):
            refwd_group = {"params": list(group_names)}
            for key in refwd_class([{"params": ["p"]}]).defaults:
                names_there = target.hyper.get(key, key)
                if names_there and all(name in group for name in names_there.split(",")):
                    values = [interop.python_value(group[name]) for name in names_there.split(",")]
                    refwd_group[key] = tuple(values) if len(values) > 1 else values[0]
            groups.append(refwd_group)
        reference = refwd_class(groups)
        for group, group_names in zip(optimizer.param_groups, names):
            for tensor, name in zip(group["params"], group_names):
                state = self._target_state(optimizer, tensor, reference, name)
                if state:
                    reference.state[name] = state
        return reference

    def _target_state(self, optimizer, tensor, reference, name):
        """A target's state of one parameter in refwd's keys (the state map applied)."""
        group = next(group for group in reference.param_groups if name in group["params"])
        hyperparameters = {key: group[key] for key in reference.defaults}
        native = numpy_state(optimizer.state.get(tensor, {}), str(tensor.dtype).rsplit(".", 1)[-1])
        keys = set(OPTIMIZERS[self.target.reference].rule(np.ones(2), np.ones(2), {}, **hyperparameters)[1])
        return self.target.state_map.to_refwd(native, keys, hyperparameters, self._steps_taken.get(name, 0))

    def _skipped_step(self, reference, before):
        """What a step that GradScaler's ``found_inf`` skips must leave: the params and state as they were.

        Only where a parameter had no state may torch's Adam and AdamW have made it before their kernel
        skipped: step 0 and zero moments, which is the state refwd's rule starts from when there is none.
        """
        if spec_for_refwd(reference).key in ("adam", "adamw"):
            for group in reference.param_groups:
                for name in group["params"]:
                    if before["grads"][name] is not None and name not in reference.state:
                        zeros = np.zeros_like(before["params"][name])
                        moments = ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if group["amsgrad"] else ())
                        reference.state[name] = {"step": 0, **{key: zeros.copy() for key in moments}}
        return dict(before["params"])

    def _scales(self, reference, name, before, state, expected):
        """The error scale of each output of this parameter's step (zeros where torch skips it: no change)."""
        grad = before["grads"][name]
        param = before["params"][name]
        if grad is None or before["found_inf"]:
            return {key: np.zeros(np.shape(value)) for key, value in expected.items()}
        group = next(group for group in reference.param_groups if name in group["params"])
        hyperparameters = {key: group[key] for key in reference.defaults}
        return tolerance.step_scales(spec_for_refwd(reference).error_scale_rule, param, grad, state,
                                     hyperparameters, param.dtype.name)

    def _compare(self, comparer, name, key, refwd_value, torch_value, scales):
        """The worst ULPs of one tensor (a mismatch goes to ``comparer``); ``scales()`` gives the step's error
        scales, on demand."""
        step = self.steps
        if refwd_value is None or torch_value is None:
            side = "refwd" if torch_value is None else "torch"
            comparer.mismatch(Check.LOCKSTEP, step, name, key, budget=0.0,
                              message=f"state key {key!r} only in {side}'s state")
            return math.inf
        if key == "step":
            comparer.compare_count(Check.LOCKSTEP, step, name, int(refwd_value), int(torch_value))
            return 0.0 if int(refwd_value) == int(torch_value) else math.inf
        if refwd_value.shape != torch_value.shape or refwd_value.dtype != torch_value.dtype:
            comparer.mismatch(Check.LOCKSTEP, step, name, key, budget=0.0,
                              message=f"refwd has {refwd_value.dtype} {refwd_value.shape}, torch "
                                      f"{torch_value.dtype} {torch_value.shape}")
            return math.inf
        if np.array_equal(refwd_value, torch_value, equal_nan=True):
            return 0.0
        worst = comparer.measure(Check.LOCKSTEP, step, name, key, refwd_value, torch_value, scales()[key])
        if worst.ulps > worst.budget:
            comparer.record(worst)
        return worst.ulps

    def _grads(self, tensors):
        return {name: interop.grad_to_numpy(name, tensor) for name, tensor in tensors.items()}

    def _inside_checked_step(self):
        """True when a step being checked is still running further up the stack (a nested super().step())."""
        frame = sys._getframe(2)
        while frame is not None:
            if frame is self._outer_frame:
                return True
            frame = frame.f_back
        return False


def _scalar(tensor):
    """A 1-element tensor (GradScaler's scale or inf flag) as a Python float; None stays None."""
    return None if tensor is None else float(tensor.item())


def _unscaled(grads, grad_scale):
    """The grads as torch's fused kernels unscale them: divided by the scale, in the grad's dtype (measured
    bit-exact against torch 2.13's fused Adam, AdamW and SGD on the CPU, float32 and float64; not
    ``grad * (1 / scale)``, which ``GradScaler.unscale_`` does for the other optimizers)."""
    return {name: None if grad is None else grad / grad.dtype.type(grad_scale) for name, grad in grads.items()}


def watch(optimizer, model=None, **options):
    """Attach a :class:`Watcher` to a torch optimizer and return it (also a context manager that detaches)."""
    return Watcher(optimizer, model, **options).attach()
