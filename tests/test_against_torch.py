"""refwd's optimizers against torch.optim's for-loop path (foreach=False), CPU, float64 and float32.

Every optimizer × flag combination of ``CASES`` runs 5 free-running steps (each side feeds on its own
params) on four parameters in two param groups (the bias group overrides lr and, where it has one, the
decay), with the lr of both groups changed before every step, as a scheduler does, and grads of None for some
parameters at some steps (so the per-parameter step counts and first-momentum steps differ). After every step
all params and every state entry are compared, in ULPs of an elementwise scale.

Tolerance
---------
Scale: for each element, the largest magnitude it has had so far on either side (initial value included); for
the moments also the terms of the effective gradient g = ∇ + λθ that feed them (|∇| + λ|θ| for first moments,
its square for second moments, so that a cancelled g and its square do not make the scale vanish). Every
quantity compared is built from two-term sums (θ − Δ, βm + (1−β)g, μb + g, ...) whose rounding errors are
ulps of the larger term, and the scale bounds the larger term.

Per step, refwd (plain NumPy, in torch's op order) differs from torch's for-loop path in three ways
(semantics §2, §8):
  - torch fuses a multiply-add where refwd rounds twice (add(alpha=), addcmul, lerp, nesterov): ≤ 0.5 ulp of
    the product per fused op;
  - torch's lerp (Adam's m, centered RMSprop's ḡ) is m + w(g − m), refwd's βm + (1−β)g: ≤ 1.5 ulps;
  - torch's sqrt is MKL's, 1 ulp away from the correctly rounded np.sqrt for ~20 % of float32 inputs (~1.4 % of
    float64): 1 ulp relative in the denominator, so 1 ulp relative in the update Δ.
Counting them on the way to Δ: k = 2.5 ulps of Δ for SGD (decay, buffer, nesterov, lr·d), 4.5 for RMSprop
(decay, square_avg, sqrt, +ε, ÷, buffer, lr·b) and Adam (decay, lerp, v, sqrt, ÷√bc₂, +ε, step·m, ÷). Since
θ_t = θ_{t−1} − Δ with |Δ| ≤ |θ_{t−1}| + |θ_t| ≤ 2·scale, one step differs by at most 2k + 1 ulps of scale
(+1 for the final subtraction, which torch fuses): 6 for SGD, 10 for RMSprop and Adam. Steps run free (each
side on its own params and state), and earlier differences carry over without growing much (the updates are
non-expansive up to a factor 1 + γ(1 + λ) for SGD, and Adam/RMSprop normalise by √v), so after t steps the
bound is t × ``ULPS_PER_STEP``.

Measured worst over all cases (5 steps), as max over steps of (ulps of scale at step t) / t — param / state —
and, in brackets, the largest absolute ulps seen at any step:
  SGD      float64 3.0 / 0.5  [3 / 2]      float32 1.5 / 1.0  [2.25 / 1.25]
  RMSprop  float64 1.0 / 3.3  [3 / 16]     float32 5.0 / 2.0  [7 / 8]
  Adam     float64 0.5 / 0.4  [1 / 1]      float32 0.5 / 0.5  [1 / 1]
  AdamW    float64 0.3 / 0.3  [1 / 1]      float32 0.3 / 0.5  [1 / 1]
(RMSprop's worst: float32 step 1, an element that crosses zero, θ₀ = 0.04 → θ₁ ≈ −0.06 with |Δ| ≈ 0.1 = 10·γ,
so ulp(Δ) = 2·ulp(scale); and float64 momentum_buffer with α = 0.3, ε = 1e-3, centered: 16 ulps at step 5.)
A wrong formula is off by ≥ 1e-4 relative: ~1e3 float32 ulps, ~1e12 float64 ulps.
"""
import itertools

import numpy as np
import pytest

import refwd

torch = pytest.importorskip("torch")

STEPS = 5
ULPS_PER_STEP = {"SGD": 6, "RMSprop": 10, "Adam": 10, "AdamW": 10}
LR_FACTORS = [1.0, 0.5, 2.0, 0.8, 1.3]          # lr of each group at step t = its initial lr × LR_FACTORS[t]
NONE_GRADS = {0: {"2.weight"}, 2: {"0.bias"}, 3: {"2.bias", "2.weight"}}   # step index → params with grad None
SHAPES = {"0.weight": (4, 5), "0.bias": (4,), "2.weight": (2, 4), "2.bias": (2,)}
WEIGHTS, BIASES = ["0.weight", "2.weight"], ["0.bias", "2.bias"]


