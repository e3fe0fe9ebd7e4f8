"""Constructor validation: torch's exception class, torch's message, torch's check order, before params.

Each row of ``REJECTED`` is checked against refwd, and, where torch is installed, against torch with the same
keyword arguments: both must raise the same class with the same message. ``params`` is None throughout, as in
torch's own ``optim_error_inputs_func``: a bad hyperparameter must be reported before params are looked at.
Sources: docs semantics §3.1 (SGD), §4.1 (RMSprop), §5.1 (Adam), §6 (AdamW), §10.2 (torch's error inputs).
"""
import inspect
import math

import numpy as np
import pytest

import refwd

nan, inf = math.nan, math.inf
ADAMS = ("Adam", "AdamW")

# (optimizer, kwargs, exception, message). Pairs of bad values pin the check order: the first check wins.
REJECTED = [
    ("SGD", dict(lr=-1), ValueError, "Invalid learning rate: -1"),
    ("SGD", dict(lr=-0.5), ValueError, "Invalid learning rate: -0.5"),
    ("SGD", dict(lr=-inf), ValueError, "Invalid learning rate: -inf"),
    ("SGD", dict(lr=1e-2, momentum=-0.5), ValueError, "Invalid momentum value: -0.5"),
    ("SGD", dict(weight_decay=-1e-3), ValueError, "Invalid weight_decay value: -0.001"),
    ("SGD", dict(nesterov=True), ValueError, "Nesterov momentum requires a momentum and zero dampening"),
    ("SGD", dict(momentum=0.9, dampening=0.1, nesterov=True), ValueError,
     "Nesterov momentum requires a momentum and zero dampening"),
    ("SGD", dict(lr=-1, momentum=-1, weight_decay=-1, nesterov=True), ValueError, "Invalid learning rate: -1"),
    ("SGD", dict(momentum=-1, weight_decay=-1, nesterov=True), ValueError, "Invalid momentum value: -1"),
    ("SGD", dict(weight_decay=-1, nesterov=True), ValueError, "Invalid weight_decay value: -1"),
    ("SGD", dict(capturable=True), TypeError, "SGD.__init__() got an unexpected keyword argument 'capturable'"),

    ("RMSprop", dict(lr=-1e-3), ValueError, "Invalid learning rate: -0.001"),
    ("RMSprop", dict(lr=nan), ValueError, "Invalid learning rate: nan"),
    ("RMSprop", dict(eps=-1e-8), ValueError, "Invalid epsilon value: -1e-08"),
    ("RMSprop", dict(eps=nan), ValueError, "Invalid epsilon value: nan"),
    ("RMSprop", dict(lr=1e-2, momentum=-1.0), ValueError, "Invalid momentum value: -1.0"),
    ("RMSprop", dict(momentum=nan), ValueError, "Invalid momentum value: nan"),
    ("RMSprop", dict(weight_decay=-0.1), ValueError, "Invalid weight_decay value: -0.1"),
    ("RMSprop", dict(weight_decay=nan), ValueError, "Invalid weight_decay value: nan"),
    ("RMSprop", dict(alpha=-0.1), ValueError, "Invalid alpha value: -0.1"),
    ("RMSprop", dict(alpha=nan), ValueError, "Invalid alpha value: nan"),
    ("RMSprop", dict(lr=-1, eps=-1, momentum=-1, weight_decay=-1, alpha=-1), ValueError, "Invalid learning rate: -1"),
    ("RMSprop", dict(eps=-1, momentum=-1, weight_decay=-1, alpha=-1), ValueError, "Invalid epsilon value: -1"),
    ("RMSprop", dict(momentum=-1, weight_decay=-1, alpha=-1), ValueError, "Invalid momentum value: -1"),
    ("RMSprop", dict(weight_decay=-1, alpha=-1), ValueError, "Invalid weight_decay value: -1"),
    ("RMSprop", dict(fused=True), TypeError, "RMSprop.__init__() got an unexpected keyword argument 'fused'"),
    *[row for optimizer in ADAMS for row in [
        (optimizer, dict(lr=-1), ValueError, "Invalid learning rate: -1"),
        (optimizer, dict(lr=nan), ValueError, "Invalid learning rate: nan"),
        (optimizer, dict(eps=-1.0), ValueError, "Invalid epsilon value: -1.0"),
        (optimizer, dict(eps=nan), ValueError, "Invalid epsilon value: nan"),
        (optimizer, dict(lr=1e-2, betas=(1.0, 0.0)), ValueError, "Invalid beta parameter at index 0: 1.0"),
        (optimizer, dict(betas=(-0.1, 0.9)), ValueError, "Invalid beta parameter at index 0: -0.1"),
        (optimizer, dict(betas=(nan, 0.9)), ValueError, "Invalid beta parameter at index 0: nan"),
        (optimizer, dict(betas=(0.9, 1.0)), ValueError, "Invalid beta parameter at index 1: 1.0"),
        (optimizer, dict(betas=(0.9, -1e-3)), ValueError, "Invalid beta parameter at index 1: -0.001"),
        (optimizer, dict(lr=1e-2, weight_decay=-1), ValueError, "Invalid weight_decay value: -1"),
        (optimizer, dict(weight_decay=nan), ValueError, "Invalid weight_decay value: nan"),
        # isinstance(beta, float): an int beta is rejected even in range ...
        (optimizer, dict(betas=(0, 0.999)), ValueError, "betas must be either both floats or both Tensors"),
        (optimizer, dict(betas=(0.9, 0)), ValueError, "betas must be either both floats or both Tensors"),
        # ... but only after the range checks.
        (optimizer, dict(betas=(1, 0.999)), ValueError, "Invalid beta parameter at index 0: 1"),
        (optimizer, dict(lr=-1, eps=-1, betas=(1.0, 1.0), weight_decay=-1), ValueError, "Invalid learning rate: -1"),
        (optimizer, dict(eps=-1, betas=(1.0, 1.0), weight_decay=-1), ValueError, "Invalid epsilon value: -1"),
        (optimizer, dict(betas=(1.0, 1.0), weight_decay=-1), ValueError, "Invalid beta parameter at index 0: 1.0"),
        (optimizer, dict(betas=(0.9, 1.0), weight_decay=-1), ValueError, "Invalid beta parameter at index 1: 1.0"),
        (optimizer, dict(betas=(0, 0.999), weight_decay=-1), ValueError, "Invalid weight_decay value: -1"),
    ]],
    ("AdamW", dict(decoupled_weight_decay=True), TypeError,
     "AdamW.__init__() got an unexpected keyword argument 'decoupled_weight_decay'"),
]

