"""The case matrix, declared once as data: used by pytest's parametrize and by ``refwd validate`` alike.

A :class:`Case` is a frozen record of everything one comparison needs: the optimizer and its constructor
hyperparameters, the model, the param-group layout, the dtype, torch's implementation and device, the number
of steps, the lr schedule, the steps on which a parameter has no gradient, the loss scale schedule, the data
seed, the non-finite values injected into gradients and the step of a state_dict round trip.

:data:`CASES` is built from data by a small generator (:func:`_expand`), per device:

- **scenarios** (:data:`CONFIGS`, :data:`FREE_CONFIGS`, :data:`LOWP_CONFIGS`): hand-written situations (lr
  schedules, param groups, steps without a gradient, shrinking gradients, wide layers, free-running runs, low
  precision), over dtypes and implementations;
- **flags** (:data:`FLAGS`): every combination of each optimizer's flags and zero/non-zero options (the full
  product, so every pair), each on every implementation;
- **defaults**: each optimizer with no hyperparameter given, so a wrong default shows;
- **long**: 1,000 lock-step steps per optimizer in float32, bfloat16 and float16 (step counters, β^t);
- **nonfinite**: an inf, a -inf and a NaN injected into a gradient element, per optimizer and flag;
- **round trip**: torch's state_dict into refwd and refwd's back into torch mid-run, groups of three sizes;
- **constructor**: every invalid hyperparameter of :mod:`refwd_validation.constructor_errors`, on both sides;
- **paths** (:data:`PATHS`): the scenarios and the flag product also run with ``differentiable=True`` and a Tensor
  lr (and ``capturable=True`` on cuda); ``compiled-*`` runs each optimizer's step under ``torch.compile``, and
  ``scaler-*`` the fused kernels under ``torch.amp.GradScaler`` with steps it must skip.

:func:`select` filters it, for the CLI and for pytest.
"""
import dataclasses
import itertools
import math
import zlib

from .case import LOW_PRECISION, Case  # noqa: F401  (Case is the matrix's record: imported from here too)

from .optimizers import MATRIX_OPTIMIZERS
from .optimizers import OPTIMIZERS as _REGISTRY

OPTIMIZERS = MATRIX_OPTIMIZERS                # torch's four, and SGDW and RMSpropW against their twins
KERNELS = ("forloop", "foreach", "fused")    # torch's three implementations of each step
# Other paths that change the numbers torch computes (docs/oracle.md, "Implementation paths"), each an impl value:
# the step under torch.compile, capturable=True (cuda only: torch refuses it on the CPU), differentiable=True, a
# Tensor lr (into the fused kernel where the optimizer has one), and a GradScaler with the fused kernel.
PATHS = ("compiled", "capturable", "differentiable", "tensor-lr", "grad-scaler")
IMPLS = KERNELS + PATHS
# The paths on which torch keeps the step count as a float32 tensor and computes the scalars from it as 0-d tensors
# (Adam's bias corrections): the error model says so (tolerance.tensor_scalar_error; docs/oracle.md, findings 10)
TENSOR_SCALAR_PATHS = ("compiled", "capturable", "differentiable")
DTYPES = ("float64", "float32", "float16", "bfloat16")
SHORT_DTYPES = {"float64": "f64", "float32": "f32", "float16": "f16", "bfloat16": "bf16"}  # as in case ids
DEVICES = ("cpu", "cuda")
FREE_RUNNING_STEPS = 100                  # the free-running check runs at least this many steps (float64 only)


def _hp(**kwargs):
    return tuple(kwargs.items())


# ---------------------------------------------------------------------------------------------------------------
# The configurations. Each is expanded over the dtypes and impls in its "expand" entry (default: float64 and
# float32, every impl torch has). Hyperparameters are chosen to make bugs visible: β1 ≠ β2, a small β2, a large
# eps, a large lr·λ, momentum with dampening, an lr that changes every step, gradients that shrink.

