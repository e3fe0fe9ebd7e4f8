"""Shared by the shell tests: every optimizer with every flag, seeded params and grads, and bit-exact comparison."""
import copy

import numpy as np

from refwd.optim import SGD, Adam, AdamW, RMSprop

OPTIMIZERS = {"SGD": SGD, "RMSprop": RMSprop, "Adam": Adam, "AdamW": AdamW}
SHAPES = {"0.weight": (3, 4), "0.bias": (3,), "2.weight": (1, 3), "2.bias": (1,)}
NAMES = list(SHAPES)

# Every optimizer with every flag, on its own and combined (values chosen so each flag matters).
FLAG_CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.5)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.1, weight_decay=0.1)),
    ("SGD", dict(lr=0.1, maximize=True)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.1, maximize=True)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1, maximize=True)),
    ("RMSprop", dict()),
    ("RMSprop", dict(alpha=0.5, eps=1e-3)),
    ("RMSprop", dict(weight_decay=0.1)),
    ("RMSprop", dict(momentum=0.5)),
    ("RMSprop", dict(centered=True)),
    ("RMSprop", dict(maximize=True)),
    ("RMSprop", dict(alpha=0.9, eps=1e-3, weight_decay=0.1, momentum=0.5, centered=True, maximize=True)),
    ("Adam", dict()),
    ("Adam", dict(betas=(0.5, 0.9), eps=1e-3)),
    ("Adam", dict(weight_decay=0.1)),
    ("Adam", dict(amsgrad=True)),
    ("Adam", dict(maximize=True)),
    ("Adam", dict(weight_decay=0.1, decoupled_weight_decay=True)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.95), eps=1e-3, weight_decay=0.1, amsgrad=True, maximize=True)),
    ("Adam", dict(lr=0.01, weight_decay=0.1, amsgrad=True, maximize=True, decoupled_weight_decay=True)),
    ("AdamW", dict()),
    ("AdamW", dict(weight_decay=0.1)),
    ("AdamW", dict(amsgrad=True)),
    ("AdamW", dict(maximize=True)),
    ("AdamW", dict(lr=0.01, betas=(0.5, 0.9), eps=1e-3, weight_decay=0.1, amsgrad=True, maximize=True)),
]


def config_id(config):
    optimizer, kwargs = config
    return optimizer + "".join(f"-{key}={value}" for key, value in kwargs.items()) if kwargs else optimizer


def make_params(dtype="float64", seed=0):
    rng = np.random.default_rng(seed)
    return {name: rng.normal(size=shape).astype(dtype) for name, shape in SHAPES.items()}


def make_grads(step, dtype="float64", seed=100):
    rng = np.random.default_rng(seed + step)
    return {name: rng.normal(size=shape).astype(dtype) for name, shape in SHAPES.items()}


def snapshot(mapping):
    return copy.deepcopy(mapping)


def assert_same(a, b):
    """Same names, and bit for bit the same arrays (NaN equal to NaN)."""
    assert list(a) == list(b)
    for name in a:
        if isinstance(a[name], dict):
            assert_same(a[name], b[name])
        elif isinstance(a[name], np.ndarray):
            assert a[name].dtype == b[name].dtype, name
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
        else:
            assert a[name] == b[name], name
