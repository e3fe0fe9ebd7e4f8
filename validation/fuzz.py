"""``refwd validate --fuzz N``: hypothesis draws N random configurations of torch's optimizers, each checked
against refwd as a matrix case is, and every distinct failure is shrunk to a minimal, pasteable ``Case(...)``.

A configuration is a :class:`refwd_validation.cases.Case` (id ``fuzz-<n>-<optimizer>-<dtype>-<impl>-cpu``):
the optimizer, its flags and hyperparameters with edge values (β₁ = 0, β close to 1, ε large and tiny, momentum
with dampening and Nesterov, weight decay 0 and large, and a few values torch refuses), a model from a (1, 1)
Linear to MLPs with a 1-wide layer, the dtype (float16/bfloat16 with the matrix's loss scale of 64), torch's
implementation, an lr schedule, steps without a gradient, and 1..12 steps. Every strategy shrinks towards the
simplest value: defaults first, float64, for-loop, the smallest model, one step.

:func:`check` runs one configuration. A configuration torch's constructor refuses is "rejected" when refwd's
constructor refuses it with the same exception class, a failure otherwise (and so is one refwd refuses and torch
accepts); neither is a crash of the run. The rest goes through :func:`refwd_validation.harness.run_case`.

Known torch defects are recognised by their conditions, not by case id: a fuzz configuration with the optimizer,
dtype, implementation and device of a case that :data:`refwd_validation.defects.KNOWN_DEFECTS` lists (fused SGD on
float16/bfloat16 on CPU, pytorch/pytorch#191763), on an affected torch version, failing in the listed way, is a
known defect. Those configurations are drawn, not excluded: on a fixed torch they are checked as any other. Fused
SGD with steps without a gradient carries the matrix's ``expect_error`` of that documented crash (docs/oracle.md,
findings).

The search runs in two stages, both plain hypothesis (``given``, ``settings``, ``seed``; no example database): a
survey (phase "generate") draws the N configurations; a failure ends one seeded hypothesis run and the survey goes
on with the next seed until N have run. Then, for the first failure of each distinct signature (the optimizer and
what failed: check and state key, exception class, or which side rejected), the run that found it is repeated
with the shrink phase on and only that signature failing, so hypothesis shrinks it to a minimal configuration.
Each is printed as a ``Case(...)`` literal and a ``python -c`` command that reruns it (:func:`replay`).
"""
import dataclasses
import math
import random
import sys
import time
import warnings
from dataclasses import dataclass

import numpy as np
from hypothesis import HealthCheck, Phase, Verbosity, given, seed as hypothesis_seed, settings, strategies as st

from . import harness, scenario, twin
from .cases import FUSED_AMSGRAD_KEEPS_ITS_MAX, LOW_PRECISION, LOWP_LOSS_SCALE, SHORT_DTYPES, Case
from .defects import KNOWN_DEFECTS
from .optimizers import OPTIMIZERS, TORCH_OPTIMIZERS
from .outcomes import Status

REJECTED = "rejected"     # both constructors refuse the configuration with the same exception class
# torch's fused SGD decides "first step" for all params at once and crashes on a late first gradient (the matrix's
# sgd-grad-none-late case; docs/oracle.md, findings)
FUSED_SGD_LATE_GRAD = "in argument 2, but got NoneType"   # "expected Tensor as element <i> ..."

# Model sizes, simplest first (hypothesis shrinks towards the first): two sizes are a Linear, more an MLP.
MODELS = ((1, 1), (4, 1), (3, 2), (3, 1, 2), (1, 1, 1), (5, 17, 33, 1), (6, 9, 1, 4))
ACTIVATIONS = ("tanh", "relu", "sigmoid")
DTYPES = ("float64", "float32", "float16", "bfloat16")
IMPLS = ("forloop", "foreach", "fused")
SCHEDULE_FACTORS = (1.0, 0.5, 2.0, 0.25, 0.0)
NONFINITE = (math.inf, -math.inf, math.nan)   # injected into one gradient element at one step
MAX_STEPS = 12

