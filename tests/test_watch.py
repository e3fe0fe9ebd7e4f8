"""refwd_validation.watch: the live-training watcher passes torch's real optimizers and catches wrong updates."""
import logging

import pytest

torch = pytest.importorskip("torch")

from refwd_validation import tolerance  # noqa: E402
from refwd_validation.watch import Watcher, WatchError, watch  # noqa: E402

pytestmark = pytest.mark.torch

REAL = [
    (torch.optim.SGD, dict(lr=0.05, momentum=0.9, dampening=0.2, weight_decay=0.1)),
    (torch.optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True, foreach=True)),
    (torch.optim.RMSprop, dict(lr=1e-3, alpha=0.9, momentum=0.5, centered=True, weight_decay=0.1)),
    (torch.optim.Adam, dict(lr=1e-2, betas=(0.8, 0.95), amsgrad=True, weight_decay=0.1, maximize=True)),
    (torch.optim.Adam, dict(lr=1e-2, fused=True)),
    (torch.optim.AdamW, dict(lr=1e-2, weight_decay=0.5)),
]
REAL_IDS = ["sgd-dampening-wd", "sgd-nesterov-foreach", "rmsprop-centered", "adam-amsgrad-maximize", "adam-fused",
            "adamw"]


def make_model(dtype=torch.float32):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 7), torch.nn.Tanh(), torch.nn.Linear(7, 2)).to(dtype)


def data(model, step):
    dtype = next(model.parameters()).dtype
    generator = torch.Generator().manual_seed(step)
    return torch.randn(16, 3, generator=generator, dtype=dtype), torch.randn(16, 2, generator=generator, dtype=dtype)


def train(model, optimizer, steps, *, skip=None, scheduler=None):
    """The usual loop; ``skip`` = (step, parameter) whose grad is None at that step."""
    for step in range(1, steps + 1):
        x, y = data(model, step)
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        if skip and skip[0] == step:
            skip[1].grad = None
        optimizer.step()
        if scheduler is not None:
            scheduler.step()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("torch_class, kwargs", REAL, ids=REAL_IDS)
def test_real_torch_optimizers_pass(torch_class, kwargs, dtype):
    model = make_model(dtype)
    groups = [{"params": [model[0].weight, model[2].weight]}, {"params": [model[0].bias, model[2].bias], "lr": 2e-3}]
    optimizer = torch_class(groups, **kwargs)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.7)  # an lr that changes every step
    with watch(optimizer, model) as watcher:
        train(model, optimizer, 8, skip=(3, model[2].bias), scheduler=scheduler)
    assert watcher.steps == 8
    assert watcher.mismatches == []
    assert set(watcher.worst) >= {"param"}
    assert max(watcher.worst.values()) <= tolerance.budget(str(dtype).removeprefix("torch."), "param")


def test_a_perturbed_param_is_pinpointed():
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    def nudge(optimizer, args, kwargs):  # a post-step hook registered before the watcher's: torch's result changes
        with torch.no_grad():
            model[2].weight[1, 4] += 1e-4

    optimizer.register_step_post_hook(nudge)
    watcher = watch(optimizer, model)
    with pytest.raises(WatchError) as caught:
        train(model, optimizer, 1)
    [mismatch] = caught.value.mismatches
    assert (mismatch.step, mismatch.parameter, mismatch.key, mismatch.index) == (1, "2.weight", "param", (1, 4))
    assert mismatch.second - mismatch.first == pytest.approx(1e-4, rel=1e-2)
    assert mismatch.ulps > mismatch.budget
    assert "lockstep: step 1, 2.weight, param[1, 4]: refwd" in str(caught.value)  # the harness's pinpoint
    watcher.detach()


