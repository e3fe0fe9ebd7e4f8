"""Param-group builders: which parameters decay, and how strongly."""
from collections.abc import Mapping

import numpy as np


def is_bias_or_norm(name, param):
    """True for biases and normalisation scales/offsets: every parameter with fewer than two dimensions.

    Weights of Linear and convolution layers have 2+ dimensions; biases, LayerNorm/BatchNorm weights and
    biases have one. This is the rule of thumb of the seeds (and of nanoGPT, timm, Hugging Face): decay
    the weights, not the biases or normalisation parameters.
    """
    return np.ndim(param) < 2 or name.endswith("bias")


def decay_groups(params, weight_decay, *, exclude=is_bias_or_norm):
    """Two param groups: ``weight_decay`` for the weights, 0 for what ``exclude(name, param)`` picks.

    >>> decay_groups({"0.weight": np.ones((2, 2)), "0.bias": np.ones(2)}, 0.1)
    [{'params': ['0.weight'], 'weight_decay': 0.1}, {'params': ['0.bias'], 'weight_decay': 0.0}]

    An empty group is left out, so the result always suits an optimizer's constructor.
    """
    if not isinstance(params, Mapping):
        raise TypeError(f"decay_groups needs a mapping of names to arrays, got {type(params).__name__}")
    decayed = [name for name, param in params.items() if not exclude(name, param)]
    excluded = [name for name, param in params.items() if exclude(name, param)]
    groups = [{"params": decayed, "weight_decay": weight_decay}, {"params": excluded, "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]
