"""SGDW: SGD with momentum and decoupled weight decay (Loshchilov & Hutter, Algorithm 1). Not in torch."""
from .decoupled import DecoupledDecay, check_decay_convention, decay_rate
from .sgd import SGD, sgd_step


def sgdw_step(param, grad, state, *, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
              maximize=False, decay_convention="torch", initial_lr=None, lr_placement="outside_momentum",
              momentum_init="first_grad"):
    r"""One SGDW step for one tensor: shrink θ, then an SGD step without L2 (Loshchilov & Hutter, Algorithm 1).

    Symbols as in :func:`refwd.optim.sgd.sgd_step`: θ param, g grad, γ ``lr``, μ ``momentum``,
    τ ``dampening``, λ ``weight_decay``, b ``state["momentum_buffer"]``; γ₀ ``initial_lr``, η_t = γ/γ₀.
    Conventions: ``decay_convention`` ("torch": γλ | "paper": η_tλ | "independent": λ, see
    :mod:`refwd.optim.decoupled`), and SGD's ``lr_placement`` and ``momentum_init``, passed on.

    .. math::

        \theta_{t-1} &\leftarrow \begin{cases} (1 - \gamma\lambda)\,\theta_{t-1} & \texttt{"torch"}\\
                                               (1 - \eta_t\lambda)\,\theta_{t-1} & \texttt{"paper"}\\
                                               (1 - \lambda)\,\theta_{t-1} & \texttt{"independent"} \end{cases}
            && \text{the decoupled decay}\\
        g_t &\leftarrow -g_t && \text{if maximize}\\
        g_t &\leftarrow \gamma\, g_t && \text{if \texttt{"in\_momentum"}}\\
        b_t &\leftarrow \begin{cases} g_t & \text{its first step}\\
                                      \mu\, b_{t-1} + (1-\tau)\, g_t & \text{later} \end{cases} && \text{if } \mu \ne 0\\
        b_t &\leftarrow \mu\, b_{t-1} + (1-\tau)\, g_t,\ b_0 = 0 && \text{instead, if \texttt{"zero"}}\\
        g_t &\leftarrow \begin{cases} g_t + \mu\, b_t & \text{if nesterov}\\ b_t & \text{otherwise} \end{cases}
            && \text{if } \mu \ne 0\\
        \theta_t &\leftarrow \theta_{t-1} - \gamma\, g_t\\
        \theta_t &\leftarrow \theta_{t-1} - g_t && \text{instead, if \texttt{"in\_momentum"}}

    λθ never enters the momentum buffer: that is the whole difference from ``SGD(weight_decay=λ)``, whose
    buffer accumulates λθ (see docs/weight-decay.md). Without momentum the two agree up to rounding.
    Shrinking first and then stepping equals the paper's θ_t = θ_{t-1} − m_t − η_tλθ_{t-1}, because the
    SGD step without L2 does not read θ.

    The momentum is torch's (lr outside the buffer), not the paper's m_t = β₁m_{t-1} + η_tα g_t (lr inside);
    the two agree while the lr is constant and differ when it changes. ``SGDW(weight_decay=0)`` is ``SGD``.

    torch: no SGDW. Reference: Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019,
    Algorithm 1.
    """
    if weight_decay != 0:
        param = param * (1 - decay_rate(lr=lr, weight_decay=weight_decay, decay_convention=decay_convention,
                                        initial_lr=initial_lr))                              # θ ← (1 − γλ) θ (torch)
    return sgd_step(param, grad, state, lr=lr, momentum=momentum, dampening=dampening, weight_decay=0.0,
                    nesterov=nesterov, maximize=maximize, lr_placement=lr_placement, momentum_init=momentum_init)


class SGDW(SGD, DecoupledDecay):
    """SGD's hyperparameters and checks, plus ``decay_convention``; ``weight_decay`` 1e-2 by default, as AdamW.

    See :func:`sgdw_step` and :mod:`refwd.optim.decoupled` for the conventions.
    """

    rule = staticmethod(sgdw_step)
    overflow_checked = {"lr": "param"}   # decoupled decay multiplies: no checked scalar

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=1e-2, nesterov=False, *,
                 maximize=False, decay_convention="torch"):
        check_decay_convention(decay_convention)
        self.decay_convention = decay_convention
        super().__init__(params, lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                         nesterov=nesterov, maximize=maximize)
