"""SGD with momentum, dampening, Nesterov and coupled weight decay, as torch.optim.SGD."""
from .optimizer import Optimizer


def sgd_step(param, grad, state, *, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
             maximize=False):
    r"""One SGD step for one tensor: stochastic gradient descent with momentum (Sutskever et al., 2013).

    Symbols: θ param, g grad, γ ``lr``, μ ``momentum``, τ ``dampening``, λ ``weight_decay``,
    b ``state["momentum_buffer"]``.

    .. math::

        g_t &\leftarrow -g_t \quad\text{if maximize}\\
        g_t &\leftarrow g_t + \lambda\,\theta_{t-1} \quad\text{if } \lambda \ne 0 \quad\text{(coupled L2)}\\
        b_t &\leftarrow g_t \ \text{ on this parameter's first step, else }\ \mu\, b_{t-1} + (1-\tau)\, g_t
              \quad\text{if } \mu \ne 0\\
        g_t &\leftarrow g_t + \mu\, b_t \ \text{ if nesterov, else }\ b_t \quad\text{if } \mu \ne 0\\
        \theta_t &\leftarrow \theta_{t-1} - \gamma\, g_t

    torch: ``torch.optim.SGD`` (for-loop ``_single_tensor_sgd``), same defaults and state key. torch
    computes ``g + λθ``, ``μb + (1−τ)g``, the Nesterov sum and ``θ − γg`` each as one fused multiply-add
    on AVX2 CPUs; NumPy rounds the product and the sum separately, which is within 1 ulp per operation.
    Outside the oracle: an element whose product alone overflows next to an infinite addend (θ = 3e38,
    λ = 10, g = −∞) is ±∞ in torch and NaN here (∞ − ∞); see docs/findings-scalars.md.
    The lr multiplies the buffer (it is not folded into it), so a changed lr rescales the whole velocity.

    Reference: Sutskever, Martens, Dahl, Hinton, "On the importance of initialization and momentum in
    deep learning", ICML 2013; torch.optim.SGD documentation.
    """
    if maximize:
        grad = -grad
    if weight_decay != 0:
        grad = grad + weight_decay * param                             # g ← g + λθ
    new_state = {}
    if momentum != 0:
        if "momentum_buffer" not in state:
            momentum_buffer = grad.copy()                              # b_1 = g_1: no dampening on the first step
        else:
            momentum_buffer = momentum * state["momentum_buffer"] + (1 - dampening) * grad   # b_t
        new_state["momentum_buffer"] = momentum_buffer
        grad = grad + momentum * momentum_buffer if nesterov else momentum_buffer
    param = param - lr * grad                                          # θ_t = θ_{t-1} − γ g_t
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
