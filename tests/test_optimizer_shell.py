"""The torch-shaped shell around the rules: param groups, None grads, per-parameter state, dtypes, inputs left
untouched, the decay_groups helper and every bad input (state_dict: tests/test_state_dict.py)."""
import re

import numpy as np
import pytest

import refwd
from optimizer_configs import FLAG_CONFIGS, NAMES, OPTIMIZERS, assert_same, config_id, make_grads, make_params, snapshot
from refwd.optim import SGD, Adam, AdamW, RMSprop, decay_groups, is_bias_or_norm

# ----------------------------------------------------------------------------------------------------------------
# Param groups

def test_params_as_mapping_list_of_names_or_one_group_give_the_same_groups():
    params = make_params()
    from_mapping = SGD(params, lr=0.1).param_groups
    from_names = SGD(NAMES, lr=0.1).param_groups
    from_group = SGD([{"params": NAMES}], lr=0.1).param_groups
    from_tuple = SGD(tuple(NAMES), lr=0.1).param_groups
    assert from_mapping == from_names == from_group == from_tuple
    assert from_mapping[0]["params"] == NAMES


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_defaults_fill_the_groups_and_overrides_stay(optimizer):
    cls = OPTIMIZERS[optimizer]
    opt = cls([{"params": ["0.weight"], "lr": 0.5, "weight_decay": 0.25}, {"params": ["0.bias"]}], lr=0.01)
    first, second = opt.param_groups
    assert set(first) == set(second) == set(opt.defaults) | {"params"}
    assert first["lr"] == 0.5 and first["weight_decay"] == 0.25
    assert second["lr"] == 0.01 and second["weight_decay"] == opt.defaults["weight_decay"]
    for key in opt.defaults:
        if key not in ("lr", "weight_decay"):
            assert first[key] == second[key] == opt.defaults[key]


def test_group_values_are_not_validated_as_in_torch():
    # torch validates only the constructor's arguments; SGD([{"params": ps, "lr": -1.0}]) is accepted there too.
    assert SGD([{"params": ["w"], "lr": -1.0}]).param_groups[0]["lr"] == -1.0
    assert Adam([{"params": ["w"], "betas": (2.0, 2.0)}]).param_groups[0]["betas"] == (2.0, 2.0)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_group_overrides_behave_like_separate_optimizers(optimizer):
    cls = OPTIMIZERS[optimizer]
    base = {"SGD": dict(lr=0.1, momentum=0.9), "RMSprop": dict(lr=0.01, momentum=0.5),
            "Adam": dict(lr=0.01), "AdamW": dict(lr=0.01)}[optimizer]
    overrides = {"SGD": dict(lr=0.05, weight_decay=0.1, nesterov=True),
                 "RMSprop": dict(alpha=0.9, centered=True, weight_decay=0.1),
                 "Adam": dict(betas=(0.5, 0.9), amsgrad=True, weight_decay=0.1),
                 "AdamW": dict(lr=0.001, weight_decay=0.5, maximize=True)}[optimizer]
    weights, biases = ["0.weight", "2.weight"], ["0.bias", "2.bias"]
    grouped = cls([{"params": weights, **overrides}, {"params": biases}], **base)
    separate_weights = cls(weights, **{**base, **overrides})
    separate_biases = cls(biases, **base)
    params = separate = make_params()
    for step in range(3):
        grads = make_grads(step)
        params = grouped.step(params, grads)
        separate = separate_biases.step(separate_weights.step(separate, grads), grads)
        assert_same(params, separate)
    for name in weights:
        assert_same(grouped.state[name], separate_weights.state[name])
    for name in biases:
        assert_same(grouped.state[name], separate_biases.state[name])


def test_a_param_in_no_group_is_returned_unchanged():
    params, grads = make_params(), make_grads(0)
    new = SGD(["0.weight"], lr=0.1).step(params, grads)
    assert list(new) == NAMES
    for name in NAMES[1:]:
        assert new[name] is params[name]
    assert not np.array_equal(new["0.weight"], params["0.weight"])


# ----------------------------------------------------------------------------------------------------------------
# None grads and per-parameter step counts

