"""Run one case: torch's twin against refwd, three checks per step, and a :class:`CaseResult`.

Checks, at every step t (1-based) of the torch trajectory:

1. **gradient** (and loss): refwd's loss and gradients (autograd) at torch's params θ_t on the same batch,
   against torch's autograd.
2. **lockstep** (teacher-forced): refwd's rule, given torch's state S_t, params θ_t and grads g_t, must give
   torch's θ_{t+1} and every state tensor of S_{t+1}. This isolates the update rule and pins the first
   divergent step, parameter and state key. float16/bfloat16: refwd runs in float64 on the (exactly upcast)
   low-precision inputs and its result is rounded to the dtype. The rule's contracts are checked here too
   (:mod:`refwd_validation.contracts`: dtype and shape kept, inputs untouched, no aliasing).
3. **free-running** (cases with ``free_steps``, float64): refwd's own trajectory, with its own gradients,
   against torch's, params, state and loss.
4. **state-dict** (cases with ``round_trip_at``): after that step refwd's lock-step optimizer is rebuilt from
   torch's ``state_dict()`` (its groups' hyperparameters from then on are the loaded ones), and its own
   ``state_dict()`` must give back exactly what it loaded; torch goes on from refwd's (:func:`twin.round_trip`),
   so the lock-step of the following steps checks the way back.

A "constructor" case checks instead that each invalid hyperparameter of the optimizer
(:mod:`refwd_validation.constructor_errors`) makes refwd raise torch's exception class.

Non-finite values (an injected inf or NaN, and what follows from it) must agree exactly, position, sign and
signed zero, whatever the budget (:meth:`refwd_validation.compare.Comparer.measure`).

Tolerances come from :mod:`refwd_validation.tolerance` (ULPs of a forward-error scale); the comparisons from
:mod:`refwd_validation.compare`. The case stops at the end of the first step with a failure; the first
failure's pinpoint is kept, with the worst ULPs and relative difference seen per check and quantity.

``rules`` replaces refwd's per-tensor rule for an optimizer key ({"adam": my_adam_step}), in the lock-step
and the free-running check alike: the mutant tests inject broken rules through it.
"""
import functools
import inspect
import time
import traceback
from dataclasses import dataclass, field

import numpy as np

import refwd

from . import capabilities, constructor_errors, contracts, gradient_scales, scenario, tolerance
from .cases import TENSOR_SCALAR_PATHS, Case
from .compare import Comparer, Mismatch, format_ulps, jsonable
from .dtypes import round_to
from .defects import classify
from .optimizers import OPTIMIZERS
from .outcomes import Check, Status
from .twin import Tape, torch_impl_kwargs, torch_trajectory


@dataclass
class CaseResult:
    case: Case
    status: Status = Status.PASS
    failure: Mismatch | None = None
    error: str | None = None
    worst: dict = field(default_factory=dict)     # {(check, quantity): compare.Worst}
    steps: int = 0
    seconds: float = 0.0
    defect: object = None                          # the KnownDefect entry, for status "known-defect"
    note: str | None = None                        # e.g. the documented torch error of an expect_error case
    torch_version: str | None = None
    unsupported: str | None = None                 # why the installed torch cannot run the case (status UNSUPPORTED)
    fallbacks: tuple = ()                          # ops the twin wrote out for this torch: ("what → instead", ...)

    @property
    def passed(self):
        return self.status == Status.PASS

    @property
    def ok(self):
        """Passing, failing only as a listed known torch defect, or not runnable by the installed torch (the run's
        exit code stays 0)."""
        return self.status in (Status.PASS, Status.KNOWN_DEFECT, Status.UNSUPPORTED)

    @property
    def worst_ulps(self):
        return max((worst.ulps for worst in self.worst.values()), default=0.0)

    def worst_by_check(self):
        out = {}
        for (check, _), worst in self.worst.items():
            out[check] = max(out.get(check, 0.0), worst.ulps)
        return out

    @property
    def detail(self):
        """One line: the failure pinpoint, the error text, or the worst ULPs."""
        if self.failure is not None:
            return self.failure.describe()
        if self.error is not None:
            return self.error
        if self.unsupported is not None:
            return f"unsupported by torch {self.torch_version}: {self.unsupported}"
        if self.note is not None:
            return self.note
        return f"worst {format_ulps(self.worst_ulps)} ulp"