# Hyperparameter values: the default first (so that it shrinks away), then ordinary values, then edge values.
LRS = (0.01, 0.1, 1e-3, 0.5, 1e-6, 1.5, 0.0)
MOMENTA = (0.0, 0.9, 0.5, 0.99, 1e-3, 1.0)
DAMPENINGS = (0.0, 0.1, 0.5, 1.0)
WEIGHT_DECAYS = (0.0, 0.01, 0.1, 1e-4, 2.0, 10.0)
EPSILONS = (1e-8, 1e-3, 1e-6, 1.0, 1e-12, 10.0)
ALPHAS = (0.99, 0.9, 0.5, 0.0, 0.999999, 1.0)
BETA1S = (0.9, 0.0, 0.5, 1e-3, 0.99, 0.999999)
BETA2S = (0.999, 0.9, 0.3, 0.0, 0.999999)
# One in ten configurations gets one value torch's constructor refuses (besides Nesterov drawn with dampening or
# without momentum): both constructors must refuse it alike.
INVALID = {"lr": -0.01, "weight_decay": -0.1, "momentum": -0.5, "eps": -1e-8, "alpha": -0.1,
           "betas": ((1.0, 0.999), (0.9, 1.0), (-0.1, 0.999))}
DEFAULTS = {"momentum": 0.0, "dampening": 0.0, "nesterov": False, "weight_decay": 0.0, "maximize": False,
            "alpha": 0.99, "eps": 1e-8, "centered": False, "betas": (0.9, 0.999), "amsgrad": False,
            "decoupled_weight_decay": False}


@st.composite
def hyperparameters(draw, optimizer):
    """The constructor keywords of ``optimizer`` as (name, value) pairs: lr always, the rest where not default."""
    defaults = dict(DEFAULTS, weight_decay=0.01 if optimizer == "adamw" else 0.0)
    values = {"lr": draw(st.sampled_from(LRS))}
    if optimizer == "sgd":
        values["momentum"] = draw(st.sampled_from(MOMENTA))
        values["nesterov"] = draw(st.booleans())
        # Nesterov needs zero dampening (and a momentum): mostly drawn so, sometimes not, and torch refuses it
        values["dampening"] = draw(st.sampled_from((0.0, 0.0, 0.0, 0.5) if values["nesterov"] else DAMPENINGS))
    elif optimizer == "rmsprop":
        values["alpha"] = draw(st.sampled_from(ALPHAS))
        values["eps"] = draw(st.sampled_from(EPSILONS))
        values["momentum"] = draw(st.sampled_from(MOMENTA))
        values["centered"] = draw(st.booleans())
    else:
        values["betas"] = (draw(st.sampled_from(BETA1S)), draw(st.sampled_from(BETA2S)))
        values["eps"] = draw(st.sampled_from(EPSILONS))
        values["amsgrad"] = draw(st.booleans())
        if optimizer == "adam":
            values["decoupled_weight_decay"] = draw(st.booleans())
    decay = defaults["weight_decay"]
    values["weight_decay"] = draw(st.sampled_from((decay,) + tuple(v for v in WEIGHT_DECAYS if v != decay)))
    values["maximize"] = draw(st.booleans())
    if draw(st.integers(0, 9)) == 9:   # shrinks to 0: a valid configuration
        name = draw(st.sampled_from([name for name in values if name in INVALID]))
        invalid = INVALID[name]
        values[name] = draw(st.sampled_from(invalid)) if name == "betas" else invalid
    return tuple((name, value) for name, value in values.items() if name == "lr" or value != defaults[name])