MLP3 = (5, 17, 33, 1)            # 2 hidden layers, parameter sizes 85, 17, 561, 33, 33, 1: none a SIMD multiple
MLP_WIDE = (10, 100, 7, 3)       # a 1000-element weight
SCHEDULE = (1.0, 0.5, 2.0, 0.25, 1.5)     # changes at every step
WEIGHTS_VS_BIASES = (("weights", _hp(weight_decay=0.1)), ("biases", _hp(weight_decay=0.02, lr=0.5e-2)))
BIASES_EXCLUDED = (("weights", _hp(weight_decay=0.05)), ("biases", _hp(weight_decay=0.0)))
PER_LAYER_MLP3 = (("layer:0", _hp(weight_decay=0.1)), ("layer:2", _hp(weight_decay=0.01)),
                  ("layer:4", _hp(weight_decay=0.0, lr=0.05)))
LATE_BIAS = (("0.bias", (1, 2, 3)),)                 # first grad at step 4, after the others have state
GAPPY = (("2.weight", (2, 3)), ("4.bias", (1, 5)))   # gaps in the middle and a late start

F64_F32 = ("float64", "float32")


def _config(name, optimizer, hyperparameters, description, **fields):
    return dict(name=name, optimizer=optimizer, hyperparameters=hyperparameters, description=description,
                **fields)


