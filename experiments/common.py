"""What the experiments share: seeded regression data, a full-batch training loop, flattening params."""
import numpy as np

import refwd


def regression_data(n, features=4, noise=0.1, seed=0):
    """x ~ N(0, 1)^(n × features), y = Σ sin(x) + noise·N(0, 1), shaped (n, 1): a smooth nonlinear target."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features))
    y = np.sin(x).sum(axis=1, keepdims=True) + noise * rng.normal(size=(n, 1))
    return x, y


def flat(params):
    """All parameters as one 1-D array, in the params' order (torch's ``named_parameters`` order)."""
    return np.concatenate([np.ravel(value) for value in params.values()])


def train(optimizer, params, loss_and_grad, steps, *, lr_schedule=None, on_step=None):
    """Full-batch training: ``steps`` optimizer steps; returns the final params and the loss before each step.

    ``lr_schedule(t)`` multiplies every group's initial lr at step t (as a torch LambdaLR would), and
    ``on_step(t, params, grads, optimizer)`` sees each step's inputs before the optimizer takes them.
    """
    initial_lrs = [group["lr"] for group in optimizer.param_groups]
    losses = np.empty(steps)
    for t in range(steps):
        if lr_schedule is not None:
            for group, initial_lr in zip(optimizer.param_groups, initial_lrs):
                group["lr"] = initial_lr * lr_schedule(t)
        losses[t], grads = loss_and_grad(params)
        if on_step is not None:
            on_step(t, params, grads, optimizer)
        params = optimizer.step(params, grads)
    return params, losses


def mlp_regression(sizes=(4, 32, 32, 1), n=64, noise=0.1, seed=0, activation="tanh"):
    """The MLP regression of experiments 1-3: (model, initial params, loss_and_grad)."""
    x, y = regression_data(n, features=sizes[0], noise=noise, seed=seed)
    model = refwd.MLP(list(sizes), activation=activation)
    loss_and_grad = refwd.value_and_grad(lambda params: refwd.mse(model(params, x), y))
    return model, model.init(seed=seed, dtype="float64"), loss_and_grad
