"""The generated parts of the case matrix cover what they promise: read off ``CASES``, not off the generator.

Every pair of each optimizer's flag values occurs together (and each flag value with every implementation and
both of float64 and float32), each optimizer runs at torch's defaults, for 1,000 steps in float32, bfloat16 and
float16, with an inf, a -inf and a NaN injected with each flag, through a state_dict round trip over groups of
three sizes, and through its constructor's invalid inputs; and ``--quick`` has one of each. No torch needed.
"""
import itertools
import math

import pytest

from refwd_validation import scenario
from refwd_validation.cases import CASES, FLAGS, IMPLS, OPTIMIZERS, PATHS, quick_cases
from refwd_validation.optimizers import OPTIMIZERS as REGISTRY

CPU = [case for case in CASES if case.device == "cpu"]
TRAJECTORIES = [case for case in CPU if case.kind == "trajectory"]


def flag_values(case):
    """{flag: on?} of a case's first param group, from its hyperparameters against FLAGS' off values."""
    kwargs = case.kwargs
    return {flag: kwargs.get(flag, off) != off for flag, (off, _) in FLAGS[case.optimizer].items()}


def kernels(optimizer):
    return {"forloop", "foreach"} | ({"fused"} if REGISTRY[optimizer].fused else set())


def impls(optimizer):
    """On the CPU every flag value meets each kernel and, for torch's own optimizers, the differentiable and tensor-lr
    paths, the compiled step, and GradScaler where torch has a fused kernel (capturable is cuda only)."""
    if not REGISTRY[optimizer].torch_class:
        return kernels(optimizer)
    return kernels(optimizer) | {"differentiable", "tensor-lr", "compiled"} | (
        {"grad-scaler"} if REGISTRY[optimizer].fused else set())


def valid(optimizer, values):
    """torch refuses nesterov without momentum or with dampening: such pairs cannot occur."""
    return not (values.get("nesterov") and (values.get("momentum") is False or values.get("dampening")))


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_pair_of_flag_values_occurs(optimizer):
    seen = {tuple(sorted(flag_values(case).items())) for case in TRAJECTORIES if case.optimizer == optimizer
            and not case.groups}
    flags = list(FLAGS[optimizer])
    for a, b in itertools.combinations(flags, 2):
        for on_a, on_b in itertools.product((False, True), repeat=2):
            if not valid(optimizer, {a: on_a, b: on_b}):
                continue
            assert any(dict(values)[a] == on_a and dict(values)[b] == on_b for values in seen), (a, on_a, b, on_b)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_each_flag_value_meets_every_impl_and_both_dtypes(optimizer):
    mine = [case for case in TRAJECTORIES if case.optimizer == optimizer]
    for flag in FLAGS[optimizer]:
        for on in (False, True):
            having = [case for case in mine if flag_values(case)[flag] == on]
            assert {case.impl for case in having} == impls(optimizer), (flag, on)
            assert {"float64", "float32"} <= {case.dtype for case in having}, (flag, on)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_defaults_long_runs_nonfinite_and_round_trips(optimizer):
    mine = [case for case in TRAJECTORIES if case.optimizer == optimizer]
    defaults = [case for case in mine if not case.hyperparameters]
    assert {case.impl for case in defaults} == kernels(optimizer)
    assert {case.dtype for case in mine if case.steps >= 1000} == {"float32", "bfloat16", "float16"}
    injected = {(case.kwargs.get(flag, FLAGS[optimizer][flag][0]) != FLAGS[optimizer][flag][0], flag,
                 repr(value)) for case in mine for _, _, _, value in case.inject for flag in FLAGS[optimizer]}
    for flag in FLAGS[optimizer]:
        for value in (math.inf, -math.inf, math.nan):
            assert (True, flag, repr(value)) in injected, (flag, value)
    if REGISTRY[optimizer].torch_class:
        trips = [case for case in mine if case.round_trip_at]
        assert trips and all(0 < case.round_trip_at < case.steps for case in trips)
        for case in trips:
            names = scenario.initial_params(case)
            sizes = [sum(names[name].size for name in chosen) for chosen, _ in scenario.group_names(case, list(names))]
            assert len(sizes) >= 3 and len(set(map(len, (c for c, _ in scenario.group_names(case, list(names)))))) == 3
            assert len(set(sizes)) == len(sizes)
        assert any(case.kind == "constructor" and case.optimizer == optimizer for case in CPU)


