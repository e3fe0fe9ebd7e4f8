"""The one comparer: two arrays, measured in ULPs of their error scale, and the mismatch record that pinpoints them.

The harness (refwd against torch), the replay of a recording (a recorded torch against the installed one) and
the watcher (live training) all compare through :class:`Comparer` and report a :class:`Mismatch`: which check,
step, parameter, state key and element, both values, the ULPs of the error scale and the budget.
"""
import math
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from . import tolerance
from .outcomes import Check


@dataclass
class Mismatch:
    """Where two sides first disagree beyond the budget: the worst element of one tensor at one step."""

    check: Check
    step: int                     # 1-based step
    parameter: str | None         # parameter name; None for the loss
    key: str                      # "param", a state key ("exp_avg", "step", ...), "grad" or "loss"
    index: tuple | None           # element index in the tensor
    first: float | None           # the value on the first side (refwd, or the recording)
    second: float | None          # the value on the second side (torch, or the installed torch)
    ulps: float                   # |first − second| in ULPs of the error scale (inf: not comparable)
    budget: float
    scale: float | None = None    # the error scale at that element
    message: str = ""             # instead of the values: why the tensors could not be compared
    sides: tuple = ("refwd", "torch")

    def describe(self):
        where = f"step {self.step}"
        if self.parameter is not None:
            where += f", {self.parameter}"
        where += f", {self.key}"
        if self.index is not None:
            where += f"[{', '.join(map(str, self.index))}]"
        if self.message:
            return f"{self.check}: {where}: {self.message}"
        return (f"{self.check}: {where}: {self.sides[0]} {self.first!r} vs {self.sides[1]} {self.second!r}, "
                f"{format_ulps(self.ulps)} ulp (budget {self.budget:g})")

    def to_dict(self):
        return {"check": str(self.check), "step": self.step, "parameter": self.parameter, "key": self.key,
                "index": list(self.index) if self.index is not None else None,
                self.sides[0]: jsonable(self.first), self.sides[1]: jsonable(self.second),
                "ulps": jsonable(self.ulps), "budget": self.budget, "scale": jsonable(self.scale),
                "message": self.message, "text": self.describe()}


@dataclass
class Worst:
    """The worst agreement seen for one (check, quantity): ULPs of the error scale, and relative difference."""

    ulps: float = 0.0
    relative_difference: float = 0.0
    compared: int = 0

    def update(self, ulps, relative_difference):
        if ulps.size:
            self.ulps = max(self.ulps, float(np.max(ulps)))
            self.relative_difference = max(self.relative_difference, float(np.max(relative_difference)))
            self.compared += int(ulps.size)