def run_case(case, *, rules=None, trajectory=None, torch_version=None, sides=("refwd", "torch"), params_only=False,
             error_scale_rules=None):
    """Run ``case`` (a :class:`refwd_validation.cases.Case`) and return its :class:`CaseResult`.

    ``trajectory`` replaces the live torch run by other :class:`refwd_validation.twin.TorchStep` s: a recording
    (refwd checked against a torch that is not installed), or a :class:`refwd_validation.twin.Tape` that keeps
    the live run for ``--record``. ``torch_version`` is the version of the torch that made ``trajectory``
    (default: the installed one's), for the known-defect table.

    ``rules`` maps an optimizer key ("sgd", "rmsprop", "adam", "adamw", ...) to a per-tensor step function
    ``(param, grad, state, **hyperparameters) -> (new_param, new_state)`` that replaces refwd's rule for that
    optimizer in the lock-step and the free-running check, or to a refwd optimizer class that replaces refwd's
    class there and in the constructor and state_dict checks. Never raises for a failure inside the case: a torch
    crash (or any exception) becomes status "error" with the exception text.

    ``error_scale_rules`` replaces the error-scale rule of an optimizer key alike (a convention profile's rule comes
    with its own error model). ``sides`` names the two sides in the pinpoints (a target's name for torch's).
    ``params_only`` checks the params alone, refwd keeping its own state, for a trajectory whose state cannot be
    mapped to refwd's.
    """
    result = CaseResult(case=case)
    comparer = Comparer(case.dtype, sides=sides)
    started = time.perf_counter()
    try:
        if torch_version is None:
            import torch
            torch_version = torch.__version__
        result.torch_version = torch_version
        if trajectory is None or isinstance(trajectory, Tape):   # a live run: can the installed torch run it?
            result.unsupported = capabilities.unsupported(case, torch_impl_kwargs(case))
            result.fallbacks = tuple(f"{what} written as {instead}" for what, instead in capabilities.fallbacks(case))
        if result.unsupported is not None:
            result.status = Status.UNSUPPORTED
        elif case.kind == "constructor":
            check_constructors(case, comparer, (rules or {}).get(case.optimizer))
        else:
            error_scale_rule = (error_scale_rules or {}).get(case.optimizer,
                                                             OPTIMIZERS[case.optimizer].error_scale_rule)
            with np.errstate(all="ignore"):   # an injected inf or NaN spreads through the error scales too
                _run(case, comparer, result, Reference((rules or {}).get(case.optimizer), error_scale_rule),
                     torch_trajectory(case) if trajectory is None else trajectory, params_only)
    except Exception as error:  # a crash in torch or anywhere in the case is this case's error
        frames = traceback.extract_tb(error.__traceback__)
        where = f" (at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno})" if frames else ""
        text = f"{type(error).__name__}: {error}{where}"
        if case.expect_error and case.expect_error in text and not comparer.failed:
            result.status = Status.PASS
            result.note = f"torch raised the documented error at step {result.steps + 1}: {text}"
        else:
            result.status = Status.ERROR
            result.error = text
    else:
        if result.status == Status.UNSUPPORTED:
            result.seconds = time.perf_counter() - started
            return result
        result.status = Status.FAIL if comparer.failed else Status.PASS
        first = comparer.mismatches[0].describe() if comparer.failed else ""
        if case.expect_error and case.expect_error in first:
            result.status = Status.PASS
            result.note = f"torch differs as documented: {first}"
    result.worst = comparer.worst
    result.failure = comparer.mismatches[0] if comparer.mismatches else None
    result.seconds = time.perf_counter() - started
    return classify(result)


