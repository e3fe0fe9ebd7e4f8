"""Mapping a target's optimizer state to refwd's state keys: renamed keys, nested state, and stored conventions.

A *state map* says, for each of refwd's state keys, where the target keeps it and in which form::

    refwd_key=target_path[:transform]

``target_path`` is the target's key, or a dotted path into nested state (``moments.first``); ``transform`` is
how the target stores the quantity, undone before refwd sees it:

- ``lr_scaled``: the target keeps γ·b (a momentum buffer that holds the lr, as Keras SGD does): b = stored / γ;
- ``bias_corrected1``: the target keeps m̂ = m / (1 − β₁ᵗ): m = stored · (1 − β₁ᵗ);
- ``bias_corrected2``: the target keeps v̂ = v / (1 − β₂ᵗ): v = stored · (1 − β₂ᵗ);
- ``negated``: the target keeps −b (optax's momentum ``trace`` of updates, which are negative steps): b = −stored.

Keys of refwd's the map does not name are looked up under their own name. ``step=`` (an empty path) says the
target keeps no step count per parameter (optax counts per tree, some libraries per group): refwd's own count of
the parameter's steps stands in for it, and the step counts are then not compared. A transform is one more rounding
(computed in float64 and rounded back to the target's dtype): the harness adds the value's magnitude to the error
scale of a
transformed key (:attr:`refwd_validation.twin.TorchStep.transformed`).
"""
from dataclasses import dataclass

import numpy as np

TRANSFORMS = ("lr_scaled", "bias_corrected1", "bias_corrected2", "negated")
EXACT_TRANSFORMS = ("negated",)          # no rounding: nothing added to the error scale


class StateMapError(ValueError):
    """A state map that cannot be parsed or applied: the message names the key."""


@dataclass(frozen=True)
class Entry:
    path: tuple        # the target's key, or the keys of a nested path
    transform: str = ""


@dataclass(frozen=True)
class StateMap:
    """{refwd key: Entry}; keys not named map to themselves. ``step_key`` is where the target counts steps."""

    entries: tuple = ()          # ((refwd key, Entry), ...)

    @classmethod
    def parse(cls, items):
        """From ``["exp_avg=m", "momentum_buffer=buf:lr_scaled", ...]`` (or a dict refwd key -> spec)."""
        pairs = items.items() if isinstance(items, dict) else (_split(item) for item in items or ())
        entries = []
        for refwd_key, spec in pairs:
            path, _, transform = spec.partition(":")
            if refwd_key == "step" and not path and not transform:
                entries.append((refwd_key, Entry(())))           # not kept by the target
                continue
            if not path or any(not part for part in path.split(".")):
                raise StateMapError(f"state map {refwd_key}={spec}: the target's key is empty")
            if transform and transform not in TRANSFORMS:
                raise StateMapError(f"state map {refwd_key}={spec}: unknown transform {transform!r}; choose from "
                                    f"{', '.join(TRANSFORMS)}")
            entries.append((refwd_key, Entry(tuple(path.split(".")), transform)))
        return cls(tuple(entries))

    @property
    def transformed(self):
        """The refwd keys converted from another stored form."""
        return frozenset(key for key, entry in self.entries
                         if entry.transform and entry.transform not in EXACT_TRANSFORMS)

    def entry(self, refwd_key):
        return dict(self.entries).get(refwd_key, Entry((refwd_key,)))

    def to_refwd(self, target_state, refwd_keys, hyperparameters, steps_taken=None):
        """The target's state of one parameter in refwd's keys and form: {refwd key: array or int step}, arrays in
        the target's dtype (a transform is computed in float64 and rounded back to it: one rounding).

        ``refwd_keys`` are the keys refwd's rule keeps for these hyperparameters; a key the target lacks is
        absent from the result (before the parameter's first step, say). ``steps_taken`` is the parameter's
        number of steps so far, for a target that keeps no count (``step=``). Raises :class:`StateMapError` naming the
        key and what the target has, for a path that leads into something that is not a mapping.
        """
        out = {}
        step_path = self.entry("step").path
        step = _lookup(target_state, step_path) if step_path else (steps_taken or None) if "step" in refwd_keys \
            else None
        if step is not None:
            out["step"] = int(np.asarray(step).item())
        for key in refwd_keys:
            if key == "step":
                continue
            entry = self.entry(key)
            value = _lookup(target_state, entry.path)
            if value is None:
                continue
            value = np.asarray(value)
            out[key] = _undo(entry.transform, value.astype(np.float64), hyperparameters, out.get("step")).astype(
                value.dtype) if entry.transform else value
        return out

    def unmapped(self, target_state, refwd_keys):
        """The target's top-level keys that no refwd key maps to (state refwd cannot check)."""
        used = {self.entry(key).path[0] for key in refwd_keys}
        return sorted(str(key) for key in target_state if key not in used)


def _split(item):
    refwd_key, equals, spec = str(item).partition("=")
    if not equals or not refwd_key:
        raise StateMapError(f"state map entry {item!r} is not refwd_key=target_key[:transform]")
    return refwd_key.strip(), spec.strip()


def _lookup(state, path):
    value = state
    for part in path:
        if value is None:
            return None
        if not hasattr(value, "get"):
            raise StateMapError(f"state path {'.'.join(path)}: {part!r} is looked up in a {type(value).__name__}, "
                                "not a mapping")
        value = value.get(part)
    return value


def _undo(transform, value, hyperparameters, step):
    if not transform:
        return value
    if transform == "lr_scaled":
        return value / hyperparameters["lr"]
    if transform == "negated":
        return -value
    if step is None:
        raise StateMapError(f"transform {transform} needs the step count; map 'step' to the target's counter")
    beta1, beta2 = hyperparameters["betas"]
    return value * (1 - (beta1 if transform == "bias_corrected1" else beta2) ** step)


def describe_scaling(refwd_value, target_value):
    """A wrong mapping told apart from wrong math: if the target's value is refwd's times one constant at every
    element (a scaling convention: an lr, a bias correction), say so; else None."""
    refwd_value = np.asarray(refwd_value, dtype=np.float64)
    target_value = np.asarray(target_value, dtype=np.float64)
    usable = (refwd_value != 0) & np.isfinite(refwd_value) & np.isfinite(target_value)
    if refwd_value.shape != target_value.shape or usable.sum() < 2:
        return None
    ratios = target_value[usable] / refwd_value[usable]
    ratio = float(np.median(ratios))
    if ratio != 0 and abs(ratio - 1) > 1e-3 and np.all(np.abs(ratios / ratio - 1) < 1e-3):
        return (f"the target's value is refwd's times {ratio:.6g} at every element: a scaling convention (an lr, a "
                "bias correction?), not the math; map it with a transform (lr_scaled, bias_corrected1/2)")
    return None
