"""Regenerate every figure in docs/figures/ from the experiments (experiments/), byte for byte.

    python docs/make_figures.py            # about 15 s; writes docs/figures/*.png

Deterministic: the experiments are (fixed seeds, full-batch float64), matplotlib draws with the Agg backend and
its bundled DejaVu fonts, and the PNGs are saved without the "Software" text chunk (the only metadata matplotlib
writes to a PNG, and the one that changes with its version). Running the script twice gives the same bytes;
a different matplotlib or FreeType version may move pixels, so regenerate all figures with one environment.
"""
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # the repository's experiments/, run from anywhere
from experiments import (adamw_as_rmsprop, coupled_vs_decoupled, effective_decay, fixed_points,  # noqa: E402
                               overfitting)

FIGURES = Path(__file__).resolve().parent / "figures"
STYLE = {"figure.dpi": 100, "font.size": 9, "axes.titlesize": 10, "axes.grid": True, "grid.alpha": 0.3,
         "legend.fontsize": 8, "legend.frameon": False, "lines.linewidth": 1.4, "svg.hashsalt": "refwd"}


def save(figure, name):
    """Write ``docs/figures/<name>.png`` without metadata, so that the bytes depend on the drawing alone."""
    figure.tight_layout()
    figure.savefig(FIGURES / f"{name}.png", metadata={"Software": None})
    plt.close(figure)
    return FIGURES / f"{name}.png"


def coupled_vs_decoupled_figure(result):
    figure, (gaps, weights) = plt.subplots(1, 2, figsize=(9, 3.4))
    steps = np.arange(1, result.steps + 1)
    for name, pair in result.pairs.items():
        gaps.semilogy(steps, np.maximum(pair.gap, 1e-17), label=f"{name} (γ = {pair.lr:g})")
    gaps.set(xlabel="step", ylabel="max |θ_coupled − θ_decoupled|",
             title=f"Same start, same λ = {result.weight_decay:g}: gap per step")
    gaps.legend()
    adam = result.pairs["Adam"]
    bins = np.linspace(-1.5, 1.5, 61)
    weights.hist(adam.decoupled_final, bins=bins, alpha=0.6, label="AdamW (decoupled)")
    weights.hist(adam.coupled_final, bins=bins, alpha=0.6, label="Adam + L2 (coupled)")
    weights.set(xlabel="final parameter value", ylabel="count",
                title=f"Adam, final parameters after {result.steps} steps")
    weights.legend()
    return save(figure, "coupled_vs_decoupled")


def effective_decay_figure(result):
    figure, (histogram, scatter) = plt.subplots(1, 2, figsize=(9, 3.4))
    relative = result.relative_decay
    is_bias = np.array([name.endswith("bias") for name in result.names])
    bins = np.logspace(0, np.log10(relative.max()) + 0.1, 50)
    counts, _, _ = histogram.hist([relative[~is_bias], relative[is_bias]], bins=bins, stacked=True,
                                  label=["weights", "biases"])
    histogram.set_ylim(0, 1.5 * counts.max())  # room for the legend above the bars
    histogram.axvline(1.0, color="black", linestyle="--", label="AdamW: 1 for every parameter")
    histogram.set(xscale="log", xlabel="k / (γλ), per parameter", ylabel="count",
                  title=f"Adam + L2: decay per step after {result.steps} steps")
    histogram.legend(loc="upper right")
    scatter.loglog(result.gradient_rms[~is_bias], relative[~is_bias], ".", markersize=2, label="weights")
    scatter.loglog(result.gradient_rms[is_bias], relative[is_bias], ".", markersize=4, label="biases")
    scatter.axhline(1.0, color="black", linestyle="--", label="AdamW")
    scatter.set(xlabel="RMS of ∇L over the run", ylabel="k / (γλ)",
                title=f"Larger gradients, less decay (Spearman {result.spearman_with_gradient_rms:.2f})")
    scatter.legend()
    return save(figure, "effective_decay")