CONFIGS = (
    # --- SGD
    _config("sgd-plain", "sgd", _hp(lr=0.05), "plain SGD on a Linear", quick_impls=("forloop", "fused")),
    _config("sgd-momentum", "sgd", _hp(lr=0.02, momentum=0.9), "momentum, buffer starts at the first grad",
            model=MLP3, quick_impls=("foreach",)),
    _config("sgd-dampening", "sgd", _hp(lr=0.02, momentum=0.9, dampening=0.3),
            "dampening (not applied on the first momentum step)", model=MLP3, quick_impls=("forloop",)),
    _config("sgd-nesterov-wd", "sgd", _hp(lr=0.02, momentum=0.8, nesterov=True, weight_decay=0.05),
            "Nesterov with coupled decay", model=MLP3, quick_impls=("forloop", "fused")),
    _config("sgd-maximize-wd", "sgd", _hp(lr=0.01, momentum=0.5, weight_decay=0.2, maximize=True),
            "maximize together with decay (decay keeps its sign)", model=MLP3, quick_impls=("foreach",)),
    _config("sgd-large-lr-wd", "sgd", _hp(lr=0.5, weight_decay=1.5), "large lr·λ = 0.75 on a Linear"),
    _config("sgd-schedule", "sgd", _hp(lr=0.02, momentum=0.9), "lr changing every step rescales the velocity",
            model=MLP3, lr_schedule=SCHEDULE, quick_impls=("forloop",)),
    _config("sgd-per-layer-decay", "sgd", _hp(lr=0.02, momentum=0.9),
            "seed: per-layer weight decay with momentum", model=MLP3, groups=PER_LAYER_MLP3,
            quick_impls=("forloop",)),
    _config("sgd-shrinking", "sgd", _hp(lr=0.05, momentum=0.9, dampening=0.1), "gradients shrinking 0.7× a step",
            loss_decay=0.7, steps=12),
    _config("sgd-grad-none-late", "sgd", _hp(lr=0.02, momentum=0.9, weight_decay=0.01),
            "a bias gets its first grad after the others have momentum buffers", model=MLP3, grad_none=LATE_BIAS,
            quick_impls=("forloop",),
            # torch's fused SGD decides "first step" for all params at once and crashes here (docs/oracle.md)
            expect_error={impl: "expected Tensor as element 1 in argument 2, but got NoneType"
                          for impl in ("fused", "tensor-lr")}),
    _config("sgd-wide", "sgd", _hp(lr=0.01, momentum=0.9, nesterov=True), "a 1000-element weight",
            model=MLP_WIDE, activation="relu"),
    # --- RMSprop
    _config("rmsprop-plain", "rmsprop", _hp(lr=0.01), "defaults (α = 0.99, ε = 1e-8)", quick_impls=("forloop",)),
    _config("rmsprop-centered", "rmsprop", _hp(lr=0.01, alpha=0.9, centered=True),
            "centered: √(v − ḡ²) cancels", model=MLP3, quick_impls=("foreach",)),
    _config("rmsprop-momentum-wd", "rmsprop", _hp(lr=0.005, momentum=0.9, weight_decay=0.1),
            "momentum buffer from zero, coupled decay", model=MLP3, quick_impls=("forloop",)),
    _config("rmsprop-all", "rmsprop",
            _hp(lr=0.005, alpha=0.8, eps=1e-3, momentum=0.5, centered=True, weight_decay=0.1, maximize=True),
            "centered, momentum, decay, maximize, a large ε, a small α", model=MLP3, quick_impls=("forloop",)),
    _config("rmsprop-schedule", "rmsprop", _hp(lr=0.01, alpha=0.95, momentum=0.3), "lr changing every step",
            lr_schedule=SCHEDULE, loss_decay=0.8),
    _config("rmsprop-grad-none", "rmsprop", _hp(lr=0.01, centered=True, momentum=0.2), "gaps in the grads",
            model=MLP3, grad_none=GAPPY, quick_impls=("foreach",)),
    # --- Adam
    _config("adam-plain", "adam", _hp(lr=0.01), "defaults", quick_impls=("forloop", "fused", "differentiable")),
    _config("adam-betas", "adam", _hp(lr=0.01, betas=(0.5, 0.9), eps=1e-6),
            "β1 ≠ β2, both far from the defaults", model=MLP3, quick_impls=("foreach",)),
    _config("adam-small-beta2", "adam", _hp(lr=0.02, betas=(0.9, 0.3), eps=1e-2),
            "a small β2 and a large ε", model=MLP3),
    _config("adam-amsgrad-wd", "adam", _hp(lr=0.01, betas=(0.8, 0.95), weight_decay=0.1, amsgrad=True),
            "amsgrad with coupled decay", model=MLP3, loss_decay=0.75, quick_impls=("forloop", "fused")),
    _config("adam-maximize-wd", "adam", _hp(lr=0.01, weight_decay=0.3, maximize=True),
            "maximize with coupled decay", model=MLP3, quick_impls=("forloop",)),
    _config("adam-decoupled", "adam", _hp(lr=0.05, weight_decay=2.0, decoupled_weight_decay=True),
            "Adam(decoupled_weight_decay=True), large lr·λ = 0.1", quick_impls=("forloop",)),
    _config("adam-groups", "adam", _hp(lr=0.01, betas=(0.9, 0.99)),
            "seed: weights vs biases with different decay", model=MLP3, groups=WEIGHTS_VS_BIASES,
            quick_impls=("forloop",)),
    _config("adam-schedule-shrinking", "adam", _hp(lr=0.02, betas=(0.7, 0.9)),
            "lr changing every step, shrinking gradients", model=MLP3, lr_schedule=SCHEDULE, loss_decay=0.6,
            steps=12),
    _config("adam-grad-none", "adam", _hp(lr=0.01, amsgrad=True, weight_decay=0.05),
            "per-parameter step counts: gaps in the grads", model=MLP3, grad_none=GAPPY, quick_impls=("forloop",)),
    _config("adam-wide", "adam", _hp(lr=0.003), "a 1000-element weight", model=MLP_WIDE, activation="relu"),
    # --- AdamW
    _config("adamw-plain", "adamw", _hp(lr=0.01), "defaults (λ = 0.01)",
            quick_impls=("forloop", "fused", "tensor-lr")),
    _config("adamw-betas0", "adamw", _hp(lr=0.01, betas=(0.0, 0.99)), "seed: β1 = 0", model=MLP3,
            quick_impls=("forloop",)),
    _config("adamw-amsgrad-maximize", "adamw", _hp(lr=0.02, weight_decay=0.5, amsgrad=True, maximize=True),
            "amsgrad, maximize, decay", model=MLP3, quick_impls=("foreach",)),
    _config("adamw-large-decay", "adamw", _hp(lr=0.1, weight_decay=3.0, betas=(0.9, 0.5)),
            "large lr·λ = 0.3, a small β2", quick_impls=("forloop",)),
    _config("adamw-bias-excluded", "adamw", _hp(lr=0.01, weight_decay=0.1),
            "biases excluded from decay", model=MLP3, groups=BIASES_EXCLUDED, lr_schedule=SCHEDULE),
    _config("adamw-grad-none", "adamw", _hp(lr=0.01, weight_decay=0.2), "decay only on steps with a grad",
            model=MLP3, grad_none=GAPPY),
)

