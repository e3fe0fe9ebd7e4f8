"""Bit-for-bit identities of the optimizers, by hypothesis: AdamW is Adam with decoupled decay, Adam without decay
is AdamW, maximize is minimizing the negated loss (strategies: tests/property_strategies.py)."""
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import refwd
from property_strategies import BETA1, DAMPENING, EPS, LR, MOMENTUM, WEIGHT_DECAY, trajectories
from refwd.optim import SGD, SGDW, Adam, AdamW, RMSprop, RMSpropW

# --- Bit-for-bit identities -------------------------------------------------------------------------------------

@st.composite
def adam_runs(draw, weight_decay=WEIGHT_DECAY):
    dtype, theta, grads = draw(trajectories())
    hyper = dict(lr=draw(LR), betas=(draw(BETA1), draw(st.floats(0.5, 0.9999))), eps=draw(EPS),
                 weight_decay=draw(weight_decay), amsgrad=draw(st.booleans()), maximize=draw(st.booleans()))
    return theta, grads, hyper


def run_optimizer(optimizer, theta, grads):
    params = {"θ": theta}
    for grad in grads:
        params = optimizer.step(params, {"θ": grad})
    return params["θ"], optimizer.state.get("θ", {})   # SGD without momentum keeps no state, as torch


def assert_same_bits(a, b):
    (theta_a, state_a), (theta_b, state_b) = a, b
    np.testing.assert_array_equal(theta_a, theta_b, strict=True)
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        np.testing.assert_array_equal(state_a[key], state_b[key], strict=True)


@given(adam_runs())
def test_adamw_is_adam_with_decoupled_weight_decay(run):
    theta, grads, hyper = run
    assert_same_bits(run_optimizer(AdamW({"θ": theta}, **hyper), theta, grads),
                     run_optimizer(Adam({"θ": theta}, decoupled_weight_decay=True, **hyper), theta, grads))


@given(adam_runs(weight_decay=st.just(0.0)))
def test_without_decay_adam_is_adamw(run):
    theta, grads, hyper = run
    assert_same_bits(run_optimizer(Adam({"θ": theta}, **hyper), theta, grads),
                     run_optimizer(AdamW({"θ": theta}, **hyper), theta, grads))


OPTIMIZERS = {  # class -> the extra hyperparameters drawn for it besides lr and weight_decay
    SGD: dict(momentum=st.one_of(st.just(0.0), MOMENTUM), dampening=DAMPENING),
    SGDW: dict(momentum=st.one_of(st.just(0.0), MOMENTUM), dampening=DAMPENING),
    RMSprop: dict(alpha=st.floats(0.5, 0.9999), eps=EPS, momentum=st.one_of(st.just(0.0), MOMENTUM),
                  centered=st.booleans()),
    RMSpropW: dict(alpha=st.floats(0.5, 0.9999), eps=EPS, momentum=st.one_of(st.just(0.0), MOMENTUM),
                   centered=st.booleans()),
    Adam: dict(betas=st.tuples(BETA1, st.floats(0.5, 0.9999)), eps=EPS, amsgrad=st.booleans(),
               decoupled_weight_decay=st.booleans()),
    AdamW: dict(betas=st.tuples(BETA1, st.floats(0.5, 0.9999)), eps=EPS, amsgrad=st.booleans()),
}


@st.composite
def any_optimizer_runs(draw):
    optimizer_class = draw(st.sampled_from(list(OPTIMIZERS)))
    hyper = {name: draw(strategy) for name, strategy in OPTIMIZERS[optimizer_class].items()}
    hyper.update(lr=draw(LR), weight_decay=draw(WEIGHT_DECAY))
    _, theta, grads = draw(trajectories())
    return optimizer_class, hyper, theta, grads


@given(any_optimizer_runs())
def test_maximize_is_minimizing_the_negated_loss(run):
    """maximize=True on gradients g ≡ maximize=False on −g, bit for bit, for every optimizer and any λ:
    maximize negates only the loss gradient (negation is exact), and the decay term keeps its sign."""
    optimizer_class, hyper, theta, grads = run
    assert_same_bits(run_optimizer(optimizer_class({"θ": theta}, maximize=True, **hyper), theta, grads),
                     run_optimizer(optimizer_class({"θ": theta}, **hyper), theta, [-grad for grad in grads]))


@given(st.sampled_from(list(OPTIMIZERS)), st.integers(0, 2 ** 16), WEIGHT_DECAY)
def test_maximize_a_loss_is_minimize_its_negation_end_to_end(optimizer_class, seed, weight_decay):
    """With autograd in the loop: maximizing L and minimizing −L walk the same weights, bit for bit."""
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(8, 3)), rng.normal(size=(8, 1))
    model = refwd.MLP([3, 5, 1], activation="tanh")
    loss = lambda p: refwd.mse(model(p, x), y)
    trajectories_ = []
    for maximize, objective in ((True, loss), (False, lambda p: -loss(p))):
        params = model.init(seed=seed)
        optimizer = optimizer_class(params, lr=1e-2, weight_decay=weight_decay, maximize=maximize)
        loss_and_grad = refwd.value_and_grad(objective)
        for _ in range(3):
            params = optimizer.step(params, loss_and_grad(params)[1])
        trajectories_.append(params)
    for name in trajectories_[0]:
        np.testing.assert_array_equal(trajectories_[0][name], trajectories_[1][name], strict=True)
