"""Every flag combination of each optimizer, through the one harness: lock-step and gradient checks against torch.

The case matrix (refwd_validation.cases) is hand-picked, so some flags never meet there. Here each optimizer's
boolean flags and zero/non-zero options are crossed in full (SGD: momentum, dampening, nesterov × decay ×
maximize; RMSprop: centered × momentum × decay × maximize; Adam: amsgrad × decay × decoupled × maximize; AdamW:
amsgrad × decay strength × maximize), plus the settings that take torch's other ``lerp`` branch (β₁ or α ≤ ½)
with a large ε. Each runs 5 steps of an MLP [5, 4, 2] with two param groups (the biases' group overrides the lr,
and the decay where it has one), the lr changed before every step as a scheduler does, and grads of None for
some parameters at some steps (so per-parameter step counts and first-momentum steps differ), in float64 and
float32 on torch's for-loop path. Tolerances are the harness's (ULPs of the error scale, budget 2).
"""
import itertools

import pytest

from refwd_validation.cases import Case

torch = pytest.importorskip("torch")

from refwd_validation.harness import run_case  # noqa: E402

pytestmark = pytest.mark.torch

LR_SCHEDULE = (1.0, 0.5, 2.0, 0.8, 1.3)                       # the lr changes before every step
GRAD_NONE = (("2.weight", (1,)), ("0.bias", (3,)), ("2.bias", (4,)), ("2.weight", (4,)))  # 2.weight starts late


def sgd_configs():
    for momentum, dampening, nesterov in [(0, 0, False), (0.9, 0, False), (0.9, 0.3, False), (0.9, 0, True)]:
        for weight_decay, maximize in itertools.product([0, 0.1], [False, True]):
            yield "sgd", dict(lr=0.05, momentum=momentum, dampening=dampening, nesterov=nesterov,
                              weight_decay=weight_decay, maximize=maximize), dict(lr=0.1, weight_decay=0.0)


def rmsprop_configs():
    for centered, momentum, weight_decay, maximize in itertools.product([False, True], [0, 0.5], [0, 0.1],
                                                                        [False, True]):
        yield "rmsprop", dict(lr=0.01, centered=centered, momentum=momentum, weight_decay=weight_decay,
                              maximize=maximize), dict(lr=0.003, weight_decay=0.0)
    # alpha ≤ 0.5 takes torch's other lerp branch for grad_avg; a large eps matters.
    yield "rmsprop", dict(lr=0.01, alpha=0.3, eps=1e-3, centered=True, momentum=0.5), dict(lr=0.003)
    yield "rmsprop", dict(lr=0.01, alpha=0.9, eps=0.1, weight_decay=0.1), dict(lr=0.003, alpha=0.5)


def adam_configs():
    for amsgrad, weight_decay, decoupled, maximize in itertools.product([False, True], [0, 0.1], [False, True],
                                                                        [False, True]):
        yield "adam", dict(lr=0.01, amsgrad=amsgrad, weight_decay=weight_decay, decoupled_weight_decay=decoupled,
                           maximize=maximize), dict(lr=0.02, weight_decay=0.0)
    # beta1 ≤ 0.5 takes torch's other lerp branch for exp_avg; a large eps matters.
    yield "adam", dict(lr=0.01, betas=(0.3, 0.8), eps=1e-3, amsgrad=True), dict(betas=(0.5, 0.9))
    yield "adam", dict(lr=0.01, betas=(0.5, 0.9), eps=0.1, weight_decay=0.1, decoupled_weight_decay=True), \
        dict(eps=1e-6)


def adamw_configs():
    for amsgrad, weight_decay, maximize in itertools.product([False, True], [1e-2, 0.1], [False, True]):
        yield "adamw", dict(lr=0.01, amsgrad=amsgrad, weight_decay=weight_decay, maximize=maximize), \
            dict(lr=0.005, weight_decay=0.0)
    yield "adamw", dict(lr=0.01, betas=(0.3, 0.8), eps=1e-3, weight_decay=0.5), dict(betas=(0.5, 0.9))


