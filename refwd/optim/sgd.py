"""SGD with momentum, dampening, Nesterov and coupled weight decay, as torch.optim.SGD."""
import numpy as np

from .conventions import LR_PLACEMENTS, MOMENTUM_INITS, check_choice
from .optimizer import Optimizer


def sgd_step(param, grad, state, *, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
             maximize=False, lr_placement="outside_momentum", momentum_init="first_grad"):
    r"""One SGD step for one tensor: stochastic gradient descent with momentum (Sutskever et al., 2013).

    Symbols: θ param, g grad, γ ``lr``, μ ``momentum``, τ ``dampening``, λ ``weight_decay``,
    b ``state["momentum_buffer"]``. Conventions (torch's first): where γ sits, ``lr_placement``
    ("outside_momentum" | "in_momentum"); how b starts, ``momentum_init`` ("first_grad" | "zero").

    .. math::

        g_t &\leftarrow -g_t && \text{if maximize}\\
        g_t &\leftarrow g_t + \lambda\,\theta_{t-1} && \text{if } \lambda \ne 0 \text{ (coupled L2)}\\
        g_t &\leftarrow \gamma\, g_t && \text{if \texttt{"in\_momentum"}}\\
        b_t &\leftarrow \begin{cases} g_t & \text{its first step}\\
                                      \mu\, b_{t-1} + (1-\tau)\, g_t & \text{later} \end{cases} && \text{if } \mu \ne 0\\
        b_t &\leftarrow \mu\, b_{t-1} + (1-\tau)\, g_t,\ b_0 = 0 && \text{instead, if \texttt{"zero"}}\\
        g_t &\leftarrow \begin{cases} g_t + \mu\, b_t & \text{if nesterov}\\ b_t & \text{otherwise} \end{cases}
            && \text{if } \mu \ne 0\\
        \theta_t &\leftarrow \theta_{t-1} - \gamma\, g_t\\
        \theta_t &\leftarrow \theta_{t-1} - g_t && \text{instead, if \texttt{"in\_momentum"}}

    The two momentum-buffer inits differ only with dampening (b₁ = g₁ against (1 − τ)g₁). With "in_momentum"
    (Keras's and Sutskever's form) b is a velocity; the lr placements differ as soon as the lr changes (inside,
    the old velocity keeps the old lr; outside, a new lr rescales it).

    torch: ``torch.optim.SGD`` (for-loop ``_single_tensor_sgd``), same defaults and state key. torch
    computes ``g + λθ``, ``μb + (1−τ)g``, the Nesterov sum and ``θ − γg`` each as one fused multiply-add
    on AVX2 CPUs; NumPy rounds the product and the sum separately, which is within 1 ulp per operation.
    Outside the oracle: an element whose product alone overflows next to an infinite addend (θ = 3e38,
    λ = 10, g = −∞) is ±∞ in torch and NaN here (∞ − ∞); see docs/findings-scalars.md.
    The lr multiplies the buffer (it is not folded into it), so a changed lr rescales the whole velocity.

    Reference: Sutskever, Martens, Dahl, Hinton, "On the importance of initialization and momentum in
    deep learning", ICML 2013; torch.optim.SGD documentation.
    """
    check_choice("lr_placement", lr_placement, LR_PLACEMENTS)
    check_choice("momentum_init", momentum_init, MOMENTUM_INITS)
    if maximize:
        grad = -grad
    if weight_decay != 0:
        grad = grad + weight_decay * param                             # g ← g + λθ
    if lr_placement == "in_momentum":
        grad = lr * grad                                               # g ← γg: the buffer holds a velocity
    new_state = {}
    if momentum != 0:
        if "momentum_buffer" not in state and momentum_init == "first_grad":
            momentum_buffer = grad.copy()                              # b_1 = g_1: no dampening on the first step
        else:
            previous = state.get("momentum_buffer", np.zeros_like(grad))                     # b_0 = 0 ("zero")
            momentum_buffer = momentum * previous + (1 - dampening) * grad                   # b_t
        new_state["momentum_buffer"] = momentum_buffer
        grad = grad + momentum * momentum_buffer if nesterov else momentum_buffer
    if lr_placement == "in_momentum":
        param = param - grad                                           # θ_t = θ_{t-1} − g_t (γ is inside)
    else:
        param = param - lr * grad                                      # θ_t = θ_{t-1} − γ g_t
    return param, new_state


class SGD(Optimizer):
    """torch.optim.SGD's math, hyperparameters, defaults and validation; see :func:`sgd_step`."""

    rule = staticmethod(sgd_step)
    overflow_checked = {"lr": "param", "weight_decay": "param"}   # add(alpha=−γ), add(alpha=λ)

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *,
                 maximize=False):
        # torch's checks, in torch's order, before params are looked at. SGD compares with `<`, so NaN passes.
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize)
        super().__init__(params, defaults)