# Free-running cases: refwd's own trajectory (its own gradients) against torch's, float64, for-loop.
FREE_CONFIGS = (
    _config("free-sgd", "sgd", _hp(lr=0.02, momentum=0.9, nesterov=True, weight_decay=0.01),
            "free-running SGD", model=MLP3),
    _config("free-rmsprop", "rmsprop", _hp(lr=0.002, centered=True, momentum=0.5, weight_decay=0.01),
            "free-running RMSprop", model=MLP3),
    _config("free-adam", "adam", _hp(lr=0.005, betas=(0.8, 0.95), amsgrad=True), "free-running Adam",
            model=MLP3, quick=True),
    _config("free-adamw", "adamw", _hp(lr=0.005, weight_decay=0.1), "free-running AdamW with groups",
            model=MLP3, groups=BIASES_EXCLUDED, lr_schedule=SCHEDULE),
    _config("seed-line", "sgd", _hp(lr=0.1, weight_decay=0.01),
            "seed: the y = 2x + 1 script (docs/examples/linear_regression.py), x = 1..4", model=(1, 1),
            data="line", batch=4, quick=True),
)

# Low precision: lock-step against refwd in float64 rounded to the dtype; every impl. ε is large for float16
# (as in torch's own tests): with ε = 1e-8 a float16 v underflows and the step is ε-dominated in both.
LOWP_CONFIGS = (
    _config("lowp-sgd", "sgd", _hp(lr=1e-3, momentum=0.9, dampening=0.1, weight_decay=0.05),
            "SGD, momentum, dampening, decay", model=MLP3),
    _config("lowp-sgd-nesterov", "sgd", _hp(lr=2e-4, momentum=0.9, nesterov=True, maximize=True),
            "SGD Nesterov, maximize", model=MLP3),
    _config("lowp-rmsprop", "rmsprop", _hp(lr=0.01, alpha=0.9, eps=1e-3, centered=True, momentum=0.5),
            "RMSprop centered with momentum", model=MLP3),
    _config("lowp-adam", "adam", _hp(lr=0.01, betas=(0.8, 0.95), eps=1e-3, weight_decay=0.1, amsgrad=True),
            "Adam amsgrad, coupled decay", model=MLP3),
    _config("lowp-adamw", "adamw", _hp(lr=0.01, eps=1e-3, weight_decay=0.1), "AdamW", model=MLP3),
)
LOWP_LOSS_SCALE = 64.0    # as AMP's loss scaling: keeps float16 gradients and their squares above the subnormals



# ---------------------------------------------------------------------------------------------------------------
# Generated parts. FLAGS: each optimizer's flags and zero/non-zero options as (torch's default, a value that makes a
# bug visible); the matrix has their full product (torch refuses nesterov without momentum or with dampening).