@pytest.mark.parametrize("config", FLAG_CONFIGS, ids=config_id)
@pytest.mark.parametrize("missing", ["None", "absent"])
def test_a_none_grad_leaves_param_and_state_untouched(config, missing):
    optimizer, kwargs = config
    opt = OPTIMIZERS[optimizer](NAMES, **{"weight_decay": 0.1, **kwargs})  # decay on: it must not apply either
    params = opt.step(make_params(), {name: g for name, g in make_grads(0).items() if name != "0.bias"})
    assert "0.bias" not in opt.state            # no state created for a param that never had a grad
    state_before = snapshot(opt.state)
    grads = make_grads(1)
    if missing == "None":
        grads["2.bias"] = None
        grads["0.bias"] = None
    else:
        del grads["2.bias"], grads["0.bias"]
    new_params = opt.step(params, grads)
    for name in ("0.bias", "2.bias"):
        assert new_params[name] is params[name]
    assert "0.bias" not in opt.state
    # step not incremented, buffers unchanged (SGD without momentum keeps no state at all, as torch)
    assert_same(opt.state.get("2.bias", {}), state_before.get("2.bias", {}))
    if "step" in opt.state.get("0.weight", {}):
        assert opt.state["0.weight"]["step"] == 2 and opt.state["2.bias"]["step"] == 1


def test_all_zero_grad_is_a_full_step_unlike_none():
    # torch: a zero grad (not None) moves the counter, decays the moments and applies decoupled decay.
    opt = AdamW(["w"], lr=0.1, weight_decay=0.5)
    params = {"w": np.array([1.0, -2.0])}
    params = opt.step(params, {"w": np.zeros(2)})
    assert opt.state["w"]["step"] == 1
    np.testing.assert_array_equal(params["w"], np.array([1.0, -2.0]) * (1 - 0.1 * 0.5))


def test_step_counts_are_per_parameter():
    # "a" has grads at steps 1-3, "b" only at 2-3: b's bias corrections use t = 1, 2, as a fresh optimizer's.
    opt = Adam(["a", "b"], lr=0.1)
    fresh_b = Adam(["b"], lr=0.1)
    params = {"a": np.array([1.0, 2.0]), "b": np.array([-1.0, 0.5])}
    b_alone = {"b": params["b"]}
    for step in range(3):
        grads = {"a": np.array([0.1, -0.2]) * (step + 1), "b": None if step == 0 else np.array([0.3, 0.4]) * step}
        params = opt.step(params, grads)
        if grads["b"] is not None:
            b_alone = fresh_b.step(b_alone, {"b": grads["b"]})
    assert opt.state["a"]["step"] == 3 and opt.state["b"]["step"] == 2
    np.testing.assert_array_equal(params["b"], b_alone["b"])
    assert_same(opt.state["b"], fresh_b.state["b"])


def test_sgd_first_momentum_step_is_per_parameter():
    # The buffer of a param that first gets a grad at step 2 is that grad itself (no dampening).
    opt = SGD(["a", "b"], lr=0.1, momentum=0.9, dampening=0.5)
    params = {"a": np.ones(2), "b": np.ones(2)}
    params = opt.step(params, {"a": np.ones(2), "b": None})
    opt.step(params, {"a": np.ones(2), "b": np.array([0.3, -0.7])})
    np.testing.assert_array_equal(opt.state["b"]["momentum_buffer"], [0.3, -0.7])
    np.testing.assert_array_equal(opt.state["a"]["momentum_buffer"], [0.9 + 0.5, 0.9 + 0.5])


# ----------------------------------------------------------------------------------------------------------------
# lr changed between steps

def test_sgd_uses_the_lr_set_in_param_groups():
    opt = SGD(["w"], lr=0.1, momentum=0.9)
    params = opt.step({"w": np.array([1.0])}, {"w": np.array([0.5])})
    opt.param_groups[0]["lr"] = 0.01
    params = opt.step(params, {"w": np.array([0.5])})
    # lr multiplies the whole buffer b₂ = 0.9·0.5 + 0.5 = 0.95 (it is not folded into it).
    np.testing.assert_array_equal(params["w"], [(1.0 - 0.1 * 0.5) - 0.01 * 0.95])


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_uses_the_current_lr(optimizer):
    from refwd.optim import adam_step, adamw_step, rmsprop_step, sgd_step
    rule = {"SGD": sgd_step, "RMSprop": rmsprop_step, "Adam": adam_step, "AdamW": adamw_step}[optimizer]
    opt = OPTIMIZERS[optimizer](["w"], lr=0.1, weight_decay=0.1)
    hyperparameters = {key: value for key, value in opt.defaults.items()}
    if optimizer == "AdamW":
        del hyperparameters["decoupled_weight_decay"]
    theta, state = np.array([1.0, -2.0]), {}
    params = {"w": theta}
    for lr in (0.1, 0.03, 0.2):
        opt.param_groups[0]["lr"] = lr
        grad = np.array([0.5, 0.25]) * lr
        params = opt.step(params, {"w": grad})
        theta, state = rule(theta, grad, state, **{**hyperparameters, "lr": lr})
        np.testing.assert_array_equal(params["w"], theta)