@st.composite
def cases(draw, optimizers=TORCH_OPTIMIZERS, dtypes=DTYPES, impls=IMPLS):
    """One fuzz :class:`Case`; its id numbers it later (:func:`numbered`)."""
    optimizer = draw(st.sampled_from(optimizers))
    impl = draw(st.sampled_from([impl for impl in impls if impl != "fused" or OPTIMIZERS[optimizer].fused]
                                or ["forloop"]))
    dtype = draw(st.sampled_from(dtypes))
    model = draw(st.sampled_from(MODELS))
    steps = draw(st.integers(1, MAX_STEPS))
    fields = {}
    if len(model) > 2:
        fields["activation"] = draw(st.sampled_from(ACTIVATIONS))
    if model[-1] == 1 and draw(st.booleans()):   # a 0-d parameter: the last layer's bias
        fields["scalar_bias"] = True
    probe = Case(id="probe", config="fuzz", optimizer=optimizer, model=model,
                 scalar_bias=fields.get("scalar_bias", False))
    names = [name for layer in scenario.layer_names(probe) for name in layer]
    if draw(st.booleans()):   # weights and biases in two groups, each with its own weight decay and lr
        fields["groups"] = tuple(
            (selector, (("weight_decay", draw(st.sampled_from(WEIGHT_DECAYS))),
                        ("lr", draw(st.sampled_from(LRS)))))
            for selector in ("weights", "biases"))
    if draw(st.booleans()):
        fields["lr_schedule"] = tuple(draw(st.lists(st.sampled_from(SCHEDULE_FACTORS), min_size=1, max_size=5)))
    gaps = draw(st.lists(st.tuples(st.sampled_from(names), st.lists(st.integers(1, steps), min_size=1,
                                                                      max_size=steps, unique=True)),
                         max_size=2, unique_by=lambda gap: gap[0]))
    if gaps:
        fields["grad_none"] = tuple((name, tuple(sorted(steps_))) for name, steps_ in gaps)
    if dtype in LOW_PRECISION:
        fields["loss_scale"] = LOWP_LOSS_SCALE   # as the matrix: float16 gradients stay above the subnormals
    loss_decay = draw(st.sampled_from((1.0, 0.7)))
    if loss_decay != 1.0:
        fields["loss_decay"] = loss_decay
    batch = draw(st.sampled_from((16, 1, 5)))
    if batch != 16:
        fields["batch"] = batch
    fields["seed"] = draw(st.integers(0, 1000))
    if optimizer == "sgd" and impl == "fused" and gaps:
        fields["expect_error"] = FUSED_SGD_LATE_GRAD
    shapes = {name: np.shape(value) for name, value in scenario.initial_params(probe).items()}
    injections = draw(st.lists(st.tuples(st.sampled_from(names), st.integers(1, steps), st.sampled_from(NONFINITE)),
                               max_size=2))   # shrinks to none
    if injections:
        fields["inject"] = tuple((name, step, tuple(draw(st.integers(0, size - 1)) for size in shapes[name]), value)
                                 for name, step, value in injections)
    hyper = draw(hyperparameters(optimizer))
    if impl == "fused" and dict(hyper).get("amsgrad"):   # a NaN v, injected or from 0·∞ (β₂ = 0, an inf v)
        fields["expect_error"] = FUSED_AMSGRAD_KEEPS_ITS_MAX   # the matrix's documented difference
    return Case(id=fuzz_id(0, optimizer, dtype, impl), config="fuzz", optimizer=optimizer, hyperparameters=hyper,
                model=model, dtype=dtype, impl=impl, steps=steps, description="drawn by refwd validate --fuzz",
                **fields)


def fuzz_id(number, optimizer, dtype, impl, device="cpu"):
    return f"fuzz-{number}-{optimizer}-{SHORT_DTYPES[dtype]}-{impl}-{device}"


def numbered(case, number):
    return dataclasses.replace(case, id=fuzz_id(number, case.optimizer, case.dtype, case.impl, case.device))


