"""Known, upstream-confirmed torch defects: the cases they break, for which torch versions, and where upstream.

A case listed here that fails or errors (with the listed kind of outcome) is reported as "known-defect" and
does not fail the run. The table never hides anything else: a case not listed keeps its failure, a listed case
that fails in another way (a different error, or a failure where an error is listed) keeps its failure too,
and a listed case that passes is reported as passing.

Only entries with an upstream reference go here. A torch misbehaviour without one is reported as what it is,
a failure, and described in docs/oracle.md under findings.
"""
from dataclasses import dataclass

from packaging.version import Version

from .cases import CASE_IDS, case_id
from .outcomes import Check, Status


@dataclass(frozen=True)
class KnownDefect:
    id: str
    summary: str
    torch_min: str            # first affected torch version (inclusive)
    torch_max: str | None     # last affected version (inclusive); None: not fixed as of the newest checked
    reference: str            # the upstream issue or pull request
    cases: tuple              # the case ids affected
    outcome: Status = Status.ERROR   # ERROR (torch raises) or FAIL (wrong numbers)
    match: str = ""           # text the error or failure must contain
    nondeterministic: bool = False  # torch's numbers differ between runs here: a recording of such a case may
                                    # claim an irreproducible step (refwd_validation/recording/checks.py)

    def applies(self, version):
        """Whether ``version`` (torch's, local build tags such as "+cpu" ignored) is in the affected range."""
        version = Version(Version(version).base_version)
        return Version(self.torch_min) <= version and (self.torch_max is None or version <= Version(self.torch_max))

    def to_dict(self):
        return {"id": self.id, "summary": self.summary, "torch_min": self.torch_min, "torch_max": self.torch_max,
                "reference": self.reference, "outcome": self.outcome, "nondeterministic": self.nondeterministic}


KNOWN_DEFECTS = (
    KnownDefect(
        id="fused-sgd-cpu-lowp-vectorized",
        summary="fused SGD on CPU leaves every full SIMD block of a float16/bfloat16 param unchanged: only the "
                "scalar tail is updated (and the momentum path mishandles the buffer)",
        torch_min="2.4.1",    # measured by the version sweep (docs/version-sweep.md): 2.4.1, the oldest in the
        torch_max="2.13.0",   # range, fails through 2.13.0; 2.14.0 and 2.14.1 pass
        reference="https://github.com/pytorch/pytorch/issues/191763 (fix: "
                  "https://github.com/pytorch/pytorch/pull/192545)",
        cases=tuple(case_id(config, dtype, "fused", "cpu") for config in ("lowp-sgd", "lowp-sgd-nesterov")
                    for dtype in ("float16", "bfloat16")),
        outcome=Status.FAIL,
        match=str(Check.LOCKSTEP),
        nondeterministic=True,   # the kernel reads memory it never wrote (#191763): results vary from run to run
    ),
)


def _check_table():
    for defect in KNOWN_DEFECTS:
        unknown = [case for case in defect.cases if case not in CASE_IDS]
        if unknown:
            raise ValueError(f"known defect {defect.id} lists unknown cases {unknown}")


_check_table()


def defect_for(case_id, version):
    for defect in KNOWN_DEFECTS:
        if case_id in defect.cases and defect.applies(version):
            return defect
    return None


def classify(result):
    """Turn a listed case's expected failure into "known-defect"; leave everything else as it is."""
    if result.status not in (Status.FAIL, Status.ERROR) or result.torch_version is None:
        return result
    defect = defect_for(result.case.id, result.torch_version)
    if defect is None or defect.outcome != result.status:
        return result
    text = result.error if result.status == Status.ERROR else result.detail
    if defect.match and defect.match not in (text or ""):
        return result
    result.status = Status.KNOWN_DEFECT
    result.defect = defect
    return result
