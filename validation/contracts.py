"""The contracts of a pure rule, checked in every lock-step: dtype and shape kept, inputs untouched, no aliasing.

Values can agree with torch while the rule still breaks a training loop, so the lock-step check also asks, for
each parameter refwd's rule stepped (a parameter whose grad is None is skipped by the shell, which carries its
param and state over as they are, identity included):

1. **dtype and shape**: the new param and every state tensor of the new state have the input param's dtype
   and shape. torch keeps a float32 param float32; a rule that returns float64 for it stays within a few
   float32 ulps of torch, so the value comparison passes, yet a float32 training loop is float64 from its
   second step on. float16/bfloat16 cases: refwd computes in float64 by design, on inputs upcast exactly
   (:func:`refwd_validation.dtypes.compute_dtype`), and the harness rounds its result; there the contract is
   that the result is float64, refwd's compute dtype, which is again the input param's dtype. The ``step``
   count is a Python int in refwd (torch keeps a tensor): it is not a tensor and not checked here.
2. **inputs untouched**: the params, grads and state given to the rule are bit-identical after the step
   (bytes compared, so NaN payloads and -0.0 count).
3. **no aliasing**: no array of the new params or of the new state shares memory with the caller's params,
   grads or input state (``np.shares_memory``). refwd's rules document no deliberate identity: SGD without
   momentum returns a new array, SGD's first momentum buffer is ``grad.copy()``.

A broken contract is a lock-step :class:`refwd_validation.compare.Mismatch` whose message starts with
"contract:". :func:`inputs` takes the copies before the step; :func:`violations` lists what broke (no torch
needed: the mutant tests call it on refwd's shell alone); :func:`check` records them in a comparer.
"""
from dataclasses import dataclass

import numpy as np

from .outcomes import Check


@dataclass(frozen=True)
class Given:
    """The arrays given to the rule for one step, with a copy of their bytes taken before it."""

    arrays: dict     # {(parameter name, role, key): array}, role "param", "grad" or "state"
    copies: dict     # the same keys: (dtype, shape, bytes) before the step


def inputs(params, grads, state):
    """What the step is given, for the parameters that have a grad (the ones the rule sees)."""
    arrays = {}
    for name, grad in grads.items():
        if grad is None:
            continue
        arrays[name, "param", "param"] = params[name]
        arrays[name, "grad", "grad"] = grad
        for key, value in state.get(name, {}).items():
            if isinstance(value, np.ndarray):
                arrays[name, "state", key] = value
    return Given(arrays, {where: (array.dtype, array.shape, array.tobytes()) for where, array in arrays.items()})


def violations(given, new_params, new_state):
    """``[(parameter name, key, message)]``: every contract the step broke, dtype and shape first."""
    found = []
    stepped = sorted({name for name, _, _ in given.arrays})
    for name in stepped:
        param = given.arrays[name, "param", "param"]
        # the state first: a state tensor of the wrong dtype (an init) is the cause of a param of the wrong one
        outputs = {key: value for key, value in new_state.get(name, {}).items() if key != "step"}
        outputs["param"] = new_params[name]
        for key, value in outputs.items():
            if not isinstance(value, np.ndarray):
                found.append((name, key, f"contract: {key} comes back as {type(value).__name__}, not an array"))
            elif value.dtype != param.dtype:
                found.append((name, key, f"contract: {key} comes back {value.dtype} for a {param.dtype} param"))
            elif value.shape != param.shape:
                found.append((name, key, f"contract: {key} comes back with shape {value.shape} for a param "
                                          f"of shape {param.shape}"))
    for (name, role, key), array in given.arrays.items():
        dtype, shape, data = given.copies[name, role, key]
        if array.dtype != dtype or array.shape != shape or array.tobytes() != data:
            what = "param" if role == "param" else "grad" if role == "grad" else f"state {key!r}"
            found.append((name, key, f"contract: the rule changed its input {what} in place"))
    given_arrays = list(given.arrays.items())
    for name in stepped:
        outputs = {"param": new_params[name]}
        outputs.update((key, value) for key, value in new_state.get(name, {}).items()
                       if isinstance(value, np.ndarray))
        for key, value in outputs.items():
            if not isinstance(value, np.ndarray):
                continue
            for (owner, role, input_key), array in given_arrays:   # any parameter's: the shell could mix them
                if np.shares_memory(value, array):
                    what = "param" if role == "param" else "grad" if role == "grad" else f"state {input_key!r}"
                    whose = "" if owner == name else f" of {owner}"
                    found.append((name, key, f"contract: new {key} shares memory with the input {what}{whose}"))
    return found


def check(comparer, step, given, new_params, new_state):
    """Record each broken contract as a lock-step mismatch of ``comparer``; return how many there were."""
    found = violations(given, new_params, new_state)
    for name, key, message in found:
        comparer.mismatch(Check.LOCKSTEP, step, name, key, budget=0.0, message=message)
    return len(found)