@dataclass
class Outcome:
    """What one configuration gave: a status ("pass", "fail", "error", "known-defect" or "rejected"), one line."""

    case: Case
    status: str
    detail: str
    result: object = None     # the harness's CaseResult, where the configuration ran

    @property
    def failed(self):
        return self.status in (Status.FAIL, Status.ERROR)

    @property
    def signature(self):
        """What distinguishes one failure from another: the optimizer and the check, state key or exception."""
        failure = self.result.failure if self.result is not None else None
        if failure is not None:
            return (self.case.optimizer, str(failure.check), failure.key)
        return (self.case.optimizer, str(self.status), self.detail.split(":", 1)[0])


def _constructor_error(build):
    try:
        build()
    except Exception as error:   # the constructor's refusal is what is compared, whatever its class
        return error
    return None


def rejections(case):
    """(torch's constructor error or None, refwd's constructor error or None) for the case's optimizer."""
    params = scenario.initial_params(case)
    _, named = twin.torch_model(case, params)
    torch_error = _constructor_error(lambda: twin.torch_optimizer(case, named))
    refwd_error = _constructor_error(lambda: scenario.refwd_optimizer(case, list(params)))
    return torch_error, refwd_error


def _said(error):
    return f"{type(error).__name__}: {error}"


def check(case):
    """Run one configuration: the constructors' refusals compared, then the harness; an :class:`Outcome`."""
    torch_error, refwd_error = rejections(case)
    if torch_error is not None or refwd_error is not None:
        if torch_error is None:
            return Outcome(case, Status.FAIL, f"refwd rejects what torch accepts: {_said(refwd_error)}")
        if refwd_error is None:
            return Outcome(case, Status.FAIL, f"torch rejects: {_said(torch_error)}; refwd accepts it")
        if type(torch_error) is not type(refwd_error):
            return Outcome(case, Status.FAIL, f"torch rejects: {_said(torch_error)}; refwd rejects with another "
                                              f"class: {_said(refwd_error)}")
        return Outcome(case, REJECTED, f"torch rejects: {torch_error}")
    result = known_defect(harness.run_case(case))
    return Outcome(case, result.status, result.detail, result)


def known_defect(result):
    """``result`` as "known-defect" when its case has the conditions of a listed defect (optimizer, dtype, impl
    and device of a listed case), the torch version is affected and it fails in the listed way."""
    case = result.case
    if result.status not in (Status.FAIL, Status.ERROR) or result.torch_version is None:
        return result
    from .cases import CASE_IDS
    for defect in KNOWN_DEFECTS:
        conditions = {(c.optimizer, c.dtype, c.impl, c.device) for c in map(CASE_IDS.get, defect.cases)}
        text = result.error if result.status == Status.ERROR else result.detail
        if ((case.optimizer, case.dtype, case.impl, case.device) in conditions and defect.applies(result.torch_version)
                and defect.outcome == result.status and defect.match in (text or "")):
            result.status, result.defect = Status.KNOWN_DEFECT, defect
            break
    return result


def literal(case):
    """The case as a ``Case(...)`` literal of its non-default fields, to paste into cases.py (an injected inf or
    NaN written ``float('inf')``, ``float('nan')``)."""
    fields = [f"{field.name}={_source(getattr(case, field.name))}" for field in dataclasses.fields(Case)
              if field.name in ("id", "config", "optimizer")
              or getattr(case, field.name) != field.default]
    return f"Case({', '.join(fields)})"


def _source(value):
    if isinstance(value, float) and not math.isfinite(value):
        return f"float('{value}')"
    if isinstance(value, tuple):
        return f"({', '.join(map(_source, value))}{',' if len(value) == 1 else ''})"
    return repr(value)


def rerun_command(case):
    """A shell command that reruns the case (the literal has no double quotes, backslashes or dollar signs)."""
    return (f'python -c "from refwd_validation.cases import Case; from refwd_validation.fuzz import replay; '
            f'replay({literal(case)})"')


def replay(case, stdout=None):
    """Rerun one configuration and print its outcome; exits 1 if it fails, else 0 (for :func:`rerun_command`)."""
    with twin.one_thread():
        outcome = check(case)
    print(f"{case.id}: {outcome.status} ({outcome.detail})", file=stdout or sys.stdout)
    sys.exit(1 if outcome.failed else 0)


