"""refwd_validation.interop: torch models and optimizers to refwd and back, state and all."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import refwd  # noqa: E402
from refwd_validation import interop  # noqa: E402

pytestmark = pytest.mark.torch

# (torch class, constructor kwargs, the refwd class it must become); every state key of each class shows up
CONFIGS = [
    (torch.optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.1), refwd.optim.SGD),
    (torch.optim.RMSprop, dict(lr=1e-3, momentum=0.5, centered=True, weight_decay=0.1), refwd.optim.RMSprop),
    (torch.optim.Adam, dict(lr=1e-2, amsgrad=True, weight_decay=0.1), refwd.optim.Adam),
    (torch.optim.AdamW, dict(lr=1e-2, betas=(0.8, 0.99)), refwd.optim.AdamW),
]
CONFIG_IDS = [torch_class.__name__ for torch_class, _, _ in CONFIGS]


def make_model(dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2)).to(dtype)


def batch(model, seed=1):
    dtype = next(model.parameters()).dtype
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(8, 3, generator=generator, dtype=dtype), torch.randn(8, 2, generator=generator, dtype=dtype)


def backward(model, seed=1):
    x, y = batch(model, seed)
    model.zero_grad()
    torch.nn.functional.mse_loss(model(x), y).backward()


def trained(torch_class, kwargs, dtype=torch.float64, steps=3):
    """A model and a torch optimizer with two param groups (the biases at their own lr), after some steps."""
    model = make_model(dtype)
    groups = [{"params": [model[0].weight, model[2].weight]},
              {"params": [model[0].bias, model[2].bias], "lr": 3e-3}]
    optimizer = torch_class(groups, **kwargs)
    for step in range(steps):
        backward(model, seed=step)
        optimizer.step()
    return model, optimizer


def assert_same_torch_state(actual, expected):
    """Two torch optimizer state_dicts hold the same groups and bit-identical state tensors."""
    assert actual["param_groups"] == expected["param_groups"]
    assert actual["state"].keys() == expected["state"].keys()
    for index, state in expected["state"].items():
        assert actual["state"][index].keys() == state.keys()
        for key, tensor in state.items():
            assert actual["state"][index][key].dtype == tensor.dtype, (index, key)
            assert actual["state"][index][key].shape == tensor.shape, (index, key)
            assert torch.equal(actual["state"][index][key], tensor), (index, key)


# --- params and grads ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_params_from_torch_keeps_names_shapes_and_dtypes(dtype):
    model = make_model(dtype)
    params = interop.params_from_torch(model)
    assert list(params) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    for name, tensor in model.named_parameters():
        assert params[name].shape == tuple(tensor.shape)
        assert params[name].dtype == {torch.float32: np.float32, torch.float64: np.float64}[dtype]
        np.testing.assert_array_equal(params[name], tensor.detach().numpy())
    # the names and shapes are those of the refwd twin
    twin = refwd.MLP([3, 5, 2]).init(dtype=params["0.weight"].dtype)
    assert {name: array.shape for name, array in twin.items()} == {name: array.shape for name, array in params.items()}


def test_params_from_torch_are_copies():
    model = make_model()
    params = interop.params_from_torch(model)
    before = params["0.weight"].copy()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    np.testing.assert_array_equal(params["0.weight"], before)


def test_params_from_a_state_dict_and_from_pairs():
    model = make_model()
    from_module = interop.params_from_torch(model)
    for source in (model.state_dict(), list(model.named_parameters())):
        params = interop.params_from_torch(source)
        assert list(params) == list(from_module)
        for name in params:
            np.testing.assert_array_equal(params[name], from_module[name])


def test_params_from_torch_bad_input():
    with pytest.raises(TypeError, match="bfloat16"):
        interop.params_from_torch(make_model().to(torch.bfloat16))
    with pytest.raises(TypeError, match="'w' is a ndarray, not a torch.Tensor"):
        interop.params_from_torch({"w": np.zeros(2)})
    with pytest.raises(ValueError, match="no parameters"):
        interop.params_from_torch(torch.nn.ReLU())


def test_grads_from_torch_keeps_none():
    model = make_model()
    model[2].bias.requires_grad_(False)
    backward(model)
    grads = interop.grads_from_torch(model)
    assert grads["2.bias"] is None
    np.testing.assert_array_equal(grads["0.weight"], model[0].weight.grad.numpy())


def test_copy_params_to_torch_round_trip_and_errors():
    model, other = make_model(seed=0), make_model(seed=5)
    interop.copy_params_to_torch(interop.params_from_torch(model), other)
    for (name, tensor), (_, copied) in zip(model.named_parameters(), other.named_parameters()):
        assert torch.equal(tensor, copied), name
    with pytest.raises(KeyError, match="'9.weight'"):
        interop.copy_params_to_torch({"9.weight": np.zeros((5, 3))}, other)
    with pytest.raises(ValueError, match="'0.bias' is float32"):
        interop.copy_params_to_torch({"0.bias": np.zeros(5, dtype=np.float32)}, other)


# --- torch optimizer -> refwd ----------------------------------------------------------------------------------

@pytest.mark.parametrize("torch_class, kwargs, refwd_class", CONFIGS, ids=CONFIG_IDS)
def test_optimizer_from_torch_has_torch_groups_and_state(torch_class, kwargs, refwd_class):
    model, optimizer = trained(torch_class, kwargs)
    converted = interop.optimizer_from_torch(optimizer, model)
    assert type(converted) is refwd_class
    assert [group["params"] for group in converted.param_groups] == [["0.weight", "2.weight"], ["0.bias", "2.bias"]]
    for group, torch_group in zip(converted.param_groups, optimizer.param_groups):
        for key in converted.defaults:
            assert group[key] == torch_group[key], key
        assert group["lr"] == torch_group["lr"]  # the per-group override survives
    names = dict(zip([p for g in optimizer.param_groups for p in g["params"]],
                     [n for g in converted.param_groups for n in g["params"]]))
    for param, name in names.items():
        torch_state = optimizer.state[param]
        assert converted.state[name].keys() == torch_state.keys()
        for key, value in torch_state.items():
            if key == "step":
                assert converted.state[name][key] == int(value.item()) and type(converted.state[name][key]) is int
            else:
                assert converted.state[name][key].dtype == np.float64
                np.testing.assert_array_equal(converted.state[name][key], value.numpy())


@pytest.mark.parametrize("torch_class, kwargs, refwd_class", CONFIGS, ids=CONFIG_IDS)
def test_the_converted_optimizer_takes_the_next_step_as_torch_does(torch_class, kwargs, refwd_class):
    model, optimizer = trained(torch_class, kwargs)
    converted = interop.optimizer_from_torch(optimizer, model)
    params = interop.params_from_torch(model)
    backward(model, seed=7)
    new_params = converted.step(params, interop.grads_from_torch(model))
    optimizer.step()
    for name, tensor in model.named_parameters():
        # one float64 step from the same state: differences are a few roundings (FMA, MKL's sqrt) at most
        np.testing.assert_allclose(new_params[name], tensor.detach().numpy(), rtol=1e-13, atol=1e-15)


def test_converted_state_is_a_copy():
    model, optimizer = trained(torch.optim.Adam, {})
    converted = interop.optimizer_from_torch(optimizer, model)
    before = converted.state["0.weight"]["exp_avg"].copy()
    backward(model)
    optimizer.step()
    np.testing.assert_array_equal(converted.state["0.weight"]["exp_avg"], before)


def test_tensor_hyperparameters_become_the_numbers_torch_reads():
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=torch.tensor(0.01), momentum=0.9)
    converted = interop.optimizer_from_torch(optimizer, model)
    assert converted.param_groups[0]["lr"] == torch.tensor(0.01).item()
    assert type(converted.param_groups[0]["lr"]) is float


def test_adam_with_decoupled_weight_decay_stays_adam_and_decoupled():
    model, optimizer = trained(torch.optim.Adam, dict(weight_decay=0.1, decoupled_weight_decay=True))
    converted = interop.optimizer_from_torch(optimizer, model)
    assert type(converted) is refwd.optim.Adam
    assert converted.param_groups[0]["decoupled_weight_decay"] is True
    back = interop.optimizer_to_torch(converted, make_model())
    assert type(back) is torch.optim.Adam and back.param_groups[0]["decoupled_weight_decay"] is True


def test_names_come_from_named_params_without_a_model():
    model = make_model()
    optimizer = torch.optim.Adam(model.named_parameters())
    assert interop.parameter_names(optimizer) == [["0.weight", "0.bias", "2.weight", "2.bias"]]
    assert interop.optimizer_from_torch(optimizer).param_groups[0]["params"] == ["0.weight", "0.bias", "2.weight",
                                                                                  "2.bias"]


def test_a_subclass_converts_as_its_base():
    class Clipped(torch.optim.AdamW):
        pass

    model = make_model()
    assert type(interop.optimizer_from_torch(Clipped(model.parameters()), model)) is refwd.optim.AdamW


def test_optimizer_from_torch_bad_input():
    model = make_model()
    with pytest.raises(TypeError, match=r"no refwd equivalent for torch\.optim\.adagrad\.Adagrad"):
        interop.optimizer_from_torch(torch.optim.Adagrad(model.parameters()), model)
    stranger = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
    optimizer = torch.optim.SGD([{"params": list(model.parameters())}, {"params": [stranger]}])
    with pytest.raises(ValueError, match=r"param group 1, parameter 0 \(shape \(4,\), torch.float64\) .* is not a "
                                         r"parameter of the model"):
        interop.optimizer_from_torch(optimizer, model)
    with pytest.raises(ValueError, match="param group 0 .* has no 'param_names'; pass the model"):
        interop.optimizer_from_torch(torch.optim.SGD(model.parameters()))
    with pytest.raises(TypeError, match="bfloat16"):
        half = make_model().to(torch.bfloat16)
        interop.optimizer_from_torch(torch.optim.SGD(half.parameters()), half)


# --- refwd -> torch --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("torch_class, kwargs, refwd_class", CONFIGS, ids=CONFIG_IDS)
def test_round_trip_torch_refwd_torch_is_exact(torch_class, kwargs, refwd_class):
    model, optimizer = trained(torch_class, kwargs)
    state_dict = interop.torch_state_dict(interop.optimizer_from_torch(optimizer, model))
    assert_same_torch_state(state_dict, optimizer.state_dict())
    fresh = torch_class([{"params": [model[0].weight, model[2].weight]},
                         {"params": [model[0].bias, model[2].bias]}])
    fresh.load_state_dict(state_dict)
    assert_same_torch_state(fresh.state_dict(), optimizer.state_dict())


@pytest.mark.parametrize("torch_class, kwargs, refwd_class", CONFIGS, ids=CONFIG_IDS)
def test_refwd_to_torch_state_dict_has_torch_layout(torch_class, kwargs, refwd_class):
    params = refwd.MLP([3, 5, 2], activation="tanh").init(seed=0, dtype="float32")
    refwd_kwargs = {key: value for key, value in kwargs.items()}
    optimizer = refwd_class(refwd.optim.decay_groups(params, 0.0), **refwd_kwargs)
    grads = {name: np.full_like(param, 0.25) for name, param in params.items()}
    for _ in range(2):
        params = optimizer.step(params, grads)
    state_dict = interop.torch_state_dict(optimizer)
    own = torch_class([torch.zeros(1, requires_grad=True)], **kwargs).state_dict()["param_groups"][0]
    for group in state_dict["param_groups"]:
        assert set(group) == set(own)  # torch's keys, implementation keys included, and no others
    for index, state in state_dict["state"].items():
        for key, value in state.items():
            assert isinstance(value, torch.Tensor)
            if key == "step":
                assert value.dtype == torch.float32 and value.shape == () and value.item() == 2.0
            else:
                assert value.dtype == torch.float32
    # loadable, and equal to refwd's state afterwards
    model = make_model(torch.float32)
    interop.copy_params_to_torch(params, model)
    back = interop.optimizer_to_torch(optimizer, model)
    assert type(back) is torch_class
    again = interop.optimizer_from_torch(back, model)
    for name, state in optimizer.state.items():
        for key, value in state.items():
            np.testing.assert_array_equal(again.state[name][key], value)


def test_step_is_float64_when_torch_default_dtype_is_float64():
    params = {"w": np.ones(3)}
    optimizer = refwd.optim.Adam(params)
    optimizer.step(params, {"w": np.ones(3)})
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        assert interop.torch_state_dict(optimizer)["state"][0]["step"].dtype == torch.float64
    finally:
        torch.set_default_dtype(previous)


def test_group_keys_of_the_users_own_are_carried_both_ways():
    model = make_model()
    optimizer = torch.optim.SGD([{"params": model.parameters(), "name": "everything"}], lr=0.1)
    converted = interop.optimizer_from_torch(optimizer, model)
    assert converted.param_groups[0]["name"] == "everything"
    assert interop.torch_state_dict(converted)["param_groups"][0]["name"] == "everything"


def test_param_names_on_request():
    params = {"w": np.ones(3), "b": np.ones(1)}
    optimizer = refwd.optim.SGD(params, lr=0.1)
    assert "param_names" not in interop.torch_state_dict(optimizer)["param_groups"][0]
    assert interop.torch_state_dict(optimizer, param_names=True)["param_groups"][0]["param_names"] == ["w", "b"]


def test_skipped_parameters_have_no_state_on_either_side():
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters())
    backward(model)
    model[2].bias.grad = None
    optimizer.step()
    state_dict = interop.torch_state_dict(interop.optimizer_from_torch(optimizer, model))
    assert sorted(state_dict["state"]) == [0, 1, 2]
    assert_same_torch_state(state_dict, optimizer.state_dict())


def test_optimizer_to_torch_bad_input():
    optimizer = refwd.optim.SGD({"9.weight": np.ones(2)}, lr=0.1)
    with pytest.raises(KeyError, match=r"param group 0 names \['9.weight'\], which are not parameters of the model"):
        interop.optimizer_to_torch(optimizer, make_model())
    with pytest.raises(TypeError, match="is not one of refwd's optimizers"):
        interop.torch_state_dict(object())


def test_the_mid_training_recipe_runs_and_agrees(run_example):
    import re
    stdout, _ = run_example("mid_training_check.py")
    rows = re.findall(r"^\| (\S+) \| (\w+) \| \S+ \| (\S+) \| 2 \|$", stdout, flags=re.MULTILINE)
    assert len(rows) == 16  # 4 parameters × (param, exp_avg, exp_avg_sq, max_exp_avg_sq)
    assert all(float(ulps) <= 2 for _, _, ulps in rows)
    assert "state of '0.weight': step 300" in stdout