FLAGS = {
    "sgd": dict(momentum=(0.0, 0.9), dampening=(0.0, 0.3), nesterov=(False, True), weight_decay=(0.0, 0.05),
                maximize=(False, True)),
    "rmsprop": dict(momentum=(0.0, 0.5), centered=(False, True), weight_decay=(0.0, 0.1), maximize=(False, True)),
    "adam": dict(amsgrad=(False, True), weight_decay=(0.0, 0.1), maximize=(False, True),
                 decoupled_weight_decay=(False, True)),
    "adamw": dict(amsgrad=(False, True), weight_decay=(0.01, 0.3), maximize=(False, True)),
    "sgdw": dict(momentum=(0.0, 0.9), nesterov=(False, True), weight_decay=(0.01, 0.3), maximize=(False, True),
                 decay_convention=("torch", "paper")),
    "rmspropw": dict(momentum=(0.0, 0.5), centered=(False, True), weight_decay=(0.01, 0.3), maximize=(False, True),
                     decay_convention=("torch", "paper")),
}
# What every generated case of an optimizer passes besides its flags: β₁ ≠ β₂, α and ε away from the defaults
BASE = {"sgd": _hp(lr=0.05), "rmsprop": _hp(lr=0.01, alpha=0.9, eps=1e-4), "adam": _hp(lr=0.02, betas=(0.8, 0.95)),
        "adamw": _hp(lr=0.02, betas=(0.8, 0.95)), "sgdw": _hp(lr=0.05), "rmspropw": _hp(lr=0.01, alpha=0.9, eps=1e-4)}
SMALL_MLP = (3, 5, 2)            # parameter sizes 15, 5, 10, 2
# Three param groups of sizes 1, 3 and 2, with their own decay and lr: a per-group index bug moves state across
THREE_GROUPS = ((("0.weight",), _hp(weight_decay=0.1)), (("0.bias", "2.weight", "2.bias"), _hp(weight_decay=0.0)),
                ("layer:4", _hp(lr=0.004)))
LONG_STEPS = 1000
LONG = {   # hyperparameters of the 1,000-step runs: the defaults' β's (β₂ᵗ moves through the whole run)
    "sgd": _hp(lr=1e-3, momentum=0.9, nesterov=True, weight_decay=0.01), "rmsprop": _hp(lr=1e-3, centered=True,
                                                                                       momentum=0.5, eps=1e-4),
    "adam": _hp(lr=1e-3, amsgrad=True, eps=1e-4), "adamw": _hp(lr=1e-3, eps=1e-4),
    "sgdw": _hp(lr=1e-3, momentum=0.9), "rmspropw": _hp(lr=1e-3, eps=1e-4)}
LONG_DTYPES = ("float32", "bfloat16", "float16")
NONFINITE = (("inf", math.inf), ("ninf", -math.inf), ("nan", math.nan))
INJECTED_AT = ("2.weight", 2, (1, 3))    # the element, and the step of 4, where the non-finite value goes
# fused Adam/AdamW's amsgrad max is std::max(max, v) in the kernel's scalar tail, which keeps the old max where v is
# NaN: refwd's max (and param) NaN where torch's are numbers (docs/oracle.md, findings 8)
FUSED_AMSGRAD_KEEPS_ITS_MAX = "refwd nan vs torch"


def flag_combinations(optimizer):
    """Every valid combination of the optimizer's FLAGS as ({flag: value}, [the flags set on])."""
    flags = FLAGS[optimizer]
    for chosen in itertools.product((False, True), repeat=len(flags)):
        on = [flag for flag, is_on in zip(flags, chosen) if is_on]
        if "nesterov" in on and ("momentum" not in on or "dampening" in on):
            continue
        yield {flag: values[is_on] for (flag, values), is_on in zip(flags.items(), chosen)}, on


def _flag_name(on):
    return "-".join(flag.replace("decoupled_weight_decay", "decoupled").replace("decay_convention", "paper")
                    .replace("weight_decay", "wd") for flag in on) or "off"


def _impls_for(optimizer):
    return tuple(impl for impl in KERNELS if impl != "fused" or _REGISTRY[optimizer].fused)


def _paths_for(optimizer, device):
    """The kernels, and the paths that run the scenarios and the flag product: differentiable=True and a Tensor lr
    for torch's own optimizers, and capturable=True on cuda (torch has no capturable SGD)."""
    if not _REGISTRY[optimizer].torch_class:
        return _impls_for(optimizer)
    capturable = ("capturable",) if device == "cuda" and optimizer != "sgd" else ()
    return _impls_for(optimizer) + ("differentiable", "tensor-lr") + capturable


