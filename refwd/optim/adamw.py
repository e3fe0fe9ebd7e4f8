"""AdamW: Adam's rule with decoupled weight decay (Loshchilov & Hutter), as torch.optim.AdamW.

There is no second copy of the math: AdamW is :func:`refwd.optim.adam.adam_step` with
``decoupled_weight_decay=True``, which shrinks θ by (1 − γλ) before the moment updates, exactly as torch's
AdamW runs Adam's code with that flag set. Only the default ``weight_decay`` differs (1e-2).
"""
import functools

from .adam import Adam, adam_step

adamw_step = functools.partial(adam_step, decoupled_weight_decay=True)


class AdamW(Adam):
    """torch.optim.AdamW: Adam with ``decoupled_weight_decay=True`` and ``weight_decay=1e-2`` by default."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         maximize=maximize, decoupled_weight_decay=True)

    def _fix_loaded_groups(self):
        for group in self.param_groups:  # torch's AdamW.__setstate__ forces this key too
            group["decoupled_weight_decay"] = True