def test_adamw_decay_factor_uses_the_current_group_lr():
    opt = AdamW(["w"], lr=0.1, weight_decay=0.5)
    params = opt.step({"w": np.array([2.0])}, {"w": np.array([0.0])})
    np.testing.assert_array_equal(params["w"], [2.0 * (1 - 0.1 * 0.5)])
    opt.param_groups[0]["lr"] = 0.2
    # The moments are 0 (zero grads) and the update 0/(0 + ε) = 0, so only the decay moves θ.
    params = opt.step(params, {"w": np.array([0.0])})
    np.testing.assert_array_equal(params["w"], [2.0 * (1 - 0.1 * 0.5) * (1 - 0.2 * 0.5)])


# ----------------------------------------------------------------------------------------------------------------
# Inputs never mutated; outputs never alias them

@pytest.mark.parametrize("config", FLAG_CONFIGS, ids=config_id)
def test_inputs_are_never_mutated(config):
    optimizer, kwargs = config
    opt = OPTIMIZERS[optimizer](NAMES, **kwargs)
    params = make_params()
    for step in range(3):
        grads = make_grads(step)
        params_before, grads_before = snapshot(params), snapshot(grads)
        state_arrays = {name: dict(entry) for name, entry in opt.state.items()}   # the live arrays
        state_before = snapshot(opt.state)
        groups_before = snapshot(opt.param_groups)
        new_params = opt.step(params, grads)
        assert_same(params, params_before)
        assert_same(grads, grads_before)
        assert_same(state_arrays, state_before)
        assert opt.param_groups == groups_before
        for name in NAMES:
            for old in [params[name], grads[name], *[v for v in state_arrays.get(name, {}).values()
                                                     if isinstance(v, np.ndarray)]]:
                assert not np.shares_memory(new_params[name], old)
                for value in opt.state.get(name, {}).values():
                    if isinstance(value, np.ndarray):
                        assert not np.shares_memory(value, old)
        params = new_params


@pytest.mark.parametrize("config", FLAG_CONFIGS, ids=config_id)
def test_rules_leave_their_state_argument_alone(config):
    optimizer, kwargs = config
    opt = OPTIMIZERS[optimizer](["w"], **kwargs)
    hyperparameters = dict(opt.defaults)
    rule = type(opt).rule
    theta, state = np.array([0.5, -1.0, 2.0]), {}
    for step in range(3):
        grad = np.array([0.3, -0.2, 0.1]) * (step + 1)
        state_before, theta_before, grad_before = snapshot(state), theta.copy(), grad.copy()
        new_theta, new_state = rule(theta, grad, state, **hyperparameters)
        assert_same(state, state_before)
        np.testing.assert_array_equal(theta, theta_before)
        np.testing.assert_array_equal(grad, grad_before)
        assert new_state is not state
        theta, state = new_theta, new_state


# ----------------------------------------------------------------------------------------------------------------
# float32 stays float32

def float64_scalars(value):
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return np.float64(value)
    if isinstance(value, tuple):
        return tuple(np.float64(item) for item in value)
    return value


def assert_float32_throughout(opt, params):
    for step in range(3):
        params = opt.step(params, make_grads(step, "float32"))
        for name in NAMES:
            assert params[name].dtype == np.float32, name
            for key, value in opt.state.get(name, {}).items():
                if key != "step":
                    assert value.dtype == np.float32, (name, key)


@pytest.mark.parametrize("config", FLAG_CONFIGS, ids=config_id)
def test_float32_stays_float32(config):
    optimizer, kwargs = config
    assert_float32_throughout(OPTIMIZERS[optimizer](NAMES, **kwargs), make_params("float32"))


