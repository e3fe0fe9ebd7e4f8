"""The case matrix, declared once as data: used by pytest's parametrize and by ``refwd validate`` alike.

A :class:`Case` is a frozen record of everything one comparison needs: the optimizer and its constructor
hyperparameters, the model, the param-group layout, the dtype, torch's implementation and device, the number
of steps, the lr schedule, the steps on which a parameter has no gradient, the loss scale schedule and the data
seed. :data:`CASES` expands a short list of configurations (:data:`CONFIGS`) over dtypes, implementations and
devices; :func:`select` filters it, for the CLI and for pytest.
"""
import dataclasses
from dataclasses import dataclass

from .optimizers import OPTIMIZERS as _REGISTRY
from .optimizers import TORCH_OPTIMIZERS

OPTIMIZERS = TORCH_OPTIMIZERS                 # the optimizers torch ships (the matrix's)
IMPLS = ("forloop", "foreach", "fused")
DTYPES = ("float64", "float32", "float16", "bfloat16")
SHORT_DTYPES = {"float64": "f64", "float32": "f32", "float16": "f16", "bfloat16": "bf16"}  # as in case ids
DEVICES = ("cpu", "cuda")
LOW_PRECISION = ("float16", "bfloat16")
FREE_RUNNING_STEPS = 100                  # the free-running check runs at least this many steps (float64 only)


@dataclass(frozen=True)
class Case:
    """One comparison of torch against refwd.

    - ``hyperparameters``: the optimizer's constructor keywords as (name, value) pairs (torch's names);
      :attr:`kwargs` gives them as a dict.
    - ``model``: layer sizes; two sizes are one ``Linear(n0, n1)``, more are an MLP (``nn.Sequential``) with
      ``activation`` between the layers. Parameter names are torch's (``"weight"``, ``"0.weight"``, ...).
    - ``groups``: the param-group layout: () for one group of every parameter, else a tuple of
      (selector, overrides) where selector is "weights", "biases", "all" or "layer:<index>" (a Sequential
      index such as "layer:2") and overrides are (name, value) pairs for that group (e.g. weight_decay).
      Every parameter must be selected exactly once.
    - ``lr_schedule``: factors the groups' base lr is multiplied by at steps 1, 2, ... (cycled); () for none.
    - ``loss_scale`` and ``loss_decay``: the loss at step t (1-based) is multiplied by
      ``loss_scale * loss_decay ** (t - 1)``: a constant scale (as AMP's loss scaling, which keeps float16
      gradients out of the subnormal range) and a decay below 1 for gradients that shrink over time.
    - ``grad_none``: (parameter name, steps) pairs: at those 1-based steps the parameter's grad is None.
    - ``free_steps``: > 0 to also run the free-running check (refwd's own trajectory) for that many steps.
    - ``expect_error``: "" normally. Otherwise torch is documented (docs/oracle.md, findings) to raise an error
      containing this text here; if it does, the steps before the error are still checked and the result is
      "pass" with the error shown in its note. If torch does not raise, the case is checked as any other.
    """

    id: str                     # "<config>-<short dtype>-<impl>-<device>", e.g. "adam-plain-f32-fused-cpu"
    config: str                 # the configuration it expands (CONFIGS, FREE_CONFIGS, LOWP_CONFIGS)
    optimizer: str
    hyperparameters: tuple = ()
    model: tuple = (4, 1)
    activation: str = "tanh"
    groups: tuple = ()
    dtype: str = "float64"
    impl: str = "forloop"
    device: str = "cpu"
    steps: int = 10
    free_steps: int = 0
    lr_schedule: tuple = ()
    loss_scale: float = 1.0
    loss_decay: float = 1.0
    grad_none: tuple = ()
    batch: int = 16
    data: str = "teacher"       # "teacher": y = a random teacher net + noise; "line": the seed's y = 2x + 1, x = 1..batch
    seed: int = 0
    quick: bool = False
    description: str = ""
    expect_error: str = ""

    @property
    def kwargs(self):
        return {name: value for name, value in self.hyperparameters}

    @property
    def total_steps(self):
        return max(self.steps, self.free_steps)

    @property
    def lowp(self):
        return self.dtype in LOW_PRECISION

    def lr_factor(self, step):
        """The factor on each group's base lr at 1-based ``step``."""
        if not self.lr_schedule:
            return 1.0
        return self.lr_schedule[(step - 1) % len(self.lr_schedule)]

    def grad_is_none(self, name, step):
        return any(name == param and step in steps for param, steps in self.grad_none)


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
            expect_error={"fused": "expected Tensor as element 1 in argument 2, but got NoneType"}),
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
    _config("adam-plain", "adam", _hp(lr=0.01), "defaults", quick_impls=("forloop", "fused")),
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
    _config("adamw-plain", "adamw", _hp(lr=0.01), "defaults (λ = 0.01)", quick_impls=("forloop", "fused")),
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


