"""experiments: each experiment's run(), and the SGD identity's bound search of tests/test_properties.py."""
import math

import hook_numbers  # docs/hook_numbers.py: the span syntax and the formats

from .formats import key_of, rounded


def sci(value):
    """5.6e-17, 2.0e-2: a small figure of the experiments' tables."""
    mantissa, exponent = hook_numbers._mantissa_exponent(value)
    return f"{mantissa}e{exponent}"


def small(value):
    """A gap: two decimals from 0.1 up, else scientific (the first experiment's table)."""
    return f"{value:.2f}" if value >= 0.095 else sci(value)


def experiment_one():
    from experiments import coupled_vs_decoupled
    result = coupled_vs_decoupled.run()
    u = 2.0 ** -53
    gamma = lambda k: k * u / (1 - k * u)   # noqa: E731  (Higham's γ_k, as tests/test_experiments.py)
    lines = ["| pair | gap after step 1 | after step 10 | after step 300 | relative final gap | final loss coupled / "
             "decoupled | share of $\\lvert\\theta\\rvert < 0.01$, coupled / decoupled |",
             "|---|---|---|---|---|---|---|"]
    pairs = {}
    for name, pair in result.pairs.items():
        lines.append(f"| {name} | {small(pair.gap[0])} | {small(pair.gap[9])} | {small(pair.gap[-1])} | "
                     f"{small(pair.relative_final_gap)} | "
                     f"{pair.coupled_loss[-1]:.4f} / {pair.decoupled_loss[-1]:.4f} | "
                     f"{pair.near_zero_fraction('coupled'):.2f} / {pair.near_zero_fraction('decoupled'):.2f} |")
        pairs[name] = {"near_zero_coupled_percent": rounded(100 * pair.near_zero_fraction("coupled")),
                       "near_zero_decoupled_percent": rounded(100 * pair.near_zero_fraction("decoupled")),
                       "gap_max": rounded(float(pair.gap.max()))}
    sgd = result.pairs["SGD"]
    bound = 2 * gamma(4) * sgd.error_scale / (1 - 2 * len(sgd.gap) * gamma(4)) * (1 + gamma(3 * len(sgd.gap)))
    return {"table": "\n".join(lines), "pairs": pairs, "sgd_bound_fraction": rounded(float((sgd.gap / bound).max()))}


def experiment_two():
    import numpy as np

    from experiments import effective_decay
    result = effective_decay.run()
    q = result.quantiles()
    half_life = lambda rate: math.log(2) / -math.log(1 - rate)   # noqa: E731  (as effective_decay.report)
    medians = {kind: float(np.median(result.relative_decay[[name.endswith(kind) for name in result.names]]))
               for kind in ("weight", "bias")}
    table = "\n".join([
        "| | min | 5 % | median | 95 % | max |", "|---|---|---|---|---|---|",
        f"| $k_i/(\\gamma\\lambda)$ after {result.steps} steps | "
        + " | ".join(hook_numbers.format_value(value, "s2") for value in q[:4]) + " | "
        + hook_numbers.format_value(q[4], "s3") + " |",
        "| half-life of a weight under the decay alone (steps) | | "
        + " | ".join(f"{half_life(result.adamw_decay * value):,.0f}" for value in q[1:4]) + " | |"])
    return {"table": table, "quantiles": {name: rounded(float(value)) for name, value in
                                          zip(("min", "p5", "median", "p95", "max"), q)},
            "half_life_median": rounded(half_life(result.adamw_decay * q[2])),
            "half_life_adamw": rounded(half_life(result.adamw_decay)),
            "median_weights": rounded(medians["weight"]), "median_biases": rounded(medians["bias"]),
            "spearman": rounded(result.spearman_with_gradient_rms),
            "changed_percent": rounded(100 * result.changed_fraction(30, result.steps))}


def experiment_three():
    from experiments import adamw_as_rmsprop
    result = adamw_as_rmsprop.run()
    lines = ["| α | $\\rho_1$ (≈ $\\sqrt{1-\\alpha}$) | 1 % reached at $t$ (derived) | (measured) | "
             "max $\\lvert\\rho_{\\text{measured}} - \\rho_{\\text{formula}}\\rvert$ |", "|---|---|---|---|---|"]
    for r in result.thresholds.values():
        lines.append(f"| {r.alpha:g} | {r.first_ratio:.4f} | {r.derived_step:,} | {r.measured_step:,} | "
                     f"{sci(r.worst_formula_error)} |")
    training = result.training
    steps = (1, 10, 100, 390, len(training.ratio_min))
    return {"table": "\n".join(lines),
            "ratios": [rounded(float(training.ratio_min[t - 1])) for t in steps],
            "ratio_steps": list(steps),
            "distance_final": rounded(float(training.distance[-1])),
            "loss_step10_adamw": rounded(float(training.adamw_loss[9])),
            "loss_step10_rmspropw": rounded(float(training.rmspropw_loss[9]))}


