"""The runnable examples under docs/examples run, print what they promise, and agree with torch."""
import re
from pathlib import Path

import numpy as np
import pytest

import refwd

ROOT = Path(__file__).resolve().parents[1]
LINEAR_REGRESSION = ROOT / "docs" / "examples" / "linear_regression.py"
EPOCH_LINE = re.compile(r"^epoch +(\d+)  loss (\d+\.\d{6})$")
FINAL_LINE = re.compile(r"^weight (-?\d+\.\d{6})  bias (-?\d+\.\d{6})$")


@pytest.fixture(scope="module")
def linear_regression_output(run_example):
    stdout, stderr = run_example("linear_regression.py")
    assert stderr == ""
    return stdout.splitlines()


def parse(lines):
    epochs = [EPOCH_LINE.match(line) for line in lines[:-1]]
    assert all(epochs), lines
    final = FINAL_LINE.match(lines[-1])
    assert final, lines[-1]
    return [m.group(2) for m in epochs], [m.group(1) for m in epochs], final.groups()


def test_linear_regression_prints_ten_decreasing_losses(linear_regression_output):
    losses, epochs, (weight, bias) = parse(linear_regression_output)
    assert len(linear_regression_output) == 11
    assert epochs == [str(epoch) for epoch in range(1, 11)]
    values = [float(loss) for loss in losses]
    assert all(later < earlier for earlier, later in zip(values[2:], values[3:]))   # decreasing after epoch 3
    assert values[-1] < values[0] / 100
    assert abs(float(weight) - 2) < 0.5                 # heading for y = 2x + 1 (10 epochs are not enough)


def test_linear_regression_is_deterministic(linear_regression_output, run_example):
    again, _ = run_example("linear_regression.py")
    assert again.splitlines() == linear_regression_output


@pytest.mark.torch
def test_linear_regression_prints_what_torch_prints(linear_regression_output):
    torch = pytest.importorskip("torch")
    initial = refwd.Linear(1, 1).init(seed=0)          # the example's initial values, given to the torch twin
    model = torch.nn.Linear(1, 1).double()
    with torch.no_grad():
        model.weight.copy_(torch.from_numpy(initial["weight"]))
        model.bias.copy_(torch.from_numpy(initial["bias"]))
    x = torch.arange(1.0, 5.0, dtype=torch.float64).reshape(4, 1)
    y = 2 * x + 1
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=0.01)
    expected = []
    for epoch in range(1, 11):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        expected.append(f"epoch {epoch:2d}  loss {loss.item():.6f}")
    expected.append(f"weight {model.weight[0, 0].item():.6f}  bias {model.bias[0].item():.6f}")
    assert linear_regression_output == expected


def test_example_names_only_public_api():
    # The example is for users: it uses refwd's public names, nothing private.
    source = LINEAR_REGRESSION.read_text()
    used = set(re.findall(r"refwd\.([A-Za-z_][\w.]*)", source))
    for dotted in used:
        obj = refwd
        for part in dotted.split("."):
            assert not part.startswith("_"), dotted
            obj = getattr(obj, part)


# ----------------------------------------------------------------------------------------------------------------
# docs/examples/param_groups.py: weight-vs-bias and per-layer decay strengths

def load_param_groups_example():
    import importlib.util
    spec = importlib.util.spec_from_file_location("param_groups_example", ROOT / "docs" / "examples" / "param_groups.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_param_groups_example_runs(run_example):
    stdout, _ = run_example("param_groups.py")
    assert "weight_decay 0.01: ['0.weight', '2.weight', '4.weight']" in stdout
    assert "weight_decay 0.0001: ['0.bias', '2.bias', '4.bias']" in stdout


def test_per_layer_groups_shrink_each_layer_by_its_own_factor():
    # With zero gradients AdamW shrinks θ by exactly (1 − γλ) of its group and then adds −γ·0/(0 + ε) = 0, so each
    # layer's params are its initial ones times its own factor, bit for bit.
    example = load_param_groups_example()
    model = refwd.MLP([3, 5, 4, 1])
    params = model.init(seed=1)
    strengths, lr = [1e-3, 1e-2, 1e-1], 0.5
    optimizer = refwd.optim.AdamW(example.per_layer_groups(model, strengths), lr=lr)
    stepped = optimizer.step(params, {name: np.zeros_like(p) for name, p in params.items()})
    for layer, strength in zip(model.layer_names, strengths):
        for name in (f"{layer}.weight", f"{layer}.bias"):
            np.testing.assert_array_equal(stepped[name], params[name] * (1 - lr * strength), err_msg=name)


def test_weight_vs_bias_groups_put_every_param_in_exactly_one_group():
    example = load_param_groups_example()
    params = refwd.MLP([3, 5, 1]).init(seed=0)
    groups = example.weight_vs_bias_groups(params, weight_decay=0.2, bias_decay=0.01)
    assert groups == [{"params": ["0.weight", "2.weight"], "weight_decay": 0.2},
                      {"params": ["0.bias", "2.bias"], "weight_decay": 0.01}]
