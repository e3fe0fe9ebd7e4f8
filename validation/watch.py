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

Cost. Before a checked step the watcher copies what torch's step will overwrite (params, grads and state: one
extra copy at most); after it, it reads torch's results in place, runs refwd's rule, and computes the error scales
only at the elements where the two sides are not bit-identical (the rules are elementwise, so a subset's scale is
the whole's at those elements). ``sample=f`` checks a fraction f of each tensor's elements, drawn anew at every
checked step from ``numpy.random.default_rng(seed)``: the params and every state tensor at those positions, from
the same inputs, which is an exact check of those elements. An error that affects a fraction p of a tensor's n
elements escapes k checked steps with probability (1 − p)^(k·⌈f·n⌉) ≤ exp(−p·f·n·k) (positions are drawn with
replacement). ``every=N`` checks one step in N. ``benchmarks/bench_watch.py`` measures the overhead
(docs/interop.md).
"""
import logging
import math
import sys

import numpy as np

from . import interop, tolerance, watch_distributed
from .compare import Comparer
from .outcomes import Check
from .optimizers import OPTIMIZERS, spec_for_refwd
from .targets import make_target, numpy_state

logger = logging.getLogger(__name__)


class WatchError(AssertionError):
    """torch's step disagreed with refwd's beyond the budget; ``mismatches`` lists where (on this rank). Under
    torch.distributed, ``lines`` are every rank's findings, each naming its rank."""

    def __init__(self, mismatches, lines=None):
        self.mismatches = list(mismatches)
        lines = lines if lines is not None else [mismatch.describe() for mismatch in self.mismatches]
        super().__init__("\n".join([f"torch's optimizer step disagrees with refwd at {len(lines)} tensor(s):"]
                                   + [f"  {line}" for line in lines]))


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
                 state_map=None, sample=1.0, every=1, seed=0, timeout=60.0):
        if on_mismatch not in ("raise", "log"):
            raise ValueError(f"on_mismatch must be 'raise' or 'log', got {on_mismatch!r}")
        if isinstance(sample, bool) or not isinstance(sample, (int, float)) or not 0 < sample <= 1:
            raise ValueError(f"sample must be a fraction of each tensor's elements in (0, 1], got {sample!r}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a whole number of steps >= 1, got {every!r}")
        optimizer = watch_distributed.local_optimizer(optimizer)   # ZeRO: the local optimizer of this rank's shard
        # any torch-style optimizer: checked against refwd's rule ``reference``, names and state mapped
        self.target = None if reference is None else make_target(
            type(optimizer), reference, hyper=hyper, state_map=state_map)
        if self.target is None:
            interop.refwd_class_for(optimizer)      # an unsupported optimizer fails here, not at its first step
        names = interop.parameter_names(optimizer, model)   # and so does a parameter the model does not have
        devices = {}
        for group, group_names in zip(optimizer.param_groups, names):
            for param, name in zip(group["params"], group_names):
                interop.check_dtype(param, f"parameter {name!r}")   # and a bfloat16 one
                devices.setdefault(str(param.device), name)
        if len(devices) > 1:
            raise ValueError(f"the optimizer's params live on {len(devices)} devices ("
                             + ", ".join(f"{device}: {name!r}" for device, name in devices.items())
                             + "); a watcher checks one device's params: watch one optimizer per device")
        self.optimizer = optimizer
        self.sample, self.every = float(sample), every
        self._rng = np.random.default_rng(seed)
        self.rank = watch_distributed.current_rank()   # None outside torch.distributed
        self._agreement = None if self.rank is None else watch_distributed.Agreement(timeout)
        self.calls = 0            # optimizer steps seen (checked or not): the step number in the pinpoints
        self.model = model
        self.on_mismatch = on_mismatch
        self.logger = logger
        self.steps = 0
        self.mismatches = []
        self.worst = {}
        self._copies = {}   # {(parameter, "param" | "grad" | state key): the array copied at the last checked step}
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

    @property
    def copy_bytes(self):
        """Bytes of the copies this watcher holds between full checks (one of each param, grad and state tensor),
        copied into again at the next one."""
        return sum(array.nbytes for array in self._copies.values())

    def summary(self):
        """One line: steps checked, mismatches, and the worst ULPs seen per key."""
        worst = ", ".join(f"{key} {ulps:.3g}" for key, ulps in sorted(self.worst.items()))
        return f"{self.steps} steps checked against refwd, {len(self.mismatches)} mismatches; worst ulps: {worst}"

    def _before_step(self, optimizer, args, kwargs):
        if self._inside_checked_step():
            return None  # a subclass's step calling super().step(): the outer step is the one checked
        self._outer_frame = sys._getframe(1)
        self.calls += 1
        names = interop.parameter_names(optimizer, self.model)
        tensors = {name: param for group, group_names in zip(optimizer.param_groups, names)
                   for name, param in zip(group_names, group["params"])}
        found_inf = _scalar(getattr(optimizer, "found_inf", None))
        if (self.calls - 1) % self.every:   # not checked: only what a target's step counts need
            self._before = {"checked": False, "found_inf": found_inf,
                            "had_grad": {name: tensor.grad is not None for name, tensor in tensors.items()}}
            return None
        positions = {name: self._positions(tensor) for name, tensor in tensors.items()}
        copies = self._copies   # the last checked step's arrays, copied into again where they fit
        self._before = {"checked": True, "tensors": tensors, "positions": positions,
                        "params": {name: interop.take(tensor, positions[name], f"parameter {name!r}",
                                                      out=copies.get((name, "param")))
                                   for name, tensor in tensors.items()},
                        "optimizer": self._reference(optimizer, names, tensors, positions, copies)
                        if self.target is None else self._reference_of_target(optimizer, names, positions),
                        "grads": {name: interop.grad_to_numpy(name, tensor, positions[name], copies.get((name, "grad")))
                                  for name, tensor in tensors.items()},
                        # read as torch's step reads them: GradScaler sets them on a fused optimizer
                        "grad_scale": _scalar(getattr(optimizer, "grad_scale", None)),
                        "found_inf": found_inf}
        closure = kwargs.get("closure", args[1] if len(args) > 1 else None)
        if closure is None:
            return None

        def closure_then_copy_grads():  # torch calls the closure inside step(), after this hook
            loss = closure()
            if self._before["checked"]:
                self._before["grads"] = {name: interop.grad_to_numpy(name, tensor, positions[name],
                                                                     copies.get((name, "grad")))
                                         for name, tensor in tensors.items()}
            else:
                self._before["had_grad"] = {name: tensor.grad is not None for name, tensor in tensors.items()}
            return loss

        if "closure" in kwargs:
            return args, {**kwargs, "closure": closure_then_copy_grads}
        return (args[0], closure_then_copy_grads, *args[2:]), kwargs

    def _after_step(self, optimizer, args, kwargs):
        if self._outer_frame is not sys._getframe(1):
            return  # the end of a nested super().step(), not of the step being checked
        self._outer_frame = None
        before, self._before = self._before, None
        if not before["checked"]:
            if not before["found_inf"]:
                for name, had_grad in before["had_grad"].items():
                    self._steps_taken[name] = self._steps_taken.get(name, 0) + had_grad
            return
        self.steps += 1
        reference = before["optimizer"]
        state_before = dict(reference.state)  # step() replaces each entry, it does not change it
        if before["found_inf"]:
            self._skipped_step(reference, before)
        else:
            for name, grad in before["grads"].items():
                self._steps_taken[name] = self._steps_taken.get(name, 0) + (grad is not None)
        mismatches = []
        self.agreement = {}
        for name, tensor in before["tensors"].items():   # one parameter at a time: its results are dropped after
            positions = before["positions"][name]
            if before["grad_scale"] is not None and before["grads"][name] is not None and not before["found_inf"]:
                before["grads"][name] = _unscaled(before["grads"][name], before["grad_scale"])
            torch_state = interop.numpy_param_state(optimizer.state.get(tensor, {}), positions, copy=False,
                                                    what=f"state of {name!r}") \
                if self.target is None else self._target_state(optimizer, tensor, reference, name, positions)
            torch_values = {"param": interop.take(tensor, positions, f"parameter {name!r}", copy=False),
                            **torch_state}
            comparer = Comparer(before["params"][name].dtype.name)
            self.agreement[name] = self._check_parameter(comparer, reference, name, before,
                                                         state_before.get(name, {}), torch_values)
            refwd_keys = {"param", *reference.state.pop(name, {})}   # refwd's new state: compared, not needed
            for key, ulps in self.agreement[name].items():
                if key != "step" and key in torch_values and key in refwd_keys:
                    self.worst[key] = max(self.worst.get(key, 0.0), ulps)
            mismatches += comparer.mismatches
        self.mismatches += mismatches
        if self.sample >= 1:   # the copies, to be copied into at the next checked step: one copy held, not remade
            self._copies = {(name, key): value for name in before["tensors"]
                            for key, value in [("param", before["params"][name]), ("grad", before["grads"][name]),
                                               *state_before.get(name, {}).items()]
                            if isinstance(value, np.ndarray)}
        lines = None
        if self._agreement is not None:   # every rank learns every rank's findings, and stops with them
            lines = watch_distributed.disagreements(self._agreement.gather(self.calls, mismatches))
        elif mismatches:
            lines = [mismatch.describe() for mismatch in mismatches]
        if lines:
            if self.on_mismatch == "raise":
                raise WatchError(mismatches, lines)
            for line in lines:
                self.logger.warning("refwd watch: %s", line)

    def _positions(self, tensor):
        """The flat positions of ``tensor`` checked at this step (None: all of them): ⌈f·n⌉ draws with replacement
        from this watcher's generator (a position drawn twice is checked twice; removing repeats would cost more
        than the check of a 1 % sample)."""
        size = interop.local(tensor).numel()
        if self.sample >= 1 or size == 0:
            return None
        return self._rng.integers(0, size, size=max(1, math.ceil(self.sample * size)))

    @staticmethod
    def _reference(optimizer, names, tensors, positions, copies):
        """refwd's optimizer equivalent to torch's: its groups' hyperparameters as they are now (a scheduler's lr
        included) and a copy of its state at the checked positions."""
        groups = interop.numpy_state_dict({"state": {}, "param_groups": optimizer.state_dict()["param_groups"]})
        reference = interop.refwd_optimizer_like(optimizer, names, groups)
        reference.state = {name: interop.numpy_param_state(optimizer.state[tensor], positions[name],
                                                           what=f"state of {name!r}",
                                                           out={key: copies.get((name, key))
                                                                for key in optimizer.state[tensor]})
                           for name, tensor in tensors.items() if optimizer.state.get(tensor)}
        return reference

    def _reference_of_target(self, optimizer, names, positions):
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
                state = self._target_state(optimizer, tensor, reference, name, positions[name])
                if state:
                    reference.state[name] = state
        return reference

    def _target_state(self, optimizer, tensor, reference, name, positions):
        """A target's state of one parameter in refwd's keys (the state map applied), at ``positions``."""
        group = next(group for group in reference.param_groups if name in group["params"])
        hyperparameters = {key: group[key] for key in reference.defaults}
        native = numpy_state(optimizer.state.get(tensor, {}), str(tensor.dtype).rsplit(".", 1)[-1])
        keys = set(OPTIMIZERS[self.target.reference].rule(np.ones(2), np.ones(2), {}, **hyperparameters)[1])
        state = self.target.state_map.to_refwd(native, keys, hyperparameters, self._steps_taken.get(name, 0))
        if positions is None:
            return state
        return {key: value.reshape(-1)[positions] if isinstance(value, np.ndarray)
                and value.size == interop.local(tensor).numel()
                else value for key, value in state.items()}

    def _skipped_step(self, reference, before):
        """What a step that GradScaler's ``found_inf`` skips must leave: the params and state as they were.

        Only where a parameter had no state may torch's Adam and AdamW have made it before their kernel
        skipped: step 0 and zero moments, which is the state refwd's rule starts from when there is none.
        (refwd's optimizer gets that state; the params are compared with their copies from before the step.)
        """
        if spec_for_refwd(reference).key in ("adam", "adamw"):
            for group in reference.param_groups:
                for name in group["params"]:
                    if before["grads"][name] is not None and name not in reference.state:
                        zeros = np.zeros_like(before["params"][name])
                        moments = ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if group["amsgrad"] else ())
                        reference.state[name] = {"step": 0, **{key: zeros.copy() for key in moments}}

    def _check_parameter(self, comparer, reference, name, before, state_before, torch_values):
        """{key: worst ULPs} of one parameter's step, refwd's taken on the copies from before it against torch's
        ``torch_values`` (mismatches go to ``comparer``: per key, the worst element). The rule is elementwise, so
        it is taken and compared in pieces of the flattened tensors, exactly as on the whole: a piece's
        temporaries stay in the cache and are reused, where the whole's would be allocated and faulted in anew
        at every step (at 10 M params that was half the watcher's time)."""
        param, grad = before["params"][name].reshape(-1), before["grads"][name]
        unchanged = before["found_inf"] or grad is None   # nothing may change: refwd's values are the copies
        if unchanged:
            state_before = reference.state.get(name, {})   # with the zero moments torch may create (_skipped_step)

        def piece_of(value, piece):
            elementwise = isinstance(value, np.ndarray) and value.size == param.size
            return value.reshape(-1)[piece] if elementwise else value

        agreement, worst = {}, {}
        for start in range(0, max(param.size, 1), _PIECE):
            piece = slice(start, start + _PIECE)
            state = {key: piece_of(value, piece) for key, value in state_before.items()}
            if unchanged:
                refwd_values = {"param": param[piece], **state}
            else:
                reference.state[name] = state
                refwd_values = {"param": reference.step({**before["params"], name: param[piece]},
                                                        {name: grad.reshape(-1)[piece]})[name],
                                **reference.state[name]}
            inputs = None if unchanged else (param[piece], grad.reshape(-1)[piece], state)
            self._compare_piece(comparer, reference, name, before, inputs, refwd_values,
                                {key: piece_of(value, piece) for key, value in torch_values.items()},
                                start, agreement, worst)
        for mismatch in worst.values():
            if mismatch.ulps > mismatch.budget:
                comparer.record(mismatch)
        return agreement

    def _compare_piece(self, comparer, reference, name, before, inputs, refwd_values, torch_values, start,
                       agreement, worst):
        """Compare one piece (from flat element ``start``), into ``agreement`` {key: worst ULPs} and ``worst``
        {key: worst element}. Bit-identical elements cost one comparison, elements within one ulp of their own
        size a few more (:func:`_within_an_ulp`); the error scales are computed where some key differs by more,
        and only there. A difference of keys, shapes or dtypes is the same in every piece: recorded once."""
        step, differing, first_piece = self.calls, [], start == 0
        for key in sorted(set(torch_values) | set(refwd_values)):
            refwd_value, torch_value = refwd_values.get(key), torch_values.get(key)
            if refwd_value is None or torch_value is None:
                if first_piece:
                    side = "refwd" if torch_value is None else "torch"
                    comparer.mismatch(Check.LOCKSTEP, step, name, key, budget=0.0,
                                      message=f"state key {key!r} only in {side}'s state")
                agreement[key] = math.inf
            elif key == "step":
                if first_piece:
                    comparer.compare_count(Check.LOCKSTEP, step, name, int(refwd_value), int(torch_value))
                agreement[key] = 0.0 if int(refwd_value) == int(torch_value) else math.inf
            elif refwd_value.shape != torch_value.shape or refwd_value.dtype != torch_value.dtype:
                if first_piece:
                    comparer.mismatch(Check.LOCKSTEP, step, name, key, budget=0.0,
                                      message=f"refwd has {refwd_value.dtype}, torch {torch_value.dtype} "
                                              f"{tuple(torch_value.shape)}" if refwd_value.dtype != torch_value.dtype
                                      else f"torch's {key!r} has shape {tuple(torch_value.shape)}, not the "
                                           f"parameter's")
                agreement[key] = math.inf
            else:
                refwd_flat, torch_flat = refwd_value.reshape(-1), torch_value.reshape(-1)
                differ = refwd_flat != torch_flat   # and both NaN: dropped among these few by _within_an_ulp
                agreement.setdefault(key, 0.0)
                if differ.any():
                    bound, far = _within_an_ulp(refwd_flat, torch_flat, differ, bitwise=inputs is None)
                    agreement[key] = max(agreement[key], bound)
                    if far.any():
                        differing.append((key, refwd_flat, torch_flat, far))
        if not differing:
            return
        where = np.flatnonzero(np.logical_or.reduce([mask for *_, mask in differing]))
        scales = {} if inputs is None else self._scales(reference, name, *inputs, where)
        for key, refwd_flat, torch_flat, _ in differing:
            found = comparer.measure(Check.LOCKSTEP, step, name, key, refwd_flat[where], torch_flat[where],
                                     scales.get(key, np.zeros(where.size)))
            found.index = self._index(start + where[found.index[0]], before["positions"][name],
                                      tuple(interop.local(before["tensors"][name]).shape))
            agreement[key] = max(agreement[key], found.ulps)
            if key not in worst or found.ulps > worst[key].ulps:
                worst[key] = found

    @staticmethod
    def _scales(reference, name, param, grad, state, where):
        """The error scale of each output of this parameter's step at the elements ``where`` of a piece (``param``,
        ``grad``, ``state``): the rule is elementwise, so its scale on those elements alone is the whole's there."""
        group = next(group for group in reference.param_groups if name in group["params"])
        hyperparameters = {key: group[key] for key in reference.defaults}
        state = {key: value[where] if isinstance(value, np.ndarray) else value for key, value in state.items()}
        return tolerance.step_scales(spec_for_refwd(reference).error_scale_rule, param[where], grad[where], state,
                                     hyperparameters, param.dtype.name)

    @staticmethod
    def _index(checked, positions, shape):
        """The element index in the parameter of the ``checked``-th element compared."""
        flat = int(checked if positions is None else positions[checked])
        return tuple(int(i) for i in np.unravel_index(flat, shape)) if shape else None

    def _inside_checked_step(self):
        """True when a step being checked is still running further up the stack (a nested super().step())."""
        frame = sys._getframe(2)
        while frame is not None:
            if frame is self._outer_frame:
                return True
            frame = frame.f_back
        return False


