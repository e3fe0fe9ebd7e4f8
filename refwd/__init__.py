"""refwd: a readable NumPy reference for torch.optim's SGD, RMSprop, Adam and AdamW, and an oracle to check them.

``refwd`` is the math (NumPy and autograd, never torch); ``refwd_validation`` (the repository's
``validation/`` folder) is the torch side.
"""
from . import optim
from .grad import value_and_grad
from .loss import l1_penalty, l2_penalty, mse
from .models import MLP, Linear

__version__ = "0.2.0"
__all__ = ["Linear", "MLP", "mse", "l2_penalty", "l1_penalty", "value_and_grad", "optim", "__version__"]
