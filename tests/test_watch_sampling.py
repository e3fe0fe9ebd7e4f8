"""The watcher's cheaper modes: ``sample=f`` checks a random fraction of each tensor's elements exactly, drawn anew
each step; ``every=N`` checks one step in N. An error on a fraction p of a tensor's n elements escapes one checked
step with probability (1 − p)^⌈f·n⌉ (positions drawn with replacement): measured here over many seeds.
"""
import math

import pytest

torch = pytest.importorskip("torch")

from refwd_validation.watch import watch  # noqa: E402

pytestmark = pytest.mark.torch
WRONG = list(range(0, 1000, 50))   # 20 of the weight's 1,000 elements: p = 0.02


class WrongSGD(torch.optim.SGD):
    """SGD that moves the WRONG elements of the first param by 1e-3 too, at the steps listed in ``wrong_steps``."""

    def __init__(self, params, wrong_steps=None, **kwargs):
        super().__init__(params, **kwargs)
        self.wrong_steps, self.count = wrong_steps, 0

    def step(self, closure=None):
        loss = super().step(closure)
        self.count += 1
        if self.wrong_steps is None or self.count in self.wrong_steps:
            with torch.no_grad():
                self.param_groups[0]["params"][0].view(-1)[WRONG] += 1e-3
        return loss


def train(optimizer, model, steps, **options):
    torch.manual_seed(1)
    x, y = torch.randn(32, 100), torch.randn(32, 10)
    watcher = watch(optimizer, model, on_mismatch="log", **options)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
    watcher.detach()
    return watcher


def model_and(optimizer_class, **kwargs):
    torch.manual_seed(0)
    model = torch.nn.Linear(100, 10)
    return model, optimizer_class(model.parameters(), lr=0.05, momentum=0.9, **kwargs)


@pytest.mark.parametrize("optimizer_class, kwargs", [(torch.optim.SGD, dict(momentum=0.9)),
                                                     (torch.optim.Adam, dict(amsgrad=True)),
                                                     (torch.optim.RMSprop, dict(centered=True))])
def test_a_sampled_check_of_a_right_optimizer_finds_nothing(optimizer_class, kwargs):
    torch.manual_seed(0)
    model = torch.nn.Linear(100, 10)
    watcher = train(optimizer_class(model.parameters(), lr=1e-2, **kwargs), model, 5, sample=0.1, seed=3)
    assert watcher.steps == 5 and watcher.mismatches == []
    assert set(watcher.agreement) == {"weight", "bias"}


def test_the_chance_of_missing_an_error_is_as_documented():
    """One checked step per seed, 300 seeds: the share that misses the 20 wrong elements is (1 − 0.02)^10."""
    sample, n = 0.01, 1000
    escape = (1 - len(WRONG) / n) ** math.ceil(sample * n)       # 0.817
    missed = 0
    for seed in range(300):
        model, optimizer = model_and(WrongSGD)
        watcher = train(optimizer, model, 1, sample=sample, seed=seed)
        missed += not watcher.mismatches
    expected, sd = 300 * escape, math.sqrt(300 * escape * (1 - escape))
    assert abs(missed - expected) < 4 * sd, (missed, expected)


def test_a_systematic_error_is_found_within_a_few_steps_and_pinpointed():
    model, optimizer = model_and(WrongSGD)
    watcher = train(optimizer, model, 40, sample=0.01, seed=0)   # misses all 40 with probability 0.817⁴⁰ ≈ 3e-4
    assert watcher.mismatches
    first = watcher.mismatches[0]
    assert first.parameter == "weight" and first.key == "param"
    assert first.index[0] * 100 + first.index[1] in WRONG   # the element index in the param, not in the sample


def test_every_nth_step_is_checked_and_named_by_its_step_number():
    model, optimizer = model_and(WrongSGD, wrong_steps={2, 4})
    watcher = train(optimizer, model, 7, every=3)
    assert watcher.calls == 7 and watcher.steps == 3          # steps 1, 4 and 7
    assert {mismatch.step for mismatch in watcher.mismatches} == {4}   # step 2's error is not checked


@pytest.mark.parametrize("options, message", [
    (dict(sample=0), r"sample must be a fraction of each tensor's elements in \(0, 1\], got 0"),
    (dict(sample=1.5), r"sample must be a fraction .* got 1.5"),
    (dict(sample="0.1"), r"sample must be a fraction .* got '0.1'"),
    (dict(every=0), "every must be a whole number of steps >= 1, got 0"),
    (dict(every=2.0), "every must be a whole number of steps >= 1, got 2.0")])
def test_bad_options_are_refused_naming_them(options, message):
    model, optimizer = model_and(torch.optim.SGD)
    with pytest.raises(ValueError, match=message):
        watch(optimizer, model, **options)


def test_params_on_several_devices_are_refused_naming_them():
    cpu = torch.nn.Parameter(torch.zeros(3))
    meta = torch.nn.Parameter(torch.zeros(3, device="meta"))
    model = torch.nn.ParameterDict({"a": cpu, "b": meta})
    optimizer = torch.optim.SGD([cpu, meta], lr=0.1)
    with pytest.raises(ValueError, match=r"the optimizer's params live on 2 devices \(cpu: 'a', meta: 'b'\); a "
                                         r"watcher checks one device's params"):
        watch(optimizer, model)