@pytest.mark.parametrize("config", FLAG_CONFIGS, ids=config_id)
def test_float32_stays_float32_with_numpy_float64_hyperparameters(config):
    optimizer, kwargs = config
    # In the constructor ...
    opt = OPTIMIZERS[optimizer](NAMES, **{key: float64_scalars(value) for key, value in kwargs.items()})
    assert_float32_throughout(opt, make_params("float32"))
    # ... and set in param_groups, as a scheduler would, for every hyperparameter of every group.
    opt = OPTIMIZERS[optimizer]([{"params": NAMES[:2]}, {"params": NAMES[2:]}], **kwargs)
    for group in opt.param_groups:
        for key in list(group):
            group[key] = float64_scalars(group[key])
    assert_float32_throughout(opt, make_params("float32"))


@pytest.mark.parametrize("key, hyperparameter", [("betas", [np.float64(0.9), np.float64(0.999)]),
                                                  ("lr", np.array(0.001))],
                         ids=["betas as a list of numpy float64", "lr as a 0-d float64 array"])
def test_float32_stays_float32_with_other_numpy_hyperparameter_containers(key, hyperparameter):
    opt = Adam(NAMES, amsgrad=True)
    opt.param_groups[0][key] = hyperparameter
    assert_float32_throughout(opt, make_params("float32"))


# ----------------------------------------------------------------------------------------------------------------
# decay_groups

def mlp_params():
    return refwd.MLP([3, 4, 2, 1]).init(seed=0)


def test_decay_groups_splits_weights_from_biases():
    params = mlp_params()
    groups = decay_groups(params, weight_decay=0.1)
    assert groups == [{"params": ["0.weight", "2.weight", "4.weight"], "weight_decay": 0.1},
                      {"params": ["0.bias", "2.bias", "4.bias"], "weight_decay": 0.0}]
    opt = SGD(groups, lr=0.5)
    zero = {name: np.zeros_like(value) for name, value in params.items()}
    new = opt.step(params, zero)    # zero loss gradient: only the decay acts, and only on the weights
    for name in params:
        factor = (1 - 0.5 * 0.1) if name.endswith("weight") else 1.0
        np.testing.assert_allclose(new[name], params[name] * factor, rtol=2 ** -52)


def test_decay_groups_excludes_norm_parameters_and_drops_empty_groups():
    params = {"0.weight": np.ones((2, 2)), "norm.weight": np.ones(2), "norm.bias": np.ones(2)}
    assert is_bias_or_norm("norm.weight", params["norm.weight"]) and not is_bias_or_norm("0.weight", np.ones((2, 2)))
    assert decay_groups(params, 0.1) == [{"params": ["0.weight"], "weight_decay": 0.1},
                                         {"params": ["norm.weight", "norm.bias"], "weight_decay": 0.0}]
    assert decay_groups({"0.weight": np.ones((2, 2))}, 0.1) == [{"params": ["0.weight"], "weight_decay": 0.1}]
    custom = decay_groups(params, 0.1, exclude=lambda name, param: name.startswith("norm.bias"))
    assert custom[0]["params"] == ["0.weight", "norm.weight"]
    with pytest.raises(TypeError, match="decay_groups needs a mapping"):
        decay_groups(list(params), 0.1)


def test_per_layer_decay_strengths_with_adamw():
    # One group per layer's weight, each with its own λ, biases undecayed: AdamW's zero-grad step is θ(1 − γλ).
    params = mlp_params()
    strengths = {"0.weight": 0.3, "2.weight": 0.1, "4.weight": 0.0}
    groups = [{"params": [name], "weight_decay": strength} for name, strength in strengths.items()]
    groups.append({"params": [name for name in params if name.endswith("bias")], "weight_decay": 0.0})
    opt = AdamW(groups, lr=0.1)
    new = opt.step(params, {name: np.zeros_like(value) for name, value in params.items()})
    for name in params:
        np.testing.assert_array_equal(new[name], params[name] * (1 - 0.1 * strengths.get(name, 0.0)))


# ----------------------------------------------------------------------------------------------------------------
# Bad input: each error names the thing

def test_grad_shape_mismatch_names_the_parameter():
    params, grads = make_params(), make_grads(0)
    grads["0.bias"] = np.zeros(4)
    with pytest.raises(ValueError, match=re.escape("grad of '0.bias' has shape (4,) but the parameter has shape (3,)")):
        SGD(params).step(params, grads)


def test_grad_dtype_mismatch_names_the_parameter():
    params, grads = make_params(), make_grads(0)
    grads["2.weight"] = grads["2.weight"].astype(np.float32)
    with pytest.raises(ValueError, match="grad of '2.weight' has dtype float32 but the parameter has dtype float64"):
        Adam(params).step(params, grads)


