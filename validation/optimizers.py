"""The one registry of the optimizers the harness checks: everything else reads it.

Each entry ties refwd's optimizer class (and so its pure per-tensor rule) to torch's class of the same math, the
rule written again in error-scale arithmetic (:mod:`refwd_validation.tolerance`, independent of refwd's rule so
that a broken rule cannot widen its own tolerance), and whether torch has a fused implementation.
"""
from dataclasses import dataclass

import refwd

from . import tolerance


@dataclass(frozen=True)
class OptimizerSpec:
    key: str                  # the name on the command line and in case ids
    refwd_class: type         # refwd.optim.<class>; its ``rule`` is the reference
    torch_class: str | None   # the class name in torch.optim (None: torch has none)
    error_scale_rule: object  # the rule in error-scale arithmetic: (param, grad, state, **hyperparameters)
    fused: bool               # torch has a fused implementation
    scenarios: str = ""       # whose case-matrix scenarios a target of this rule runs (default: its own key)
    implied: tuple = ()       # the rule's keywords its key implies: not hyperparameters a target is given
    torch_twin: str = ""      # for a rule torch does not ship: its twin in refwd_validation.decoupled_twin

    @property
    def rule(self):
        return self.refwd_class.rule

    def torch_optimizer_class(self, torch):
        """torch's class of this rule, or the twin built from torch's primitives where torch ships none."""
        if self.torch_twin:
            from . import decoupled_twin
            return getattr(decoupled_twin, self.torch_twin)
        return getattr(torch.optim, self.torch_class)


OPTIMIZERS = {spec.key: spec for spec in (
    OptimizerSpec("sgd", refwd.optim.SGD, "SGD", tolerance.sgd, fused=True),
    OptimizerSpec("rmsprop", refwd.optim.RMSprop, "RMSprop", tolerance.rmsprop, fused=False),
    OptimizerSpec("adam", refwd.optim.Adam, "Adam", tolerance.adam, fused=True),
    OptimizerSpec("adamw", refwd.optim.AdamW, "AdamW", tolerance.adamw, fused=True,
                  implied=("decoupled_weight_decay",)),
    # refwd's decoupled variants torch does not ship: in the matrix against their twins (a decoupled shrink, then
    # torch's own SGD or RMSprop step), and as targets (refwd check) on SGD's and RMSprop's scenarios
    OptimizerSpec("sgdw", refwd.optim.SGDW, None, tolerance.sgdw, fused=False, scenarios="sgd",
                  implied=("decay_convention", "initial_lr"), torch_twin="SGDW"),
    OptimizerSpec("rmspropw", refwd.optim.RMSpropW, None, tolerance.rmspropw, fused=False, scenarios="rmsprop",
                  implied=("decay_convention", "initial_lr"), torch_twin="RMSpropW"),
)}
TORCH_OPTIMIZERS = tuple(key for key, spec in OPTIMIZERS.items() if spec.torch_class)   # the ones torch ships
MATRIX_OPTIMIZERS = tuple(key for key, spec in OPTIMIZERS.items() if spec.torch_class or spec.torch_twin)


def spec_for_refwd(optimizer):
    """The entry of a refwd optimizer instance (a subclass counts as its base)."""
    spec = _most_derived(optimizer, {spec.refwd_class: spec for spec in OPTIMIZERS.values()})
    if spec is None:
        names = ", ".join(spec.refwd_class.__name__ for spec in OPTIMIZERS.values())
        raise TypeError(f"{type(optimizer).__name__} is not one of refwd's optimizers ({names})")
    return spec


def spec_for_torch(optimizer, torch):
    """The entry of a torch optimizer instance (a subclass counts as its base)."""
    spec = _most_derived(optimizer, {OPTIMIZERS[key].torch_optimizer_class(torch): OPTIMIZERS[key]
                                     for key in TORCH_OPTIMIZERS})
    if spec is None:
        names = ", ".join(f"torch.optim.{OPTIMIZERS[key].torch_class}" for key in TORCH_OPTIMIZERS)
        raise TypeError(f"no refwd equivalent for {type(optimizer).__module__}.{type(optimizer).__name__}; "
                        f"refwd has {names}")
    return spec


def _most_derived(optimizer, classes):
    """The entry of the most derived class ``optimizer`` is an instance of, or None (torch's and refwd's AdamW
    subclass Adam: an AdamW is an Adam too, and must be taken for an AdamW)."""
    matches = [cls for cls in classes if isinstance(optimizer, cls)]
    return classes[max(matches, key=lambda cls: len(cls.__mro__))] if matches else None
