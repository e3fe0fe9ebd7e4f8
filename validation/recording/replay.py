"""Replay a recording under the installed torch: per case bit-identical, changed within or beyond tolerance.

The comparison is a lock-step replay: at every step t the installed torch gets the recorded params θ_{t-1},
computes its own loss and gradients on the recorded batch (compared with the recorded ones: the *gradient*
check), is then given the recorded gradients g_t and optimizer state S_{t-1}, takes one step, and its θ_t and
S_t are compared with the recorded ones (the *lockstep* check). So a difference is pinned to the step and
tensor where it arises and never accumulates, and a change in autograd is told apart from a change in the
optimizer. Differences are measured as the harness measures them (:mod:`refwd_validation.compare`), in ULPs of
the error scale of one step: two correct implementations are within the budget of each other.
"""
from dataclasses import dataclass

import numpy as np

from .. import capabilities, scenario, tolerance, twin
from ..cases import CASE_IDS, CASES, Case
from ..compare import Comparer, Mismatch, jsonable
from .store import case_definition
from ..outcomes import Check, Drift
from ..harness import error_scales_of_gradients, run_case
from ..outcomes import Status
from ..optimizers import OPTIMIZERS
from .store import MANIFEST, RecordedTorchError, RecordingError

COMPARISON_STATUSES = tuple(Drift)
STATUS_WORDS = {status: status.words for status in Drift}


@dataclass
class CaseComparison:
    case: Case
    status: Drift = Drift.IDENTICAL
    worst_ulps: float = 0.0
    compared: int = 0                            # tensors compared
    differing: int = 0                           # of those, not bit-identical
    unreliable: int = 0                          # differing where the recorded torch was not reproducible
    first_difference: Mismatch | None = None
    first_beyond: Mismatch | None = None
    error: str | None = None
    reference: object = None                     # the installed torch's CaseResult against refwd
    recorded_reference: dict | None = None       # the recorded torch's verdict, recomputed from the recording

    @property
    def fixed(self):
        """Changed beyond tolerance, from failing the reference when recorded to passing it now: a torch fix."""
        return (self.status == Drift.BEYOND and self.reference is not None and self.reference.status == Status.PASS
                and (self.recorded_reference or {}).get("status") not in (None, "pass"))

    @property
    def ok(self):
        """Nothing for CI to stop on: not a replay error, no unexplained change, and correct now."""
        if self.reference is not None and not self.reference.ok:
            return False
        return self.status in (Drift.IDENTICAL, Drift.WITHIN, Drift.NONDETERMINISTIC, Drift.UNSUPPORTED) or self.fixed

    def to_dict(self):
        reference = self.reference
        return {
            "id": self.case.id, "comparison": str(self.status), "comparison_text": STATUS_WORDS[self.status],
            "worst_ulps": jsonable(self.worst_ulps), "tensors_compared": self.compared,
            "tensors_differing": self.differing, "tensors_differing_where_irreproducible": self.unreliable,
            "fixed": self.fixed,
            "first_difference": self.first_difference.to_dict() if self.first_difference else None,
            "first_beyond_tolerance": self.first_beyond.to_dict() if self.first_beyond else None,
            "error": self.error,
            "reference": None if reference is None else {"status": str(reference.status),
                                                         "worst_ulps": jsonable(reference.worst_ulps),
                                                         "detail": reference.detail},
            "reference_when_recorded": self.recorded_reference,
        }