class FuzzFailure(Exception):
    """Raised inside the hypothesis test for a failing configuration (hypothesis then stops, or shrinks it)."""

    def __init__(self, outcome):
        super().__init__(f"{outcome.case.id}: {outcome.status} ({outcome.detail})")
        self.outcome = outcome


class Fuzzer:
    """The two-stage search (module docstring): :meth:`survey` draws and runs N configurations, :meth:`shrink`
    shrinks each distinct failure. ``report`` is called with each surveyed :class:`Outcome`.

    Each hypothesis run is seeded (``hypothesis.seed``; no example database), so a run that ended at a failure
    can be run again: :meth:`shrink` reruns it with the shrink phase on, only that failure's signature counting
    as a failure, and hypothesis draws the same configurations up to it (cached: they do not run again).
    """

    def __init__(self, count, seed, *, strategy=None, report=None):
        self.count, self.seed = count, seed
        self.strategy = strategy if strategy is not None else cases()
        self.report = report or (lambda outcome: None)
        self.cache = {}           # Case -> Outcome: a configuration drawn again (a replay) runs once
        self.surveyed = []        # the Outcomes of the N configurations, in order
        self.first_failures = {}  # signature -> (the hypothesis run's seed, its max_examples)
        self.shrink_runs = 0
        self.shrunk = []          # one minimal Outcome per distinct failure

    def _run(self, case, surveying, run):
        """The case's Outcome, and whether it ran now (not from the cache); None past the survey's N."""
        outcome = self.cache.get(case)
        if outcome is not None:
            return outcome, False
        if surveying and len(self.surveyed) >= self.count:
            return None, False
        outcome = self.cache[case] = check(numbered(case, len(self.surveyed) + 1 if surveying else 0))
        if surveying:
            self.surveyed.append(outcome)
            self.report(outcome)
            if outcome.failed:
                self.first_failures.setdefault(outcome.signature, run)
        else:
            self.shrink_runs += 1
        return outcome, True

    def _test(self, seed, phases, max_examples, target=None):
        """A seeded hypothesis test; it fails for a new failure (the survey) or for ``target``'s signature only."""
        ending = []
        @hypothesis_seed(seed)
        @settings(max_examples=max_examples, phases=phases, database=None, deadline=None, derandomize=False,
                  report_multiple_bugs=False, print_blob=False, verbosity=Verbosity.quiet,
                  suppress_health_check=list(HealthCheck))
        @given(self.strategy)
        def fuzz(case):
            # the survey stops at a new failure (one already counted does not end another run); the shrink
            # phase at any configuration with the target's signature
            outcome, fresh = self._run(case, target is None, (seed, max_examples))
            if fresh and outcome.failed:
                if target is None:
                    ending.append(case)   # hypothesis runs the failing example once more before it stops
            if outcome is not None and outcome.failed and (outcome.signature == target or case in ending):
                raise FuzzFailure(outcome)
        return fuzz

    def survey(self):
        """Draw and run the N configurations; a failure ends one hypothesis run, the next seed goes on."""
        attempt = stalled = 0
        while len(self.surveyed) < self.count and stalled < 3:
            before = len(self.surveyed)
            # a few more than are missing: hypothesis may draw a configuration already run (not counted twice)
            test = self._test(self.seed * 1_000_003 + attempt, [Phase.generate], self.count - before + 5)
            try:
                test()
            except FuzzFailure:
                pass
            attempt += 1
            stalled = stalled + 1 if len(self.surveyed) == before else 0

    def shrink(self):
        """Shrink the first failure of each distinct signature to a minimal configuration."""
        for number, (signature, (seed, max_examples)) in enumerate(self.first_failures.items(), 1):
            try:
                self._test(seed, [Phase.generate, Phase.shrink], max_examples, target=signature)()
            except FuzzFailure as error:
                outcome = error.outcome
            else:   # not reproduced (it should be): the surveyed configuration, unshrunk
                outcome = next(o for o in self.surveyed if o.failed and o.signature == signature)
            self.shrunk.append(dataclasses.replace(outcome, case=numbered(outcome.case, number)))