# Accepted by torch, so by refwd: SGD compares with `<` (NaN passes), no upper bounds, dampening unchecked.
ACCEPTED = [
    ("SGD", dict(lr=nan)),
    ("SGD", dict(momentum=nan)),
    ("SGD", dict(weight_decay=nan)),
    ("SGD", dict(momentum=nan, nesterov=True)),
    ("SGD", dict(lr=inf, momentum=1.5)),
    ("SGD", dict(momentum=0.9, dampening=-1)),
    ("SGD", dict(momentum=0.9, dampening=2)),
    ("SGD", dict(lr=0, momentum=0, weight_decay=0)),
    ("RMSprop", dict(alpha=1.5, momentum=2.0)),
    ("RMSprop", dict(lr=inf, eps=0.0, weight_decay=inf)),
    ("RMSprop", dict(lr=0, alpha=0)),
    *[row for optimizer in ADAMS for row in [
        (optimizer, dict(betas=[0.9, 0.999])),
        (optimizer, dict(betas=(0.0, 0.0))),
        (optimizer, dict(lr=inf, eps=inf, weight_decay=inf)),
        (optimizer, dict(lr=1, eps=0, weight_decay=0)),
        (optimizer, dict(betas=(np.float64(0.9), np.float64(0.99)))),
    ]],
]


def row_id(row):
    optimizer, kwargs = row[0], row[1]
    return optimizer + "".join(f"-{key}={value}" for key, value in kwargs.items())


def refwd_class(optimizer):
    return getattr(refwd.optim, optimizer)


@pytest.mark.parametrize("optimizer, kwargs, exception, message", REJECTED, ids=[row_id(row) for row in REJECTED])
def test_refwd_rejects_as_torch_does(optimizer, kwargs, exception, message):
    with pytest.raises(exception) as raised:
        refwd_class(optimizer)(None, **kwargs)
    assert type(raised.value) is exception
    assert str(raised.value) == message


@pytest.mark.torch
@pytest.mark.parametrize("optimizer, kwargs, exception, message", REJECTED, ids=[row_id(row) for row in REJECTED])
def test_torch_rejects_with_the_same_class_and_message(optimizer, kwargs, exception, message):
    torch = pytest.importorskip("torch")
    with pytest.raises(Exception) as raised:
        getattr(torch.optim, optimizer)(None, **kwargs)
    assert type(raised.value) is exception
    assert str(raised.value) == message


