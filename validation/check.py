"""``refwd check``: any optimizer implementation (a target) against one of refwd's rules, over the matrix's scenarios.

The scenarios are the case matrix's for the chosen rule (models, data, param groups, lr schedules, gradients of
None, dtypes), run through the target instead of torch's class, with the same checks, derived tolerances,
pinpoints and reports as ``refwd validate``. Nothing from the target widens its own tolerance: the error scales
come from refwd's error model and torch's (or the target's) inputs alone.

In Python::

    from refwd_validation.check import check
    results = check("my_kernels:adamw_step", "adamw", quick=True)    # or the object itself
    assert all(result.ok for result in results), [result.detail for result in results if not result.ok]
"""
import dataclasses

from . import scenario
from .cases import CASES, KERNELS, case_id, select
from .diagnose import profile_rules
from .harness import run_case
from .optimizers import OPTIMIZERS
from .outcomes import Status
from .statemap import describe_scaling
from .targets import (FUNCTION, OPTAX, TORCH_STYLE, Target, TargetError, function_trajectory, given_hyperparameters,
                      make_target, parse_reference, torch_style_trajectory)
from .targets_optax import optax_trajectory


def trajectory(target, case):
    """The target's run of ``case`` as :class:`refwd_validation.twin.TorchStep` s, state in refwd's keys."""
    run = {FUNCTION: function_trajectory, OPTAX: optax_trajectory}.get(target.kind, torch_style_trajectory)
    return run(target, case)


def target_cases(target, *, dtype=None, case=None, quick=False):
    """The matrix's scenarios for ``target.reference``, as cases of the target (``impl`` "target", cpu).

    One case per configuration and dtype (torch's implementations are the target's business); ``quick`` keeps
    each configuration once, in the dtype ``refwd validate --quick`` gives it. A function target runs float64 and
    float32 only (it gets NumPy arrays).
    """
    scenarios = OPTIMIZERS[target.reference].scenarios or target.reference   # SGDW runs SGD's scenarios
    chosen = [dataclasses.replace(c, optimizer=target.reference)   # trajectories: the constructors are refwd's
              for c in select(CASES, optimizer=scenarios, device="cpu", impl=KERNELS)   # torch's paths are torch's
              if c.kind == "trajectory"]
    quick_dtypes = {c.config: c.dtype for c in chosen if c.quick}
    dtypes = ("float64", "float32") if target.kind in (FUNCTION, OPTAX) else None
    out, seen = [], set()
    for base in chosen:
        key = (base.config, base.dtype)
        not_quick = quick and quick_dtypes.get(base.config) != base.dtype
        if key in seen or (dtypes and base.dtype not in dtypes) or not_quick or not target.runs(base):
            continue
        seen.add(key)
        out.append(dataclasses.replace(base, id=case_id(base.config, base.dtype, "target", "cpu"), impl="target",
                                       expect_error=""))
    if dtype is not None:
        wanted = {dtype} if isinstance(dtype, str) else set(dtype)
        out = [c for c in out if c.dtype in wanted]
    if case is not None:
        wanted = {case} if isinstance(case, str) else set(case)
        unknown = sorted(wanted - {c.id for c in out})
        if unknown:
            raise TargetError(f"unknown case {unknown[0]!r} for this target; 'refwd check TARGET --as "
                              f"{target.reference} --list' shows them")
        out = [c for c in out if c.id in wanted]
    return out


def preflight(target, case):
    """Build a torch-style target once (on one parameter, with the first case's hyperparameters): a target that
    cannot be built at all is a usage error (exit 2), not a failure of every case."""
    if target.kind != TORCH_STYLE:
        return
    import torch
    param = torch.zeros(2, requires_grad=True)
    reference = scenario.refwd_optimizer(case, list(scenario.initial_params(case)))
    hyperparameters = target.hyperparameters(given_hyperparameters(reference, reference.defaults))
    try:
        target.implementation([param], **hyperparameters)
    except Exception as error:
        raise TargetError(f"target {target.name} cannot be built with {hyperparameters}: "
                          f"{type(error).__name__}: {error}") from None


