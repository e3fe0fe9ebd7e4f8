r"""Experiment 4: where coupled and decoupled optimizers converge on least squares.

The problem: a Linear(4, 1) model (weight and bias, all decayed) fitted to noisy data by
L(θ) = mean((Aθ − y)²), A = [X, 1]. With coupled L2 every optimizer's fixed point has a zero effective
gradient ∇L(θ) + λθ = 0 (SGD's, momentum's buffer and Adam's first moment all vanish there), which is
the ridge solution

    θ_ridge = (2/n·AᵀA + λI)⁻¹ 2/n·Aᵀy        (scipy.linalg.solve).

SGD, SGD with momentum and Adam + L2 converge to it. Decoupled decay changes the fixed-point equation:

- SGDW with momentum μ (no dampening): the buffer settles at ∇L/(1 − μ), so ∇L/(1 − μ) + λθ = 0: ridge with
  λ(1 − μ), not λ.
- AdamW: m̂ → ∇L and v̂ → (∇L)², so a fixed point has, per coordinate,
  ∇L_i/(|∇L_i| + ε) = −λθ_i, i.e. ∇L_i(θ) + ελθ_i/(1 − λ|θ_i|) = 0 with |θ_i| < 1/λ.
  It is the minimiser of L(θ) + ε·Σ_i φ(θ_i), φ(θ) = −|θ| − ln(1 − λ|θ|)/λ, a convex barrier that keeps
  θ inside the box ‖θ‖_∞ < 1/λ and is ≈ ελθ²/2 near 0. As ε → 0 it tends to the box-constrained least
  squares solution argmin {L(θ) : ‖θ‖_∞ ≤ 1/λ} (scipy.optimize.lsq_linear): AdamW with constant
  hyperparameters does not shrink towards 0 like ridge; it fits the data and clips at ±1/λ
  (cf. Xie & Li, "Implicit Bias of AdamW: ℓ∞ Norm Constrained Optimization", ICML 2024).

The check is numerical: θ_AdamW (solved by Newton's method) is a fixed point of ``adamw_step`` with
steady-state moments, the ridge solution is not, and an AdamW run from the usual initialisation stays, over its last
steps, within a fraction of its lr of θ_AdamW (Adam's sign-like steps circle it at interior coordinates), far from
the ridge solution. ``python -m experiments.fixed_points`` prints the distances.
"""
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.optimize

import refwd
from refwd.optim import SGD, SGDW, Adam, AdamW, adamw_step

from .common import flat, train

TRUE_WEIGHT = (3.0, -2.5, 1.0, 0.5)  # two coordinates beyond 1/λ = 2, so AdamW's box is active
TRUE_BIAS = 1.5
TAIL = 500  # AdamW circles its fixed point: its distance is measured as the worst over the last TAIL steps


def least_squares_problem(n=40, noise=0.3, seed=0):
    """(X, y, A) with y = X·TRUE_WEIGHT + TRUE_BIAS + noise, shaped for refwd.Linear; A = [X, 1]."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(TRUE_WEIGHT)))
    y = (x @ np.array(TRUE_WEIGHT) + TRUE_BIAS + noise * rng.normal(size=n))[:, None]
    return x, y, np.hstack([x, np.ones((n, 1))])


def loss_gradient(a, y, theta):
    """∇L(θ) = 2/n·Aᵀ(Aθ − y), θ = [weight, bias] flattened as refwd's params are."""
    return 2 / len(a) * a.T @ (a @ theta - y[:, 0])


def ridge_solution(a, y, weight_decay):
    """argmin L(θ) + λ/2‖θ‖²: (2/n·AᵀA + λI)⁻¹ 2/n·Aᵀy."""
    n, d = a.shape
    return scipy.linalg.solve(2 / n * a.T @ a + weight_decay * np.eye(d), 2 / n * a.T @ y[:, 0], assume_a="pos")


def box_least_squares(a, y, weight_decay):
    """argmin {L(θ) : ‖θ‖_∞ ≤ 1/λ}: AdamW's fixed point in the limit ε → 0."""
    bound = 1 / weight_decay
    return scipy.optimize.lsq_linear(a, y[:, 0], bounds=(-bound, bound), method="bvls", tol=1e-15).x


def adamw_fixed_point(a, y, weight_decay, eps):
    """Solve ∇L(θ) + ελθ/(1 − λ|θ|) = 0 inside the box by damped Newton, from the box solution pulled inside."""
    n = len(a)
    hessian = 2 / n * a.T @ a
    theta = box_least_squares(a, y, weight_decay) * (1 - 1e-9)
    for _ in range(100):
        slack = 1 - weight_decay * np.abs(theta)
        residual = loss_gradient(a, y, theta) + eps * weight_decay * theta / slack
        newton = np.linalg.solve(hessian + np.diag(eps * weight_decay / slack ** 2), residual)
        damping = 1.0
        while np.any(np.abs(theta - damping * newton) >= 1 / weight_decay):
            damping /= 2                      # stay inside the box, where the barrier is defined
        theta = theta - damping * newton
    return theta