class _Tally:
    """One case's comparison of the recording with the installed torch: counts, the worst figure, and the first
    differences (within the budget or beyond it), measured by the one comparer.

    From ``unreliable_from`` on (the step at which two runs of the recorded torch differed) a difference says
    nothing about the installed torch: it is counted in ``comparison.unreliable`` only.
    """

    def __init__(self, comparison, unreliable_from=None):
        self.comparison = comparison
        self.comparer = Comparer(comparison.case.dtype, sides=("recorded", "now"))
        self.unreliable_from = unreliable_from

    def compare(self, check, step, parameter, key, recorded, current, error_scale):
        self.comparison.compared += 1
        if recorded is None or current is None:
            if recorded is not None or current is not None:
                side = "the recording" if current is None else "the installed torch"
                self._differ(self.comparer.mismatch(check, step, parameter, key, budget=tolerance.budget(
                    self.comparer.dtype, key), message=f"present only in {side}"))
            return
        recorded = np.asarray(recorded, dtype=np.float64)
        current = np.asarray(current, dtype=np.float64)
        if recorded.shape == current.shape and recorded.tobytes() == current.tobytes():
            return  # bit for bit (the float64 upcast is exact)
        self._differ(self.comparer.measure(check, step, parameter, key, recorded, current, error_scale))

    def compare_count(self, step, parameter, recorded, current):
        self.comparison.compared += 1
        if recorded != current:
            self._differ(self.comparer.mismatch(Check.LOCKSTEP, step, parameter, "step", first=recorded,
                                                second=current, budget=0.0,
                                                message=f"step count recorded {recorded}, now {current}"))

    def _differ(self, difference):
        comparison = self.comparison
        if self.unreliable_from is not None and difference.step >= self.unreliable_from:
            comparison.unreliable += 1
            return
        comparison.differing += 1
        comparison.worst_ulps = max(comparison.worst_ulps, difference.ulps)
        if comparison.first_difference is None:
            comparison.first_difference = difference
        if difference.ulps > difference.budget and comparison.first_beyond is None:
            comparison.first_beyond = difference


def compare_case(recorded):
    """Replay ``recorded`` (a :class:`RecordedCase`) under the installed torch; return a :class:`CaseComparison`."""
    comparison = CaseComparison(case=recorded.case)
    try:
        with twin.one_thread(), np.errstate(all="ignore"):   # an injected inf or NaN spreads through the scales
            _replay(recorded, _Tally(comparison, recorded.irreproducible_step))
    except Exception as error:  # the installed torch crashed where the recorded one did not
        comparison.status = Drift.ERROR
        comparison.error = f"{type(error).__name__}: {error}"
        return comparison
    if comparison.first_beyond is not None:
        comparison.status = Drift.BEYOND
    elif comparison.differing:
        comparison.status = Drift.WITHIN
    elif comparison.unreliable:
        comparison.status = Drift.NONDETERMINISTIC
    return comparison


def _replay(recorded, tally):
    case = recorded.case
    stepper = twin.TorchStepper(case, recorded.initial_params())
    reference = scenario.refwd_optimizer(case, recorded.names)      # its groups' hyperparameters
    error_scale_rule = OPTIMIZERS[case.optimizer].error_scale_rule
    last = None
    try:
        for recorded_step in recorded.trajectory():
            _replay_step(case, stepper, reference, error_scale_rule, tally, recorded_step)
            last = recorded_step
    except RecordedTorchError as recorded_error:
        _replay_recorded_error(case, stepper, recorded, last, str(recorded_error))


def _replay_step(case, stepper, reference, error_scale_rule, tally, recorded):
    step = recorded.step
    # gradient check: autograd at the recorded params, on the recorded batch
    loss, grads = stepper.loss_and_grads(recorded.params, recorded.x, recorded.y, recorded.loss_scale)
    loss_scale, grad_scales = error_scales_of_gradients(case, recorded)
    tally.compare(Check.GRADIENT, step, None, "loss", recorded.loss, loss, loss_scale)
    for name in recorded.params:
        tally.compare(Check.GRADIENT, step, name, "grad", recorded.all_grads[name], grads[name], grad_scales[name])

    # lock-step: the recorded grads and state in, one step of the installed torch's optimizer
    new_params, new_state = stepper.step(recorded.params, recorded.grads, recorded.state, recorded.lrs)
    hyperparameters = scenario.group_hyperparameters(reference, recorded.lrs)
    for name, param in recorded.params.items():
        grad = recorded.grads[name]
        scales = {} if grad is None else tolerance.step_scales(error_scale_rule, param, grad, recorded.state[name],
                                                               hyperparameters[name], case.dtype)
        tally.compare(Check.LOCKSTEP, step, name, "param", recorded.new_params[name], new_params[name],
                      scales.get("param", 0.0))
        then, now = recorded.new_state[name], new_state[name]
        for key in sorted((set(now) | set(then)) - {"step"}):
            tally.compare(Check.LOCKSTEP, step, name, key, then.get(key), now.get(key), scales.get(key, 0.0))
        if "step" in now or "step" in then:
            tally.compare_count(step, name, then.get("step"), now.get("step"))


