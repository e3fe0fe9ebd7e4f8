"""Adam, with amsgrad and with coupled or decoupled weight decay, as torch.optim.Adam."""
import numpy as np

from .conventions import EPS_PLACEMENTS, check_choice
from .decoupled import decay_rate
from .lerp import lerp
from .optimizer import Optimizer


def adam_step(param, grad, state, *, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
              maximize=False, decoupled_weight_decay=False, eps_placement="after_root", decay_convention="torch",
              initial_lr=None):
    r"""One Adam step for one tensor (Kingma & Ba, Algorithm 1), with torch's ε placement.

    Symbols: θ param, g grad, γ ``lr``, β₁, β₂ ``betas``, ε ``eps``, λ ``weight_decay``,
    m ``state["exp_avg"]``, v ``state["exp_avg_sq"]``, vᵐᵃˣ ``state["max_exp_avg_sq"]`` (amsgrad),
    t ``state["step"]`` (counted per parameter); γ₀ ``initial_lr``, η_t = γ/γ₀. Conventions (torch's
    first): where ε sits, ``eps_placement`` ("after_root" | "inside_root" | "hat" | "floor"); what scales the
    decoupled decay, ``decay_convention`` ("torch": γλ | "paper": η_tλ | "independent": λ).

    .. math::

        t &\leftarrow t + 1\\
        g_t &\leftarrow -g_t && \text{if maximize}\\
        \theta_{t-1} &\leftarrow \begin{cases} (1 - \gamma\lambda)\,\theta_{t-1} & \texttt{"torch"}\\
                                               (1 - \eta_t\lambda)\,\theta_{t-1} & \texttt{"paper"}\\
                                               (1 - \lambda)\,\theta_{t-1} & \texttt{"independent"} \end{cases}
            && \text{if decoupled (AdamW)}\\
        g_t &\leftarrow g_t + \lambda\,\theta_{t-1} && \text{otherwise, if } \lambda \ne 0 \text{ (L2)}\\
        m_t &= \beta_1\, m_{t-1} + (1-\beta_1)\, g_t\\
        v_t &= \beta_2\, v_{t-1} + (1-\beta_2)\, g_t^2\\
        v^{\max}_t &= \max(v^{\max}_{t-1}, v_t) && \text{if amsgrad: replaces } v_t \text{ below}\\
        \theta_t &= \theta_{t-1} - \frac{\gamma}{1-\beta_1^t}\; m_t \Big/
            \Big(\frac{\sqrt{v_t}}{\sqrt{1-\beta_2^t}} + \varepsilon\Big)\\
        \theta_t &= \theta_{t-1} - \frac{\gamma}{1-\beta_1^t}\; m_t \Big/ \sqrt{\frac{v_t}{1-\beta_2^t} + \varepsilon}
            && \text{instead, if \texttt{"inside\_root"}}\\
        \theta_t &= \theta_{t-1} - \frac{\gamma}{1-\beta_1^t}\; m_t \Big/
            \max\Big(\frac{\sqrt{v_t}}{\sqrt{1-\beta_2^t}},\ \varepsilon\Big)
            && \text{instead, if \texttt{"floor"}}\\
        \theta_t &= \theta_{t-1} - \frac{\gamma\sqrt{1-\beta_2^t}}{1-\beta_1^t}\; m_t \Big/
            (\sqrt{v_t} + \hat\varepsilon)
            && \text{instead, if \texttt{"hat"}}

    m, v and vᵐᵃˣ start at zero; vᵐᵃˣ is the running maximum of the raw v, before the bias correction. The
    first θ_t row is torch's, "after_root"; in exact arithmetic it is θ − γ·m̂/(√v̂ + ε) with
    m̂ = m/(1−β₁ᵗ), v̂ = v/(1−β₂ᵗ): ε sits outside the bias-corrected root. It is not the paper's "ε̂" form
    γ·√(1−β₂ᵗ)/(1−β₁ᵗ)·m/(√v + ε̂) that TensorFlow and Keras use (``eps_placement="hat"``); the two differ
    where √v is comparable to ε. "inside_root" is optax's ``eps_root`` (with its ``eps=0``); "floor" bounds
    the denominator by ε.

    torch: ``torch.optim.Adam`` and ``torch.optim.AdamW`` (for-loop ``_single_tensor_adam``), same
    defaults and state keys; the decoupled factor uses the group's current lr. m is a ``lerp`` here as in
    torch (which also decides how NaN and ∞ propagate). torch computes v with a fused multiply-add and takes
    MKL's square root (not correctly rounded); both evaluate the bias corrections, √(1−β₂ᵗ) as ``** 0.5``,
    and the step size γ/(1−β₁ᵗ) in Python double. Outside the oracle: coupled decay where λθ alone
    overflows next to g = ∓∞ is ∓∞ in torch's FMA and NaN here (docs/findings-scalars.md).

    Reference: Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, Algorithm 1;
    Reddi, Kale, Kumar, "On the Convergence of Adam and Beyond", ICLR 2018 (amsgrad);
    Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019, Algorithm 2 (AdamW).
    """
    beta1, beta2 = betas
    step = state.get("step", 0) + 1                                             # t
    if maximize:
        grad = -grad
    check_choice("eps_placement", eps_placement, EPS_PLACEMENTS)
    if weight_decay != 0:
        if decoupled_weight_decay:
            rate = decay_rate(lr=lr, weight_decay=weight_decay, decay_convention=decay_convention,
                              initial_lr=initial_lr)                            # γλ, η_tλ ("paper") or λ
            param = param * (1 - rate)                                          # θ ← (1 − γλ) θ
        else:
            grad = grad + weight_decay * param                                  # g ← g + λθ
    exp_avg = lerp(state.get("exp_avg", np.zeros_like(param)), grad, 1 - beta1)  # m_t = β₁m + (1 − β₁)g
    exp_avg_sq = beta2 * state.get("exp_avg_sq", np.zeros_like(param)) + (1 - beta2) * grad * grad  # v_t
    new_state = {"step": step, "exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}
    bias_correction1 = 1 - beta1 ** step                                        # 1 − β₁ᵗ
    bias_correction2 = 1 - beta2 ** step                                        # 1 − β₂ᵗ
    step_size = lr / bias_correction1                                           # γ / (1 − β₁ᵗ)
    if amsgrad:
        max_exp_avg_sq = np.maximum(state.get("max_exp_avg_sq", np.zeros_like(param)), exp_avg_sq)  # vᵐᵃˣ_t
        new_state["max_exp_avg_sq"] = max_exp_avg_sq
    second_moment = max_exp_avg_sq if amsgrad else exp_avg_sq                   # v_t, or vᵐᵃˣ_t if amsgrad
    if eps_placement == "after_root":
        denom = np.sqrt(second_moment) / bias_correction2 ** 0.5 + eps        # √v/√(1−β₂ᵗ) + ε
    elif eps_placement == "inside_root":
        denom = np.sqrt(second_moment / bias_correction2 + eps)               # √(v/(1−β₂ᵗ) + ε)
    elif eps_placement == "floor":
        denom = np.maximum(np.sqrt(second_moment) / bias_correction2 ** 0.5, eps)   # max(√v/√(1−β₂ᵗ), ε)
    else:                                                                       # "hat": ε̂, TensorFlow's and Keras's
        step_size = step_size * bias_correction2 ** 0.5                         # γ√(1−β₂ᵗ)/(1−β₁ᵗ)
        denom = np.sqrt(second_moment) + eps                                    # √v + ε̂
    param = param - step_size * exp_avg / denom                                 # θ_t
    return param, new_state


def check_adam_hyperparameters(lr, betas, eps, weight_decay):
    """torch.optim.Adam's constructor checks, in torch's order and with torch's messages."""
    if len(betas) != 2:
        # torch 2.13 accepts a longer sequence here and fails at step(); 2.14 drops the extras. Neither is useful,
        # and a shorter one fails with an IndexError in torch's own check below.
        raise ValueError(f"betas must be a pair (beta1, beta2), got {tuple(betas)!r}")
    if not 0.0 <= lr:
        raise ValueError(f"Invalid learning rate: {lr}")
    if not 0.0 <= eps:
        raise ValueError(f"Invalid epsilon value: {eps}")
    if not 0.0 <= betas[0] < 1.0:
        raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
    if not 0.0 <= betas[1] < 1.0:
        raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
    if not 0.0 <= weight_decay:
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")
    if not (isinstance(betas[0], float) and isinstance(betas[1], float)):
        raise ValueError("betas must be either both floats or both Tensors")


class Adam(Optimizer):
    """torch.optim.Adam's math, hyperparameters, defaults and validation; see :func:`adam_step`."""

    rule = staticmethod(adam_step)
    complex_as_real_pairs = True
    overflow_checked = {"lr": "compute", "weight_decay": "param"}   # addcdiv(value=−γ/(1−β₁ᵗ)), add(alpha=λ)

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
                 maximize=False, decoupled_weight_decay=False):
        betas = tuple(betas)
        check_adam_hyperparameters(lr, betas, eps, weight_decay)
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)
