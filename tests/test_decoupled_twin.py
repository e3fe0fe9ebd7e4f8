"""refwd's SGDW and RMSpropW against their torch twin built from torch's primitives (a decoupled shrink, then
torch's SGD or RMSprop step), over SGD's and RMSprop's scenarios, both decay conventions; the coupled step is not
mistaken for them."""
import dataclasses

import pytest

torch = pytest.importorskip("torch")

from refwd_validation.check import check, check_case, target_cases  # noqa: E402
from refwd_validation.decoupled_twin import RMSpropW, SGDW  # noqa: E402
from refwd_validation.targets import make_target  # noqa: E402

pytestmark = pytest.mark.torch


def failing(results):
    return [(result.case.id, result.detail) for result in results if not result.ok]


@pytest.mark.parametrize("twin, reference", [(SGDW, "sgdw"), (RMSpropW, "rmspropw")])
def test_the_torch_twin_agrees_with_refwd_torch_convention(twin, reference):
    results = check(twin, reference)
    assert len(results) >= 10 and failing(results) == []
    assert any(dict(r.case.hyperparameters).get("weight_decay") for r in results)   # decay is exercised
    assert any(r.case.lr_schedule for r in results)                                  # with a scheduled lr


@pytest.mark.parametrize("twin, reference", [(SGDW, "sgdw"), (RMSpropW, "rmspropw")])
def test_the_torch_twin_agrees_with_refwd_paper_convention(twin, reference):
    target = make_target(twin, reference, kwargs={"decay_convention": "paper"})
    cases = [dataclasses.replace(case, hyperparameters=case.hyperparameters + (("decay_convention", "paper"),))
             for case in target_cases(target)]
    results = [check_case(target, case) for case in cases]
    assert failing(results) == []
    # the conventions differ once the lr is scheduled: with decay on a scheduled case, each twin passes its own
    # convention and the other convention's twin fails it
    scheduled = next(case for case in cases if case.lr_schedule)
    scheduled = dataclasses.replace(scheduled, hyperparameters=tuple(
        (key, value) for key, value in scheduled.hyperparameters if key != "weight_decay") + (("weight_decay", 0.1),))
    assert check_case(target, scheduled).ok
    assert not check_case(make_target(twin, reference), scheduled).ok


def test_coupled_sgd_is_not_sgdw():
    results = check(torch.optim.SGD, "sgdw")
    assert any(str(r.status) == "fail" for r in results
               if dict(r.case.hyperparameters).get("weight_decay") and dict(r.case.hyperparameters).get("momentum"))
