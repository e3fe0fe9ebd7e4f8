"""Param groups in refwd: different decay for weights and biases, and a decay strength per layer.

    python docs/examples/param_groups.py

Groups are torch's, with parameter names where torch has tensors. Two layouts from the seeds:
- Adam with the weights decayed at 1e-2 and the biases at 1e-4 (or 0: refwd.optim.decay_groups);
- SGD with momentum and a decay strength per layer, growing with depth.
"""
import numpy as np

import refwd


def weight_vs_bias_groups(params, weight_decay=1e-2, bias_decay=1e-4):
    """Weights at one decay strength, biases and other 1-D parameters at another."""
    is_bias = refwd.optim.is_bias_or_norm
    return [{"params": [name for name, p in params.items() if not is_bias(name, p)], "weight_decay": weight_decay},
            {"params": [name for name, p in params.items() if is_bias(name, p)], "weight_decay": bias_decay}]


def per_layer_groups(model, strengths):
    """One group per Linear layer of an MLP (its weight and bias), with that layer's decay strength."""
    return [{"params": [f"{layer}.weight", f"{layer}.bias"], "weight_decay": strength}
            for layer, strength in zip(model.layer_names, strengths, strict=True)]


def train(optimizer, model, params, x, y, steps=200):
    loss_and_grad = refwd.value_and_grad(lambda p: refwd.mse(model(p, x), y))
    for _ in range(steps):
        loss, grads = loss_and_grad(params)
        params = optimizer.step(params, grads)
    return loss, params


def main():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 4))
    y = np.sin(x).sum(axis=1, keepdims=True) + 0.1 * rng.normal(size=(128, 1))
    model = refwd.MLP([4, 16, 16, 1], activation="tanh")
    params = model.init(seed=0)

    adam = refwd.optim.Adam(weight_vs_bias_groups(params), lr=1e-2)
    loss, trained = train(adam, model, params, x, y)
    print(f"Adam, weights decay 1e-2, biases 1e-4: loss {loss:.4f}")
    for group in adam.param_groups:
        print(f"  weight_decay {group['weight_decay']:g}: {group['params']}")

    sgd = refwd.optim.SGD(per_layer_groups(model, [1e-4, 1e-3, 1e-2]), lr=0.05, momentum=0.9)
    loss, trained = train(sgd, model, params, x, y)
    print(f"SGD with momentum, decay per layer 1e-4 / 1e-3 / 1e-2: loss {loss:.4f}")
    for group in sgd.param_groups:
        norm = np.sqrt(sum(np.sum(trained[name] ** 2) for name in group["params"]))
        print(f"  weight_decay {group['weight_decay']:g}: {group['params']}, ‖θ‖ {norm:.3f}")


if __name__ == "__main__":
    main()
