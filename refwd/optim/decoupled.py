"""Decoupled weight decay for the rules torch ships only coupled: the shrink, its two conventions, the shell.

Loshchilov & Hutter's fix for L2 under adaptive methods takes λθ out of the gradient and shrinks θ directly,
before the rule's own update. How much θ shrinks per step is a convention:

- ``"torch"`` (the default): by γλ, the group's *current* lr times ``weight_decay``, as ``torch.optim.AdamW``
  does. A scheduler that scales the lr scales the decay with it.
- ``"paper"``: by η_t·λ, the *schedule multiplier* times ``weight_decay``, as in the paper's Algorithms 1
  and 2, where the lr is α·η_t and the base lr α does not multiply the decay. refwd reads η_t as γ/γ₀, the
  current lr over ``initial_lr`` (the key torch's LR schedulers store in each group; the shell fills it with
  the group's lr when the group is added). A schedule that sets ``lr`` in the param groups therefore drives
  both conventions alike; the only difference is that the paper's λ is not multiplied by α:
  ``"paper"`` with λ is ``"torch"`` with λ/γ₀.
- ``"independent"``: by λ itself, θ ← (1 − λ)θ, whatever the lr: the decay of an optimizer whose
  ``weight_decay`` is a per-step shrink (optax's ``add_decayed_weights`` chained *after* the lr scaling, or
  a hand-written ``p.mul_(1 - wd)``). ``"independent"`` with λ is ``"torch"`` with λ/γ while the lr is γ.

:func:`decay_rate` is the one place the three are written; every decoupled rule (SGDW, RMSpropW and Adam's
decoupled path, AdamW) shrinks by ``1 - decay_rate(...)`` in one visible line.
"""
from .optimizer import Optimizer

DECAY_CONVENTIONS = ("torch", "paper", "independent")


def check_decay_convention(decay_convention):
    if decay_convention not in DECAY_CONVENTIONS:
        raise ValueError(f"decay_convention must be one of {DECAY_CONVENTIONS}, got {decay_convention!r}")


def decay_rate(*, lr, weight_decay, decay_convention="torch", initial_lr=None):
    """The fraction of θ that decoupled decay removes this step: γλ (torch), η_t·λ = (γ/γ₀)·λ (paper), λ.

    A Python float, so ``param * (1 - decay_rate(...))`` never upcasts a float32 param.
    """
    check_decay_convention(decay_convention)
    if decay_convention == "torch":
        return lr * weight_decay                                   # γλ
    if decay_convention == "independent":
        return weight_decay                                        # λ
    if not initial_lr:
        raise ValueError(f"decay_convention='paper' needs a nonzero initial_lr (the base lr γ₀), got {initial_lr!r}")
    return lr / initial_lr * weight_decay                          # η_t λ, with η_t = γ/γ₀


class DecoupledDecay(Optimizer):
    """Adds the group keys ``decay_convention`` and ``initial_lr`` to a coupled optimizer's shell.

    Listed after the coupled class (``class SGDW(SGD, DecoupledDecay)``), it sits between that class and
    :class:`~refwd.optim.optimizer.Optimizer` in the method resolution order: the coupled class's constructor
    keeps its torch checks and defaults, and the two keys join the defaults before any group is added. The
    subclass sets ``self.decay_convention`` (checked) before calling the coupled constructor.
    """

    decay_convention = "torch"

    def __init__(self, params, defaults):
        super().__init__(params, dict(defaults, decay_convention=self.decay_convention, initial_lr=None))

    def add_param_group(self, param_group):
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        check_decay_convention(group["decay_convention"])
        if group["initial_lr"] is None:
            group["initial_lr"] = group["lr"]                      # γ₀, as torch's LR schedulers record it
