"""The case matrix under pytest: the same cases as ``refwd validate``, one test each (cuda ones skip without a GPU).

A case passes, or it is a listed known torch defect (reported as xfail with its upstream reference).
"""
import pytest

from refwd_validation.cases import CASES

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """As ``refwd validate`` runs them: torch on one thread (refwd_validation.twin.one_thread)."""
    pytest.importorskip("torch")
    from refwd_validation.twin import one_thread
    with one_thread():
        yield


def _marks(case):
    return [pytest.mark.cuda] if case.device == "cuda" else []


@pytest.mark.parametrize("case", [pytest.param(case, id=case.id, marks=_marks(case)) for case in CASES])
def test_case(case):
    torch = pytest.importorskip("torch")
    if case.device == "cuda" and not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device")
    from refwd_validation.harness import run_case
    result = run_case(case)
    if result.status == "known-defect":
        pytest.xfail(f"known torch defect {result.defect.id} ({result.defect.reference}): {result.detail}")
    assert result.status == "pass", f"{case.id}: {result.status}: {result.detail}"
