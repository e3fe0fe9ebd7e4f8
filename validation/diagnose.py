"""Diagnosis of a target that disagrees with refwd's rule: a named convention, or a finding.

Many differences are deliberate conventions (ε inside the root, the lr inside a momentum buffer, hyperparameters
held in float32, ...). When a target fails the requested rule, :func:`diagnose` runs the failing cases again
against refwd's rule under each library profile (:data:`refwd.optim.profiles.PROFILES`, each with its own error
model) and reports the profiles that explain every failure, with their worst ULPs. When none does, the
difference is a finding: its first step, parameter, state key and element, and the hyperparameters that must be
non-default to see it (each case re-run with one hyperparameter at a time back at refwd's default).
"""
import dataclasses
from dataclasses import dataclass, field

from refwd.optim.profiles import FLOAT32_HYPERPARAMETERS, PROFILES
from refwd.optim.rounding import hyperparameters_in_float32

from .optimizers import OPTIMIZERS
from .outcomes import Status


@dataclass
class Diagnosis:
    reference: str
    profile: str
    failing: list                                   # the failing CaseResults against the requested rule
    explained_by: list = field(default_factory=list)  # [(profile, worst ULPs)], best first
    needs: dict = field(default_factory=dict)       # {case id: [hyperparameters that must be non-default]}

    @property
    def explained(self):
        return bool(self.explained_by)

    def describe(self):
        first = self.failing[0].failure
        head = (f"differs from refwd's {self.reference} ({self.profile}'s conventions) in {len(self.failing)} case(s), "
                f"first at {first.describe()}")
        if self.explained_by:
            agreements = "; ".join(f"{profile} ({_conventions(profile, self.reference)}) to {ulps:.2g} ULPs of the "
                                   "error scale" for profile, ulps in self.explained_by)
            return f"{head}; agrees with {agreements}"
        needed = {flag for flags in self.needs.values() for flag in flags}
        narrowed = (f"; it shows only with {', '.join(sorted(needed))} set" if needed else
                    "; no single hyperparameter switched off removes it")
        return f"{head}; no known convention explains it: a finding{narrowed}"

    def to_dict(self):
        return {"reference": self.reference, "failing": [r.case.id for r in self.failing],
                "explained_by": [{"profile": p, "conventions": _conventions(p, self.reference), "worst_ulps": u}
                                 for p, u in self.explained_by],
                "needs": self.needs, "text": self.describe()}


def _conventions(profile, reference):
    if profile in FLOAT32_KERNELS:
        return f"{', '.join(FLOAT32_KERNELS[profile])} held in float32"
    conventions = PROFILES[profile].get(reference, {})
    words = [f"{key}={value}" for key, value in conventions.items()]
    if FLOAT32_HYPERPARAMETERS.get(profile):
        words.append(f"{', '.join(FLOAT32_HYPERPARAMETERS[profile])} held in float32")
    return ", ".join(words) or "torch's"


# Besides the libraries' profiles: the target's own profile with hyperparameters held in float32 (kernels that
# store lr and β, or every hyperparameter, in float32 even for float64 weights), under these names.
FLOAT32_KERNELS = {"float32-lr-betas": ("lr", "betas"),
                   "float32-hyperparameters": ("lr", "betas", "eps", "weight_decay", "momentum", "dampening", "alpha")}


def profile_rules(reference, profile, base=None):
    """(rule, error-scale rule) of ``reference`` under ``profile``, or None if that library has no such rule.
    A :data:`FLOAT32_KERNELS` name is profile ``base``'s conventions with those hyperparameters in float32."""
    if profile in FLOAT32_KERNELS:
        conventions, in_float32 = PROFILES[base or "torch"].get(reference, {}), FLOAT32_KERNELS[profile]
    else:
        conventions = PROFILES[profile].get(reference)
        if conventions is None:
            return None
        in_float32 = FLOAT32_HYPERPARAMETERS.get(profile, ())
    spec = OPTIMIZERS[reference]

    def variant(rule):
        def with_conventions(param, grad, state, **hyperparameters):
            hyperparameters = hyperparameters_in_float32(hyperparameters, in_float32)
            return rule(param, grad, state, **{**hyperparameters, **conventions})
        return with_conventions

    return variant(spec.rule), variant(spec.error_scale_rule)


def diagnose(target, results, check_case):
    """A :class:`Diagnosis` of ``target``'s failing ``results`` (None when nothing failed).

    ``check_case(target, case, rules=..., error_scale_rules=...)`` runs one case (refwd_validation.check).
    """
    failing = [result for result in results if result.status == Status.FAIL and result.failure.key != "state"]
    if not failing:   # nothing failed, or only the state mapping (check_case's note says how to map it)
        return None
    diagnosis = Diagnosis(target.reference, target.profile, failing)
    for profile in (*PROFILES, *FLOAT32_KERNELS):
        if profile == target.profile:
            continue
        rules = profile_rules(target.reference, profile, base=target.profile)
        if rules is None or (profile in PROFILES and not PROFILES[profile][target.reference]
                             and not FLOAT32_HYPERPARAMETERS.get(profile)):
            continue   # no such optimizer in that library, or exactly torch's conventions (already failed)
        again = [check_case(target, result.case, rules={target.reference: rules[0]},
                            error_scale_rules={target.reference: rules[1]}) for result in failing]
        if all(result.status == Status.PASS for result in again):
            diagnosis.explained_by.append((profile, max(result.worst_ulps for result in again)))
    diagnosis.explained_by.sort(key=lambda item: item[1])
    if not diagnosis.explained:
        for result in failing[:3]:
            diagnosis.needs[result.case.id] = _needed(target, result.case, check_case)
    return diagnosis


def _needed(target, case, check_case):
    """The hyperparameters of ``case`` without which it passes (each set back to refwd's default alone)."""
    needed = []
    for flag in sorted({key for key, value in case.hyperparameters if key != "lr" and value} |
                       {key for _, overrides in case.groups for key, value in overrides if key != "lr" and value}):
        plain = dataclasses.replace(
            case, hyperparameters=tuple((k, v) for k, v in case.hyperparameters if k != flag),
            groups=tuple((selector, tuple((k, v) for k, v in overrides if k != flag))
                         for selector, overrides in case.groups))
        if check_case(target, plain).status == Status.PASS:
            needed.append(flag)
    return needed