def test_grad_that_is_not_an_array_names_the_parameter():
    params, grads = make_params(), make_grads(0)
    grads["2.bias"] = [0.5]
    with pytest.raises(TypeError, match="grad of '2.bias' must be a numpy array, got list"):
        RMSprop(params).step(params, grads)


def test_group_name_missing_from_params_is_named_at_step():
    opt = SGD([{"params": ["0.weight"]}, {"params": ["nope"]}])
    with pytest.raises(KeyError, match="parameter 'nope' of param group 1 is not in the params given to step"):
        opt.step(make_params(), make_grads(0))


def test_grad_for_an_unknown_name():
    grads = make_grads(0)
    grads["nope"] = np.zeros(1)
    with pytest.raises(KeyError, match=re.escape("grads has entries ['nope'] that are not in params")):
        SGD(NAMES).step(make_params(), grads)


def test_duplicated_name_in_a_group():
    with pytest.raises(ValueError, match=re.escape("param group 0 names ['0.bias'] more than once")):
        SGD(["0.weight", "0.bias", "0.bias"])


def test_duplicated_name_across_groups():
    with pytest.raises(ValueError, match=re.escape("some parameters appear in more than one parameter group: "
                                                   "['0.bias']")):
        Adam([{"params": ["0.weight", "0.bias"]}, {"params": ["0.bias"]}])


def test_group_missing_params():
    with pytest.raises(KeyError, match="param group 1 has no 'params' key"):
        Adam([{"params": ["0.weight"]}, {"lr": 0.1}])


def test_unknown_group_key_is_named():
    with pytest.raises(ValueError, match=re.escape("param group 0 has unknown hyperparameters ['momentum']")):
        Adam([{"params": ["w"], "momentum": 0.9}])
    with pytest.raises(ValueError, match=re.escape("unknown hyperparameters ['nesterov']")):
        RMSprop([{"params": ["w"]}, {"params": ["b"], "nesterov": True}])


def test_torch_implementation_keys_in_groups_are_carried_and_ignored():
    opt = Adam([{"params": ["w"], "foreach": False, "fused": None, "capturable": False, "differentiable": False}])
    params = opt.step({"w": np.ones(2)}, {"w": np.ones(2)})
    np.testing.assert_array_equal(params["w"], Adam(["w"]).step({"w": np.ones(2)}, {"w": np.ones(2)})["w"])


@pytest.mark.parametrize("params", [[], {}, ()], ids=["list", "dict", "tuple"])
def test_empty_params(params):
    with pytest.raises(ValueError, match="optimizer got an empty parameter list"):
        SGD(params)


def test_empty_group_params():
    with pytest.raises(ValueError, match="param group 1 has an empty 'params' list"):
        SGD([{"params": ["w"]}, {"params": []}])


def test_set_of_params():
    with pytest.raises(TypeError, match="ordered collections.*Please use a list instead"):
        SGD({"a", "b"})
    with pytest.raises(TypeError, match="param group 0: optimizer parameters need to be organized in ordered"):
        SGD([{"params": {"a", "b"}}])


@pytest.mark.parametrize("params, what", [(np.zeros(3), "ndarray"), ("0.weight", "str")])
def test_array_or_string_as_params(params, what):
    with pytest.raises(TypeError, match=f"params argument given to the optimizer should be .* but got {what}"):
        Adam(params)


def test_group_that_is_not_a_dict_and_names_that_are_not_strings():
    with pytest.raises(TypeError, match="param_group must be a dict, but got str"):
        SGD([{"params": ["w"]}, "b"])
    with pytest.raises(TypeError, match="params must be parameter names \\(str\\), but got ndarray"):
        SGD([np.zeros(2)])


def test_step_needs_mappings():
    opt = SGD(["w"])
    with pytest.raises(TypeError, match="step\\(\\) params must be a mapping"):
        opt.step([np.zeros(1)], {"w": np.zeros(1)})
    with pytest.raises(TypeError, match="step\\(\\) grads must be a mapping"):
        opt.step({"w": np.zeros(1)}, [np.zeros(1)])


def test_a_single_name_as_a_group_params_is_wrapped():
    # torch wraps a lone Tensor in a list; refwd does the same with a lone name.
    assert SGD([{"params": "w"}]).param_groups[0]["params"] == ["w"]
