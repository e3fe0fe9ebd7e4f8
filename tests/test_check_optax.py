"""optax as a target (jax on CPU): optax's own sgd, adam and adamw run the matrix's scenarios and agree with
refwd's torch-convention rules, with the hyperparameters optax lacks left out; skipped without optax."""
import numpy as np
import pytest

pytest.importorskip("torch")
optax = pytest.importorskip("optax")

from refwd_validation.check import check, target_cases  # noqa: E402
from refwd_validation.targets import OPTAX, make_target  # noqa: E402
from refwd_validation.targets_optax import state_view  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.mark.parametrize("factory, reference", [("optax:sgd", "sgd"), ("optax:adam", "adam"),
                                                ("optax:adamw", "adamw")])
def test_optax_agrees_with_refwd(factory, reference):
    target = make_target(factory, reference)
    assert target.kind == OPTAX
    results = check(target, reference)
    assert len(results) >= 8
    assert [(r.case.id, r.detail) for r in results if not r.ok] == []
    assert all(r.worst_ulps <= 2 for r in results)
    assert any(r.case.lr_schedule for r in results)          # optax's own schedule carries the changing lr


def test_cases_that_need_what_optax_lacks_are_not_run():
    cases = target_cases(make_target("optax:adam", "adam"))
    assert cases and not any(dict(c.hyperparameters).get(key) for c in cases
                             for key in ("weight_decay", "amsgrad", "maximize", "decoupled_weight_decay"))
    assert not any(c.grad_none for c in cases)                # optax steps every param of a tree at once
    assert {c.dtype for c in cases} == {"float64", "float32"}


def test_a_wrong_state_map_for_optax_is_named():
    target = make_target("optax:adam", "adam", state_map=["step=0.count", "exp_avg=0.nu", "exp_avg_sq=0.mu"])
    results = check(target, "adam", quick=True)
    assert results and all(str(r.status) == "fail" for r in results)
    assert results[0].failure.key in ("exp_avg", "exp_avg_sq")


def test_state_view_gives_each_parameter_its_part():
    transform = optax.adam(0.1)
    params = {"a": np.ones(2), "b": np.zeros(3)}
    state = transform.init(params)
    view = state_view(state, "b")
    assert view["0"]["count"] == 0 and view["0"]["mu"].shape == (3,) and view["1"] == {}


def test_optax_rmsprop_is_explained_by_its_profile():
    from refwd_validation.check import check_case
    from refwd_validation.diagnose import diagnose
    target = make_target("optax:rmsprop", "rmsprop")
    results = check(target, "rmsprop")
    assert any(str(r.status) == "fail" for r in results)          # torch's ε and lr placement: it differs
    diagnosis = diagnose(target, results, check_case)
    assert [profile for profile, _ in diagnosis.explained_by][:1] in (["optax"], ["paper"])
    assert "optax" in [profile for profile, _ in diagnosis.explained_by]
    assert all(r.ok for r in check("optax:rmsprop", "rmsprop:optax"))
