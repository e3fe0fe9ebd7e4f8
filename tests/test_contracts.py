"""refwd_validation.contracts without torch: refwd's rules keep them; each kind of breach is named.

The reference rules, on float32 and float64 params with every flag that changes which arrays they build, keep
dtype and shape, leave their inputs untouched and alias none of them; a parameter without a grad (carried over
by the shell, identity included) is not checked; each broken contract has its own message.
"""
import numpy as np
import pytest

import refwd
from refwd_validation import contracts
from refwd_validation.compare import Comparer

FLAGS = [("SGD", dict(lr=0.1)), ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
         ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.2, weight_decay=0.1, maximize=True)),
         ("RMSprop", dict(centered=True, momentum=0.5, weight_decay=0.1)), ("RMSprop", dict()),
         ("Adam", dict(amsgrad=True, weight_decay=0.1, maximize=True)), ("AdamW", dict(weight_decay=0.1))]


def run(optimizer, kwargs, dtype, steps=3):
    rng = np.random.default_rng(0)
    params = {"w": rng.normal(size=(2, 3)).astype(dtype), "b": rng.normal(size=2).astype(dtype),
              "s": np.asarray(rng.normal(), dtype=dtype)}   # a 0-d param: NumPy's arithmetic gives scalars there
    opt = getattr(refwd.optim, optimizer)(params, **kwargs)
    found = []
    for step in range(steps):
        grads = {"w": rng.normal(size=(2, 3)).astype(dtype), "b": None if step == 1 else rng.normal(size=2).astype(dtype),
                 "s": np.asarray(rng.normal(), dtype=dtype)}
        given = contracts.inputs(params, grads, opt.state)
        params = opt.step(params, grads)
        found += contracts.violations(given, params, opt.state)
    return found


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("optimizer, kwargs", FLAGS, ids=[f"{o}-{'-'.join(k)}" for o, k in FLAGS])
def test_reference_rules_keep_the_contracts(optimizer, kwargs, dtype):
    assert run(optimizer, kwargs, dtype) == []


def given_one(param, grad, state):
    return contracts.inputs({"w": param}, {"w": grad}, {"w": state})


def test_each_breach_is_named_and_recorded_as_a_lockstep_mismatch():
    param, grad, buffer = np.ones(3, np.float32), np.full(3, 0.5, np.float32), np.zeros(3, np.float32)
    given = given_one(param, grad, {"momentum_buffer": buffer})
    buffer += 1   # changed in place, and returned as the new state: two breaches
    found = contracts.violations(given, {"w": param - grad}, {"w": {"momentum_buffer": buffer, "step": 1,
                                                                     "exp_avg": np.zeros(3)}})
    messages = [message for _, _, message in found]
    assert messages == ["contract: exp_avg comes back float64 for a float32 param",
                        "contract: the rule changed its input state 'momentum_buffer' in place",
                        "contract: new momentum_buffer shares memory with the input state 'momentum_buffer'"]
    comparer = Comparer("float32")
    given = given_one(param, grad, {})
    assert contracts.check(comparer, 4, given, {"w": grad[:]}, {"w": {}}) == 1
    assert comparer.mismatches[0].describe() == "lockstep: step 4, w, param: contract: new param shares memory " \
                                                "with the input grad"


def test_nan_payloads_and_signed_zeros_count_as_changes():
    grad = np.array([np.nan, 0.0])
    given = given_one(np.ones(2), grad, {})
    grad[1] = -0.0
    assert [message for _, _, message in contracts.violations(given, {"w": np.ones(2)}, {})] == [
        "contract: the rule changed its input grad in place"]
