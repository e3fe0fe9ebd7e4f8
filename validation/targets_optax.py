"""optax targets: a ``GradientTransformation`` factory (``optax:adamw``) run through the harness's scenarios.

The factory is called with Python floats, as users call it, and a case's lr schedule becomes optax's own kind of
schedule (a function of the step count); a case's param groups become one transformation each (optax has no groups).
jax runs on the CPU with float64 enabled. (``optax.inject_hyperparams`` is not used: it holds every hyperparameter
in a float32 array, so 1 − β₂ is formed in float32, which is another computation; measured with optax 0.2.8, 27 ULPs
of the error scale on Adam's float32 ``exp_avg_sq`` at the first step.) optax keeps state for a whole params tree,
in nested named tuples; :func:`state_view` gives each parameter's part of it as nested dicts (``{"0": {"count": 3,
"mu": array, "nu": array}, ...}``) for the state map to read. optax's own optimizers come with their names and state
maps (:data:`refwd_validation.targets.OPTAX_KNOWN`).
"""
import numpy as np

from . import scenario
from .targets import TargetStepError, refwd_state_keys, step_inputs
from .twin import TorchStep


def import_jax():
    import jax
    jax.config.update("jax_enable_x64", True)   # float64 params stay float64
    return jax


def state_view(state, name):
    """Parameter ``name``'s part of an optax state: named tuples and tuples as dicts, a params-keyed dict as its
    leaf for ``name``, arrays as NumPy, 0-d integer counters as ints."""
    if isinstance(state, dict):
        return state_view(state[name], name) if name in state else {k: state_view(v, name) for k, v in state.items()}
    if hasattr(state, "_fields"):
        return {field: state_view(getattr(state, field), name) for field in state._fields}
    if isinstance(state, (tuple, list)):
        return {str(i): state_view(item, name) for i, item in enumerate(state)}
    value = np.asarray(state)
    return int(value) if value.ndim == 0 and value.dtype.kind in "iu" else value


def optax_trajectory(target, case):
    """An optax transformation's run: refwd's autograd gives the gradients at its own params (as a function
    target's); each param group is one transformation, its lr schedule optax's own."""
    import optax
    jax = import_jax()
    if case.lowp:
        raise TargetStepError(f"case {case.id}: an optax target runs in float64 or float32, not {case.dtype}")
    model = scenario.refwd_model(case)
    params = scenario.initial_params(case)
    reference = scenario.refwd_optimizer(case, list(params))
    groups = [list(group["params"]) for group in reference.param_groups]
    base_lrs = [group["lr"] for group in reference.param_groups]
    lr_name = target.hyper.get("lr", "lr")
    transforms, states = [], []
    for group, names, base_lr in zip(reference.param_groups, groups, base_lrs):
        hyperparameters = target.hyperparameters({key: group[key] for key in reference.defaults})
        if case.lr_schedule:   # optax counts updates from 0: the lr of 1-based step t is schedule(t − 1)
            hyperparameters[lr_name] = lambda count, base_lr=base_lr: base_lr * case.lr_factor(int(count) + 1)
        try:
            transform = target.implementation(**hyperparameters)
            states.append(transform.init({name: jax.numpy.asarray(params[name]) for name in names}))
        except Exception as error:
            raise TargetStepError(f"target {target.name} cannot be built for case {case.id} with "
                                  f"{hyperparameters}: {type(error).__name__}: {error}") from None
        transforms.append(transform)
    state = {name: {} for name in params}
    for step in range(1, case.steps + 1):
        lrs, hyperparameters, x, y, scale, loss, grads = step_inputs(case, model, reference, base_lrs, params, step)
        new_params, new_state = {}, {}
        for index, (transform, names) in enumerate(zip(transforms, groups)):
            group_params = {name: jax.numpy.asarray(params[name]) for name in names}
            try:
                updates, states[index] = transform.update({name: jax.numpy.asarray(grads[name]) for name in names},
                                                          states[index], group_params)
                stepped = optax.apply_updates(group_params, updates)
            except Exception as error:
                raise TargetStepError(f"target {target.name}, case {case.id}, step {step}: raised "
                                      f"{type(error).__name__}: {error}") from None
            for name in names:
                new_params[name] = np.array(stepped[name])
                new_state[name] = {} if target.params_only else target.state_map.to_refwd(
                    state_view(states[index], name), refwd_state_keys(case, hyperparameters[name]),
                    hyperparameters[name], step)   # every param of a tree steps at every step
        yield TorchStep(step=step, lrs=lrs, loss_scale=scale, x=x, y=y, params=params, all_grads=grads, grads=grads,
                        loss=float(loss), state=state, new_params=new_params, new_state=new_state,
                        gradients_checked=False, transformed=target.state_map.transformed)
        params, state = new_params, new_state
