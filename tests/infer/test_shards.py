"""`shard_of` and `parse_shard` on hand-worked case lists."""

from __future__ import annotations

import pytest

from livermets.errors import InputError
from livermets.infer.shards import Shard, parse_shard, shard_of


def test_sorted_ids_are_dealt_out_in_turn() -> None:
    # Sorted: P1_baseline, P1_tp1, P2_baseline, P2_tp1, P3_baseline -> shares 1, 2, 3, 1, 2.
    ids = ["P3_baseline", "P1_tp1", "P2_baseline", "P1_baseline", "P2_tp1"]
    assert shard_of(ids, 1, 3) == ["P1_baseline", "P2_tp1"]  # in the order given
    assert shard_of(ids, 2, 3) == ["P3_baseline", "P1_tp1"]
    assert shard_of(ids, 3, 3) == ["P2_baseline"]
    assert shard_of(ids, 1, 1) == ids


def test_every_id_in_one_share_whatever_the_order() -> None:
    ids = [f"case{i:02d}" for i in range(11)]
    shares = [shard_of(ids, k, 4) for k in range(1, 5)]
    assert sorted(i for share in shares for i in share) == ids
    assert [len(s) for s in shares] == [3, 3, 3, 2]
    assert shard_of(list(reversed(ids)), 2, 4) == list(reversed(shares[1]))
    assert shard_of(ids[:2], 3, 4) == []  # more shares than cases: some are empty


@pytest.mark.parametrize(("k", "n"), [(0, 2), (3, 2), (1, 0)])
def test_a_share_out_of_range_is_refused(k: int, n: int) -> None:
    with pytest.raises(ValueError, match="1 <= k <= n"):
        shard_of(["a"], k, n)


def test_parse_shard() -> None:
    assert parse_shard("2/4") == Shard(2, 4) and str(parse_shard(" 1 / 1 ")) == "1/1"
    for bad in ("0/2", "3/2", "1/0", "1", "a/b", "-1/2", "1/2/3", ""):
        with pytest.raises(InputError, match="write K/N"):
            parse_shard(bad)


def test_rank_threads_fit_the_cores() -> None:
    from livermets.infer.shards import rank_threads

    assert [rank_threads(16, r) for r in (1, 2, 3, 4, 32)] == [16, 8, 5, 4, 1]
    assert rank_threads(2, 0) == 2  # no LOCAL_WORLD_SIZE: one process
