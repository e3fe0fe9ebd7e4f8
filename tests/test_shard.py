"""``refwd validate --shard I/N``: N CI jobs run every selected case exactly once, whatever the filters, and a
case's shard depends on its id alone."""
import io

import pytest

from refwd_validation import cli
from refwd_validation.cases import CASES, in_shard, select


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_the_shards_partition_the_selection(count):
    for filters in ({}, {"optimizer": "adam"}, {"quick": True}, {"impl": "fused", "dtype": "float32"}):
        whole = [case.id for case in select(CASES, **filters)]
        parts = [[case.id for case in select(CASES, shard=(index, count), **filters)]
                 for index in range(1, count + 1)]
        assert sorted(id_ for part in parts for id_ in part) == sorted(whole)   # each case once
        assert all(part == [id_ for id_ in whole if id_ in set(part)] for part in parts)   # in matrix order


def test_a_cases_shard_does_not_depend_on_the_other_cases():
    ids = [case.id for case in CASES]
    assert [in_shard(id_, (2, 5)) for id_ in ids] == [in_shard(id_, (2, 5)) for id_ in ids[::-1]][::-1]
    sizes = [sum(in_shard(id_, (index, 4)) for id_ in ids) for index in range(1, 5)]
    assert min(sizes) > len(ids) / 4 * 0.8   # a hash spreads them: no shard much smaller than its share


@pytest.mark.parametrize("bad", ["0/3", "4/3", "a/3", "2", "2/", "-1/2", "1/0"])
def test_a_bad_shard_is_a_usage_error_naming_it(bad):
    pytest.importorskip("torch")
    err = io.StringIO()
    assert cli.main(["validate", f"--shard={bad}", "--list"], stdout=io.StringIO(), stderr=err) == 2
    assert err.getvalue() == (f"refwd validate: --shard takes I/N with whole numbers 1 <= I <= N (e.g. --shard "
                              f"2/4), got {bad!r}\n")
