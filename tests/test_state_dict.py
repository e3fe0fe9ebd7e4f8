"""The shell's state_dict: torch's layout, snapshots, round trips, bad input, and loading a real torch state_dict."""
import copy

import numpy as np
import pytest

from optimizer_configs import FLAG_CONFIGS, NAMES, OPTIMIZERS, assert_same, config_id, make_grads, make_params, snapshot
from refwd.optim import Adam, AdamW
from refwd_validation import tolerance
from refwd_validation.compare import Check, Comparer
from refwd_validation.optimizers import OPTIMIZERS as REGISTRY

# ----------------------------------------------------------------------------------------------------------------
# state_dict

def grouped_optimizer(optimizer="Adam", **kwargs):
    return OPTIMIZERS[optimizer]([{"params": ["0.weight", "0.bias"], "lr": 0.01}, {"params": ["2.weight", "2.bias"]}],
                                 **kwargs)


def test_state_dict_layout():
    opt = grouped_optimizer("Adam", amsgrad=True)
    grads = make_grads(0)
    grads["0.bias"] = None
    opt.step(make_params(), grads)
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups"}
    assert list(sd["state"]) == [0, 2, 3]                      # integer ids in group order; only stepped params
    assert all(type(index) is int for index in sd["state"])
    assert [group["params"] for group in sd["param_groups"]] == [[0, 1], [2, 3]]
    assert [group["param_names"] for group in sd["param_groups"]] == [["0.weight", "0.bias"], ["2.weight", "2.bias"]]
    assert sd["param_groups"][0]["lr"] == 0.01 and sd["param_groups"][1]["lr"] == 1e-3
    for group in sd["param_groups"]:
        assert set(group) == set(opt.defaults) | {"params", "param_names"}
    assert set(sd["state"][0]) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    np.testing.assert_array_equal(sd["state"][2]["exp_avg"], opt.state["2.weight"]["exp_avg"])


def test_state_dict_is_a_snapshot():
    opt = grouped_optimizer("SGD", momentum=0.9)
    opt.step(make_params(), make_grads(0))
    before = snapshot(opt.state)
    sd = opt.state_dict()
    sd["state"][0]["momentum_buffer"][...] = 123.0
    sd["param_groups"][0]["lr"] = 99.0
    assert_same(opt.state, before)
    assert opt.param_groups[0]["lr"] == 0.01


@pytest.mark.parametrize("config", FLAG_CONFIGS, ids=config_id)
def test_state_dict_round_trip(config):
    optimizer, kwargs = config
    cls = OPTIMIZERS[optimizer]
    original = cls([{"params": ["0.weight", "2.weight"], "lr": 0.02}, {"params": ["0.bias", "2.bias"]}], **kwargs)
    params = make_params()
    for step in range(2):
        params = original.step(params, make_grads(step))
    sd = original.state_dict()
    sd_copy = snapshot(sd)
    # Built with other hyperparameters: the loaded groups replace them, as in torch.
    restored = cls([{"params": ["0.weight", "2.weight"]}, {"params": ["0.bias", "2.bias"]}], lr=0.5)
    restored.load_state_dict(sd)
    assert_same(sd, sd_copy)                                      # load_state_dict leaves its argument alone
    assert restored.param_groups == original.param_groups
    assert_same(restored.state, original.state)
    assert_same(restored.state_dict(), sd)
    continued = params
    for step in range(2, 4):
        params = original.step(params, make_grads(step))
        continued = restored.step(continued, make_grads(step))
    assert_same(params, continued)
    assert_same(restored.state, original.state)
    assert_same(sd, sd_copy)                                      # nor do later steps touch it


def test_load_state_dict_accepts_step_as_array_or_number():
    opt = Adam(["w"], lr=0.1)
    params = opt.step({"w": np.array([1.0])}, {"w": np.array([0.5])})
    sd = opt.state_dict()
    for step in (np.array(1.0, dtype=np.float32), 1.0, 1, np.int64(1)):
        other = Adam(["w"], lr=0.1)
        sd["state"][0]["step"] = step
        other.load_state_dict(sd)
        assert other.state["w"]["step"] == 1
        np.testing.assert_array_equal(other.step(params, {"w": np.array([0.5])})["w"],
                                      copy.deepcopy(opt).step(params, {"w": np.array([0.5])})["w"])


def test_adamw_load_state_dict_forces_decoupled_decay():
    sd = Adam(["w"], weight_decay=0.1).state_dict()
    opt = AdamW(["w"])
    opt.load_state_dict(sd)
    assert opt.param_groups[0]["decoupled_weight_decay"] is True


