"""How a figure goes into the data file: rounded to its precision, as a key part, a range, a list in words."""
import math

import hook_numbers  # docs/hook_numbers.py: the span syntax and the formats

PATH_KEYS = {"tensor-lr": "tensor_lr", "grad-scaler": "grad_scaler"}     # impl names as keys (no hyphens there)


def rounded(value, digits=6):
    """A float to ``digits`` significant digits (the data file's precision: no page shows more); ints, inf as is."""
    if value is None:
        return None
    if isinstance(value, str):
        value = float(value)
    if isinstance(value, int) or not math.isfinite(value) or value == 0:
        return value
    return float(f"{value:.{digits}g}")


def key_of(name):
    """A case id, impl or version as a key part: dots (which separate key parts) become underscores."""
    return name.replace(".", "_")


def span_range(values, digits=1):
    """"0.3 to 0.9": the range of ``values`` at ``digits`` decimals (one figure where both ends round alike)."""
    low, high = f"{min(values):.{digits}f}", f"{max(values):.{digits}f}"
    return low if low == high else f"{low} to {high}"


def bracket(value):
    """A relative error in ULPs of the dtype, as the scenario table shows it: 0.9, 690, 3,822, 1.2e4."""
    if value < 10:
        return f"{value:.1f}"
    if value < 1e4:
        return f"{value:,.0f}"
    return hook_numbers.format_value(value, "sci")


def words(items):
    """"a", "a and b", "a, b and c"."""
    items = list(items)
    return " and ".join(items) if len(items) < 3 else ", ".join(items[:-1]) + " and " + items[-1]