def adamw_as_rmsprop_figure(result):
    figure, (ratio, training) = plt.subplots(1, 2, figsize=(9, 3.4))
    for alpha, threshold in result.thresholds.items():
        steps = np.arange(1, 2 * threshold.derived_step + 1)
        line, = ratio.loglog(steps, 1 - np.sqrt(1 - alpha ** steps), label=f"α = {alpha:g}")
        ratio.axvline(threshold.derived_step, color=line.get_color(), linestyle=":", linewidth=1)
    ratio.axhline(adamw_as_rmsprop.THRESHOLD, color="black", linestyle="--", linewidth=1, label="1 %")
    ratio.set(xlabel="step t", ylabel="1 − √(1 − αᵗ)",
              title="AdamW(β₁ = 0) step / RMSpropW step: gap 1 − ρₜ")
    ratio.legend()
    run = result.training
    steps = np.arange(1, len(run.adamw_loss) + 1)
    training.semilogy(steps, run.adamw_loss, label="AdamW, betas = (0, 0.99)")
    training.semilogy(steps, run.rmspropw_loss, label="RMSpropW, α = 0.99")
    training.set(xlabel="step", ylabel="training loss", title="Same λ, γ and start: two trajectories")
    distance = training.twinx()
    distance.plot(steps, run.distance, color="grey", linewidth=1)
    distance.set_ylabel("max |θ_AdamW − θ_RMSpropW| (grey)")
    distance.grid(False)
    training.legend(loc="center right")
    return save(figure, "adamw_as_rmsprop")


def fixed_points_figure(result):
    figure, (distances, coordinates) = plt.subplots(1, 2, figsize=(9, 3.4))
    for label, trajectory in result.trajectories.items():
        target = result.ridge_of.get(label, result.adamw_predicted)
        steps = np.arange(1, len(trajectory) + 1)
        distances.semilogy(steps, np.maximum(np.abs(trajectory - target).max(axis=1), 1e-16), label=label)
    distances.set(xlabel="step", ylabel="max |θ − predicted fixed point|",
                  title="Each run against its predicted fixed point")
    distances.legend(fontsize=7)
    index = np.arange(len(result.ridge))
    width = 0.2
    for offset, (label, theta) in zip((-1.5, -0.5, 0.5, 1.5), (("least squares", result.ordinary),
                                                              ("ridge (coupled L2)", result.ridge),
                                                              ("box ‖θ‖∞ ≤ 1/λ", result.box),
                                                              ("AdamW, end of run", result.final["AdamW"]))):
        coordinates.bar(index + offset * width, theta, width, label=label)
    for bound in (1 / result.weight_decay, -1 / result.weight_decay):
        coordinates.axhline(bound, color="black", linestyle="--", linewidth=1)
    coordinates.set_xticks(index, ["w₁", "w₂", "w₃", "w₄", "bias"])
    coordinates.set(ylabel="value", title=f"Where they converge (λ = {result.weight_decay:g}; ±1/λ dashed)")
    coordinates.legend(fontsize=7)
    return save(figure, "fixed_points")


def overfitting_figure(result):
    figure, axes = plt.subplots(1, 1, figsize=(6.5, 3.6))
    runs = list(result.runs.values())
    for run, color in zip(runs[:2], ("C0", "C1")):
        steps = np.arange(len(run.train_loss))
        axes.semilogy(steps, run.train_loss, color=color, linestyle="--", linewidth=1)
        axes.semilogy(steps, run.validation_loss, color=color, label=run.label)
    stopped = runs[2]  # the undecayed run again, watched: draw where it stops and what it keeps
    best = int(np.argmin(stopped.validation_loss))
    axes.plot(best, stopped.validation_loss[best], "o", color="C2", label=f"{stopped.label}: the weights kept")
    axes.axvline(stopped.stopped_at, color="C2", linewidth=1, label="... and where it stops")
    axes.axhline(overfitting.NOISE ** 2, color="black", linewidth=1, linestyle=":", label="noise variance")
    axes.set(xlabel="step", ylabel="MSE (validation solid, train dashed)", ylim=(0.015, 3),
             title="Over-sized MLP on 16 noisy points")
    axes.legend(loc="upper right")
    return save(figure, "overfitting")


def main():
    FIGURES.mkdir(exist_ok=True)
    plt.rcParams.update(STYLE)
    written = [coupled_vs_decoupled_figure(coupled_vs_decoupled.run()),
               effective_decay_figure(effective_decay.run()),
               adamw_as_rmsprop_figure(adamw_as_rmsprop.run()),
               fixed_points_figure(fixed_points.run()),
               overfitting_figure(overfitting.run())]
    for path in written:
        print(f"{path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}: "
              f"{path.stat().st_size // 1024} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