def test_the_decoupled_variants_run_both_conventions_with_decay_and_a_schedule():
    for optimizer in ("sgdw", "rmspropw"):
        mine = [case for case in TRAJECTORIES if case.optimizer == optimizer]
        for convention in ("torch", "paper"):
            assert any(case.kwargs.get("decay_convention", "torch") == convention and case.lr_schedule
                       and case.kwargs.get("weight_decay", 0.01) for case in mine), (optimizer, convention)


def test_quick_has_every_flag_and_every_kind_of_case():
    quick = quick_cases()
    for optimizer in OPTIMIZERS:
        mine = [case for case in quick if case.optimizer == optimizer]
        for flag in FLAGS[optimizer]:
            assert any(flag_values(case)[flag] for case in mine if case.kind == "trajectory"), (optimizer, flag)
        assert any(not case.hyperparameters for case in mine if case.kind == "trajectory"), optimizer
        if REGISTRY[optimizer].torch_class:
            assert any(case.kind == "constructor" for case in mine), optimizer
    assert any(case.steps >= 1000 for case in quick)
    assert {repr(value) for case in quick for _, _, _, value in case.inject} == {"inf", "-inf", "nan"}
    assert any(case.round_trip_at for case in quick)
    assert any(case.free_steps for case in quick) and any(case.grad_none for case in quick)
    assert any(case.lr_schedule for case in quick) and any(case.groups for case in quick)


def test_the_paths_run_every_flag_and_scenario_and_quick_has_one_of_each():
    """differentiable and tensor-lr run every flag combination and scenario of torch's own optimizers that the
    for-loop runs; capturable the same for RMSprop, Adam and AdamW on cuda; every path is in IMPLS and --quick has
    one case of each path the CPU runs."""
    assert set(PATHS) <= set(IMPLS)
    for optimizer in ("sgd", "rmsprop", "adam", "adamw"):
        forloop = {case.config for case in TRAJECTORIES if case.optimizer == optimizer and case.impl == "forloop"
                   and not case.config.startswith(("free-", "seed-", "lowp-", "long-", "nonfinite-", "roundtrip-",
                                                   "defaults-"))}
        for path in ("differentiable", "tensor-lr"):
            assert forloop == {case.config for case in TRAJECTORIES if case.optimizer == optimizer
                               and case.impl == path}, (optimizer, path)
        cuda = {case.config for case in CASES if case.device == "cuda" and case.optimizer == optimizer
                and case.impl == "capturable"}
        assert cuda == (set() if optimizer == "sgd" else forloop), optimizer
    quick = {case.impl for case in quick_cases()}
    assert {"compiled", "differentiable", "tensor-lr", "grad-scaler"} <= quick


def test_the_grad_scaler_cases_skip_steps_and_the_compiled_ones_keep_their_lr():
    scaled = [case for case in TRAJECTORIES if case.impl == "grad-scaler"]
    assert {case.optimizer for case in scaled} == {"sgd", "adam", "adamw"}
    assert {"float32", "float16"} <= {case.dtype for case in scaled}
    for case in scaled:   # at least one step GradScaler must skip, before the last step
        assert any(not math.isfinite(value) and at < case.steps for _, at, _, value in case.inject), case.id
    assert any(at == 1 for case in scaled for _, at, _, _ in case.inject)   # a skipped first step
    compiled = [case for case in TRAJECTORIES if case.impl == "compiled"]
    assert {case.optimizer for case in compiled} == {"sgd", "rmsprop", "adam", "adamw"}
    assert all(not case.lr_schedule for case in compiled)   # dynamo recompiles for every lr it sees
