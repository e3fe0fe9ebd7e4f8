"""Experiment 5: overfitting of an over-sized MLP on a small noisy regression, and two cures.

16 training points of y = sin(3x) + 0.3·N(0, 1) on [−1, 1], 100 validation points from the same law, and an
MLP [1, 48, 48, 1] (2,500 parameters) trained full-batch by Adam:

- without decay the training loss falls towards 0 while the validation loss, after a minimum early on,
  rises well above the noise level (0.09): the network fits the noise;
- AdamW with decay on the weights but not the biases (:func:`refwd.optim.decay_groups`) keeps the weights
  small, and the gap between validation and training loss narrows;
- early stopping, the seeds' patience loop, watches the validation loss and stops the undecayed run once it
  has not improved for ``patience`` steps, returning the best weights seen: the baseline for what decay buys.

``python -m experiments.overfitting`` prints the losses of the three.
"""
from dataclasses import dataclass

import numpy as np

import refwd
from refwd.optim import Adam, AdamW, decay_groups

NOISE = 0.3


def noisy_sine(n_train=16, n_validation=100, noise=NOISE, seed=0):
    """Train and validation sets of y = sin(3x) + noise·N(0, 1), x ~ U(−1, 1), shaped (n, 1)."""
    rng = np.random.default_rng(seed)
    sets = []
    for n in (n_train, n_validation):
        x = rng.uniform(-1, 1, size=(n, 1))
        sets.append((x, np.sin(3 * x) + noise * rng.normal(size=(n, 1))))
    return sets


@dataclass(frozen=True)
class Run:
    label: str
    train_loss: np.ndarray       # before each step
    validation_loss: np.ndarray  # before each step
    final_train: float           # of the params the run returns (the best ones for early stopping)
    final_validation: float
    stopped_at: int              # steps taken
    weight_norm: float           # ‖weights‖ (biases left out) of the returned params

    @property
    def gap(self):
        return self.final_validation - self.final_train


@dataclass(frozen=True)
class Result:
    weight_decay: float
    patience: int
    runs: dict  # label -> Run


def train_with_validation(model, params, optimizer, train_set, validation_set, steps, patience=None):
    """Full-batch training, watching the validation loss; with ``patience``, the seeds' early-stopping loop.

    Early stopping keeps the params with the lowest validation loss so far and stops once ``patience`` steps
    in a row have not improved on it; it returns those best params.
    """
    loss_and_grad = refwd.value_and_grad(lambda p: refwd.mse(model(p, train_set[0]), train_set[1]))
    validation = lambda p: float(refwd.mse(model(p, validation_set[0]), validation_set[1]))
    train_losses, validation_losses = [], []
    best_loss, best_params, steps_without_improvement = np.inf, params, 0
    for _ in range(steps):
        loss, grads = loss_and_grad(params)
        train_losses.append(float(loss))
        validation_losses.append(validation(params))
        if patience is not None:
            if validation_losses[-1] < best_loss:
                best_loss, best_params, steps_without_improvement = validation_losses[-1], params, 0
            else:
                steps_without_improvement += 1
                if steps_without_improvement >= patience:
                    break
        params = optimizer.step(params, grads)
    if patience is not None:
        params = best_params
    return np.array(train_losses), np.array(validation_losses), params


def run(steps=1000, lr=1e-2, weight_decay=1.0, patience=50, seed=0):
    train_set, validation_set = noisy_sine(seed=seed)
    model = refwd.MLP([1, 48, 48, 1], activation="tanh")
    setups = {  # label -> (optimizer factory, patience)
        "no decay": (lambda p: Adam(p, lr=lr), None),
        f"AdamW λ={weight_decay:g}, weights only": (lambda p: AdamW(decay_groups(p, weight_decay), lr=lr), None),
        f"early stopping, patience {patience}": (lambda p: Adam(p, lr=lr), patience),
    }
    runs = {}
    for label, (make, run_patience) in setups.items():
        params = model.init(seed=seed, dtype="float64")
        train_losses, validation_losses, params = train_with_validation(
            model, params, make(params), train_set, validation_set, steps, run_patience)
        final_train = float(refwd.mse(model(params, train_set[0]), train_set[1]))
        final_validation = float(refwd.mse(model(params, validation_set[0]), validation_set[1]))
        weights = [value for name, value in params.items() if name.endswith("weight")]
        weight_norm = float(np.sqrt(sum(np.sum(value ** 2) for value in weights)))
        runs[label] = Run(label, train_losses, validation_losses, final_train, final_validation, len(train_losses),
                          weight_norm)
    return Result(weight_decay, patience, runs)


def report(result):
    """The short text ``main`` prints: the numbers behind the conclusions."""
    lines = [f"Experiment 5: MLP [1, 48, 48, 1] on 16 noisy points of sin(3x) (noise variance {NOISE ** 2:g}), "
             "full-batch Adam, lr 1e-2",
             f"{'run':<32}{'steps':>7}{'train':>9}{'validation':>12}{'gap':>9}{'min val (step)':>17}{'‖W‖':>8}"]
    for r in result.runs.values():
        best = int(np.argmin(r.validation_loss))
        lines.append(f"{r.label:<32}{r.stopped_at:>7d}{r.final_train:>9.4f}{r.final_validation:>12.4f}{r.gap:>9.4f}"
                     f"{r.validation_loss[best]:>10.4f} ({best:>4d}){r.weight_norm:>8.2f}")
    lines.append("Without decay the network fits the noise; decaying the weights narrows the gap; early stopping "
                 "keeps the best validation point of the undecayed run.")
    return "\n".join(lines)


def main():
    print(report(run()))


if __name__ == "__main__":
    main()
