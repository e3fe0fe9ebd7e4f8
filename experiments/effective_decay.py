"""Experiment 2: the effective per-parameter decay of Adam with L2, next to AdamW's uniform factor.

Adam with coupled L2 feeds g + λθ into its moments. Read in the seeds' notation (β₁ = 0, or the first step,
where m̂ = g + λθ exactly; tests/test_properties.py proves the general form), one step is

    θ ← (1 − γλ/(√v̂ + ε))·θ − γ/(√v̂ + ε)·∇L,

so weight i shrinks by k_i = γλ/(√v̂_i + ε) per step: its own rate, set by its gradient history, and changing
as that history does. With momentum the same total γλθ/(√v̂ + ε) is spread over the next ~1/(1 − β₁) steps.
AdamW shrinks every weight by the same γλ. This experiment trains Adam + L2 and reads v̂ along the run:

- the distribution of k_i/(γλ) across parameters at the end (AdamW's is the constant 1);
- its relation to the gradients: k ∝ 1/√v̂ where √v̂ ≫ ε, and v̂ averages the squared gradient, so the
  parameters whose loss gradient ∇L has the largest root mean square over the run decay least;
- its change over time: k_i at step 30 against step 300, parameter by parameter.

``python -m experiments.effective_decay`` prints the quantiles, the correlation and the changes.
"""
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from refwd.optim import Adam

from .common import flat, mlp_regression, train

CHECKPOINTS = (10, 30, 100, 300)  # steps after which the per-parameter decay is recorded


@dataclass(frozen=True)
class Result:
    lr: float
    weight_decay: float
    steps: int
    names: list                  # parameter name of each flattened element
    sqrt_v_hat: np.ndarray       # √v̂ = √(v/(1 − β₂ᵗ)) per element at the end
    effective_decay: np.ndarray  # k = γλ/(√v̂ + ε) per element at the end: Adam + L2's decay per step
    gradient_rms: np.ndarray     # root mean square of the loss gradient ∇L (without λθ) over the run, per element
    history: dict                # step t -> k per element after t steps, for t in CHECKPOINTS (≤ steps)

    @property
    def adamw_decay(self):
        """AdamW's decay per step, the same for every parameter: γλ."""
        return self.lr * self.weight_decay

    @property
    def relative_decay(self):
        """k / (γλ): how many times stronger than AdamW's decay each parameter's is."""
        return self.effective_decay / self.adamw_decay

    def quantiles(self, q=(0.0, 0.05, 0.5, 0.95, 1.0)):
        return np.quantile(self.relative_decay, q)

    @property
    def spearman_with_gradient_rms(self):
        """Rank correlation of k with the RMS of ∇L over the run (−1: larger gradients, less decay)."""
        return float(stats.spearmanr(self.effective_decay, self.gradient_rms)[0])

    def changed_fraction(self, start, end, factor=2.0):
        """Fraction of the parameters whose k changed by more than ``factor`` (either way) from ``start`` to ``end``."""
        change = self.history[end] / self.history[start]
        return float(np.mean((change > factor) | (change < 1 / factor)))


def run(steps=300, lr=1e-3, weight_decay=0.1, betas=(0.9, 0.999), eps=1e-8, seed=0):
    """Train Adam(weight_decay=λ) on the MLP regression; return each parameter's effective decay along the run."""
    _, params, loss_and_grad = mlp_regression(seed=seed)
    optimizer = Adam(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    squared_gradients, history = [], {}

    def effective_decay(names):  # γλ/(√v̂ + ε) from the optimizer's state, and √v̂
        step = optimizer.state[names[0]]["step"]
        v_hat = flat({name: optimizer.state[name]["exp_avg_sq"] for name in names}) / (1 - betas[1] ** step)
        return lr * weight_decay / (np.sqrt(v_hat) + eps), np.sqrt(v_hat)

    def record(t, p, grads, o):  # t steps have been taken
        squared_gradients.append(flat(grads) ** 2)
        if t in CHECKPOINTS:
            history[t] = effective_decay(list(p))[0]

    final, _ = train(optimizer, params, loss_and_grad, steps, on_step=record)
    decay, sqrt_v_hat = effective_decay(list(final))
    if steps in CHECKPOINTS:
        history[steps] = decay
    names = [name for name, value in final.items() for _ in range(np.size(value))]
    return Result(lr, weight_decay, steps, names, sqrt_v_hat, decay, np.sqrt(np.mean(squared_gradients, axis=0)),
                  history)


def report(result):
    """The short text ``main`` prints: the numbers behind the conclusions."""
    q = result.quantiles()
    half_life = lambda rate: math.log(2) / -math.log(1 - rate)   # steps for (1 − rate)ᵗ to reach 1/2
    lines = [f"Experiment 2: effective decay of Adam + L2 (λ = {result.weight_decay}, γ = {result.lr}, "
             f"{result.steps} steps), relative to AdamW's uniform γλ = {result.adamw_decay:g}",
             "k/(γλ) quantiles  min {:.3g}  5% {:.3g}  median {:.3g}  95% {:.3g}  max {:.3g}".format(*q),
             f"half-life of a weight under decay alone, 95% to 5% quantile: "
             f"{half_life(result.adamw_decay * q[3]):.3g} to {half_life(result.adamw_decay * q[1]):.3g} steps "
             f"(median {half_life(result.adamw_decay * q[2]):.3g}); "
             f"AdamW: {half_life(result.adamw_decay):.3g} steps for every weight"]
    for kind, label in (("weight", "weights"), ("bias", "biases")):
        chosen = np.array([name.endswith(kind) for name in result.names])
        lines.append(f"  {label:<8} median k/(γλ) {np.median(result.relative_decay[chosen]):.3g}")
    lines.append(f"Spearman(k, RMS of ∇L over the run): {result.spearman_with_gradient_rms:.4f}")
    if 30 in result.history and result.steps in result.history:
        lines.append(f"k changed more than 2× between step 30 and step {result.steps} for "
                     f"{result.changed_fraction(30, result.steps):.0%} of the parameters")
    lines.append("Parameters with large gradients are decayed least: coupled L2 is not one decay rate but many, "
                 "and they move.")
    return "\n".join(lines)


def main():
    print(report(run()))


if __name__ == "__main__":
    main()