_PIECE = 1 << 18   # elements per piece of a check: a float64 temporary of 2 MB, which malloc reuses


def _within_an_ulp(refwd, torch, differ, bitwise=False):
    """(a bound on the worst ULPs of the error scale, the elements that need their scale) among the ``differ`` ones.

    The error scale of any result is at least its size (S_q ≥ |q|: the last rounding adds it), so an element whose
    two sides differ by at most ε·min(|refwd|, |torch|) is within 1 ULP of its error scale, inside the budget of 2,
    whatever the scale: |Δ| / (ε·min(|refwd|, |torch|)) bounds its ULPs from above. Only the others, and non-finite
    ones, need the error model; NaN on both sides agrees. With ``bitwise`` (a step that must change nothing) every
    other difference needs it.

    In the arrays' own dtype, which is exact where it matters: two values within a factor of 2 of each other
    subtract exactly (Sterbenz), and dividing by ε, a power of two, is exact; the one rounding, of |Δ| / min, can
    move the bound by an ulp of itself, which is nothing next to the budget. Values further apart have |Δ| ≥ min,
    a bound of at least 1/ε: never near.
    """
    positions = np.flatnonzero(differ)
    if bitwise:
        near, bound = np.zeros(positions.size, dtype=bool), np.zeros(positions.size)
    else:   # in place: these are a quarter of a 10 M-element step's elements, and allocations cost more than the math
        first, second = refwd[positions], torch[positions]
        bound = np.subtract(first, second)
        with np.errstate(all="ignore"):
            np.abs(bound, out=bound)                                                 # |Δ|
            np.minimum(np.abs(first, out=first), np.abs(second, out=second), out=first)
            bound /= first
            bound /= refwd.dtype.type(tolerance.EPS[refwd.dtype.name])              # |Δ| / (ε·min(|a|, |b|))
        near = bound <= 1   # False for NaN and inf
    others = positions[~near]
    far = np.zeros(differ.shape, dtype=bool)
    far[others[~(np.isnan(refwd[others]) & np.isnan(torch[others]))]] = True   # NaN against NaN agrees
    return float(np.max(bound, where=near, initial=0.0)), far


def _scalar(tensor):
    """A 1-element tensor (GradScaler's scale or inf flag) as a Python float; None stays None."""
    return None if tensor is None else float(tensor.item())


def _unscaled(grad, grad_scale):
    """A grad as torch's fused kernels unscale it: divided by the scale, in the grad's dtype (measured bit-exact
    against torch 2.13's fused Adam, AdamW and SGD on the CPU, float32 and float64; not ``grad * (1 / scale)``,
    which ``GradScaler.unscale_`` does for the other optimizers)."""
    return grad / grad.dtype.type(grad_scale)


def watch(optimizer, model=None, **options):
    """Attach a :class:`Watcher` to a torch optimizer and return it (also a context manager that detaches)."""
    return Watcher(optimizer, model, **options).attach()