def check_constructors(case, comparer, refwd_class=None):
    """Every invalid hyperparameter of the case's optimizer: refwd (or ``refwd_class``, a class given as its rule)
    raises the exception class torch raises."""
    import torch
    torch_class = OPTIMIZERS[case.optimizer].torch_class
    refwd_class = refwd_class if isinstance(refwd_class, type) else None
    for row in constructor_errors.ERROR_INPUTS:
        if row.optimizer != torch_class:
            continue
        outcome = constructor_errors.check(row, torch, refwd_class)
        if outcome.torch is None:
            continue   # the installed torch accepts it: not an error input there
        if not outcome.same_class or not outcome.names_the_argument:
            comparer.mismatch(Check.CONSTRUCTOR, 0, None, "constructor", budget=0.0, message=outcome.describe())


@dataclass(frozen=True)
class Reference:
    """The reference a case is checked against: refwd's rule (None: the optimizer's own) and its error model."""

    rule: object
    error_scale_rule: object


def _run(case, comparer, result, reference, trajectory, params_only=False):
    model = scenario.refwd_model(case)
    lock = scenario.refwd_optimizer(case, list(scenario.initial_params(case)), reference.rule)
    params_lock = ParamsOnly(case, comparer, reference) if params_only else None
    free = FreeRunning(case, comparer, reference, params_only) if case.free_steps else None
    for torch_step in trajectory:
        result.steps = torch_step.step
        if torch_step.step == 1 and "lr" not in case.kwargs:
            check_default_lr(case, lock, comparer, torch_step)
        if torch_step.step <= case.steps:
            if torch_step.gradients_checked:
                check_gradients(case, model, comparer, torch_step)
            if params_lock is not None:
                params_lock.check(torch_step)
            else:
                check_lockstep(case, lock, comparer, torch_step, reference.error_scale_rule)
            if torch_step.state_dict is not None:
                lock = load_state_dict(case, comparer, torch_step, reference.rule)
        if free is not None and torch_step.step <= case.free_steps:
            free.check(model, torch_step)
        if comparer.failed:
            break


def _loss_and_grads(case, model, x, y, scale):
    if scale == 1.0:
        return refwd.value_and_grad(lambda p: refwd.mse(model(p, x), y))
    return refwd.value_and_grad(lambda p: refwd.mse(model(p, x), y) * scale)


def _rounded(value, case):
    """refwd's float64 result rounded to the case's float16/bfloat16, as torch would store it."""
    return round_to(value, case.dtype) if case.lowp else value


def check_default_lr(case, optimizer, comparer, torch_step):
    """A case that gives no lr: refwd's default (each group's lr, scheduled) must be torch's. The lock-step check
    takes torch's lr of each step (a schedule's), so a wrong default would not show there."""
    for index, (group, lr) in enumerate(zip(optimizer.param_groups, torch_step.lrs)):
        own = group["lr"] * case.lr_factor(torch_step.step)
        if own != lr:
            comparer.mismatch(Check.LOCKSTEP, torch_step.step, None, f"param_groups[{index}]['lr']", budget=0.0,
                              first=own, second=lr, message=f"lr: {own!r} in refwd, {lr!r} in torch (the default)")


def check_gradients(case, model, comparer, torch_step):
    """1. refwd's loss and gradients at torch's params, on torch's batch."""
    loss, grads = _loss_and_grads(case, model, torch_step.x, torch_step.y, torch_step.loss_scale)(torch_step.params)
    loss_scale, grad_scales = error_scales_of_gradients(case, torch_step)
    comparer.compare(Check.GRADIENT, torch_step.step, None, "loss", _rounded(loss, case), torch_step.loss,
                     loss_scale)
    # at non-finite params a gradient's class is autograd's choice as much as IEEE's (one side's backward multiplies
    # an inf by an exact zero the other skips; float16 intermediates overflow where float64 does not): there the
    # error model calls the gradient indeterminate, and the lock-step, which steps on torch's gradients, is exact
    for name, grad in grads.items():
        comparer.compare(Check.GRADIENT, torch_step.step, name, "grad", _rounded(grad, case),
                         torch_step.all_grads[name], grad_scales[name])


