"""docs/version-sweep.md is what the sweep measured (docs/data/version-sweep/*.json, written by
docs/make_version_sweep.py), the sweep covers the versions refwd claims, none of them raises a false alarm, and the
known-defect table's version bounds are the measured ones. No torch needed: the data are the sweep's."""
import sys
from pathlib import Path

from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs"))

import make_version_sweep  # noqa: E402  (docs/make_version_sweep.py)

from refwd_validation.cli import SUPPORTED_TORCH  # noqa: E402
from refwd_validation.defects import KNOWN_DEFECTS  # noqa: E402

SWEEP = make_version_sweep.load()
REQUIRED = ("2.4.1", "2.6.0", "2.8.0", "2.10.0", "2.12.0", "2.12.1", "2.13.0", "2.14.0", "2.14.1")


def base(version):
    return Version(Version(version.split("+")[0]).base_version)


def test_the_page_is_rendered_from_the_data():
    assert make_version_sweep.PAGE.read_text(encoding="utf-8") == make_version_sweep.render(SWEEP)


def test_the_sweep_covers_the_supported_range():
    measured = {str(base(summary["torch"])) for summary in SWEEP}
    assert set(REQUIRED) <= measured
    assert f"torch{SUPPORTED_TORCH}" == "torch>=2.4,<3"
    assert min(base(v) for v in measured) < Version("2.5")   # the range's oldest minor is measured


def test_no_supported_torch_raises_a_false_alarm():
    """Every version: the matrix and the replay exit 0, no case fails or errors, and a change beyond tolerance is
    only a fix: a known defect's case, recorded failing, that passes the reference now."""
    for summary in SWEEP:
        counts, drift = summary["validate"]["counts"], summary["against"]["counts"]
        assert summary["validate"]["exit"] == 0 and counts["failed"] == 0 and counts["errors"] == 0, summary["torch"]
        assert summary["against"]["exit"] == 0 and drift["error"] == 0, summary["torch"]
        beyond = [case for case in summary["against"]["not_identical"] if case["comparison"] == "beyond"]
        assert all(case["reference"] == "pass" and any(case["id"] in defect.cases for defect in KNOWN_DEFECTS)
                   for case in beyond), (summary["torch"], beyond)


def test_the_known_defect_bounds_are_the_measured_ones():
    for defect in KNOWN_DEFECTS:
        affected = sorted(base(summary["torch"]) for summary in SWEEP
                          if any(case["known_defect"] == defect.id for case in summary["validate"]["not_passed"]))
        assert affected, defect.id
        assert Version(defect.torch_min) == affected[0], (defect.id, affected)
        newest = max(base(summary["torch"]) for summary in SWEEP)
        assert (defect.torch_max is None) == (affected[-1] == newest), (defect.id, affected)
        if defect.torch_max is not None:
            assert Version(defect.torch_max) == affected[-1], (defect.id, affected)
        for summary in SWEEP:   # every measured version outside the bounds passes the defect's cases
            if not defect.applies(summary["torch"]):
                assert not any(case["id"] in defect.cases for case in summary["validate"]["not_passed"]
                               if case["status"] != "pass"), (defect.id, summary["torch"])