def case_id(config, dtype, impl, device):
    return f"{config}-{SHORT_DTYPES[dtype]}-{impl}-{device}"


def _make(config, dtype, impl, device, *, steps, free_steps, quick):
    fields = {key: value for key, value in config.items()
              if key not in ("name", "quick_impls", "quick", "steps", "expect_error")}
    fields["expect_error"] = config.get("expect_error", {}).get(impl, "")
    return Case(id=case_id(config["name"], dtype, impl, device), config=config["name"], dtype=dtype, impl=impl,
                device=device,
                steps=steps, free_steps=free_steps, quick=quick, **fields)


def _scenarios(device):
    for number, config in enumerate(CONFIGS):
        # --quick: each listed impl once, in float64 and float32 by turns (every optimizer gets both)
        quick_impls = {impl: F64_F32[(number + i) % 2] for i, impl in enumerate(config.get("quick_impls", ()))}
        for dtype in F64_F32:
            for impl in _paths_for(config["optimizer"], device):
                quick = device == "cpu" and quick_impls.get(impl) == dtype
                yield _make(config, dtype, impl, device, steps=config.get("steps", 10), free_steps=0, quick=quick)
    for config in FREE_CONFIGS:
        yield _make(config, "float64", "forloop", device, steps=FREE_RUNNING_STEPS,
                    free_steps=FREE_RUNNING_STEPS, quick=device == "cpu" and config.get("quick", False))
    for config in LOWP_CONFIGS:
        for dtype in LOW_PRECISION:
            for impl in _impls_for(config["optimizer"]):
                case = _make(config, dtype, impl, device, steps=8, free_steps=0, quick=False)
                yield dataclasses.replace(case, loss_scale=LOWP_LOSS_SCALE)


def _generated(device):
    """The flag product, the defaults, the long runs, the non-finite injections, the round trips, the
    constructors. --quick takes each optimizer's no-flag and all-flags-on cases and one of each other kind."""
    cpu = device == "cpu"
    for optimizer in OPTIMIZERS:
        impls = _impls_for(optimizer)
        paths = _paths_for(optimizer, device)
        combinations = list(flag_combinations(optimizer))
        for number, (flags, on) in enumerate(combinations):
            config = _config(f"flags-{optimizer}-{_flag_name(on)}", optimizer, BASE[optimizer] + _hp(**flags),
                             f"{optimizer} with {', '.join(on) or 'no flag'} on", model=SMALL_MLP, steps=6,
                             lr_schedule=SCHEDULE)
            dtype = F64_F32[len(on) % 2]      # by the number of flags on: each flag meets both dtypes
            for impl in paths:
                quick = number == 0 and impl == impls[0] or number == len(combinations) - 1 and impl == impls[-1]
                yield _make(config, dtype, impl, device, steps=6, free_steps=0, quick=cpu and quick)
        defaults = _config(f"defaults-{optimizer}", optimizer, (), f"{optimizer} with no hyperparameter given", model=MLP3)
        for impl in impls:
            yield _make(defaults, "float32", impl, device, steps=5, free_steps=0, quick=cpu and impl == impls[0])
        for dtype in LONG_DTYPES:
            long = _config(f"long-{optimizer}", optimizer, LONG[optimizer], f"{LONG_STEPS} lock-step steps",
                           loss_scale=1.0 if dtype == "float32" else LOWP_LOSS_SCALE)
            impl = {"float32": impls[-1], "bfloat16": "foreach", "float16": "forloop"}[dtype]
            yield _make(long, dtype, impl, device, steps=LONG_STEPS, free_steps=0,
                        quick=cpu and optimizer == "adam" and dtype == "float32")
        for number, (on, flags) in enumerate(_one_flag_at_a_time(optimizer)):
            for value_number, (value_name, value) in enumerate(NONFINITE):
                config = _config(f"nonfinite-{optimizer}-{on}-{value_name}", optimizer, BASE[optimizer] + flags,
                                 f"a {value_name} gradient element at step {INJECTED_AT[1]}", model=SMALL_MLP,
                                 inject=(INJECTED_AT[:2] + (INJECTED_AT[2], value),),
                                 expect_error={"fused": FUSED_AMSGRAD_KEEPS_ITS_MAX} if on == "amsgrad" else {})
                impl = impls[(number + value_number) % len(impls)]
                yield _make(config, F64_F32[number % 2], impl, device, steps=4, free_steps=0,
                            quick=cpu and number == 0 and OPTIMIZERS.index(optimizer) == value_number)
        if _REGISTRY[optimizer].torch_class:   # a twin has no torch state_dict of its own
            every_flag = combinations[-1][0]
            config = _config(f"roundtrip-{optimizer}", optimizer, BASE[optimizer] + _hp(**every_flag),
                             "state_dict torch → refwd → torch after step 3, three groups of sizes 1, 3, 2",
                             model=MLP3, groups=THREE_GROUPS, round_trip_at=3)
            for number, impl in enumerate(impls):
                yield _make(config, F64_F32[number % 2], impl, device, steps=6, free_steps=0,
                            quick=cpu and optimizer == "adamw" and number == 0)
            constructor = _config(f"constructor-{optimizer}", optimizer, (),
                                  "every invalid hyperparameter: refwd raises torch's exception", kind="constructor")
            if cpu:
                yield _make(constructor, "float64", "forloop", device, steps=0, free_steps=0, quick=True)
            yield from _compiled(optimizer, combinations, device)
            if _REGISTRY[optimizer].fused:
                yield from _scaled(optimizer, combinations, device)


