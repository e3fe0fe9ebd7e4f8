"""docs/nonfinite.md says what torch does with an inf, a -inf or a NaN gradient element: every row of its table is
measured again (torch's for-loop, foreach and fused, and refwd on the same inputs), no step spreads a non-finite
value to another element, and refwd gives torch's for-loop classes in every row."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs"))
pytest.importorskip("torch")

import make_nonfinite  # noqa: E402  (docs/make_nonfinite.py)

pytestmark = pytest.mark.torch
PAGE = make_nonfinite.PAGE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def measurements():
    return make_nonfinite.measurements()


def page_rows():
    block = PAGE[PAGE.index(make_nonfinite.BEGIN):PAGE.index(make_nonfinite.END)]
    return [line for line in block.splitlines() if line.startswith("| ")][1:]   # the header is not a row


def test_every_row_is_what_torch_does_and_the_page_has_no_other(measurements):
    measured = [make_nonfinite.row(measurement) for measurement in measurements]
    missing = [row for row in measured if row not in PAGE.splitlines()]
    assert not missing, "docs/nonfinite.md lacks the measured rows (python docs/make_nonfinite.py):\n" + "\n".join(
        missing)
    assert page_rows() == measured


def test_element_one_stays_finite(measurements):
    spread = {(m.optimizer, m.flag, m.grad): m.spread for m in measurements if m.spread}
    assert not spread, f"a non-finite value spread to element 1: {spread}"


def test_refwd_agrees_with_the_for_loop_in_every_row(measurements):
    disagree = [make_nonfinite.row(m) for m in measurements if not m.refwd_agrees]
    assert not disagree, "\n".join(disagree)


def test_fused_amsgrad_keeps_its_max_in_the_scalar_tail_only():
    """The page's finding: the fused kernel's vector loop propagates a NaN v into max_exp_avg_sq, and its scalar loop
    over the leftover elements (std::max) keeps the old max. 65 elements: element 0 is in a whole vector and element
    64 left over, for any vector of 2 to 64 elements."""
    kept = make_nonfinite.fused_amsgrad_kept(65)
    assert 0 not in kept and 64 in kept
    assert make_nonfinite.fused_amsgrad_kept(2) == [0, 1]    # the table's 2-element param: all left over
