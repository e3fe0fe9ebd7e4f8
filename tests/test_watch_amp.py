"""refwd_validation.watch under torch.amp.GradScaler: fused optimizers unscale in their kernel and skip on inf.

What torch 2.13 does (CPU), measured here against torch itself:

- A fused Adam, AdamW or SGD (``_step_supports_amp_scaling``) gets the still-scaled grads; ``GradScaler.step``
  sets ``optimizer.grad_scale`` and ``optimizer.found_inf`` around ``optimizer.step()``, so the step hooks
  fire, and the kernel divides each grad by the scale (and writes the quotient back into ``.grad``). With
  ``found_inf`` set it leaves params and state as they were, except that Adam and AdamW have already made a
  missing state (step 0, zero moments) and fused SGD with momentum a missing momentum buffer, uninitialised.
- Any other optimizer gets grads that ``GradScaler.unscale_`` multiplied by the reciprocal of the scale, and no
  ``step()`` call at all when an inf was found: the hooks do not fire.
"""
import pytest

torch = pytest.importorskip("torch")

from refwd_validation import watch as watch_module  # noqa: E402
from refwd_validation.watch import WatchError, watch  # noqa: E402

pytestmark = pytest.mark.torch

FUSED = [
    (torch.optim.Adam, dict(lr=1e-2, fused=True)),
    (torch.optim.Adam, dict(lr=1e-2, amsgrad=True, weight_decay=0.1, fused=True)),
    (torch.optim.AdamW, dict(lr=1e-2, weight_decay=0.5, fused=True)),
    (torch.optim.SGD, dict(lr=0.05, momentum=0.9, dampening=0.2, weight_decay=0.1, fused=True)),
    (torch.optim.SGD, dict(lr=0.05, fused=True)),
]
FUSED_IDS = ["adam", "adam-amsgrad", "adamw", "sgd-momentum", "sgd"]
UNFUSED = [
    (torch.optim.Adam, dict(lr=1e-2)),
    (torch.optim.AdamW, dict(lr=1e-2, weight_decay=0.5, foreach=True)),
    (torch.optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True)),
    (torch.optim.RMSprop, dict(lr=1e-3, centered=True, momentum=0.5)),
]
UNFUSED_IDS = ["adam", "adamw-foreach", "sgd-nesterov", "rmsprop"]


def make_model(dtype):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 7), torch.nn.Tanh(), torch.nn.Linear(7, 2)).to(dtype)


def scaled_backward(model, scaler, step, *, inf=False):
    dtype = next(model.parameters()).dtype
    generator = torch.Generator().manual_seed(step)
    x, y = torch.randn(16, 3, generator=generator, dtype=dtype), torch.randn(16, 2, generator=generator, dtype=dtype)
    scaler.scale(torch.nn.functional.mse_loss(model(x), y)).backward()
    if inf:
        with torch.no_grad():
            model[2].weight.grad[1, 3] = float("inf")


def train(model, optimizer, scaler, steps, *, inf_at=(), unscale=False):
    """The AMP loop; an inf in one grad at the steps ``inf_at``; ``unscale``: unscale_ and clip before the step.
    Returns the scale of each step."""
    scales = []
    for step in range(1, steps + 1):
        optimizer.zero_grad()
        scaled_backward(model, scaler, step, inf=step in inf_at)
        scales.append(scaler.get_scale())
        if unscale:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        scaler.step(optimizer)
        scaler.update()
    return scales


def test_the_reported_fused_adam_step_passes():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, fused=True)
    scaler = torch.amp.GradScaler("cpu", init_scale=256.0)
    with watch(optimizer, model) as watcher:
        scaler.scale(model(torch.randn(8, 4)).pow(2).mean()).backward()
        scaler.step(optimizer)
    assert watcher.steps == 1 and watcher.mismatches == []


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("torch_class, kwargs", FUSED, ids=FUSED_IDS)
def test_fused_optimizers_under_a_changing_scale_with_skipped_steps(torch_class, kwargs, dtype):
    model = make_model(dtype)
    optimizer = torch_class(model.parameters(), **kwargs)
    # 1000 is not a power of two, so dividing by it and multiplying by its reciprocal round differently
    scaler = torch.amp.GradScaler("cpu", init_scale=1000.0, growth_interval=2)
    with watch(optimizer, model) as watcher:
        scales = train(model, optimizer, scaler, 9, inf_at=(4, 5))
    assert scales == [1000.0, 1000.0, 2000.0, 2000.0, 1000.0, 500.0, 500.0, 1000.0, 1000.0]
    assert watcher.steps == 9   # the fused step is called, and checked, on the skipped steps too
    assert watcher.mismatches == []