def _replay_recorded_error(case, stepper, recorded, last, recorded_error):
    """The recorded torch raised at the step after ``last``: the installed torch must raise the same error there."""
    step = 1 if last is None else last.step + 1
    params = recorded.initial_params() if last is None else last.new_params
    state = {name: {} for name in params} if last is None else last.new_state
    x, y = scenario.batch(case, step)
    _, grads = stepper.loss_and_grads(params, x, y, scenario.loss_scale(case, step))
    grads = case.step_grads(step, grads)
    lrs = [lr * case.lr_factor(step) for lr in stepper.base_lrs]
    try:
        stepper.step(params, grads, state, lrs)
    except Exception as error:
        text = f"{type(error).__name__}: {error}"
        if text != recorded_error:
            raise RuntimeError(f"at step {step} the recorded torch raised {recorded_error!r}, this one {text!r}")
        return
    raise RuntimeError(f"at step {step} the recorded torch raised {recorded_error!r}; this one does not")


def check_reference(recorded):
    """The harness's verdict (lock-step and gradient checks, and free-running) of refwd against the recorded
    torch: a :class:`refwd_validation.harness.CaseResult`, without running torch's optimizer. Known defects are
    those of the recorded torch's version."""
    return run_case(recorded.case, trajectory=recorded.trajectory(), torch_version=recorded.torch_version)


def recorded_verdict(recorded, live=None, tape=None):
    """The reference verdict of the recorded torch, {"status", "worst_ulps", "detail"}, recomputed from the
    recorded data: the manifest's copy decides nothing (a forged "fail" would make any change a "fix"). Raises
    :class:`RecordingError` naming the case where the manifest's copy disagrees.

    ``live``, with the :class:`refwd_validation.twin.Tape` it ran on, is the installed torch's verdict: where it
    passed on a trajectory bit-identical to the recorded one (every input and output of every step), the harness
    saw the same numbers as it would in the recording, so its verdict is the recorded one, and the recorded
    trajectory is not checked a second time.
    """
    if live is not None and live.status == Status.PASS and _same_trajectory(tape, recorded):
        result = live
    else:
        result = check_reference(recorded)
    verdict = {"status": str(result.status), "worst_ulps": jsonable(result.worst_ulps), "detail": result.detail}
    claimed = (recorded.reference or {}).get("status")
    if claimed is not None and claimed != verdict["status"]:
        raise RecordingError(f"{MANIFEST}: case {recorded.case.id!r}: its recorded reference verdict {claimed!r} "
                             f"does not match the recorded data ({verdict['status']!r})")
    return verdict


def _same_trajectory(tape, recorded):
    if tape is None or tape.error is not None or recorded.error is not None or len(tape.steps) != recorded.steps:
        return False

    def same(a, b):
        if a is None or b is None:
            return a is b
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        return a.shape == b.shape and a.tobytes() == b.tobytes()

    for live, then in zip(tape.steps, recorded.trajectory()):
        inputs_same = same(live.loss, then.loss) and same(live.x, then.x) and same(live.y, then.y)
        if live.lrs != then.lrs or not inputs_same:
            return False
        for name in then.params:
            if not (same(live.params[name], then.params[name]) and same(live.all_grads[name], then.all_grads[name])
                    and same(live.new_params[name], then.new_params[name])):
                return False
            state, state_then = live.new_state[name], then.new_state[name]
            if set(state) != set(state_then) or not all(
                    state[key] == state_then[key] if key == "step" else same(state[key], state_then[key])
                    for key in state):
                return False
    return True