class AdamWithWrongSecondMoment(torch.optim.Adam):
    """A plausible bug: a subclass that rescales exp_avg_sq after the step (a wrong β2 in a custom kernel)."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = super().step(closure)  # nested: torch's step hooks fire for this inner call too
        for group in self.param_groups:
            for param in group["params"]:
                self.state[param]["exp_avg_sq"].mul_(1.001)
        return loss


def test_a_buggy_subclass_is_caught_at_its_first_step():
    model = make_model(torch.float64)
    optimizer = AdamWithWrongSecondMoment(model.parameters())
    watcher = watch(optimizer, model)
    with pytest.raises(WatchError) as caught:
        train(model, optimizer, 1)
    keys = {(mismatch.parameter, mismatch.key) for mismatch in caught.value.mismatches}
    assert keys == {(name, "exp_avg_sq") for name in ("0.weight", "0.bias", "2.weight", "2.bias")}
    assert watcher.steps == 1  # the nested super().step() is not counted, nor checked on its own


class SGDWithExtraState(torch.optim.SGD):
    @torch.no_grad()
    def step(self, closure=None):
        loss = super().step(closure)
        self.state[self.param_groups[0]["params"][0]]["velocity"] = torch.zeros(1)
        return loss


def test_a_state_key_refwd_does_not_have_is_reported():
    model = make_model()
    optimizer = SGDWithExtraState(model.parameters(), lr=0.1, momentum=0.9)
    with watch(optimizer, model), pytest.raises(WatchError, match="state key 'velocity' only in torch's state"):
        train(model, optimizer, 1)


def test_log_mode_logs_and_goes_on(caplog):
    model = make_model(torch.float64)
    optimizer = AdamWithWrongSecondMoment(model.parameters())
    with caplog.at_level(logging.WARNING, logger="refwd_validation.watch"), \
            watch(optimizer, model, on_mismatch="log") as watcher:
        train(model, optimizer, 3)
    assert watcher.steps == 3
    assert len(watcher.mismatches) == 12  # 4 parameters × 3 steps, each a lock-step check from torch's own state
    assert [record.getMessage().startswith("refwd watch: lockstep: step") for record in caplog.records] == [True] * 12
    assert "12 mismatches" in watcher.summary()


def test_after_a_mismatch_the_next_step_is_checked_from_torchs_state():
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    nudged = []

    def nudge_once(optimizer, args, kwargs):
        if not nudged:
            nudged.append(True)
            with torch.no_grad():
                model[0].bias[0] += 1e-3

    optimizer.register_step_post_hook(nudge_once)
    with watch(optimizer, model) as watcher:
        with pytest.raises(WatchError):
            train(model, optimizer, 1)
        train(model, optimizer, 3)  # lock-step: the nudge is now part of torch's state, not a new difference
    assert watcher.steps == 4 and len(watcher.mismatches) == 1


def test_a_step_with_a_closure_is_checked_with_the_closures_grads():
    model = make_model()
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-2)
    x, y = data(model, 1)

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    with watch(optimizer, model) as watcher:
        for _ in range(3):
            optimizer.step(closure)          # the grads exist only once torch has called the closure
        optimizer.step(closure=closure)
    assert watcher.steps == 4 and watcher.mismatches == []


def test_a_step_that_raises_does_not_confuse_the_next_one():
    class FailsOnce(torch.optim.AdamW):
        failed = False

        def step(self, closure=None):
            if not FailsOnce.failed:
                FailsOnce.failed = True
                raise RuntimeError("out of memory, say")
            return super().step(closure)

    model = make_model()
    optimizer = FailsOnce(model.parameters())
    with watch(optimizer, model) as watcher:
        with pytest.raises(RuntimeError, match="out of memory"):
            train(model, optimizer, 1)
        train(model, optimizer, 2)
    assert watcher.steps == 2 and watcher.mismatches == []


def test_detach_stops_checking():
    model = make_model()
    optimizer = AdamWithWrongSecondMoment(model.parameters())
    watcher = watch(optimizer, model)
    watcher.detach()
    train(model, optimizer, 2)
    assert watcher.steps == 0


def test_named_parameters_need_no_model():
    model = make_model()
    optimizer = torch.optim.SGD(model.named_parameters(), lr=0.1)
    with watch(optimizer) as watcher:
        train(model, optimizer, 2)
    assert watcher.steps == 2 and watcher.mismatches == []


def test_bad_input():
    model = make_model()
    with pytest.raises(TypeError, match="no refwd equivalent for torch.optim.adagrad.Adagrad"):
        watch(torch.optim.Adagrad(model.parameters()), model)
    with pytest.raises(ValueError, match="on_mismatch must be 'raise' or 'log', got 'ignore'"):
        Watcher(torch.optim.SGD(model.parameters()), model, on_mismatch="ignore")
    other = make_model()
    with pytest.raises(ValueError, match="is not a parameter of the model"):
        watch(torch.optim.SGD(other.parameters()), model)
    with pytest.raises(ValueError, match="pass the model"):
        watch(torch.optim.SGD(model.parameters()))


def test_the_documented_example_runs_and_catches_the_nudge(run_example):
    stdout, _ = run_example("watch_training.py")
    assert "200 steps checked against refwd, 0 mismatches" in stdout
    assert "caught, as it should be:" in stdout and "lockstep: step 1, 2.weight, param[0, 5]" in stdout


@pytest.mark.parametrize("torch_class, kwargs", [(torch.optim.SGD, dict(lr=0.1)), (torch.optim.SGD, dict(lr=0.1, momentum=0.9)),
                                                 (torch.optim.Adam, dict())], ids=["sgd", "sgd-momentum", "adam"])
def test_a_sparse_grad_is_refused_at_the_step_naming_the_parameter(torch_class, kwargs):
    # torch's for-loop SGD takes it (adding it index by index; with momentum, a sparse buffer); Adam raises in its step
    model = torch.nn.Embedding(10, 3, sparse=True)
    optimizer = torch_class(model.parameters(), **kwargs)
    before = model.weight.detach().clone()
    model(torch.tensor([1, 2, 1])).sum().backward()
    with watch(optimizer, model) as watcher, \
            pytest.raises(TypeError, match=r"^parameter 'weight' has a sparse \(torch.sparse_coo\) gradient; refwd's "
                                           r"rules take dense gradients$"):
        optimizer.step()
    assert watcher.steps == 0 and torch.equal(model.weight, before)  # refused before torch stepped


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
def test_grads_refwd_cannot_take_are_refused_naming_the_parameter():
    from types import SimpleNamespace

    from refwd_validation import interop
    param = torch.zeros(3, 4, requires_grad=True)
    for grad in (torch.ones(3, 4).to_sparse_csr(), torch.ones(3, 4, device="meta")):
        with pytest.raises(RuntimeError, match="attempting to assign a gradient"):
            param.grad = grad  # torch refuses both on .grad: grad_to_numpy's check is a guard
    with pytest.raises(TypeError, match=r"parameter '0.weight' has a sparse \(torch.sparse_csr\) gradient"):
        interop.grad_to_numpy("0.weight", SimpleNamespace(grad=torch.ones(3, 4).to_sparse_csr(), device=param.device))
    with pytest.raises(TypeError, match="parameter '0.weight' is on cpu but its gradient is on meta"):
        interop.grad_to_numpy("0.weight", SimpleNamespace(grad=torch.ones(3, 4, device="meta"), device=param.device))
    with pytest.raises(TypeError, match=r"state is a sparse \(torch.sparse_coo\) tensor; refwd's rules take dense"):
        interop.to_numpy(torch.ones(3).to_sparse(), "state")
    model = torch.nn.Embedding(10, 3, sparse=True)
    model(torch.tensor([1])).sum().backward()
    with pytest.raises(TypeError, match="parameter 'weight' has a sparse"):
        interop.grads_from_torch(model)


def test_float16_is_checked_and_bfloat16_refused_at_attach():
    for torch_class, kwargs in [(torch.optim.SGD, dict(lr=0.05, momentum=0.9)), (torch.optim.Adam, dict(lr=1e-2)),
                                (torch.optim.Adam, dict(lr=1e-2, fused=True))]:
        model = make_model(torch.float16)
        optimizer = torch_class(model.parameters(), **kwargs)
        with watch(optimizer, model) as watcher:
            train(model, optimizer, 3)
        assert watcher.steps == 3 and watcher.mismatches == []
    model = make_model(torch.bfloat16)
    with pytest.raises(TypeError, match="parameter '0.weight' has dtype torch.bfloat16; refwd compares float16"):
        watch(torch.optim.Adam(model.parameters()), model)


def test_a_parameter_larger_than_a_piece_reports_its_worst_element_once():
    """The full check runs in pieces of the flattened tensors: a wrong element in the second piece is reported
    once, at its index in the parameter, and the larger of two wrong elements in different pieces is the one."""
    from refwd_validation.watch import _PIECE
    torch.manual_seed(0)
    n_out = _PIECE // 64 + 5                           # a 64 × n_out weight spans two pieces
    model = torch.nn.Sequential(torch.nn.Linear(64, n_out), torch.nn.Tanh(), torch.nn.Linear(n_out, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    late = divmod(_PIECE + 70, 64)                      # (row, column) of a flat index inside the second piece

    nudging = []

    def nudge(optimizer, args, kwargs):   # registered before the watcher's hook: torch's result changes
        if nudging:
            with torch.no_grad():
                model[0].weight[0, 1] += 1e-4
                model[0].weight[late] += 1e-3

    def step():
        x, y = torch.randn(8, 64), torch.randn(8, 1)
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()

    optimizer.register_step_post_hook(nudge)
    watcher = watch(optimizer, model)
    step()
    step()                                               # the second checked step copies into the first's arrays
    held = watcher.copy_bytes
    assert watcher.mismatches == [] and held > 0
    nudging.append(True)
    with pytest.raises(WatchError) as caught:
        step()
    [mismatch] = caught.value.mismatches
    assert (mismatch.step, mismatch.parameter, mismatch.key, mismatch.index) == (3, "0.weight", "param", late)
    assert mismatch.second - mismatch.first == pytest.approx(1e-3, rel=1e-2)
    assert watcher.copy_bytes == held
    watcher.detach()


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_the_one_ulp_filter_passes_only_elements_within_an_ulp_of_their_size(dtype):
    """|Δ| ≤ ε·min(|a|, |b|) passes (its bound ≤ 1), two ulps or a NaN against a number goes to the error model,
    NaN against NaN agrees; with ``bitwise`` every difference but NaN against NaN goes there."""
    import numpy as np
    from refwd_validation.watch import _within_an_ulp
    t = np.dtype(dtype).type
    up = lambda x, k=1: x if k == 0 else up(np.nextafter(x, t(np.inf)), k - 1)  # noqa: E731
    first = np.array([1, 1, 1, np.nan, 1, 0.5, np.nan, 3], dtype)
    second = np.array([up(t(1)), up(t(1), 2), t(1.01), np.nan, np.inf, np.nextafter(t(0.5), t(0)), t(1), 3], dtype)
    differ = first != second
    bound, far = _within_an_ulp(first, second, differ)
    assert far.tolist() == [False, True, True, False, True, False, True, False]
    assert bound == 1.0     # 1 and the float above it: ε·1 apart, a bound of 1; 0.5 and the float below it: ½
    assert _within_an_ulp(first, second, differ, bitwise=True)[1].tolist() == [
        True, True, True, False, True, True, True, False]
