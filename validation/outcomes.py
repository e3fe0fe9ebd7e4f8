"""The names a run reports, as constants: the checks, the outcome of a case, and a case's drift from a recording."""
from enum import Enum


class Check(str, Enum):
    """The checks, in the order reports list them."""

    LOCKSTEP = "lockstep"           # refwd's rule on torch's params, grads and state gives torch's next ones
    GRADIENT = "gradient"           # refwd's loss and gradients (autograd) at torch's params
    FREE_RUNNING = "free-running"   # refwd's own trajectory against torch's
    STATE_DICT = "state-dict"       # torch's state_dict loaded into refwd comes back out unchanged
    CONSTRUCTOR = "constructor"     # an invalid hyperparameter: refwd raises torch's exception class

    def __str__(self):
        return self.value


class Status(str, Enum):
    """A case's outcome."""

    PASS = "pass"
    FAIL = "fail"                   # a check found a difference beyond the budget
    ERROR = "error"                 # torch (or the case) raised
    KNOWN_DEFECT = "known-defect"   # fails exactly as a listed, upstream-confirmed torch defect (defects.py)
    UNSUPPORTED = "unsupported"     # the installed torch cannot run the case (capabilities.py): counted apart

    def __str__(self):
        return self.value


class Drift(str, Enum):
    """How the installed torch compares with a recording of another, case by case (``--against``)."""

    IDENTICAL = "identical"                 # bit for bit
    WITHIN = "within"                       # changed within the budget
    BEYOND = "beyond"                       # changed beyond it
    NONDETERMINISTIC = "nondeterministic"   # the recorded torch differed from itself (a listed defect)
    ERROR = "error"                         # the replay raised where the recorded torch did not, or not the same
    UNSUPPORTED = "unsupported"             # the installed torch cannot run the case (capabilities.py): not compared

    def __str__(self):
        return self.value

    @property
    def words(self):
        return {"identical": "bit-identical", "within": "changed within tolerance",
                "beyond": "changed beyond tolerance", "error": "replay error",
                "nondeterministic": "not reproducible (torch differed between two runs when recorded)",
                "unsupported": "unsupported by the installed torch (not compared)"}[self.value]