def counts(outcomes):
    out = {"run": len(outcomes), "passed": 0, "failed": 0, "rejected": 0, "known_defects": 0, "unsupported": 0}
    for outcome in outcomes:
        key = {Status.PASS: "passed", Status.KNOWN_DEFECT: "known_defects", REJECTED: "rejected",
               Status.UNSUPPORTED: "unsupported"}.get(outcome.status, "failed")
        out[key] += 1
    return out


def summary(fuzzer, seconds, interrupted=False, torch_version=""):
    """The closing report: counts, configurations per minute, and each distinct failure's reproducer."""
    c = counts(fuzzer.surveyed)
    rate = c["run"] / seconds * 60 if seconds > 0 else 0.0
    lines = [f"refwd validate --fuzz {fuzzer.count} --seed {fuzzer.seed}: torch {torch_version}: "
             f"{c['run']} configurations in {seconds:.1f} s ({rate:.0f} per minute)"
             + (", interrupted" if interrupted else ""),
             f"  passed {c['passed']}, failed {c['failed']}, rejected by both {c['rejected']}, "
             f"known torch defects {c['known_defects']}"
             + (f", unsupported by this torch {c['unsupported']}" if c["unsupported"] else "")
             + (f"; shrinking ran {fuzzer.shrink_runs} more" if fuzzer.shrink_runs else "")]
    defects = [o for o in fuzzer.surveyed if o.status == Status.KNOWN_DEFECT]
    for outcome in defects:
        lines.append(f"  known defect {outcome.case.id}: {outcome.result.defect.id}, {outcome.result.defect.reference}")
    failures = fuzzer.shrunk or [o for o in fuzzer.surveyed if o.failed]
    if failures:
        lines.append(f"failures ({len(failures)} distinct, " + ("shrunk" if fuzzer.shrunk else "not shrunk") + "):")
        for outcome in failures:
            lines += [f"  {outcome.case.id} [{outcome.status}]: {outcome.detail}",
                      f"    {literal(outcome.case)}",
                      f"    rerun: {rerun_command(outcome.case)}"]
    lines.append("result: " + ("FAILED" if c["failed"] else "OK"))
    return "\n".join(lines)


def fuzz(count, seed=None, *, optimizers=None, dtypes=None, impls=None, stdout=None, stderr=None, quiet=False,
         verbose=False):
    """``refwd validate --fuzz COUNT [--seed SEED]``: returns the exit code (0 nothing failed, 1 a failure,
    130 interrupted with nothing failed so far)."""
    import torch
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    seed = random.randrange(2 ** 32) if seed is None else seed
    strategy = cases(tuple(optimizers or TORCH_OPTIMIZERS), tuple(dtypes or DTYPES), tuple(impls or IMPLS))

    def report(outcome):
        if not quiet and (verbose or outcome.failed):
            print(f"{outcome.case.id}: {outcome.status} ({outcome.detail})", file=stderr)

    fuzzer = Fuzzer(count, seed, strategy=strategy, report=report)
    started, interrupted = time.perf_counter(), False
    try:
        # edge values (lr 1.5, weight decay 10) make some runs diverge: overflow warnings are expected there
        with twin.one_thread(), warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            fuzzer.survey()
            seconds = time.perf_counter() - started
            fuzzer.shrink()
    except KeyboardInterrupt:
        interrupted, seconds = True, time.perf_counter() - started
    print(summary(fuzzer, seconds, interrupted, torch.__version__), file=stdout)
    failed = any(outcome.failed for outcome in fuzzer.surveyed)
    if interrupted:
        print(f"refwd validate: interrupted after {len(fuzzer.surveyed)} of {count} configurations", file=stdout)
        return 1 if failed else 130
    return 1 if failed else 0