@pytest.mark.parametrize("optimizer, kwargs", ACCEPTED, ids=[row_id(row) for row in ACCEPTED])
def test_refwd_accepts_what_torch_accepts(optimizer, kwargs):
    # Validation passes, so params=None fails only where torch fails on it: list(None).
    with pytest.raises(TypeError, match="'NoneType' object is not iterable"):
        refwd_class(optimizer)(None, **kwargs)
    opt = refwd_class(optimizer)(["w"], **kwargs)
    for key, value in kwargs.items():
        stored = opt.param_groups[0][key]
        if key == "betas":
            assert stored == tuple(value)
        else:
            assert stored == value or (math.isnan(stored) and math.isnan(value))


@pytest.mark.torch
@pytest.mark.parametrize("optimizer, kwargs", ACCEPTED, ids=[row_id(row) for row in ACCEPTED])
def test_torch_accepts_them_too(optimizer, kwargs):
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="'NoneType' object is not iterable"):
        getattr(torch.optim, optimizer)(None, **kwargs)
    getattr(torch.optim, optimizer)([torch.nn.Parameter(torch.zeros(1))], **kwargs)


@pytest.mark.parametrize("params", [None, np.zeros(3), {"a", "b"}, [], "w"], ids=["None", "ndarray", "set", "empty",
                                                                                 "str"])
@pytest.mark.parametrize("optimizer, kwargs, message", [
    ("SGD", dict(lr=-1), "Invalid learning rate: -1"),
    ("RMSprop", dict(alpha=-1), "Invalid alpha value: -1"),
    ("Adam", dict(betas=(0.9, 1.5)), "Invalid beta parameter at index 1: 1.5"),
    ("AdamW", dict(weight_decay=-1), "Invalid weight_decay value: -1"),
])
def test_hyperparameters_are_validated_before_params(optimizer, kwargs, message, params):
    with pytest.raises(ValueError, match=message):
        refwd_class(optimizer)(params, **kwargs)


def test_adam_betas_must_be_a_pair():
    # A deliberate difference: torch 2.13 accepts a 3-tuple here and fails at step() ("too many values to
    # unpack"); 2.14 silently drops the extra entries. refwd refuses it at construction, naming the value.
    with pytest.raises(ValueError, match=r"betas must be a pair \(beta1, beta2\), got \(0.9, 0.99, 0.5\)"):
        refwd.optim.Adam(["w"], betas=(0.9, 0.99, 0.5))


def test_messages_print_values_as_python_str():
    # torch formats with str(): -1 stays "-1", -1.0 is "-1.0", a numpy float64 prints as its value.
    with pytest.raises(ValueError, match="^Invalid learning rate: -1$"):
        refwd.optim.SGD(["w"], lr=-1)
    with pytest.raises(ValueError, match="^Invalid learning rate: -1.0$"):
        refwd.optim.SGD(["w"], lr=-1.0)
    with pytest.raises(ValueError, match="^Invalid learning rate: -0.5$"):
        refwd.optim.Adam(["w"], lr=np.float64(-0.5))


# ----------------------------------------------------------------------------------------------------------------
# The signatures: torch's names, defaults and positions for every argument refwd takes.

def signature_parts(cls):
    parameters = list(inspect.signature(cls.__init__).parameters.values())[2:]   # drop self, params
    positional = [p.name for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD]
    defaults = {p.name: p.default for p in parameters}
    return positional, defaults


@pytest.mark.torch
@pytest.mark.parametrize("optimizer", ["SGD", "Adam", "AdamW", "RMSprop"])
def test_signature_is_torchs(optimizer):
    torch = pytest.importorskip("torch")
    refwd_positional, refwd_defaults = signature_parts(refwd_class(optimizer))
    torch_positional, torch_defaults = signature_parts(getattr(torch.optim, optimizer))
    # Every argument refwd takes positionally sits at the same position in torch ...
    assert refwd_positional == torch_positional[:len(refwd_positional)]
    # ... and every argument has torch's name and default.
    for name, default in refwd_defaults.items():
        assert name in torch_defaults, name
        assert default == torch_defaults[name], name
    # The math-relevant arguments are all there: only implementation switches are left out.
    assert set(torch_defaults) - set(refwd_defaults) <= {"foreach", "fused", "capturable", "differentiable"}