def _most_flags(combinations):
    """The valid combinations with the most flags on (SGD has two: nesterov excludes dampening)."""
    most = max(len(on) for _, on in combinations)
    return [(flags, on) for flags, on in combinations if len(on) == most]


def _compiled(optimizer, combinations, device):
    """The step under torch.compile, no flag and the most flags on, with a constant lr: dynamo compiles one graph per
    lr value it sees (an lr changing every step would recompile, and past its limit run eagerly)."""
    for number, (flags, on) in enumerate([combinations[0]] + _most_flags(combinations)):
        config = _config(f"compiled-{optimizer}-{_flag_name(on)}", optimizer, BASE[optimizer] + _hp(**flags),
                         f"{optimizer} with {', '.join(on) or 'no flag'} on, the step under torch.compile",
                         model=SMALL_MLP)
        yield _make(config, F64_F32[min(number, 1)], "compiled", device, steps=6, free_steps=0,
                    quick=device == "cpu" and optimizer == "adam" and number == 0)


SCALER_INJECTED = (("2.weight", 3, (1, 3), math.inf), ("0.bias", 5, (2,), math.nan))   # two skipped steps
# fused SGD with momentum whose first step the scaler skips: the kernel returns before writing the momentum buffer
# it was given (uninitialised memory), which the next step then reads (docs/oracle.md, findings 7)
FUSED_SGD_SKIPPED_FIRST_STEP = "only in torch ['momentum_buffer']"


def _scaled(optimizer, combinations, device):
    """The fused kernel under torch.amp.GradScaler: the grads unscaled in the kernel, and the steps with an inf or
    a NaN skipped (params, state and step count untouched). No flag (float32 and float16) and the most flags on."""
    runs = [(combinations[0], "float32", SCALER_INJECTED), (combinations[0], "float16", SCALER_INJECTED)] + [
        (most, "float32", SCALER_INJECTED) for most in _most_flags(combinations)]
    for number, ((flags, on), dtype, inject) in enumerate(runs):
        config = _config(f"scaler-{optimizer}-{_flag_name(on)}", optimizer, BASE[optimizer] + _hp(**flags),
                         f"{optimizer} with {', '.join(on) or 'no flag'} on, fused, under GradScaler; steps 3 and 5 "
                         "skipped", model=SMALL_MLP, inject=inject, lr_schedule=SCHEDULE)
        yield _make(config, dtype, "grad-scaler", device, steps=6, free_steps=0,
                    quick=device == "cpu" and optimizer == "adam" and number == 0)
    if optimizer == "sgd":
        config = _config("scaler-sgd-momentum-first-skipped", optimizer, BASE[optimizer] + _hp(momentum=0.9),
                         "sgd with momentum, fused, under GradScaler; the first step skipped", model=SMALL_MLP,
                         inject=(("2.weight", 1, (1, 3), math.inf),),
                         expect_error={"grad-scaler": FUSED_SGD_SKIPPED_FIRST_STEP})
        yield _make(config, "float32", "grad-scaler", device, steps=4, free_steps=0, quick=False)