def test_load_state_dict_errors():
    opt = grouped_optimizer("Adam")
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="loaded state dict has a different number of parameter groups"):
        Adam(NAMES).load_state_dict(sd)
    with pytest.raises(ValueError, match="doesn't match the size of optimizer's group"):
        Adam([{"params": ["0.weight"]}, {"params": ["0.bias", "2.weight", "2.bias"]}]).load_state_dict(sd)
    with pytest.raises(ValueError, match="'state' and 'param_groups'"):
        opt.load_state_dict({"state": {}})
    bad = snapshot(sd)
    bad["state"] = {0: {"step": 1.5}}
    with pytest.raises(ValueError, match="step of 1.5"):
        opt.load_state_dict(bad)
    bad["state"] = {7: {"step": 1}}
    with pytest.raises(ValueError, match=r"indices \[7\]"):
        opt.load_state_dict(bad)


def test_a_loaded_state_that_does_not_fit_the_param_is_named_at_step():
    opt = Adam(["w"])
    opt.load_state_dict({"state": {0: {"step": 1, "exp_avg": np.zeros(3), "exp_avg_sq": np.zeros(3)}},
                         "param_groups": [{**opt.defaults, "params": [0]}]})
    with pytest.raises(ValueError, match=r"state\['w'\]\['exp_avg'\] has shape \(3,\)"):
        opt.step({"w": np.zeros(2)}, {"w": np.zeros(2)})


# ----------------------------------------------------------------------------------------------------------------
# Loading a real torch optimizer's state_dict

def torch_state_dict_as_numpy(state_dict):
    import torch
    state = {index: {key: value.detach().numpy().copy() if isinstance(value, torch.Tensor) else value
                     for key, value in entry.items()} for index, entry in state_dict["state"].items()}
    return {"state": state, "param_groups": copy.deepcopy(state_dict["param_groups"])}


LOAD_CONFIGS = [
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.2, weight_decay=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, maximize=True)),
    ("AdamW", dict(lr=0.01, amsgrad=True)),
]


@pytest.mark.torch
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("config", LOAD_CONFIGS, ids=config_id)
def test_load_torch_state_dict_then_steps_match_torch(config, dtype):
    torch = pytest.importorskip("torch")
    optimizer, kwargs = config
    tensors = {name: torch.nn.Parameter(torch.from_numpy(value)) for name, value in make_params(dtype).items()}
    groups = [{"params": [tensors["0.weight"], tensors["2.weight"]], "lr": kwargs["lr"] / 2},
              {"params": [tensors["0.bias"], tensors["2.bias"]]}]
    torch_opt = getattr(torch.optim, optimizer)(groups, foreach=False, **kwargs)

    def torch_step(step):
        for name, grad in make_grads(step, dtype).items():
            tensors[name].grad = torch.from_numpy(grad)
        torch_opt.step()

    for step in range(2):
        torch_step(step)
    ref = OPTIMIZERS[optimizer]([{"params": ["0.weight", "2.weight"]}, {"params": ["0.bias", "2.bias"]}], lr=0.3)
    ref.load_state_dict(torch_state_dict_as_numpy(torch_opt.state_dict()))
    assert ref.param_groups[0]["lr"] == kwargs["lr"] / 2 and ref.param_groups[1]["lr"] == kwargs["lr"]
    # Then lock-step, as the harness checks: from torch's params, grads and (loaded) state, refwd's step gives
    # torch's next params and state within the harness's budget (ULPs of the error scale of one step).
    comparer, rule = Comparer(dtype), REGISTRY[optimizer.lower()].error_scale_rule
    for step in range(2, 5):
        params = {name: tensor.detach().numpy().copy() for name, tensor in tensors.items()}
        grads, state_before = make_grads(step, dtype), dict(ref.state)
        new_params = ref.step(params, grads)
        torch_step(step)
        for group in ref.param_groups:
            hyperparameters = {key: group[key] for key in ref.defaults}
            for name in group["params"]:
                scales = tolerance.step_scales(rule, params[name], grads[name], state_before[name], hyperparameters,
                                               dtype)
                torch_state = torch_opt.state[tensors[name]]
                assert new_params[name].dtype == params[name].dtype
                comparer.compare(Check.LOCKSTEP, step, name, "param", new_params[name],
                                 tensors[name].detach().numpy(), scales["param"])
                torch_keys = {key: value.item() if key == "step" else value for key, value in torch_state.items()}
                comparer.compare_keys(Check.LOCKSTEP, step, name, ref.state[name], torch_keys)
                for key in set(torch_state) - {"step"}:
                    comparer.compare(Check.LOCKSTEP, step, name, key, ref.state[name][key], torch_state[key].numpy(),
                                     scales[key])
                assert ref.state[name].get("step", step + 1) == step + 1
        assert comparer.mismatches == [], comparer.mismatches[0].describe()
        ref.load_state_dict(torch_state_dict_as_numpy(torch_opt.state_dict()))   # the next step from torch's state
