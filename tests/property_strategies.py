"""Bounded hypothesis strategies and rounding constants shared by the property tests (bounds: test_properties.py)."""
import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

DTYPES = ("float64", "float32")
LR = st.floats(1e-4, 1.0)
WEIGHT_DECAY = st.one_of(st.just(0.0), st.floats(1e-4, 1.0))
BETA1 = st.one_of(st.just(0.0), st.floats(1e-4, 0.99))   # no tiny β₁: β₁·m would underflow in float32
POSITIVE_WEIGHT_DECAY = st.floats(1e-4, 1.0)
EPS = st.floats(1e-8, 1e-3)
MOMENTUM = st.floats(0.1, 0.99)
DAMPENING = st.one_of(st.just(0.0), st.floats(1e-4, 0.9))


def unit_roundoff(dtype):
    return float(np.finfo(dtype).eps) / 2


def gamma(k, dtype):
    """Higham's γ_k = k·u/(1 − k·u): the relative error of k successive roundings."""
    u = unit_roundoff(dtype)
    return k * u / (1 - k * u)


def casts(dtype):
    """c: the rounding of a Python-float hyperparameter converted to the array's dtype (1 in float32, 0 in float64)."""
    return 1 if np.dtype(dtype) == np.float32 else 0


def floats(low, high, dtype):
    """Floats of ``dtype`` in [low, high] (the bounds rounded to the dtype; for float32 both stay inside)."""
    return st.floats(float(np.dtype(dtype).type(low)), float(np.dtype(dtype).type(high)),
                     width=np.dtype(dtype).itemsize * 8)


def arrays(dtype, shape):
    """Arrays of ``dtype`` whose elements are 0 or ±m, m in [1e-3, 10]: floats in [−10, 10] with the
    magnitudes below 1e-3 set to 0 (one array strategy of plain floats is ten times faster to draw than an
    element strategy that builds the two cases)."""
    return floats_array(dtype, shape, -10.0, 10.0).map(lambda values: np.where(np.abs(values) < 1e-3, 0, values))


def floats_array(dtype, shape, low, high):
    return hnp.arrays(dtype, shape, elements=floats(low, high, dtype))


@st.composite
def trajectories(draw, dtypes=DTYPES):
    """(dtype, θ₀, [g₁, ..., g_T]): a parameter and a gradient sequence, 1 to 6 elements, 1 to 20 steps."""
    dtype = draw(st.sampled_from(dtypes))
    size = draw(st.integers(1, 6))
    steps = draw(st.integers(1, 20))
    values = draw(arrays(dtype, (steps + 1, size)))
    return dtype, values[0].copy(), [row.copy() for row in values[1:]]