def _impls_for(optimizer):
    return tuple(impl for impl in IMPLS if impl != "fused" or _REGISTRY[optimizer].fused)


def case_id(config, dtype, impl, device):
    return f"{config}-{SHORT_DTYPES[dtype]}-{impl}-{device}"


def _make(config, dtype, impl, device, *, steps, free_steps, quick):
    fields = {key: value for key, value in config.items()
              if key not in ("name", "quick_impls", "quick", "steps", "expect_error")}
    fields["expect_error"] = config.get("expect_error", {}).get(impl, "")
    return Case(id=case_id(config["name"], dtype, impl, device), config=config["name"], dtype=dtype, impl=impl,
                device=device,
                steps=steps, free_steps=free_steps, quick=quick, **fields)


def _expand():
    cases = []
    for device in DEVICES:
        for number, config in enumerate(CONFIGS):
            # --quick: each listed impl once, in float64 and float32 by turns (every optimizer gets both)
            quick_impls = {impl: F64_F32[(number + i) % 2] for i, impl in enumerate(config.get("quick_impls", ()))}
            for dtype in F64_F32:
                for impl in _impls_for(config["optimizer"]):
                    quick = device == "cpu" and quick_impls.get(impl) == dtype
                    cases.append(_make(config, dtype, impl, device, steps=config.get("steps", 10), free_steps=0,
                                       quick=quick))
        for config in FREE_CONFIGS:
            cases.append(_make(config, "float64", "forloop", device, steps=FREE_RUNNING_STEPS,
                               free_steps=FREE_RUNNING_STEPS, quick=device == "cpu" and config.get("quick", False)))
        for config in LOWP_CONFIGS:
            for dtype in LOW_PRECISION:
                for impl in _impls_for(config["optimizer"]):
                    case = _make(config, dtype, impl, device, steps=8, free_steps=0, quick=False)
                    cases.append(dataclasses.replace(case, loss_scale=LOWP_LOSS_SCALE))
    ids = [case.id for case in cases]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    return tuple(cases)


CASES = _expand()
CASE_IDS = {case.id: case for case in CASES}


def quick_cases():
    """The --quick subset: every optimizer, flag and torch implementation at least once, float64 and float32."""
    return tuple(case for case in CASES if case.quick)


class UnknownFilterError(ValueError):
    """A filter names an optimizer, impl, dtype, device or case that the matrix does not have."""


_CHOICES = {"optimizer": OPTIMIZERS, "impl": IMPLS, "dtype": DTYPES, "device": DEVICES}


def select(cases=None, *, optimizer=None, impl=None, dtype=None, device=None, case=None, quick=False):
    """The cases matching every given filter (each a value or a list of values; ``case`` matches ids exactly).

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
        if any(getattr(c, name) not in values for name, values in chosen.items()):
            continue
        out.append(c)
    return tuple(out)
