"""Run one case: torch's twin against refwd, three checks per step, and a :class:`CaseResult`.

Checks, at every step t (1-based) of the torch trajectory:

1. **gradient** (and loss): refwd's loss and gradients (autograd) at torch's params θ_t on the same batch,
   against torch's autograd.
2. **lockstep** (teacher-forced): refwd's optimizer, holding torch's state S_t, stepped with torch's params
   θ_t and grads g_t, must give torch's θ_{t+1} and every state tensor of S_{t+1}. This isolates the update
   rule and pins the first divergent step, parameter and state key. float16/bfloat16: refwd runs in float64
   on the (exactly upcast) low-precision inputs and its result is rounded to the dtype.
3. **free-running** (cases with ``free_steps``, float64): refwd's own trajectory, with its own gradients,
   against torch's, params, state and loss.

Tolerances come from :mod:`validation.tolerance` (ULPs of a forward-error scale). The case stops at the end
of the first step with a failure; the first failure's pinpoint is kept, with the worst ULPs and relative error
seen per check and quantity.

``rules`` replaces refwd's per-tensor rule for an optimizer key ({"adam": my_adam_step}), in the lock-step
and the free-running check alike: the mutant tests inject broken rules through it.
"""
import math
import time
import traceback
from dataclasses import dataclass, field

import numpy as np

import refwd

from . import tolerance
from .cases import Case
from .twin import initial_params, refwd_model, refwd_optimizer, round_to, torch_trajectory

STATUSES = ("pass", "fail", "error", "known-defect")


@dataclass
class Mismatch:
    """Where refwd and torch first disagree beyond the budget."""

    check: str              # "lockstep", "gradient" or "free-running"
    step: int               # 1-based torch step
    parameter: str | None   # refwd/torch parameter name; None for the loss
    key: str                # "param", a state key ("exp_avg", "step", ...), "grad" or "loss"
    index: tuple | None     # element index in the tensor
    refwd: float | None
    torch: float | None
    ulps: float             # |refwd − torch| in ULPs of the error scale
    budget: float
    scale: float | None = None
    message: str = ""

    def describe(self):
        where = f"step {self.step}"
        if self.parameter is not None:
            where += f", {self.parameter}"
        where += f", {self.key}"
        if self.index is not None:
            where += f"[{', '.join(map(str, self.index))}]"
        if self.message:
            return f"{self.check}: {where}: {self.message}"
        return (f"{self.check}: {where}: refwd {self.refwd!r} vs torch {self.torch!r}, "
                f"{_fmt_ulps(self.ulps)} ulp (budget {self.budget:g})")

    def to_dict(self):
        return {"check": self.check, "step": self.step, "parameter": self.parameter, "key": self.key,
                "index": list(self.index) if self.index is not None else None, "refwd": _jsonable(self.refwd),
                "torch": _jsonable(self.torch), "ulps": _jsonable(self.ulps), "budget": self.budget,
                "scale": _jsonable(self.scale), "message": self.message, "text": self.describe()}


@dataclass
class Worst:
    """The worst agreement seen for one (check, quantity): ULPs of the error scale, and relative error."""

    ulps: float = 0.0
    rel: float = 0.0
    compared: int = 0

    def update(self, ulps, rel):
        if ulps.size:
            self.ulps = max(self.ulps, float(np.max(ulps)))
            self.rel = max(self.rel, float(np.max(rel)))
            self.compared += int(ulps.size)


