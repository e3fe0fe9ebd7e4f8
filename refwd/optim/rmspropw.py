"""RMSprop with decoupled weight decay: the RMSprop counterpart of AdamW. Not in torch."""
from .decoupled import DecoupledDecay, check_decay_convention, decay_rate
from .rmsprop import RMSprop, rmsprop_step


def rmspropw_step(param, grad, state, *, lr, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                  centered=False, maximize=False, decay_convention="torch", initial_lr=None,
                  eps_placement="after_root", lr_placement="outside_momentum", initial_square_avg=0.0):
    r"""One RMSprop step with decoupled weight decay: shrink θ, then an RMSprop step without L2.

    Symbols as in :func:`refwd.optim.rmsprop.rmsprop_step`: θ param, g grad, γ ``lr``, α ``alpha``,
    ε ``eps``, λ ``weight_decay``, μ ``momentum``, v ``state["square_avg"]``, ḡ ``state["grad_avg"]``,
    b ``state["momentum_buffer"]``, t ``state["step"]``; γ₀ ``initial_lr``, η_t = γ/γ₀. Conventions:
    ``decay_convention`` ("torch": γλ | "paper": η_tλ | "independent": λ, see :mod:`refwd.optim.decoupled`),
    and RMSprop's ``eps_placement``, ``lr_placement`` and ``initial_square_avg``, passed on.

    .. math::

        \theta_{t-1} &\leftarrow \begin{cases} (1 - \gamma\lambda)\,\theta_{t-1} & \texttt{"torch"}\\
                                               (1 - \eta_t\lambda)\,\theta_{t-1} & \texttt{"paper"}\\
                                               (1 - \lambda)\,\theta_{t-1} & \texttt{"independent"} \end{cases}
            && \text{the decoupled decay}\\
        t &\leftarrow t + 1 && \text{counted only}\\
        g_t &\leftarrow -g_t && \text{if maximize}\\
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

    λθ enters neither v nor the step's numerator, so every weight shrinks by the same factor, whatever its
    gradient history; coupled ``RMSprop(weight_decay=λ)`` instead shrinks θ_i by γλ/d_i, a per-parameter
    factor. Algorithm 2 of the paper is this change made to Adam; here it is made to RMSprop.

    ``AdamW(betas=(0.0, α))`` is close to this rule but not equal: with β₁ = 0 its step is this rule's
    times (√v + ε)/(√v/√(1−αᵗ) + ε), which is √(1−αᵗ) when ε = 0 (experiment 3, docs/experiments.md).

    torch: no RMSprop with decoupled decay. Reference: Loshchilov & Hutter, "Decoupled Weight Decay
    Regularization", ICLR 2019; Hinton, Srivastava, Swersky, lecture 6e (2012).
    """
    if weight_decay != 0:
        param = param * (1 - decay_rate(lr=lr, weight_decay=weight_decay, decay_convention=decay_convention,
                                        initial_lr=initial_lr))                              # θ ← (1 − γλ) θ (torch)
    return rmsprop_step(param, grad, state, lr=lr, alpha=alpha, eps=eps, weight_decay=0.0, momentum=momentum,
                        centered=centered, maximize=maximize, eps_placement=eps_placement,
                        lr_placement=lr_placement, initial_square_avg=initial_square_avg)


class RMSpropW(RMSprop, DecoupledDecay):
    """RMSprop's hyperparameters and checks, plus ``decay_convention``; ``weight_decay`` 1e-2 by default.

    See :func:`rmspropw_step` and :mod:`refwd.optim.decoupled` for the conventions.
    """

    rule = staticmethod(rmspropw_step)
    overflow_checked = {"lr": "compute"}   # decoupled decay multiplies: no checked scalar

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=1e-2, momentum=0, centered=False, *,
                 maximize=False, decay_convention="torch"):
        check_decay_convention(decay_convention)
        self.decay_convention = decay_convention
        super().__init__(params, lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                         centered=centered, maximize=maximize)