@pytest.mark.parametrize("torch_class, kwargs", FUSED[:3], ids=FUSED_IDS[:3])
def test_a_skipped_first_step_may_leave_adams_fresh_state(torch_class, kwargs):
    model = make_model(torch.float32)
    optimizer = torch_class(model.parameters(), **kwargs)
    scaler = torch.amp.GradScaler("cpu", init_scale=1000.0)
    with watch(optimizer, model) as watcher:
        train(model, optimizer, scaler, 3, inf_at=(1,))
    assert watcher.steps == 3 and watcher.mismatches == []
    assert int(optimizer.state[model[0].weight]["step"]) == 2


def test_fused_sgds_uninitialised_buffer_after_a_skipped_first_step_is_caught():
    # torch 2.13's _fused_sgd makes the buffer with empty_like before the kernel skips: the next step reads garbage
    model = make_model(torch.float32)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, fused=True)
    scaler = torch.amp.GradScaler("cpu")
    with watch(optimizer, model), pytest.raises(WatchError) as caught:
        train(model, optimizer, scaler, 1, inf_at=(1,))
    assert [mismatch.describe() for mismatch in caught.value.mismatches] == [
        f"lockstep: step 1, {name}, momentum_buffer: state key 'momentum_buffer' only in torch's state"
        for name in ("0.weight", "0.bias", "2.weight", "2.bias")]   # the params are as they were, as they must be


def test_a_skipped_step_must_leave_the_params_bit_identical():
    model = make_model(torch.float64)
    optimizer = torch.optim.AdamW(model.parameters(), fused=True)
    scaler = torch.amp.GradScaler("cpu")

    def nudge(optimizer, args, kwargs):  # the smallest change, where nothing may change
        with torch.no_grad():
            model[0].bias[2] = torch.nextafter(model[0].bias[2], torch.tensor(1.0, dtype=torch.float64))

    optimizer.register_step_post_hook(nudge)
    with watch(optimizer, model), pytest.raises(WatchError) as caught:
        train(model, optimizer, scaler, 1, inf_at=(1,))
    [mismatch] = caught.value.mismatches
    assert (mismatch.parameter, mismatch.key, mismatch.index, mismatch.ulps) == ("0.bias", "param", (2,), float("inf"))


def test_unscale_then_clip_then_a_fused_step():
    # after unscale_ the scaler sets optimizer.grad_scale = None: the grads are already unscaled; found_inf still set
    model = make_model(torch.float32)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, fused=True)
    scaler = torch.amp.GradScaler("cpu", init_scale=1000.0, growth_interval=2)
    with watch(optimizer, model) as watcher:
        train(model, optimizer, scaler, 6, inf_at=(3,), unscale=True)
    assert watcher.steps == 6 and watcher.mismatches == []


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("torch_class, kwargs", UNFUSED, ids=UNFUSED_IDS)
def test_unfused_optimizers_get_unscaled_grads_and_no_step_on_inf(torch_class, kwargs, dtype):
    model = make_model(dtype)
    optimizer = torch_class(model.parameters(), **kwargs)
    scaler = torch.amp.GradScaler("cpu", init_scale=1000.0, growth_interval=2)
    with watch(optimizer, model) as watcher:
        train(model, optimizer, scaler, 9, inf_at=(4, 5))
    assert watcher.steps == 7   # GradScaler does not call step() on the two steps with an inf
    assert watcher.mismatches == []


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scale", [1000.0, 7.1, 3 * 2.0 ** 16])
@pytest.mark.parametrize("torch_class, kwargs", FUSED, ids=FUSED_IDS)
def test_the_watchers_unscale_is_the_fused_kernels_bit_for_bit(torch_class, kwargs, dtype, scale):
    generator = torch.Generator().manual_seed(1)
    param = torch.randn(4096, generator=generator, dtype=dtype).requires_grad_()
    grad = torch.randn(4096, generator=generator, dtype=dtype) * 1e3
    param.grad = grad.clone()
    optimizer = torch_class([param], **kwargs)
    optimizer.grad_scale, optimizer.found_inf = torch.tensor(scale), torch.tensor(0.0)   # GradScaler's: float32
    optimizer.step()                                    # the kernel leaves the unscaled grad in .grad
    scale = optimizer.grad_scale.item()                 # 7.1 as a float32, as the watcher reads it
    unscaled = watch_module._unscaled(grad.numpy(), scale)
    assert (unscaled == param.grad.numpy()).all()
    reciprocal = grad.numpy() * grad.numpy().dtype.type(1 / scale)
    assert scale == 3 * 2.0 ** 16 or (reciprocal != param.grad.numpy()).any()  # the test tells the two apart
