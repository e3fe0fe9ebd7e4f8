"""RMSprop, plain, centered and with momentum, with coupled weight decay, as torch.optim.RMSprop."""
import numpy as np

from .conventions import EPS_PLACEMENTS, LR_PLACEMENTS, check_choice
from .lerp import lerp
from .optimizer import Optimizer


def rmsprop_step(param, grad, state, *, lr, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False, maximize=False, eps_placement="after_root", lr_placement="outside_momentum",
                 initial_square_avg=0.0):
    r"""One RMSprop step for one tensor (Hinton's lecture 6e; centered form after Graves, 2013).

    Symbols: θ param, g grad, γ ``lr``, α ``alpha``, ε ``eps``, λ ``weight_decay``, μ ``momentum``,
    v ``state["square_avg"]``, ḡ ``state["grad_avg"]`` (centered), b ``state["momentum_buffer"]``,
    t ``state["step"]`` (counted, unused by the math: RMSprop has no bias correction). Conventions (torch's
    first): where ε sits, ``eps_placement`` ("after_root" | "inside_root"); where γ sits with momentum,
    ``lr_placement`` ("outside_momentum" | "in_momentum"); v₀, ``initial_square_avg`` (0, or 1 as TF1).

    .. math::

        t &\leftarrow t + 1 && \text{counted only}\\
        g_t &\leftarrow -g_t && \text{if maximize}\\
        g_t &\leftarrow g_t + \lambda\,\theta_{t-1} && \text{if } \lambda \ne 0 \text{ (coupled L2)}\\
        v_t &= \alpha\, v_{t-1} + (1-\alpha)\, g_t^2\\
        \bar g_t &= \alpha\, \bar g_{t-1} + (1-\alpha)\, g_t && \text{if centered}\\
        d_t &= \begin{cases} \sqrt{v_t - \bar g_t^2} + \varepsilon & \text{if centered}\\
                             \sqrt{v_t} + \varepsilon & \text{otherwise} \end{cases}\\
        d_t &= \begin{cases} \sqrt{v_t - \bar g_t^2 + \varepsilon} & \text{if centered}\\
                             \sqrt{v_t + \varepsilon} & \text{otherwise} \end{cases}
            && \text{instead, if \texttt{"inside\_root"}}\\
        b_t &= \mu\, b_{t-1} + g_t / d_t, \quad \theta_t = \theta_{t-1} - \gamma\, b_t && \text{if } \mu > 0\\
        b_t &= \mu\, b_{t-1} + \gamma\, g_t / d_t, \quad \theta_t = \theta_{t-1} - b_t
            && \text{instead, if \texttt{"in\_momentum"}}\\
        \theta_t &= \theta_{t-1} - \gamma\, g_t / d_t && \text{without momentum}

    ḡ and b start at zero (unlike SGD's buffer, which starts at the first gradient), v at
    ``initial_square_avg``. ε inside the root is TensorFlow's, Keras's and optax's placement (and Graves's);
    γ inside the buffer is theirs too, and differs from torch's as soon as the lr changes.

    torch: ``torch.optim.RMSprop`` (for-loop ``_single_tensor_rmsprop``), same defaults and state keys.
    ε is added after the square root (TensorFlow puts it inside). ḡ is a ``lerp`` here as in torch; torch
    fuses some multiply-adds and takes its square root with MKL, which is not correctly rounded (1 ulp off
    ``np.sqrt`` for about one float32 input in six: docs/optimizers/rmsprop.md). Centered ``v − ḡ²`` can round
    below zero and give NaN in both. Outside the oracle: an element whose product alone overflows next to an
    infinite addend (λθ with g = ∓∞, ḡ² with v = ∞, γb with θ = ∓∞) is ±∞ (or 0) in torch's FMA and NaN here.

    Reference: Hinton, Srivastava, Swersky, "Neural Networks for Machine Learning", lecture 6e (2012);
    Graves, "Generating sequences with recurrent neural networks", arXiv:1308.0850, eqs. 38-45.
    """
    check_choice("eps_placement", eps_placement, EPS_PLACEMENTS[:2])
    check_choice("lr_placement", lr_placement, LR_PLACEMENTS)
    step = state.get("step", 0) + 1
    if maximize:
        grad = -grad
    if weight_decay != 0:
        grad = grad + weight_decay * param                                        # g ← g + λθ
    square_avg = state.get("square_avg", np.full_like(param, initial_square_avg))  # v_{t-1}, v_0 = 0 (TF1: 1)
    square_avg = alpha * square_avg + (1 - alpha) * grad * grad                   # v_t
    new_state = {"step": step, "square_avg": square_avg}
    if centered:
        grad_avg = lerp(state.get("grad_avg", np.zeros_like(param)), grad, 1 - alpha)  # ḡ_t = αḡ + (1 − α)g
        new_state["grad_avg"] = grad_avg
        if eps_placement == "inside_root":
            avg = np.sqrt(square_avg - grad_avg * grad_avg + eps)                 # d_t = √(v − ḡ² + ε)
        else:
            avg = np.sqrt(square_avg - grad_avg * grad_avg) + eps                 # d_t = √(v − ḡ²) + ε
    elif eps_placement == "inside_root":
        avg = np.sqrt(square_avg + eps)                                           # d_t = √(v + ε)
    else:
        avg = np.sqrt(square_avg) + eps                                           # d_t = √v + ε
    if momentum > 0:
        previous = state.get("momentum_buffer", np.zeros_like(param))            # b_{t-1}, b_0 = 0
        if lr_placement == "in_momentum":
            momentum_buffer = momentum * previous + lr * grad / avg              # b_t = μb + γg/d
            param = param - momentum_buffer                                       # θ_t = θ − b_t
        else:
            momentum_buffer = momentum * previous + grad / avg                   # b_t = μb + g/d
            param = param - lr * momentum_buffer                                  # θ_t = θ − γ b_t
        new_state["momentum_buffer"] = momentum_buffer
    else:
        param = param - lr * grad / avg                                           # θ_t = θ − γ g / d
    return param, new_state


class RMSprop(Optimizer):
    """torch.optim.RMSprop's math, hyperparameters, defaults and validation; see :func:`rmsprop_step`."""

    rule = staticmethod(rmsprop_step)
    complex_as_real_pairs = True
    overflow_checked = {"lr": "compute", "weight_decay": "param"}   # addcdiv(value=−γ), add(alpha=λ)

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False,
                 *, maximize=False):
        # maximize is keyword-only: torch's eighth positional argument is capturable, which refwd has no use for.
        # torch's checks, in torch's order; `not 0 <= x` also rejects NaN.
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= momentum:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not 0.0 <= alpha:
            raise ValueError(f"Invalid alpha value: {alpha}")
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                        centered=centered, maximize=maximize)
        super().__init__(params, defaults)
