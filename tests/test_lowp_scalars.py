"""Python scalars next to float32 arrays are rounded where torch's CPU kernels round them.

torch converts a Scalar operand to the op's compute type (float32 for a float32 tensor) before any arithmetic
on it. For every scalar refwd uses, that is the same as NumPy rounding a Python float next to a float32 array
(NEP 50), except inside ``lerp``: torch forms the large-weight coefficient 1 − w from ↓w in float32, and
1 − ↓w differs from ↓(1 − w) by up to 6e-5 relative for w = 1 − β₁ = 0.999 (docs/findings-scalars.md).

Tolerance: everything else torch does in these steps differs from refwd by fused multiply-adds and MKL's
square root, each at most an ulp of the quantity; the old coefficient was off by 30,000 ulps of exp_avg
(β₁ = 1e-3) and 300,000 (β₁ = 1e-5).
"""
import numpy as np
import pytest

import refwd

F32 = np.float32
THETA = np.array([0.5, -1.5, 2.0, -0.25, 3.0], dtype=F32)
# The second gradient is a thousand times smaller than the first, so m₂ = g₂ + β₁(m₁ − g₂) carries the error of the
# coefficient on m₁ − g₂ ≈ m₁ and it shows in the value m₂ ≈ g₂.
GRADS = [np.array([0.3, -0.7, 3.0, -0.02, 1.0], dtype=F32), np.array([5e-4, 4e-4, -5e-5, -3e-5, 2e-3], dtype=F32)]


def ulps_of_value(actual, expected):
    """Largest |actual − expected| in float32 ulps of each expected element."""
    return float(np.max(np.abs(actual.astype(np.float64) - expected) / np.spacing(np.abs(expected).astype(F32))))


def ulps_of_scale(actual, expected):
    """Largest |actual − expected| in float32 ulps of the largest magnitude in expected."""
    scale = np.spacing(np.max(np.abs(expected)).astype(F32))
    return float(np.max(np.abs(actual.astype(np.float64) - expected.astype(np.float64))) / scale)


def float32_ema(w, steps):
    """m_t = g − (1 − ↓w)(g − m) in float32, as torch's lerp evaluates it for w = 1 − β ≥ ½, from m = 0."""
    coefficient = F32(1) - F32(w)            # formed in float32 from the rounded weight
    m = np.zeros_like(THETA)
    for g in GRADS[:steps]:
        m = g - coefficient * (g - m)
    return m


@pytest.mark.parametrize("beta1", [1e-5, 1e-3, 0.02])
def test_adam_exp_avg_uses_one_minus_the_float32_weight(beta1):
    opt = refwd.optim.Adam(["w"], lr=1e-3, betas=(beta1, 0.999))
    params = {"w": THETA}
    for grad in GRADS:
        params = opt.step(params, {"w": grad})
    assert ulps_of_value(opt.state["w"]["exp_avg"], float32_ema(1 - beta1, 2)) <= 1


@pytest.mark.parametrize("alpha", [1e-3, 0.02])
def test_centered_rmsprop_grad_avg_uses_one_minus_the_float32_weight(alpha):
    opt = refwd.optim.RMSprop(["w"], lr=1e-3, alpha=alpha, centered=True)
    params = {"w": THETA}
    for grad in GRADS:
        params = opt.step(params, {"w": grad})
    assert ulps_of_value(opt.state["w"]["grad_avg"], float32_ema(1 - alpha, 2)) <= 1


def test_lerp_branch_is_chosen_on_the_rounded_weight():
    # 0.5 − 1e-9 is below ½ in double but rounds to 0.5 in float32: torch takes the large-weight branch.
    from refwd.optim.lerp import lerp
    start, end = np.array([1.0], dtype=F32), np.array([np.inf], dtype=F32)
    with np.errstate(invalid="ignore"):                 # the NaN is the point: no warning expected
        assert np.isnan(lerp(start, end, 0.5 - 1e-9))  # end − ½(end − start) = ∞ − ∞
    assert np.isposinf(lerp(start.astype(np.float64), end.astype(np.float64), 0.5 - 1e-9))   # small branch


def test_float64_lerp_keeps_the_double_weight():
    from refwd.optim.lerp import lerp
    start, end = np.array([0.0]), np.array([1.0])
    assert lerp(start, end, 0.999)[0] == 1.0 - (1 - 0.999)


def needs_torch():
    """Each torch-needing test starts with this, so that the others still run without torch."""
    return pytest.importorskip("torch")


def torch_run(name, kwargs, steps=2):
    torch = needs_torch()
    p = torch.nn.Parameter(torch.tensor(THETA))
    opt = getattr(torch.optim, name)([p], foreach=False, **kwargs)
    for grad in GRADS[:steps]:
        p.grad = torch.tensor(grad)
        opt.step()
    return p.detach().numpy(), {k: v.numpy() for k, v in opt.state[p].items() if k != "step"}


def refwd_run(name, kwargs, steps=2):
    opt = getattr(refwd.optim, name)(["w"], **kwargs)
    params = {"w": THETA}
    for grad in GRADS[:steps]:
        params = opt.step(params, {"w": grad})
    return params["w"], {k: v for k, v in opt.state["w"].items() if k != "step"}


EXTREME = [
    ("Adam", dict(lr=1e-3, betas=(1e-5, 0.999))),
    ("Adam", dict(lr=1e-3, betas=(1e-3, 0.999))),
    ("AdamW", dict(lr=1e-3, betas=(0.02, 0.999), weight_decay=1e-6)),
    ("Adam", dict(lr=1e-3, betas=(1e-3, 1e-3), amsgrad=True, weight_decay=1e-7)),
    ("RMSprop", dict(lr=1e-3, alpha=1e-3, centered=True)),
    ("RMSprop", dict(lr=1e-3, alpha=0.02, centered=True)),
    ("SGD", dict(lr=1e-3, momentum=0.999999, dampening=1e-5, weight_decay=1e-9)),
]


@pytest.mark.parametrize("name,kwargs", EXTREME, ids=[f"{n}-{k}" for n, k in EXTREME])
def test_extreme_hyperparameters_match_torch_forloop_in_float32(name, kwargs):
    torch_param, torch_state = torch_run(name, kwargs)
    refwd_param, refwd_state = refwd_run(name, kwargs)
    assert ulps_of_scale(refwd_param, torch_param) <= 2
    for key, value in torch_state.items():
        assert ulps_of_scale(refwd_state[key], value) <= 2, key
