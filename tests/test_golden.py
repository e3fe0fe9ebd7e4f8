"""The golden recording (tests/data/golden/: torch 2.13.0 on CPU, the whole CPU matrix), replayed; and a piece of
the first recording (tests/data/golden-schema1/: refwd 0.1's layout, schema 1), which this refwd still reads.

- Against the installed torch, when it is 2.13.0: every reproducible case must be bit-identical.
- Against the reference, always: refwd's rules and gradients are checked against the recorded torch numbers,
  so a change of the reference itself (a NumPy upgrade, an edit of a rule) shows up here even with no torch
  version to compare.

When the case matrix changes, the recording is stale and the first test says so; record it again with
``rm -r tests/data/golden && refwd validate --record tests/data/golden --device cpu`` (torch 2.13.0).
"""
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from refwd_validation import recording as record  # noqa: E402
from refwd_validation.cases import select  # noqa: E402

pytestmark = pytest.mark.torch

GOLDEN = Path(__file__).parent / "data" / "golden"  # torch 2.13.0 on CPU, recorded by refwd 0.2 (schema 2)
SCHEMA_1 = Path(__file__).parent / "data" / "golden-schema1"  # the sgd-plain cases, as refwd 0.1 recorded them
MANIFEST = json.loads((GOLDEN / record.MANIFEST).read_text(encoding="utf-8"))
CASE_IDS = [entry["id"] for entry in MANIFEST["cases"]]


@pytest.fixture(scope="module")
def golden():
    return record.load(GOLDEN)


def test_the_golden_recording_is_torch_2_13_0_on_cpu_over_the_whole_matrix(golden):
    assert golden.environment["torch"].split("+")[0] == "2.13.0"
    assert golden.manifest["devices"] == ["cpu"]
    ids = record.cases_to_compare(golden, select, devices=["cpu"])  # raises if the matrix changed since
    assert ids == CASE_IDS
    # the repository's budget for it: 24.1 MB for the 907 trajectories of the matrix with torch's other paths
    assert sum(path.stat().st_size for path in GOLDEN.rglob("*") if path.is_file()) < 28_000_000


def test_a_schema_1_recording_still_reads_and_agrees_with_the_reference():
    old = record.load(SCHEMA_1)
    assert old.manifest["schema_version"] == 1 and len(old.cases) == 6
    for case_id, recorded in old.cases.items():
        assert recorded.case.config == "sgd-plain"   # schema 1 had no config: it is rebuilt from the id
        result = record.check_reference(recorded)
        assert result.ok, f"{case_id}: {result.status}: {result.detail}"


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_the_reference_agrees_with_the_golden_torch(golden, case_id):
    result = record.check_reference(golden.cases[case_id])
    assert result.ok, f"{case_id}: {result.status}: {result.detail}"


def _capability():
    try:
        return torch.backends.cpu.get_cpu_capability()
    except Exception:  # an older torch
        return None


# Bit-identity needs the same torch and the same CPU kernels: ATen dispatches on the CPU's capability (AVX2,
# AVX512: FMA, vector widths, reduction orders), so on another kind of CPU the numbers may move by an ulp.
SAME_TORCH = torch.__version__.split("+")[0] == "2.13.0"
SAME_KERNELS = _capability() == MANIFEST["environment"].get("torch_cpu_capability")


@pytest.mark.skipif(not SAME_TORCH, reason="the golden recording is of torch 2.13.0")
@pytest.mark.skipif(not SAME_KERNELS, reason=f"recorded with ATen CPU capability "
                    f"{MANIFEST['environment'].get('torch_cpu_capability')}, this CPU has {_capability()}")
@pytest.mark.parametrize("case_id", CASE_IDS)
def test_torch_2_13_0_reproduces_the_golden_recording_bit_for_bit(golden, case_id):
    comparison = record.compare_case(golden.cases[case_id])
    if golden.cases[case_id].irreproducible_step is not None:  # torch differs between its own runs here
        assert comparison.status in ("identical", "nondeterministic")
        return
    assert comparison.status == "identical", (comparison.error or comparison.first_difference.describe())
    assert comparison.compared > 0