@dataclass
class CaseResult:
    case: Case
    status: str = "pass"
    failure: Mismatch | None = None
    error: str | None = None
    worst: dict = field(default_factory=dict)     # {(check, quantity): Worst}
    steps: int = 0
    seconds: float = 0.0
    defect: object = None                          # the KnownDefect entry, for status "known-defect"
    note: str | None = None                        # e.g. the documented torch error of an expect_error case
    torch_version: str | None = None

    @property
    def passed(self):
        return self.status == "pass"

    @property
    def ok(self):
        """Passing, or failing only as a listed known torch defect (the run's exit code stays 0)."""
        return self.status in ("pass", "known-defect")

    @property
    def worst_ulps(self):
        values = [w.ulps for w in self.worst.values()]
        return max(values) if values else 0.0

    def worst_by_check(self):
        out = {}
        for (check, _), w in self.worst.items():
            out[check] = max(out.get(check, 0.0), w.ulps)
        return out

    @property
    def detail(self):
        """One line: the failure pinpoint, the error text, or the worst ULPs."""
        if self.failure is not None:
            return self.failure.describe()
        if self.error is not None:
            return self.error
        if self.note is not None:
            return self.note
        return f"worst {_fmt_ulps(self.worst_ulps)} ulp"

    def to_dict(self):
        case = self.case
        return {
            "id": case.id, "optimizer": case.optimizer, "impl": case.impl, "dtype": case.dtype,
            "device": case.device, "hyperparameters": {k: _jsonable(v) for k, v in case.hyperparameters},
            "model": list(case.model), "steps": self.steps, "status": self.status, "passed": self.passed,
            "seconds": round(self.seconds, 4), "failure": self.failure.to_dict() if self.failure else None,
            "error": self.error, "note": self.note, "known_defect": self.defect.to_dict() if self.defect is not None else None,
            "worst_ulps": _jsonable(self.worst_ulps),
            "worst": [{"check": check, "quantity": quantity, "ulps": _jsonable(w.ulps), "rel": _jsonable(w.rel),
                       "compared": w.compared} for (check, quantity), w in sorted(self.worst.items())],
            "description": case.description,
        }


def _jsonable(value):
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def _fmt_ulps(value):
    return "inf" if not math.isfinite(value) else f"{value:.3g}"


class _Failed(Exception):
    """Internal: a check found a mismatch at this step."""


class _Checker:
    """Compares arrays, keeps the worst figures, and records the first mismatch."""

    def __init__(self, result, dtype):
        self.result = result
        self.dtype = dtype
        self.failed = False

    def compare(self, check, step, parameter, key, refwd_value, torch_value, scale):
        budget = tolerance.budget(self.dtype, "param" if key in ("param",) else key if key in ("grad", "loss")
                                  else "state")
        refwd_value = np.asarray(refwd_value, dtype=np.float64)
        torch_value = np.asarray(torch_value, dtype=np.float64)
        if refwd_value.shape != torch_value.shape:
            self.mismatch(Mismatch(check, step, parameter, key, None, None, None, math.inf, budget,
                                   message=f"refwd has shape {refwd_value.shape}, torch {torch_value.shape}"))
            return
        ulps = tolerance.ulps(refwd_value, torch_value, scale, self.dtype)
        rel = tolerance.relative_error(refwd_value, torch_value)
        self.result.worst.setdefault((check, key), Worst()).update(ulps, rel)
        if ulps.size and np.max(ulps) > budget:
            flat = int(np.argmax(ulps))
            index = tuple(int(i) for i in np.unravel_index(flat, ulps.shape)) if ulps.ndim else None
            scale_value = np.broadcast_to(np.asarray(scale, dtype=np.float64), ulps.shape)
            self.mismatch(Mismatch(check, step, parameter, key, index, float(refwd_value.flat[flat]),
                                   float(torch_value.flat[flat]), float(ulps.flat[flat]), budget,
                                   float(scale_value.flat[flat])))

    def mismatch(self, mismatch):
        self.failed = True
        if self.result.failure is None:
            self.result.failure = mismatch

    def compare_keys(self, check, step, parameter, refwd_state, torch_state):
        """State keys must agree as sets, and integer step counts exactly."""
        if set(refwd_state) != set(torch_state):
            only_refwd = sorted(set(refwd_state) - set(torch_state))
            only_torch = sorted(set(torch_state) - set(refwd_state))
            self.mismatch(Mismatch(check, step, parameter, "state", None, None, None, math.inf, 0.0,
                                   message=f"state keys differ: only in refwd {only_refwd}, only in torch "
                                           f"{only_torch}"))
        if "step" in refwd_state and "step" in torch_state:
            r, t = int(np.asarray(refwd_state["step"])), int(torch_state["step"])
            self.result.worst.setdefault((check, "step"), Worst()).update(
                np.array([0.0 if r == t else math.inf]), np.array([0.0 if r == t else 1.0]))
            if r != t:
                self.mismatch(Mismatch(check, step, parameter, "step", None, r, t, math.inf, 0.0,
                                       message=f"step count: refwd {r} vs torch {t}"))


