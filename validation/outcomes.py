"""The names a run reports, as constants: the checks a comparison belongs to and the outcome of a case."""
from enum import Enum


class Check(str, Enum):
    """The three checks, in the order reports list them."""

    LOCKSTEP = "lockstep"           # refwd's rule on torch's params, grads and state gives torch's next ones
    GRADIENT = "gradient"           # refwd's loss and gradients (autograd) at torch's params
    FREE_RUNNING = "free-running"   # refwd's own trajectory against torch's

    def __str__(self):
        return self.value


class Status(str, Enum):
    """A case's outcome."""

    PASS = "pass"
    FAIL = "fail"                   # a check found a difference beyond the budget
    ERROR = "error"                 # torch (or the case) raised
    KNOWN_DEFECT = "known-defect"   # fails exactly as a listed, upstream-confirmed torch defect (refwd_validation.defects)

    def __str__(self):
        return self.value