def error_scales_of_gradients(case, torch_step, param_scales=None):
    """The error scales of the loss and of each gradient at torch's params: (loss scale, {name: scale})."""
    params = {name: np.asarray(value, dtype=np.float64) for name, value in torch_step.params.items()}
    loss_scale, per_layer = gradient_scales.loss_and_grad_scales(
        scenario.layers(case, params), scenario.activation(case), np.asarray(torch_step.x, dtype=np.float64),
        np.asarray(torch_step.y, dtype=np.float64), case.dtype, loss_scale=torch_step.loss_scale,
        param_scales=None if param_scales is None else scenario.layers(case, param_scales))
    return loss_scale, scenario.by_name(case, per_layer)


def check_lockstep(case, optimizer, comparer, torch_step, error_scale_rule=None):
    """2. refwd's rule on torch's params, grads and state gives torch's next params and state."""
    for group, lr in zip(optimizer.param_groups, torch_step.lrs):
        group["lr"] = lr
    optimizer.state = {name: dict(state) for name, state in torch_step.state.items()}  # refwd never mutates it
    given = {name: grad for name, grad in torch_step.grads.items() if grad is not None}
    if case.impl == "grad-scaler" and scaler_skips(given):
        check_skipped_step(comparer, torch_step)
        return
    before = contracts.inputs(torch_step.params, given, optimizer.state)
    new_params = optimizer.step(torch_step.params, given)
    contracts.check(comparer, torch_step.step, before, new_params, optimizer.state)  # dtype, inputs, aliasing
    hyperparameters = scenario.group_hyperparameters(optimizer, torch_step.lrs)
    error_scale_rule = on_path(case, error_scale_rule or OPTIMIZERS[case.optimizer].error_scale_rule)
    for name, param in torch_step.params.items():
        grad, torch_state = torch_step.grads[name], torch_step.new_state[name]
        refwd_state = optimizer.state.get(name, {})
        comparer.compare_keys(Check.LOCKSTEP, torch_step.step, name, refwd_state, torch_state)
        if grad is None:   # skipped: param and state must be exactly unchanged
            scales = {}
        else:
            scales = tolerance.step_scales(error_scale_rule, param, grad, torch_step.state[name],
                                           hyperparameters[name], case.dtype)
        exact = nonfinite_inputs(param, grad, torch_step.state[name]) if not case.lowp else False
        comparer.compare(Check.LOCKSTEP, torch_step.step, name, "param", _rounded(new_params[name], case),
                         torch_step.new_params[name], scales.get("param", 0.0), exact)
        for key in sorted(set(refwd_state) & set(torch_state) - {"step"}):
            converted = np.abs(torch_state[key]) if key in torch_step.transformed else 0.0  # one more rounding
            comparer.compare(Check.LOCKSTEP, torch_step.step, name, key, _rounded(refwd_state[key], case),
                             torch_state[key], scales.get(key, 0.0) + converted, exact,
                             signed_zeros=not lerp_at_one(key, hyperparameters[name]))


def on_path(case, error_scale_rule):
    """The error model of the case's implementation path: on torch's tensor-scalar paths (:data:`TENSOR_SCALAR_PATHS`)
    a rule that models its scalars' dtype (Adam's bias corrections) is told they are float32 tensors there."""
    if case.impl in TENSOR_SCALAR_PATHS and "scalar_dtype" in inspect.signature(error_scale_rule).parameters:
        return functools.partial(error_scale_rule, scalar_dtype="float32")
    return error_scale_rule


def scaler_skips(grads):
    """GradScaler's rule: a step whose gradients hold an inf or a NaN anywhere is skipped entirely."""
    return not all(np.isfinite(np.asarray(grad, dtype=np.float64)).all() for grad in grads.values())


def check_skipped_step(comparer, torch_step):
    """2 (grad-scaler). A skipped step leaves every param and state tensor, and the step count, exactly as it was:
    refwd's side of the comparison is the step not taken (the params and state before it)."""
    for name, param in torch_step.params.items():
        before, after = torch_step.state[name], torch_step.new_state[name]
        comparer.compare_keys(Check.LOCKSTEP, torch_step.step, name, before, after)
        comparer.compare(Check.LOCKSTEP, torch_step.step, name, "param", param, torch_step.new_params[name], 0.0,
                         True)
        for key in sorted(set(before) & set(after) - {"step"}):
            comparer.compare(Check.LOCKSTEP, torch_step.step, name, key, before[key], after[key], 0.0, True)


