"""The dtypes the harness compares in, without torch: float16 and bfloat16 (ml_dtypes), and rounding as torch rounds.

ml_dtypes is imported on first use (its extension takes most of a second to load, which every ``refwd validate``
would pay before its first case otherwise).
"""
import functools

import numpy as np

LOW_PRECISION = ("float16", "bfloat16")


@functools.cache
def numpy_dtype(dtype):
    """The NumPy dtype of a dtype name: bfloat16 is ml_dtypes'."""
    if dtype == "bfloat16":
        import ml_dtypes
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(dtype)


def compute_dtype(dtype):
    """The NumPy dtype refwd computes in: the case's own for float64/float32, float64 for float16/bfloat16."""
    return np.dtype("float64") if dtype in LOW_PRECISION else np.dtype(dtype)


def round_to(array, dtype):
    """Round to ``dtype`` and return it in :func:`compute_dtype` (float16/bfloat16: as float64, exactly).

    float16 and bfloat16 are rounded through float32, as torch converts a float64 tensor to them: measured
    here, rounding straight from float64 differs from torch on about 1 value in 5,000 (double rounding).
    """
    if dtype not in LOW_PRECISION:
        return np.asarray(array, dtype=dtype)
    array = np.asarray(array, dtype=np.float64)
    with np.errstate(over="ignore"):  # beyond the dtype's range: ±inf, as torch gives
        return array.astype(np.float32).astype(numpy_dtype(dtype)).astype(np.float64)