def compare(recording, cases, *, reference=True, progress=None):
    """Compare the installed torch with ``recording`` on ``cases`` (ids of the recording); yield CaseComparisons.

    With ``reference`` each comparison also carries the installed torch's verdict against refwd. Each carries
    the recorded torch's verdict, recomputed (:func:`recorded_verdict`: raises :class:`RecordingError` where
    the manifest's copy disagrees).
    """
    for case_id in cases:
        recorded = recording.cases[case_id]
        reason = capabilities.unsupported(recorded.case, twin.torch_impl_kwargs(recorded.case))
        if reason is None:
            comparison = compare_case(recorded)
        else:
            comparison = CaseComparison(case=recorded.case, status=Drift.UNSUPPORTED,
                                        error=f"unsupported by torch {capabilities.version()}: {reason}")
        tape = None
        if reference:
            tape = twin.Tape(recorded.case)
            comparison.reference = run_case(recorded.case, trajectory=tape)
        comparison.recorded_reference = recorded_verdict(recorded, comparison.reference, tape)
        if progress is not None:
            progress(comparison)
        yield comparison


def cases_to_compare(recording, select_cases, devices=None):
    """The ids to compare, in recording order: the recorded cases that ``select_cases`` picks.

    ``select_cases(cases)`` applies the user's filters (optimizer, impl, dtype, case ids, --quick) to a list of
    cases; it is applied alike to the recording's cases and to this refwd's matrix, and the two must agree.
    ``devices`` (default: the recording's) must all be devices the recording was made on. Raises
    :class:`RecordingError` for a device not recorded, a case on one side only, or a case whose definition
    changed since the recording; nothing is skipped silently.
    """
    recorded_devices = sorted({recorded.case.device for recorded in recording.cases.values()})
    devices = sorted(devices or recorded_devices)
    not_recorded = [device for device in devices if device not in recorded_devices]
    if not_recorded:
        raise RecordingError(f"{recording.directory}: recorded on {', '.join(recorded_devices) or 'nothing'}, but "
                             f"{', '.join(not_recorded)} was asked for; record on that device first")
    recorded = [c.case for c in recording.cases.values() if c.case.device in devices]
    wanted = {case.id for case in select_cases(recorded)}
    current = {case.id for case in select_cases([case for case in CASES if case.device in devices
                                                 and case.kind == "trajectory"])}   # what a recording holds
    only_recorded = sorted(wanted - current)
    if only_recorded:
        raise RecordingError(f"case {only_recorded[0]!r} is in the recording but not in this refwd's case matrix "
                             f"({len(only_recorded)} such case(s)); nothing is skipped silently")
    only_current = sorted(current - wanted - set(recording.manifest.get("unsupported_when_recorded", {})))
    if only_current:
        raise RecordingError(f"case {only_current[0]!r} is in the case matrix but not in the recording "
                             f"{recording.directory} ({len(only_current)} such case(s)); record it, or narrow the "
                             "selection (--case, --optimizer, ...)")
    ids = [case.id for case in recorded if case.id in wanted]
    for case_id in ids:
        then, now = recording.cases[case_id].case, CASE_IDS[case_id]
        # NaN as text, comparable; what does not change the numbers (--quick membership, words, documented torch
        # behaviour) left out
        then_fields, now_fields = ({key: value for key, value in case_definition(case).items()
                                    if key not in ("quick", "description", "expect_error")} for case in (then, now))
        if then_fields != now_fields:
            changed = [name for name in then_fields if then_fields[name] != now_fields[name]]
            raise RecordingError(f"case {case_id!r}: its definition changed since the recording "
                                 f"({', '.join(changed)}); the numbers are not comparable: record again")
    if not ids:
        raise RecordingError(f"no recorded case matches these filters in {recording.directory}")
    return ids