def check_case(target, case, *, rules=None, error_scale_rules=None):
    """Run one case of ``target``: a :class:`refwd_validation.harness.CaseResult` (never raises for the target's
    own failures: they are the case's error, naming target, case, step and parameter). ``rules`` and
    ``error_scale_rules`` replace refwd's reference (a convention profile: refwd_validation.diagnose)."""
    steps = []

    def recorded():  # keep the last step: a failing state key is then told apart from a wrong mapping
        for torch_step in trajectory(target, case):
            steps[:] = [torch_step]
            yield torch_step

    if rules is None and target.profile != "torch":   # the conventions asked for: --as rmsprop:optax
        rule, error_scale_rule = profile_rules(target.reference, target.profile)
        rules, error_scale_rules = {target.reference: rule}, {target.reference: error_scale_rule}
    result = run_case(case, trajectory=recorded(), sides=("refwd", "target"), params_only=target.params_only,
                      rules=rules, error_scale_rules=error_scale_rules)
    result.torch_version = None   # the run says nothing about torch's own classes (no known-defect applies)
    if result.status == Status.FAIL and result.failure.key not in ("param", "grad", "loss") and \
            "has shape" in result.failure.message:
        result.note = (f"{result.failure.parameter} {result.failure.key}: the mapped state tensor has another "
                       "shape than refwd's: a state mapping matter (which key, which nesting?), not the math")
    elif result.status == Status.ERROR and "dtype" in (result.error or "") and "state[" in (result.error or ""):
        result.note = ("the target keeps a state tensor in another dtype than its param: a storage matter (mixed "
                       "precision?), not the math; refwd's rules keep the param's dtype")
    elif result.status == Status.FAIL and result.failure.key == "state":
        result.note = ("the state keys do not line up: a state mapping matter, not the math; map them with "
                       "--state REFWD=TARGET_KEY (and --state step= where the target keeps no step count per "
                       "parameter), or check the params alone with --params-only")
    elif result.status == Status.FAIL and steps and result.failure.key not in ("param", "grad", "loss", "step"):
        hint = _mapping_hint(case, steps[-1], result.failure)
        if hint:
            result.note = f"{result.failure.parameter} {result.failure.key}: {hint}"
    return result


def _mapping_hint(case, torch_step, failure):
    """Whether the failing state tensor is refwd's times a constant (a convention of storage, not math)."""
    optimizer = scenario.refwd_optimizer(case, list(torch_step.params))
    for group, lr in zip(optimizer.param_groups, torch_step.lrs):
        group["lr"] = lr
    optimizer.state = {name: dict(state) for name, state in torch_step.state.items()}
    optimizer.step(torch_step.params, {name: g for name, g in torch_step.grads.items() if g is not None})
    refwd_value = optimizer.state.get(failure.parameter, {}).get(failure.key)
    target_value = torch_step.new_state.get(failure.parameter, {}).get(failure.key)
    return None if refwd_value is None or target_value is None else describe_scaling(refwd_value, target_value)


def check(implementation, reference, *, kwargs=None, hyper=None, state_map=None, params_only=False, dtype=None,
          case=None, quick=False):
    """Check ``implementation`` (an object or ``module:attribute``) against refwd's rule ``reference``; return
    the :class:`refwd_validation.harness.CaseResult` of every case, in order."""
    if isinstance(implementation, Target):
        key, profile = parse_reference(reference)
        target = dataclasses.replace(implementation, reference=key, profile=profile)
    else:
        target = make_target(implementation, reference, kwargs=kwargs, hyper=hyper, state_map=state_map,
                             params_only=params_only)
    from .twin import one_thread
    with one_thread():
        return [check_case(target, c) for c in target_cases(target, dtype=dtype, case=case, quick=quick)]
