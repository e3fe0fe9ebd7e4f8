"""SGDW and RMSpropW built from torch's own primitives, the torch twin of refwd's decoupled rules (torch ships
neither): a decoupled shrink of the weights, θ ← (1 − ρ)θ, then torch's SGD or RMSprop step without weight decay, as
in Loshchilov & Hutter's Algorithm 1. ρ is γλ with the group's scheduled lr γ (``decay_convention="torch"``) or
(γ/γ₀)λ with its initial lr γ₀ (``"paper"``). ``refwd check`` runs them against refwd's ``sgdw`` and ``rmspropw``
rules (tests/test_decoupled_twin.py), and the case matrix has them as the optimizers "sgdw" and "rmspropw"; a
parameter without a gradient is not shrunk, as torch's AdamW does.
Their defaults are refwd's: the base class's lr, and ``weight_decay=1e-2`` as AdamW's.
"""
import inspect

import torch


def _decoupled(base):
    base_lr = inspect.signature(base.__init__).parameters["lr"].default

    class Decoupled(base):
        def __init__(self, params, lr=base_lr, weight_decay=1e-2, *, decay_convention="torch", **hyperparameters):
            if decay_convention not in ("torch", "paper"):
                raise ValueError(f"decay_convention must be 'torch' or 'paper', got {decay_convention!r}")
            params = list(params)
            groups = [dict(group) for group in params] if params and isinstance(params[0], dict) else [
                {"params": params}]
            for group in groups:   # the decay leaves torch's (coupled) key for a key of its own
                group["decoupled_weight_decay"] = group.pop("weight_decay", weight_decay)
                group.setdefault("initial_lr", group.get("lr", lr))
            super().__init__(groups, lr=lr, weight_decay=0.0, **hyperparameters)
            self.decay_convention = decay_convention

        @torch.no_grad()
        def step(self, closure=None):
            for group in self.param_groups:
                if self.decay_convention == "torch":
                    rate = group["lr"] * group["decoupled_weight_decay"]                       # ρ = γλ
                else:
                    rate = group["lr"] / group["initial_lr"] * group["decoupled_weight_decay"]  # ρ = (γ/γ₀)λ
                for param in group["params"]:
                    if param.grad is not None and rate != 0:
                        param.mul_(1 - rate)                                                   # θ ← (1 − ρ)θ
            return super().step(closure)

    Decoupled.__name__ = Decoupled.__qualname__ = f"{base.__name__}W"
    return Decoupled


SGDW = _decoupled(torch.optim.SGD)
RMSpropW = _decoupled(torch.optim.RMSprop)
