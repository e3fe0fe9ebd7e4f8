"""Update rules (pure per-tensor functions) and torch-shaped optimizers around them."""
from .adam import Adam, adam_step
from .adamw import AdamW, adamw_step
from .groups import decay_groups, is_bias_or_norm
from .optimizer import Optimizer
from .rmsprop import RMSprop, rmsprop_step
from .rmspropw import RMSpropW, rmspropw_step
from .sgd import SGD, sgd_step
from .sgdw import SGDW, sgdw_step

__all__ = ["SGD", "RMSprop", "Adam", "AdamW", "SGDW", "RMSpropW", "Optimizer",
           "sgd_step", "rmsprop_step", "adam_step", "adamw_step", "sgdw_step", "rmspropw_step",
           "decay_groups", "is_bias_or_norm"]