def sgd_cases():
    for momentum, dampening, nesterov in [(0, 0, False), (0.9, 0, False), (0.9, 0.3, False), (0.9, 0, True)]:
        for weight_decay, maximize in itertools.product([0, 0.1], [False, True]):
            kwargs = dict(lr=0.05, momentum=momentum, dampening=dampening, nesterov=nesterov,
                          weight_decay=weight_decay, maximize=maximize)
            yield "SGD", kwargs, dict(lr=0.1, weight_decay=0.0)


def rmsprop_cases():
    for centered, momentum, weight_decay, maximize in itertools.product([False, True], [0, 0.5], [0, 0.1],
                                                                        [False, True]):
        yield "RMSprop", dict(centered=centered, momentum=momentum, weight_decay=weight_decay,
                              maximize=maximize), dict(lr=0.003, weight_decay=0.0)
    # alpha ≤ 0.5 takes torch's other lerp branch for grad_avg; a large eps matters.
    yield "RMSprop", dict(alpha=0.3, eps=1e-3, centered=True, momentum=0.5), dict(lr=0.003)
    yield "RMSprop", dict(alpha=0.9, eps=0.1, weight_decay=0.1), dict(lr=0.003, alpha=0.5)


def adam_cases():
    for amsgrad, weight_decay, decoupled, maximize in itertools.product([False, True], [0, 0.1], [False, True],
                                                                        [False, True]):
        yield "Adam", dict(lr=0.01, amsgrad=amsgrad, weight_decay=weight_decay,
                           decoupled_weight_decay=decoupled, maximize=maximize), dict(lr=0.02, weight_decay=0.0)
    # beta1 ≤ 0.5 takes torch's other lerp branch for exp_avg; a large eps matters.
    yield "Adam", dict(lr=0.01, betas=(0.3, 0.8), eps=1e-3, amsgrad=True), dict(betas=(0.5, 0.9))
    yield "Adam", dict(lr=0.01, betas=(0.5, 0.9), eps=0.1, weight_decay=0.1, decoupled_weight_decay=True), \
        dict(eps=1e-6)


def adamw_cases():
    for amsgrad, weight_decay, maximize in itertools.product([False, True], [1e-2, 0.1], [False, True]):
        yield "AdamW", dict(lr=0.01, amsgrad=amsgrad, weight_decay=weight_decay, maximize=maximize), \
            dict(lr=0.005, weight_decay=0.0)
    yield "AdamW", dict(lr=0.01, betas=(0.3, 0.8), eps=1e-3, weight_decay=0.5), dict(betas=(0.5, 0.9))


def case_id(optimizer, kwargs, bias_group):
    flags = "-".join(f"{key}={value}" for key, value in kwargs.items()
                     if value not in (0, False) and key != "lr")
    override = "-".join(f"{key}={value}" for key, value in bias_group.items())
    return f"{optimizer}[{flags or 'defaults'}][bias group: {override}]"


CASES = [(case_id(*case), *case) for case in itertools.chain(sgd_cases(), rmsprop_cases(), adam_cases(),
                                                               adamw_cases())]
DTYPES = ["float64", "float32"]
FIRST_MOMENTS = {"SGD": {"momentum_buffer"}, "RMSprop": {"grad_avg"}, "Adam": {"exp_avg"}, "AdamW": {"exp_avg"}}
SECOND_MOMENTS = {"square_avg", "exp_avg_sq", "max_exp_avg_sq"}


def initial_params(dtype):
    rng = np.random.default_rng(0)
    return {name: rng.normal(size=shape).astype(dtype) for name, shape in SHAPES.items()}


def step_grads(step, dtype):
    rng = np.random.default_rng(1000 + step)
    grads = {name: rng.normal(size=shape).astype(dtype) for name, shape in SHAPES.items()}
    for name in NONE_GRADS.get(step, ()):
        grads[name] = None
    return grads


def ulps_of_scale(ours, theirs, scale):
    """The worst |ours − theirs| over the elements, in ulps of the elementwise scale (in the arrays' dtype)."""
    with np.errstate(invalid="ignore"):
        return float(np.max(np.abs(ours - theirs) / np.spacing(scale.astype(theirs.dtype)), initial=0.0))


