"""Each profile's conventions against the library itself, where it runs here: optax, and Keras 3 on JAX (float64).

refwd's rule with ``PROFILES[profile][key]`` (and the profile's float32-held hyperparameters rounded by
``hyperparameters_in_float32``) must give the library's parameters after three steps with a changing lr (which
tells an lr inside the momentum buffer from one outside) to 1e-13 relative: the same math in another operation
order. Each test also shows that torch's conventions do *not* match, so the comparison can fail.
Skipped cleanly where optax or keras (with jax) is not installed. TensorFlow 1 is not run: its RMSProp is
checked through optax's ``rmsprop(initial_scale=1.0)``, which computes TF1's formula (see refwd/optim/profiles.py).
"""
import functools
import os

import numpy as np
import pytest

from refwd.optim import adam_step, adamw_step, rmsprop_step, rmspropw_step, sgd_step, sgdw_step
from refwd.optim.profiles import FLOAT32_HYPERPARAMETERS, PROFILES
from refwd.optim.rounding import hyperparameters_in_float32

RULES = {"sgd": sgd_step, "rmsprop": rmsprop_step, "adam": adam_step, "adamw": adamw_step, "sgdw": sgdw_step,
         "rmspropw": rmspropw_step}
THETA = np.array([1.0, -2.0, 0.5, 3.0, -0.1])
GRADS = [np.array([0.5, 0.25, -1.0, 1e-3, 2.0]), np.array([-1.0, 0.5, 0.3, -2e-3, 1.5]),
         np.array([0.2, -0.1, 0.7, 5e-4, -0.5])]   # tiny entries: √v comparable to ε, where placements differ
LRS = (0.1, 0.2, 0.05)


def refwd_run(profile, key, hyperparameters, conventions=None, float32_names=None):
    """refwd's rule under ``profile`` for three steps; ``conventions`` and ``float32_names`` override the profile's."""
    conventions = PROFILES[profile][key] if conventions is None else conventions
    float32_names = FLOAT32_HYPERPARAMETERS[profile] if float32_names is None else float32_names
    rule = functools.partial(RULES[key], **conventions)
    param, state = THETA, {}
    for grad, lr in zip(GRADS, LRS):
        hyper = hyperparameters_in_float32(dict(hyperparameters, lr=lr), float32_names)
        param, state = rule(param, grad, state, **hyper)
    return param


def assert_matches_and_torch_does_not(library, profile, key, hyperparameters, float32_names=None):
    np.testing.assert_allclose(refwd_run(profile, key, hyperparameters, float32_names=float32_names), library,
                               rtol=1e-13, atol=1e-15)
    if PROFILES[profile][key]:
        torch_like = refwd_run(profile, key, hyperparameters, conventions={})
        assert np.max(np.abs(torch_like - library)) > 1e-8, "torch's conventions should not match this library"


# ------------------------------------------------------------------------------------------------ optax
@pytest.fixture(scope="module")
def optax():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    return pytest.importorskip("optax")


def optax_run(optax, factory, **kwargs):
    import jax.numpy as jnp
    tx = optax.inject_hyperparams(factory)(learning_rate=LRS[0], **kwargs)
    params = jnp.asarray(THETA)
    state = tx.init(params)
    for grad, lr in zip(GRADS, LRS):
        state.hyperparams["learning_rate"] = jnp.asarray(lr)
        updates, state = tx.update(jnp.asarray(grad), state, params)
        params = optax.apply_updates(params, updates)
    assert params.dtype == jnp.float64
    return np.asarray(params)


@pytest.mark.parametrize("nesterov", [False, True])
def test_optax_sgd(optax, nesterov):
    """optax's trace starts at zero, but without dampening (optax has none) that is torch's b₁ = g₁."""
    library = optax_run(optax, optax.sgd, momentum=0.9, nesterov=nesterov)
    hyper = dict(momentum=0.9, nesterov=nesterov)
    np.testing.assert_allclose(refwd_run("optax", "sgd", hyper), library, rtol=1e-13)
    np.testing.assert_allclose(refwd_run("torch", "sgd", hyper), library, rtol=1e-13)


@pytest.mark.parametrize("momentum,centered", [(None, False), (0.9, False), (0.5, True)])
def test_optax_rmsprop(optax, momentum, centered):
    library = optax_run(optax, optax.rmsprop, decay=0.9, eps=1e-3, momentum=momentum, centered=centered)
    assert_matches_and_torch_does_not(library, "optax", "rmsprop",
                                      dict(alpha=0.9, eps=1e-3, momentum=momentum or 0.0, centered=centered))


