"""Invalid hyperparameters as data: each one torch's constructor rejects, which refwd's must reject alike.

:data:`ERROR_INPUTS` lists them, one :class:`ErrorInput` each: the optimizer, the keyword arguments, the words
that name the argument in the message, and where the row comes from. The rows were read off torch 2.13's
``optim_error_inputs_func_{sgd,rmsprop,adam,adamw}`` (``torch/testing/_internal/common_optimizers.py``) and
off the checks in the constructors of ``torch/optim/{sgd,rmsprop,adam}.py``, then written for refwd, whose
params are names and whose hyperparameters are numbers:

- torch's error inputs about params (a bare tensor, duplicates, names) are the shell's business
  (tests/test_optimizer_shell.py), and those about ``foreach``/``capturable`` concern arguments refwd does not
  take; neither is here.
- torch's "Tensor lr must be 1-element" becomes a two-element NumPy lr, and "betas must be either both floats
  or both Tensors" with a tensor beta becomes a beta that is not a Python float (an int, a NumPy float32).
- each bound is tried at the bound, beyond it and with NaN where torch's comparison rejects NaN (SGD's
  ``lr < 0`` lets NaN through, so NaN is no error input there).

:func:`raised` builds one optimizer and returns the exception it raised (None if it raised none);
:func:`check` runs one row on both sides and returns an :class:`Outcome` (tests/test_constructor_errors.py
runs them all; a CLI can do the same). ``words`` is None where torch's message is Python's or NumPy's own
(a comparison of ``None``, the truth value of an array) and names no argument.
"""
import math
from dataclasses import dataclass

import numpy as np

nan, inf = math.nan, math.inf


@dataclass(frozen=True)
class ErrorInput:
    optimizer: str          # the class name in torch.optim and refwd.optim
    kwargs: dict
    words: str | None       # what names the argument in the message (None: the message is Python's own)
    source: str             # "error inputs" (torch's optim_error_inputs_func_*) or "constructor" (its checks)

    @property
    def id(self):
        return self.optimizer + "".join(f"-{key}={value!r}" for key, value in self.kwargs.items())


def _rows(optimizer, source, *rows):
    return [ErrorInput(optimizer, kwargs, words, source) for kwargs, words in rows]


_LR_ARRAY = np.array([1e-3, 1e-3])   # torch's "Tensor lr must be 1-element", as a NumPy array
ADAMS = ("Adam", "AdamW")

ERROR_INPUTS = tuple(
    _rows("SGD", "error inputs",
          (dict(lr=1e-2, momentum=-0.5), "momentum"),
          (dict(lr=_LR_ARRAY), None))
    + _rows("SGD", "constructor",
            (dict(lr=-1e-3), "learning rate"), (dict(lr=-inf), "learning rate"),
            (dict(momentum=-1e-9), "momentum"), (dict(weight_decay=-1e-3), "weight_decay"),
            (dict(nesterov=True), "Nesterov"), (dict(momentum=0.0, nesterov=True), "Nesterov"),
            (dict(momentum=0.9, dampening=0.1, nesterov=True), "Nesterov"),
            (dict(momentum=0.9, dampening=-0.1, nesterov=True), "Nesterov"),
            (dict(lr=None), None), (dict(momentum=None), None))
    + _rows("RMSprop", "error inputs",
            (dict(lr=1e-2, momentum=-1.0), "momentum"),
            (dict(lr=_LR_ARRAY), None))
    + _rows("RMSprop", "constructor",
            (dict(lr=-1e-3), "learning rate"), (dict(lr=nan), "learning rate"),
            (dict(eps=-1e-8), "epsilon"), (dict(eps=nan), "epsilon"),
            (dict(momentum=nan), "momentum"),
            (dict(weight_decay=-0.1), "weight_decay"), (dict(weight_decay=nan), "weight_decay"),
            (dict(alpha=-0.1), "alpha"), (dict(alpha=nan), "alpha"),
            (dict(alpha=None), None))
    + [row for optimizer in ADAMS for row in
       _rows(optimizer, "error inputs",
             (dict(lr=1e-2, betas=(1.0, 0.0)), "beta parameter at index 0"),
             (dict(lr=1e-2, weight_decay=-1), "weight_decay"),
             (dict(lr=1e-2, betas=(0.9, np.float32(0.99))), "betas"),
             (dict(lr=1e-2, betas=(np.float32(0.9), 0.99)), "betas"),
             (dict(lr=_LR_ARRAY), None))
       + _rows(optimizer, "constructor",
               (dict(lr=-1e-3), "learning rate"), (dict(lr=nan), "learning rate"),
               (dict(eps=-1e-8), "epsilon"), (dict(eps=nan), "epsilon"),
               (dict(betas=(-0.1, 0.999)), "beta parameter at index 0"),
               (dict(betas=(nan, 0.999)), "beta parameter at index 0"),
               (dict(betas=(1.5, 0.999)), "beta parameter at index 0"),
               (dict(betas=(0.9, 1.0)), "beta parameter at index 1"),
               (dict(betas=(0.9, -1e-3)), "beta parameter at index 1"),
               (dict(betas=(0.9, nan)), "beta parameter at index 1"),
               (dict(weight_decay=nan), "weight_decay"),
               (dict(betas=(0, 0.999)), "betas"), (dict(betas=(0.9, 0)), "betas"),
               (dict(betas=(1, 0.999)), "beta parameter at index 0"),
               (dict(betas=None), None), (dict(eps=None), None))])


@dataclass(frozen=True)
class Outcome:
    """What both constructors did with one :class:`ErrorInput`."""

    row: ErrorInput
    refwd: BaseException | None
    torch: BaseException | None

    @property
    def same_class(self):
        return self.torch is not None and type(self.refwd) is type(self.torch)

    @property
    def same_message(self):
        return self.same_class and str(self.refwd) == str(self.torch)

    @property
    def names_the_argument(self):
        """refwd's message names the argument (as torch's does), where torch's message is not Python's own."""
        return self.row.words is None or (self.refwd is not None and self.row.words in str(self.refwd))

    def describe(self):
        def text(error):
            return "no error" if error is None else f"{type(error).__name__}: {error}"
        return f"{self.row.id}: refwd {text(self.refwd)}; torch {text(self.torch)}"


def raised(constructor, params, kwargs):
    """The exception ``constructor(params, **kwargs)`` raised, or None."""
    try:
        constructor(params, **kwargs)
    except Exception as error:  # the class is what is compared
        return error
    return None


def check(row, torch, refwd_class=None):
    """Run ``row`` through refwd's (or ``refwd_class``'s) and torch's constructors (one real parameter each, so
    params never fail)."""
    import refwd
    return Outcome(row, raised(refwd_class or getattr(refwd.optim, row.optimizer), ["w"], row.kwargs),
                   raised(getattr(torch.optim, row.optimizer), [torch.nn.Parameter(torch.zeros(1))], row.kwargs))