def adamw_step_from_steady_state(a, y, theta, *, lr, weight_decay, betas, eps):
    """One AdamW step from θ with the moments a long run at θ would hold (m = ∇L, v = ∇L², bias corrections 1)."""
    grad = loss_gradient(a, y, theta)
    state = {"step": 10 ** 6, "exp_avg": grad.copy(), "exp_avg_sq": grad * grad}
    new_theta, _ = adamw_step(theta, grad, state, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    return new_theta - theta


@dataclass(frozen=True)
class Result:
    weight_decay: float
    ridge: np.ndarray
    ordinary: np.ndarray          # least squares without decay
    box: np.ndarray               # least squares in ‖θ‖_∞ ≤ 1/λ
    adamw_predicted: np.ndarray   # the AdamW fixed point, solved
    adamw_lr: float
    trajectories: dict            # optimizer label -> θ after each step, shape (steps, 5)
    ridge_of: dict                # optimizer label -> the ridge solution it should reach (λ or λ(1 − μ))
    adamw_move_at_prediction: float   # max |Δθ| of one steady-state AdamW step at θ_AdamW
    adamw_move_at_ridge: float        # the same at θ_ridge

    @property
    def final(self):
        return {label: trajectory[-1] for label, trajectory in self.trajectories.items()}

    def distance(self, label, target, last=1):
        """max |θ − target| over the last ``last`` steps of the run ``label``."""
        return float(np.max(np.abs(self.trajectories[label][-last:] - target)))


def run(weight_decay=0.5, seed=0):
    x, y, a = least_squares_problem(seed=seed)
    model = refwd.Linear(x.shape[1], 1)
    loss_and_grad = refwd.value_and_grad(lambda params: refwd.mse(model(params, x), y))
    adamw = dict(lr=0.02, betas=(0.9, 0.95), eps=1e-8)  # a short memory of v, so that the run settles in seconds
    decay_to_one_percent = lambda t: 0.01 ** (t / 1500)  # Adam + L2 needs a decaying lr to settle on a point
    runs = {  # label -> (optimizer factory, steps, lr schedule, the ridge λ it should reach)
        "SGD": (lambda p: SGD(p, lr=0.05, weight_decay=weight_decay), 500, None, weight_decay),
        "SGD momentum 0.9": (lambda p: SGD(p, lr=0.05, momentum=0.9, weight_decay=weight_decay), 500, None,
                             weight_decay),
        "Adam + L2": (lambda p: Adam(p, lr=0.05, weight_decay=weight_decay), 1500, decay_to_one_percent,
                      weight_decay),
        "SGDW momentum 0.9": (lambda p: SGDW(p, lr=0.05, momentum=0.9, weight_decay=weight_decay), 500, None,
                              weight_decay * (1 - 0.9)),
        "AdamW": (lambda p: AdamW(p, weight_decay=weight_decay, **adamw), 2500, None, None),
    }
    trajectories, ridge_of = {}, {}
    for label, (make, steps, schedule, ridge_decay) in runs.items():
        params = model.init(seed=seed, dtype="float64")
        visited = []
        params, _ = train(make(params), params, loss_and_grad, steps, lr_schedule=schedule,
                          on_step=lambda t, p, g, o: visited.append(flat(p)))
        trajectories[label] = np.array(visited[1:] + [flat(params)])
        if ridge_decay is not None:
            ridge_of[label] = ridge_solution(a, y, ridge_decay)
    predicted = adamw_fixed_point(a, y, weight_decay, adamw["eps"])
    ridge = ridge_solution(a, y, weight_decay)
    move = lambda theta: float(np.max(np.abs(adamw_step_from_steady_state(a, y, theta, weight_decay=weight_decay,
                                                                          **adamw))))
    return Result(weight_decay, ridge, scipy.linalg.lstsq(a, y[:, 0])[0], box_least_squares(a, y, weight_decay),
                  predicted, adamw["lr"], trajectories, ridge_of, move(predicted), move(ridge))


def report(result):
    """The short text ``main`` prints: the numbers behind the conclusions."""
    vector = lambda theta: np.array2string(theta, precision=4, suppress_small=True, floatmode="fixed")
    lines = [f"Experiment 4: fixed points on least squares, Linear(4, 1), λ = {result.weight_decay} on all parameters",
             f"  ordinary least squares   {vector(result.ordinary)}",
             f"  ridge (scipy.linalg)     {vector(result.ridge)}",
             f"  box ‖θ‖∞ ≤ 1/λ = {1 / result.weight_decay:<6g}  {vector(result.box)}",
             f"  AdamW fixed point        {vector(result.adamw_predicted)}"]
    for label, theta in result.final.items():
        target = result.ridge_of.get(label, result.adamw_predicted)
        what = "its ridge solution" if label in result.ridge_of else "the AdamW fixed point"
        lines.append(f"{label:<18} ends at {vector(theta)}: max distance to {what} "
                     f"{result.distance(label, target):.1e}, to the λ ridge {result.distance(label, result.ridge):.1e}")
    tail = result.distance("AdamW", result.adamw_predicted, TAIL)
    lines.append(f"AdamW over its last {TAIL} steps: within {tail:.1e} = {tail / result.adamw_lr:.2f}·γ of its fixed "
                 "point (Adam's sign-like steps circle it at interior coordinates)")
    lines.append(f"One steady-state AdamW step (γ = {result.adamw_lr}) moves θ_AdamW by "
                 f"{result.adamw_move_at_prediction:.1e} and θ_ridge by {result.adamw_move_at_ridge:.1e}.")
    lines.append("Coupled L2 converges to ridge; SGDW with momentum μ to ridge with λ(1 − μ); AdamW to the box "
                 "solution.")
    return "\n".join(lines)


def main():
    print(report(run()))


if __name__ == "__main__":
    main()