def case(optimizer, hyperparameters, bias_group, dtype):
    flags = "-".join(f"{key}={value}" for key, value in hyperparameters.items()
                     if value not in (0, False) and key != "lr") or "defaults"
    override = "-".join(f"{key}={value}" for key, value in bias_group.items())
    name = f"flags-{optimizer}[{flags}][biases: {override}]"
    return Case(id=f"{name}-{dtype}", config=name, optimizer=optimizer, hyperparameters=tuple(hyperparameters.items()),
                model=(5, 4, 2), groups=(("weights", ()), ("biases", tuple(bias_group.items()))), dtype=dtype,
                steps=5, lr_schedule=LR_SCHEDULE, grad_none=GRAD_NONE, description="a flag combination")


CONFIGS = [*sgd_configs(), *rmsprop_configs(), *adam_configs(), *adamw_configs()]
CASES = [case(*config, dtype) for config in CONFIGS for dtype in ("float64", "float32")]


# A small β₁ or α puts lerp's weight 1 − β above ½: torch forms the coefficient 1 − w in float32 from float32(w)
# there (refwd_validation's harness reported correct torch arithmetic as wrong for β₁ ≲ 0.02 before refwd did too).
SMALL_BETAS = [("adam", dict(lr=0.01, betas=(1e-3, 0.999))), ("adam", dict(lr=0.01, betas=(1e-5, 0.999))),
               ("adamw", dict(lr=0.01, betas=(0.02, 0.999))), ("rmsprop", dict(lr=0.01, alpha=0.02, centered=True)),
               ("rmsprop", dict(lr=0.01, alpha=1e-3, centered=True)),
               ("rmsprop", dict(lr=0.01, alpha=1e-5, centered=True, momentum=0.5))]
SMALL_BETA_CASES = [Case(id=f"small-beta-{optimizer}-{list(hyperparameters.values())[1:]}-{impl}", config="small-beta",
                         optimizer=optimizer, hyperparameters=tuple(hyperparameters.items()), model=(5, 17, 33, 1),
                         dtype="float32", impl=impl, steps=10)
                    for optimizer, hyperparameters in SMALL_BETAS for impl in ("forloop", "foreach", "fused")
                    if impl != "fused" or optimizer != "rmsprop"]


@pytest.mark.parametrize("small_beta_case", SMALL_BETA_CASES, ids=[c.id for c in SMALL_BETA_CASES])
def test_a_small_beta_is_no_false_alarm(small_beta_case):
    result = run_case(small_beta_case)
    assert result.status == "pass", result.detail


@pytest.mark.parametrize("flag_case", CASES, ids=[c.id for c in CASES])
def test_every_flag_combination_agrees_with_torch(flag_case):
    result = run_case(flag_case)
    assert result.status == "pass", result.detail
    assert result.steps == 5 and result.worst_ulps <= 2


def test_the_scenario_exercises_what_it_claims():
    """Guards on the data: None grads hit both groups, a first momentum step comes late, and every flag of each
    optimizer is both on and off somewhere."""
    assert len({c.id for c in CASES}) == len(CASES)
    assert len(set(LR_SCHEDULE)) == len(LR_SCHEDULE)
    assert {name for name, _ in GRAD_NONE} >= {"2.weight", "0.bias", "2.bias"}
    flags = {"sgd": ("momentum", "dampening", "nesterov", "weight_decay", "maximize"),
             "rmsprop": ("centered", "momentum", "weight_decay", "maximize"),
             "adam": ("amsgrad", "weight_decay", "decoupled_weight_decay", "maximize"),
             "adamw": ("amsgrad", "maximize")}                      # AdamW's decay: two strengths, never off
    for optimizer, names in flags.items():
        chosen = [hyperparameters for key, hyperparameters, _ in CONFIGS if key == optimizer]
        for flag in names:
            assert {bool(h.get(flag, False)) for h in chosen} == {False, True}, (optimizer, flag)