def _group_hyperparameters(optimizer):
    """{parameter name: that group's hyperparameters} of a refwd optimizer (lrs as currently set)."""
    out = {}
    for group in optimizer.param_groups:
        hyperparameters = {key: group[key] for key in optimizer.defaults}
        for name in group["params"]:
            out[name] = hyperparameters
    return out


def _copy_state(state):
    return {name: {key: (value.copy() if isinstance(value, np.ndarray) else value) for key, value in s.items()}
            for name, s in state.items()}


def _layers(case, params):
    """[(weight, bias), ...] per Linear layer, in order."""
    return [(params[w], params[b]) for w, b in _layer_names(case)]


def _loss_fn(case, model, x, y, scale):
    if scale == 1.0:
        return refwd.value_and_grad(lambda p: refwd.mse(model(p, x), y))
    return refwd.value_and_grad(lambda p: refwd.mse(model(p, x), y) * scale)


def _to64(params):
    return {name: np.asarray(value, dtype=np.float64) for name, value in params.items()}


def run_case(case, *, rules=None, trajectory=None):
    """Run ``case`` (a :class:`validation.cases.Case`) and return its :class:`CaseResult`.

    ``trajectory`` replaces the live torch run by recorded :class:`validation.twin.TorchStep` s (the golden
    recordings of validation/record.py: the reference checked against a torch that is not installed).

    ``rules`` maps an optimizer key ("sgd", "rmsprop", "adam", "adamw") to a per-tensor step function
    ``(param, grad, state, **hyperparameters) -> (new_param, new_state)`` that replaces refwd's rule for that
    optimizer in the lock-step and the free-running check. Never raises for a failure inside the case: a torch
    crash (or any exception) becomes status "error" with the exception text.
    """
    from .defects import classify  # late: defects imports the case ids

    result = CaseResult(case=case)
    started = time.perf_counter()
    try:
        import torch
        result.torch_version = torch.__version__
        _run(case, result, (rules or {}).get(case.optimizer), trajectory)
    except Exception as error:  # a crash in torch or anywhere in the case is this case's error
        frames = traceback.extract_tb(error.__traceback__)
        where = f" (at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno})" if frames else ""
        text = f"{type(error).__name__}: {error}{where}"
        if case.expect_error and case.expect_error in text and result.failure is None:
            result.status = "pass"
            result.note = f"torch raised the documented error at step {result.steps + 1}: {text}"
        else:
            result.status = "error"
            result.error = text
    else:
        result.status = "fail" if result.failure is not None else "pass"
    result.seconds = time.perf_counter() - started
    return classify(result)