def test_optax_rmsprop_starting_at_one_is_tf1s_rmsprop(optax):
    """The rule of the profile; optax holds no hyperparameter in float32 (TF1 does: 3e-8 relative apart here)."""
    library = optax_run(optax, optax.rmsprop, decay=0.9, eps=1e-3, momentum=0.9, initial_scale=1.0)
    hyper = dict(alpha=0.9, eps=1e-3, momentum=0.9)
    assert_matches_and_torch_does_not(library, "tf1-rmsprop", "rmsprop", hyper, float32_names=())
    assert np.max(np.abs(refwd_run("tf1-rmsprop", "rmsprop", hyper) - library)) > 1e-9


def test_optax_adam_and_adamw(optax):
    library = optax_run(optax, optax.adam, b1=0.8, b2=0.9, eps=1e-3)
    assert_matches_and_torch_does_not(library, "optax", "adam", dict(betas=(0.8, 0.9), eps=1e-3))
    library = optax_run(optax, optax.adamw, b1=0.8, b2=0.9, eps=1e-3, weight_decay=0.5)
    assert_matches_and_torch_does_not(library, "optax", "adamw", dict(betas=(0.8, 0.9), eps=1e-3, weight_decay=0.5))


def test_optax_eps_root_is_eps_inside_the_root(optax):
    library = optax_run(optax, optax.adam, b1=0.8, b2=0.9, eps=0.0, eps_root=1e-3)
    expected = refwd_run("optax", "adam", dict(betas=(0.8, 0.9), eps=1e-3),
                         conventions={"eps_placement": "inside_root"})
    np.testing.assert_allclose(expected, library, rtol=1e-13)


# ------------------------------------------------------------------------------------------------ Keras 3
@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "jax":
        pytest.skip(f"keras runs on {keras.backend.backend()}, these checks are written for its JAX backend")
    return keras


def keras_run(keras, name, **kwargs):
    import jax.numpy as jnp
    optimizer = getattr(keras.optimizers, name)(learning_rate=LRS[0], **kwargs)
    variable = keras.Variable(THETA.copy(), dtype="float64")
    for grad, lr in zip(GRADS, LRS):
        optimizer.learning_rate = lr
        optimizer.apply_gradients([(jnp.asarray(grad), variable)])
    return np.asarray(variable)


@pytest.mark.parametrize("nesterov", [False, True])
def test_keras_sgd_and_sgd_with_weight_decay(keras, nesterov):
    library = keras_run(keras, "SGD", momentum=0.9, nesterov=nesterov)
    assert_matches_and_torch_does_not(library, "keras", "sgd", dict(momentum=0.9, nesterov=nesterov))
    library = keras_run(keras, "SGD", momentum=0.9, nesterov=nesterov, weight_decay=0.1)
    assert_matches_and_torch_does_not(library, "keras", "sgdw", dict(momentum=0.9, nesterov=nesterov, weight_decay=0.1))


@pytest.mark.parametrize("momentum,centered", [(0.0, False), (0.9, False), (0.5, True)])
def test_keras_rmsprop_and_rmsprop_with_weight_decay(keras, momentum, centered):
    hyper = dict(alpha=0.9, eps=1e-3, momentum=momentum, centered=centered)
    library = keras_run(keras, "RMSprop", rho=0.9, epsilon=1e-3, momentum=momentum, centered=centered)
    assert_matches_and_torch_does_not(library, "keras", "rmsprop", hyper)
    library = keras_run(keras, "RMSprop", rho=0.9, epsilon=1e-3, momentum=momentum, centered=centered, weight_decay=0.1)
    assert_matches_and_torch_does_not(library, "keras", "rmspropw", dict(hyper, weight_decay=0.1))


@pytest.mark.parametrize("amsgrad", [False, True])
def test_keras_adam_and_adamw(keras, amsgrad):
    hyper = dict(betas=(0.8, 0.9), eps=1e-3, amsgrad=amsgrad)
    library = keras_run(keras, "Adam", beta_1=0.8, beta_2=0.9, epsilon=1e-3, amsgrad=amsgrad)
    assert_matches_and_torch_does_not(library, "keras", "adam", hyper)
    library = keras_run(keras, "AdamW", beta_1=0.8, beta_2=0.9, epsilon=1e-3, amsgrad=amsgrad, weight_decay=0.5)
    assert_matches_and_torch_does_not(library, "keras", "adamw", dict(hyper, weight_decay=0.5))


def test_keras_holds_the_lr_in_float32(keras):
    """Without rounding γ to float32, refwd in float64 is ~1e-9 relative away from Keras's float64 weights."""
    library = keras_run(keras, "SGD", momentum=0.9)
    rule = functools.partial(sgd_step, **PROFILES["keras"]["sgd"])
    param, state = THETA, {}
    for grad, lr in zip(GRADS, LRS):
        param, state = rule(param, grad, state, lr=lr, momentum=0.9)
    assert np.max(np.abs(param - library) / np.abs(library)) > 1e-10