@dataclass
class Comparer:
    """Compares tensors of one dtype; keeps the worst figures per (check, quantity) and every mismatch found.

    ``sides`` names the two sides in the mismatches. ``mismatches`` holds them in the order found, so the first
    is the pinpoint; ``on_mismatch`` (optional) sees each one as it is found.
    """

    dtype: str
    sides: tuple = ("refwd", "torch")
    worst: dict = field(default_factory=dict)          # {(check, quantity): Worst}
    mismatches: list = field(default_factory=list)
    on_mismatch: object = None

    @property
    def failed(self):
        return bool(self.mismatches)

    def compare(self, check, step, parameter, key, first, second, error_scale, exact=False, signed_zeros=None):
        """Compare two arrays elementwise against the budget of ``key``; return the mismatch found, or None.

        Where ``exact`` (a boolean mask, or one bool) the two must agree exactly in what is not finite, NaN against
        NaN and each inf against the same inf, even where the error scale is infinite: the elements whose inputs
        were not finite, where IEEE arithmetic decides the outcome. Elsewhere a non-finite value is a difference
        like any other, except where the error model calls the element indeterminate (an infinite scale: a
        cancellation under a square root, an overflow). Zeros' signs must agree where the value is exact (error
        scale 0) or ``exact``, unless ``signed_zeros`` is False (default: everywhere but in sums, :data:`SUMS`).
        """
        worst = self.measure(check, step, parameter, key, first, second, error_scale, exact, signed_zeros)
        if worst is None or worst.ulps <= worst.budget:
            return None
        return self.record(worst)

    def measure(self, check, step, parameter, key, first, second, error_scale, exact=False, signed_zeros=None):
        """The worst element of ``first`` against ``second`` as a :class:`Mismatch` (within the budget or not;
        None for empty arrays), the worst figures updated. Arrays of different shapes are a mismatch at once."""
        budget = tolerance.budget(self.dtype, key)
        first = np.asarray(first, dtype=np.float64)
        second = np.asarray(second, dtype=np.float64)
        if first.shape != second.shape:
            return self.mismatch(check, step, parameter, key, budget=budget,
                                 message=f"{self.sides[0]} has shape {first.shape}, {self.sides[1]} {second.shape}")
        if first.size and first.tobytes() == second.tobytes():   # bit for bit: 0 ULPs at every element
            self.worst.setdefault((check, key), Worst()).compared += first.size
            scale = np.broadcast_to(np.asarray(error_scale, dtype=np.float64), first.shape).flat[0]
            return Mismatch(check, step, parameter, key, (0,) * first.ndim if first.ndim else None,
                            float(first.flat[0]), float(second.flat[0]), 0.0, budget, float(scale), sides=self.sides)
        ulps = tolerance.ulps(first, second, error_scale, self.dtype)
        # a zero's sign is compared where the value is exact (scale 0) or IEEE decides it (non-finite inputs):
        # elsewhere a zero may be the rounding of a tiny number of either sign (an underflow in float16)
        signed_zeros = (key not in SUMS if signed_zeros is None else signed_zeros) & (
            (np.asarray(error_scale) == 0) | np.asarray(exact))
        ulps = np.where(unlike(first, second, exact=exact, signed_zeros=signed_zeros), np.inf, ulps)
        self.worst.setdefault((check, key), Worst()).update(ulps, tolerance.relative_error(first, second))
        if not ulps.size:
            return None
        flat = int(np.argmax(ulps))
        index = tuple(int(i) for i in np.unravel_index(flat, ulps.shape)) if ulps.ndim else None
        scale = np.broadcast_to(np.asarray(error_scale, dtype=np.float64), ulps.shape).flat[flat]
        return Mismatch(check, step, parameter, key, index, float(first.flat[flat]), float(second.flat[flat]),
                        float(ulps.flat[flat]), budget, float(scale), sides=self.sides)

    def compare_keys(self, check, step, parameter, first_state, second_state):
        """State keys must agree as sets, and integer step counts exactly."""
        if set(first_state) != set(second_state):
            only_first = sorted(set(first_state) - set(second_state))
            only_second = sorted(set(second_state) - set(first_state))
            self.mismatch(check, step, parameter, "state", budget=0.0,
                          message=f"state keys differ: only in {self.sides[0]} {only_first}, only in "
                                  f"{self.sides[1]} {only_second}")
        if "step" in first_state and "step" in second_state:
            self.compare_count(check, step, parameter, int(np.asarray(first_state["step"])),
                               int(np.asarray(second_state["step"])))

    def compare_count(self, check, step, parameter, first, second):
        """An integer step count: equal, or a mismatch."""
        same = first == second
        self.worst.setdefault((check, "step"), Worst()).update(np.array([0.0 if same else math.inf]),
                                                               np.array([0.0 if same else 1.0]))
        if not same:
            self.mismatch(check, step, parameter, "step", first=first, second=second, budget=0.0,
                          message=f"step count: {self.sides[0]} {first} vs {self.sides[1]} {second}")

    def mismatch(self, check, step, parameter, key, *, budget, message, first=None, second=None):
        """Record a mismatch that is not a difference of values (shapes, keys, counts, a missing tensor)."""
        return self.record(Mismatch(check, step, parameter, key, None, first, second, math.inf, budget,
                                    message=message, sides=self.sides))

    def record(self, mismatch):
        """Keep ``mismatch`` (and show it to ``on_mismatch``); return it."""
        self.mismatches.append(mismatch)
        if self.on_mismatch is not None:
            self.on_mismatch(mismatch)
        return mismatch


# Sums over a batch (a matrix product): the sign of an exact zero sum depends on where the summation starts (-0.0
# + -0.0 is -0.0, a BLAS accumulator that starts at +0.0 gives +0.0), so their zeros' signs are not compared.
SUMS = ("grad", "loss")


def unlike(first, second, *, exact=True, signed_zeros=True):
    """Where two arrays differ in what no budget covers: (where ``exact``) a NaN against a number or an inf against
    anything but the same inf, and (where ``signed_zeros``) +0.0 against -0.0. The budget is for finite values only.
    ``exact`` and ``signed_zeros`` are boolean masks that broadcast against the arrays, or single bools."""
    with np.errstate(invalid="ignore"):
        same = (first == second) | (np.isnan(first) & np.isnan(second))
        out = ~(np.isfinite(first) & np.isfinite(second)) & ~same & exact
        out = out | ((first == 0) & (second == 0) & (np.signbit(first) != np.signbit(second)) & signed_zeros)
    return out


def format_ulps(value):
    return "inf" if not math.isfinite(value) else f"{value:.3g}"


def jsonable(value):
    """A value for a JSON report: NumPy scalars as Python numbers, ±inf and NaN as strings, tuples as lists."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [jsonable(item) for item in value]
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value