def _run(case, result, rule, trajectory=None):
    dtype = case.dtype
    lowp = case.lowp
    checker = _Checker(result, dtype)
    model = refwd_model(case)
    names = list(initial_params(case))
    lock = refwd_optimizer(case, names, rule)
    free = None
    if case.free_steps:
        free_params = initial_params(case)
        free = refwd_optimizer(case, names, rule)
        free_scales = {name: {"param": np.zeros(np.shape(value))} for name, value in free_params.items()}
    activation = case.activation if len(case.model) > 2 else "identity"

    for ts in torch_trajectory(case) if trajectory is None else trajectory:
        result.steps = ts.step
        x, y = ts.x, ts.y
        x64, y64 = x.astype(np.float64), y.astype(np.float64)
        layers64 = _layers(case, _to64(ts.params))

        # 1. gradients and loss at torch's params
        if ts.step <= case.steps:
            loss, grads = _loss_fn(case, model, x, y, ts.loss_scale)(ts.params)
            s_loss, s_grads = tolerance.loss_and_grad_scales(layers64, activation, x64, y64, dtype,
                                                             loss_scale=ts.loss_scale)
            grad_scales = _by_name(case, s_grads)
            checker.compare("gradient", ts.step, None, "loss", _round(loss, dtype, lowp), ts.loss, s_loss)
            for name in names:
                checker.compare("gradient", ts.step, name, "grad", _round(grads[name], dtype, lowp),
                                ts.all_grads[name], grad_scales[name])

            # 2. lock-step: refwd's optimizer on torch's params, grads and state
            for group, lr in zip(lock.param_groups, ts.lrs):
                group["lr"] = lr
            lock.state = _copy_state(ts.state)
            given = {name: value for name, value in ts.grads.items() if value is not None}
            new_params = lock.step({name: value.copy() for name, value in ts.params.items()},
                                   {name: value.copy() for name, value in given.items()})
            hyper = _group_hyperparameters(lock)
            for name in names:
                grad = ts.grads[name]
                torch_state = ts.new_state[name]
                refwd_state = lock.state.get(name, {})
                checker.compare_keys("lockstep", ts.step, name, refwd_state, torch_state)
                if grad is None:   # skipped: param and state must be exactly unchanged
                    zero = np.zeros(np.shape(ts.params[name]))
                    checker.compare("lockstep", ts.step, name, "param", new_params[name], ts.new_params[name], zero)
                    for key in set(refwd_state) & set(torch_state) - {"step"}:
                        checker.compare("lockstep", ts.step, name, key, refwd_state[key], torch_state[key], zero)
                    continue
                scales = tolerance.step_scales(case.optimizer, ts.params[name], grad, ts.state[name], hyper[name],
                                               dtype)
                checker.compare("lockstep", ts.step, name, "param", _round(new_params[name], dtype, lowp),
                                ts.new_params[name], scales["param"])
                for key in sorted(set(refwd_state) & set(torch_state) - {"step"}):
                    checker.compare("lockstep", ts.step, name, key, _round(refwd_state[key], dtype, lowp),
                                    torch_state[key], scales.get(key, 0.0))

        # 3. free-running: refwd's own trajectory
        if free is not None and ts.step <= case.free_steps:
            loss, grads = _loss_fn(case, model, x, y, ts.loss_scale)(free_params)
            s_loss, s_grads = tolerance.loss_and_grad_scales(
                layers64, activation, x64, y64, dtype, loss_scale=ts.loss_scale,
                param_scales=[(free_scales[w]["param"], free_scales[b]["param"]) for w, b in _layer_names(case)])
            grad_scales = _by_name(case, s_grads)
            checker.compare("free-running", ts.step, None, "loss", loss, ts.loss, s_loss)
            for group, lr in zip(free.param_groups, ts.lrs):
                group["lr"] = lr
            given = {name: grads[name] for name in names if ts.grads[name] is not None}
            free_params = free.step(free_params, given)
            hyper = _group_hyperparameters(free)
            for name in names:
                refwd_state = free.state.get(name, {})
                torch_state = ts.new_state[name]
                checker.compare_keys("free-running", ts.step, name, refwd_state, torch_state)
                if ts.grads[name] is not None:
                    inputs = dict(free_scales[name], grad=grad_scales[name])
                    free_scales[name] = tolerance.step_scales(case.optimizer, ts.params[name], ts.grads[name],
                                                              ts.state[name], hyper[name], dtype, scales=inputs)
                scales = free_scales[name]
                checker.compare("free-running", ts.step, name, "param", free_params[name], ts.new_params[name],
                                scales["param"])
                for key in sorted(set(refwd_state) & set(torch_state) - {"step"}):
                    checker.compare("free-running", ts.step, name, key, refwd_state[key], torch_state[key],
                                    scales.get(key, 0.0))
        if checker.failed:
            break


def _layer_names(case):
    if len(case.model) == 2:
        return [("weight", "bias")]
    return [(f"{2 * i}.weight", f"{2 * i}.bias") for i in range(len(case.model) - 1)]


def _by_name(case, layer_scales):
    out = {}
    for (w, b), (s_w, s_b) in zip(_layer_names(case), layer_scales):
        out[w], out[b] = s_w, s_b
    return out


def _round(value, dtype, lowp):
    if not lowp:
        return value
    return round_to(np.asarray(value, dtype=np.float64), dtype)


def iter_results(cases, *, rules=None):
    """Run ``cases`` one by one, yielding each :class:`CaseResult` as it finishes."""
    for case in cases:
        yield run_case(case, rules=rules)