def lerp_at_one(key, hyperparameters):
    """A moving average whose lerp weight is exactly 1 (β₁ = 0 for ``exp_avg``, α = 0 for ``grad_avg``): there the
    sign of a zero is torch's path's choice (its vectorised lerp, (w − 1)·d + end, gives −0.0 for end = −0.0 and
    start = +0.0 where its scalar tail, end − d·(1 − w), gives +0.0), so it is not compared (docs/nonfinite.md)."""
    if key == "exp_avg":
        return tuple(hyperparameters.get("betas", (0.9,)))[0] == 0
    return key == "grad_avg" and hyperparameters.get("alpha") == 0


def nonfinite_inputs(param, grad, state):
    """Where an elementwise rule's inputs (param, grad, state tensors) hold an inf or a NaN: there IEEE arithmetic
    decides the output, and both sides must agree exactly. Not for float16/bfloat16, where refwd computes in
    float64 and torch's own intermediates can overflow (∞ − ∞ where refwd has a number): the error model decides."""
    inputs = [param] + ([] if grad is None else [grad]) + [value for key, value in state.items() if key != "step"]
    return ~np.logical_and.reduce([np.isfinite(np.asarray(value, dtype=np.float64)) for value in inputs])


def load_state_dict(case, comparer, torch_step, rule=None):
    """4. A new refwd optimizer of the case loaded from torch's state_dict; what it saves must be what it loaded."""
    optimizer = scenario.refwd_optimizer(case, list(torch_step.params), rule)
    optimizer.load_state_dict(torch_step.state_dict)
    saved, loaded = optimizer.state_dict(), torch_step.state_dict
    for index, (group, torch_group) in enumerate(zip(saved["param_groups"], loaded["param_groups"])):
        changed = sorted(key for key in torch_group if key != "param_names" and key in group
                         and _jsonish(group[key]) != _jsonish(torch_group[key]))
        if changed or len(group["params"]) != len(torch_group["params"]):
            comparer.mismatch(Check.STATE_DICT, torch_step.step, None, f"param_groups[{index}]", budget=0.0,
                              message=f"param group {index} comes back changed: {changed or 'params'}")
    names = {index: name for group in saved["param_groups"]
             for index, name in zip(group["params"], group["param_names"])}
    for index, torch_state in loaded["state"].items():
        refwd_state = saved["state"].get(index, {})
        comparer.compare_keys(Check.STATE_DICT, torch_step.step, names.get(index), refwd_state, torch_state)
        for key in sorted(set(refwd_state) & set(torch_state) - {"step"}):
            comparer.compare(Check.STATE_DICT, torch_step.step, names.get(index), key, refwd_state[key],
                             torch_state[key], 0.0)
    return optimizer


def _jsonish(value):
    return list(value) if isinstance(value, tuple) else value


class ParamsOnly:
    """2'. Lock-step on the params alone: refwd's rule on the target's params and grads, with refwd's own state
    (the target's cannot be mapped), whose error scales grow along the run as in the free-running check."""

    def __init__(self, case, comparer, reference):
        self.case, self.comparer, self.error_scale_rule = case, comparer, reference.error_scale_rule
        self.optimizer = scenario.refwd_optimizer(case, list(scenario.initial_params(case)), reference.rule)
        self.state_error_scales = {}

    def check(self, torch_step):
        case, step = self.case, torch_step.step
        for group, lr in zip(self.optimizer.param_groups, torch_step.lrs):
            group["lr"] = lr
        state_before = dict(self.optimizer.state)
        given = {name: grad for name, grad in torch_step.grads.items() if grad is not None}
        new_params = self.optimizer.step(torch_step.params, given)
        hyperparameters = scenario.group_hyperparameters(self.optimizer, torch_step.lrs)
        error_scale_rule = self.error_scale_rule
        for name, param in torch_step.params.items():
            scales = {}
            if torch_step.grads[name] is not None:
                scales = tolerance.step_scales(error_scale_rule, param, torch_step.grads[name],
                                               state_before.get(name, {}), hyperparameters[name], case.dtype,
                                               scales=self.state_error_scales.get(name))
                self.state_error_scales[name] = {key: value for key, value in scales.items() if key != "param"}
            self.comparer.compare(Check.LOCKSTEP, step, name, "param", _rounded(new_params[name], case),
                                  torch_step.new_params[name], scales.get("param", 0.0))


