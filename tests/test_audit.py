"""docs/ecosystem-audit.md says what `refwd check` measures: every row's verdict, convention, worst ULPs and case
count are measured again here (a row whose library is not installed is skipped)."""
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs"))
pytest.importorskip("torch")

import make_audit  # noqa: E402  (docs/make_audit.py)

pytestmark = pytest.mark.torch
PAGE = make_audit.PAGE.read_text(encoding="utf-8")


@pytest.mark.parametrize("entry", make_audit.ENTRIES, ids=[entry[3].split()[0] + " " + entry[3].split()[2]
                                                           + (" (kwargs)" if "kwargs" in entry[3] else "")
                                                           + (" (profile)" if ":optax" in entry[3] else "")
                                                           for entry in make_audit.ENTRIES])
def test_the_audit_row_is_what_refwd_check_measures(entry):
    library, distribution, implementation, arguments = entry
    if importlib.util.find_spec(distribution) is None or (distribution == "optax" and
                                                           importlib.util.find_spec("jax") is None):
        pytest.skip(f"{library} is not installed")
    verdict, convention, worst, cases, _ = make_audit.run_entry(arguments)
    expected = make_audit.row(library, make_audit.version(distribution), implementation, verdict, convention, worst,
                              cases, arguments)
    assert expected in PAGE.splitlines(), f"docs/ecosystem-audit.md lacks the measured row:\n{expected}"


def test_every_row_of_the_page_is_an_entry():
    start = PAGE.index(make_audit.BEGIN)
    rows = [line for line in PAGE[start:PAGE.index(make_audit.END)].splitlines() if line.startswith("| ")][1:]
    assert len(rows) == len(make_audit.ENTRIES)