def _one_flag_at_a_time(optimizer):
    """("off", no flag on), then (flag, that flag alone on) for each flag (nesterov with its momentum)."""
    yield "off", ()
    for flag, (_, value) in FLAGS[optimizer].items():
        flags = _hp(**{flag: value})
        if flag == "nesterov":
            flags = _hp(momentum=FLAGS[optimizer]["momentum"][1]) + flags
        yield _flag_name([flag]), flags


def _expand():
    cases = [case for device in DEVICES for part in (_scenarios, _generated) for case in part(device)]
    ids = [case.id for case in cases]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    return tuple(cases)


CASES = _expand()
CASE_IDS = {case.id: case for case in CASES}
# Cases where torch reads memory it never wrote, documented in docs/oracle.md (findings) but not confirmed upstream
# (so not in defects.py): their numbers differ from run to run, and a recording may say so (irreproducible_step)
UNINITIALISED_READS = frozenset(case.id for case in CASES if case.expect_error == FUSED_SGD_SKIPPED_FIRST_STEP)


def quick_cases():
    """The --quick subset: every optimizer, flag and torch implementation at least once, float64 and float32."""
    return tuple(case for case in CASES if case.quick)


class UnknownFilterError(ValueError):
    """A filter names an optimizer, impl, dtype, device or case that the matrix does not have."""


_CHOICES = {"optimizer": OPTIMIZERS, "impl": IMPLS, "dtype": DTYPES, "device": DEVICES}


def in_shard(case_id, shard):
    """Whether the case is in shard ``(index, count)`` (1-based index) of a split of the matrix into ``count``
    parts: by a CRC-32 of its id, so a case's shard never depends on the other cases, the machine or the order."""
    index, count = shard
    return zlib.crc32(case_id.encode("utf-8")) % count == index - 1


def select(cases=None, *, optimizer=None, impl=None, dtype=None, device=None, case=None, quick=False, shard=None):
    """The cases matching every given filter (each a value or a list of values; ``case`` matches ids exactly), in
    shard ``(index, count)`` of the matrix if given (:func:`in_shard`).

    Raises :class:`UnknownFilterError` with one line naming the bad value and the choices.
    """
    cases = CASES if cases is None else tuple(cases)
    chosen = {}
    for name, value in (("optimizer", optimizer), ("impl", impl), ("dtype", dtype), ("device", device)):
        if value is None:
            continue
        values = [value] if isinstance(value, str) else list(value)
        bad = [v for v in values if v not in _CHOICES[name]]
        if bad:
            raise UnknownFilterError(f"unknown {name} {bad[0]!r}; choose from {', '.join(_CHOICES[name])}")
        chosen[name] = set(values)
    ids = None
    if case is not None:
        ids = [case] if isinstance(case, str) else list(case)
        bad = [i for i in ids if i not in CASE_IDS]
        if bad:
            raise UnknownFilterError(f"unknown case {bad[0]!r}; 'refwd validate --list' shows the case ids")
        ids = set(ids)
    out = []
    for c in cases:
        if quick and not c.quick:
            continue
        if ids is not None and c.id not in ids:
            continue
        if shard is not None and not in_shard(c.id, shard):
            continue
        if any(getattr(c, name) not in values for name, values in chosen.items()):
            continue
        out.append(c)
    return tuple(out)