def experiment_four():
    from experiments import fixed_points
    result = fixed_points.run()
    vector = lambda theta: " | ".join(f"{value:.4f}".replace("-", "−") for value in theta)   # noqa: E731
    table = "\n".join([
        "| | $w_1$ | $w_2$ | $w_3$ | $w_4$ | bias |", "|---|---|---|---|---|---|",
        f"| least squares | {vector(result.ordinary)} |",
        f"| ridge, $\\lambda = {result.weight_decay:g}$ (`scipy.linalg.solve`) | {vector(result.ridge)} |",
        f"| box $\\lVert\\theta\\rVert_\\infty \\le 1/\\lambda = {1 / result.weight_decay:g}$ "
        f"(`scipy.optimize.lsq_linear`) | {vector(result.box)} |",
        f"| AdamW's fixed point (solved) | {vector(result.adamw_predicted)} |"])
    ends = {key_of(label).replace(" ", "_").replace("+", "plus").lower():
            rounded(result.distance(label, result.ridge_of.get(label, result.adamw_predicted)))
            for label in result.trajectories}
    tail = result.distance("AdamW", result.adamw_predicted, fixed_points.TAIL)
    return {"table": table, "end_distance": ends,
            "sgdw_from_ridge": rounded(result.distance("SGDW momentum 0.9", result.ridge)),
            "adamw_from_ridge": rounded(result.distance("AdamW", result.ridge)),
            "coupled_worst": rounded(max(ends[key] for key in ("sgd", "sgd_momentum_0_9", "adam_plus_l2"))),
            "adamw_tail": rounded(tail), "adamw_tail_steps": rounded(tail / result.adamw_lr),
            "move_at_fixed_point_steps": rounded(result.adamw_move_at_prediction / result.adamw_lr),
            "move_at_ridge_steps": rounded(result.adamw_move_at_ridge / result.adamw_lr)}


OVERFITTING_LABELS = ("no decay", "AdamW, $\\lambda = 1$ on the weights, not the biases",
                      "early stopping, patience 50 (the undecayed run)")


def experiment_five():
    import numpy as np

    from experiments import overfitting
    result = overfitting.run()
    lines = ["| run | steps | train | validation | gap | best validation (step) | weight norm |",
             "|---|---|---|---|---|---|---|"]
    runs = {}
    for label, r in zip(OVERFITTING_LABELS, result.runs.values()):
        best = int(np.argmin(r.validation_loss))
        lines.append(f"| {label} | {r.stopped_at:,} | {r.final_train:.4f} | {r.final_validation:.4f} | {r.gap:.3f} | "
                     f"{r.validation_loss[best]:.4f} ({best}) | {r.weight_norm:.2f} |")
        runs[("no_decay", "adamw", "early_stopping")[len(runs)]] = {
            "train": rounded(r.final_train), "validation": rounded(r.final_validation), "gap": rounded(r.gap),
            "best_validation": rounded(float(r.validation_loss[best])), "best_step": best,
            "weight_norm": rounded(r.weight_norm)}
    plain = runs["no_decay"]
    return {"table": "\n".join(lines), "runs": runs,
            "noise_over_train": rounded(overfitting.NOISE ** 2 / plain["train"]),
            "validation_rise": rounded(plain["validation"] / plain["best_validation"]),
            "norm_ratio": rounded(runs["adamw"]["weight_norm"] / plain["weight_norm"])}


def sgd_identity_search():
    """The fraction of the SGD identity's rounding bound that tests/test_properties.py's fixed random search reaches
    (the search test_sgd_identity_bound_is_tight asserts on), per dtype."""
    from test_properties import sgd_identity_search as search
    return {dtype: rounded(search(dtype)) for dtype in ("float64", "float32")}


def measure_experiments():
    return {"experiments": {"coupled_vs_decoupled": experiment_one(), "effective_decay": experiment_two(),
                            "adamw_as_rmsprop": experiment_three(), "fixed_points": experiment_four(),
                            "overfitting": experiment_five(), "sgd_identity_search": sgd_identity_search()}}