def lockstep(optimizer, kwargs, bias_group, dtype):
    """Run both for STEPS steps; yield (step, name, key, ours, theirs, ulps) for every compared array."""
    params = initial_params(dtype)
    tensors = {name: torch.nn.Parameter(torch.from_numpy(value.copy())) for name, value in params.items()}
    torch_opt = getattr(torch.optim, optimizer)(
        [{"params": [tensors[name] for name in WEIGHTS]},
         {"params": [tensors[name] for name in BIASES], **bias_group}], foreach=False, **kwargs)
    ours_opt = getattr(refwd.optim, optimizer)([{"params": WEIGHTS}, {"params": BIASES, **bias_group}], **kwargs)
    initial_lrs = [group["lr"] for group in ours_opt.param_groups]
    weight_decay = {name: group["weight_decay"] for group in ours_opt.param_groups for name in group["params"]}
    scale = {(name, "param"): np.abs(value) for name, value in params.items()}
    for step in range(STEPS):
        for lr, ours_group, torch_group in zip(initial_lrs, ours_opt.param_groups, torch_opt.param_groups):
            ours_group["lr"] = torch_group["lr"] = lr * LR_FACTORS[step]
        grads = step_grads(step, dtype)
        for name, grad in grads.items():
            tensors[name].grad = None if grad is None else torch.from_numpy(grad.copy())
        # The terms of the effective gradient g = ∇ + λθ: a bound for first moments, squared for second ones.
        terms = {name: np.abs(grad) + weight_decay[name] * np.abs(params[name])
                 for name, grad in grads.items() if grad is not None}
        torch_opt.step()
        params = ours_opt.step(params, grads)
        for name, tensor in tensors.items():
            torch_state = torch_opt.state.get(tensor, {})
            ours_state = ours_opt.state.get(name, {})
            assert set(ours_state) == set(torch_state), (step + 1, name)
            if "step" in torch_state:
                assert ours_state["step"] == int(torch_state["step"].item()), (step + 1, name)
            pairs = [("param", params[name], tensor.detach().numpy())]
            pairs += [(key, ours_state[key], value.numpy()) for key, value in torch_state.items() if key != "step"]
            for key, ours, theirs in pairs:
                assert ours.dtype == theirs.dtype, (step + 1, name, key)
                previous = scale.get((name, key), 0.0)
                if name in terms and key in FIRST_MOMENTS.get(optimizer, ()):
                    previous = np.maximum(previous, terms[name])
                if name in terms and key in SECOND_MOMENTS:
                    previous = np.maximum(previous, terms[name] ** 2)
                scale[(name, key)] = np.maximum(previous, np.maximum(np.abs(ours), np.abs(theirs)))
                yield step + 1, name, key, ours, theirs, ulps_of_scale(ours, theirs, scale[(name, key)])


@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("optimizer, kwargs, bias_group", [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_matches_torch_step_by_step(optimizer, kwargs, bias_group, dtype):
    for step, name, key, ours, theirs, ulps in lockstep(optimizer, kwargs, bias_group, dtype):
        allowed = ULPS_PER_STEP[optimizer] * step
        if ulps > allowed:
            worst = np.unravel_index(np.argmax(np.abs(ours - theirs)), ours.shape)
            pytest.fail(f"step {step}, parameter {name!r}, {key}: refwd {ours[worst]!r}, torch {theirs[worst]!r} "
                        f"at {worst}: {ulps:.1f} ulps of scale > {allowed}")


def test_the_scenario_exercises_what_it_claims():
    """Guards on the data: None grads hit every group and a first momentum step comes late for one param."""
    assert any(name in WEIGHTS for names in NONE_GRADS.values() for name in names)
    assert any(name in BIASES for names in NONE_GRADS.values() for name in names)
    assert "2.weight" in NONE_GRADS[0]          # its first step is step 2
    assert len(set(LR_FACTORS)) == STEPS        # lr changes before every step
    assert len(CASES) == len({case[0] for case in CASES})


def worst_ulps_table():
    """For the docstring: the worst ulps per optimizer and dtype, params and state (run this module as a script)."""
    table = {}
    for _, optimizer, kwargs, bias_group in CASES:
        for dtype in DTYPES:
            for _, _, key, _, _, ulps in lockstep(optimizer, kwargs, bias_group, dtype):
                kind = "param" if key == "param" else "state"
                table[(optimizer, dtype, kind)] = max(table.get((optimizer, dtype, kind), 0.0), ulps)
    return table


if __name__ == "__main__":
    for (optimizer, dtype, kind), ulps in sorted(worst_ulps_table().items()):
        print(f"{optimizer:8s} {dtype} {kind:5s} {ulps:g}")