class FreeRunning:
    """3. refwd's own trajectory (its own gradients and state) against torch's, with error scales that grow
    along the trajectory as the first-order error of the whole run does."""

    def __init__(self, case, comparer, reference, params_only=False):
        self.case, self.comparer, self.params_only = case, comparer, params_only
        self.error_scale_rule = reference.error_scale_rule
        self.params = scenario.initial_params(case)
        self.optimizer = scenario.refwd_optimizer(case, list(self.params), reference.rule)
        self.error_scales = {name: {"param": np.zeros(np.shape(value))} for name, value in self.params.items()}

    def check(self, model, torch_step):
        case, comparer, step = self.case, self.comparer, torch_step.step
        param_scales = {name: scales["param"] for name, scales in self.error_scales.items()}
        loss, grads = _loss_and_grads(case, model, torch_step.x, torch_step.y, torch_step.loss_scale)(self.params)
        loss_scale, grad_scales = error_scales_of_gradients(case, torch_step, param_scales)
        comparer.compare(Check.FREE_RUNNING, step, None, "loss", loss, torch_step.loss, loss_scale)
        for group, lr in zip(self.optimizer.param_groups, torch_step.lrs):
            group["lr"] = lr
        grads = case.step_grads(step, grads)   # the case's injected values, as torch got them
        self.params = self.optimizer.step(self.params, {name: grads[name] for name in grads
                                                        if torch_step.grads[name] is not None})
        hyperparameters = scenario.group_hyperparameters(self.optimizer, torch_step.lrs)
        error_scale_rule = self.error_scale_rule
        for name in self.params:
            refwd_state, torch_state = self.optimizer.state.get(name, {}), torch_step.new_state[name]
            if self.params_only:  # the other side's state is not known: compare the params only
                refwd_state = torch_state = {}
            comparer.compare_keys(Check.FREE_RUNNING, step, name, refwd_state, torch_state)
            if torch_step.grads[name] is not None:
                inputs = dict(self.error_scales[name], grad=grad_scales[name])
                self.error_scales[name] = tolerance.step_scales(
                    error_scale_rule, torch_step.params[name], torch_step.grads[name], torch_step.state[name],
                    hyperparameters[name], case.dtype, scales=inputs)
            scales = self.error_scales[name]
            exact = nonfinite_inputs(torch_step.params[name], torch_step.grads[name], torch_step.state[name])
            comparer.compare(Check.FREE_RUNNING, step, name, "param", self.params[name], torch_step.new_params[name],
                             scales["param"], exact)
            for key in sorted(set(refwd_state) & set(torch_state) - {"step"}):
                comparer.compare(Check.FREE_RUNNING, step, name, key, refwd_state[key], torch_state[key],
                                 scales.get(key, 0.0), exact)


def result_to_dict(result):
    """A :class:`CaseResult` as JSON-ready data (the JSON report's per-case entry)."""
    case = result.case
    return {
        "id": case.id, "optimizer": case.optimizer, "impl": case.impl, "dtype": case.dtype,
        "device": case.device, "hyperparameters": {key: jsonable(value) for key, value in case.hyperparameters},
        "model": list(case.model), "steps": result.steps, "status": str(result.status), "passed": result.passed,
        "seconds": round(result.seconds, 4), "failure": result.failure.to_dict() if result.failure else None,
        "error": result.error, "note": result.note, "unsupported": result.unsupported,
        "fallbacks": list(result.fallbacks),
        "known_defect": result.defect.to_dict() if result.defect is not None else None,
        "worst_ulps": jsonable(result.worst_ulps),
        "worst": [{"check": str(check), "quantity": quantity, "ulps": jsonable(worst.ulps),
                   "rel": jsonable(worst.relative_difference), "compared": worst.compared}
                  for (check, quantity), worst in sorted(result.worst.items())],
        "description": case.description,
    }
