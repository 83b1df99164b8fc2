"""``--shard k-of-n``: parsing it, and the contiguous block of rows that each shard scores."""

import pytest

from seqlift.errors import RegionError, UsageError
from seqlift.shards import parse_shard, shard_rows


@pytest.mark.parametrize("text, k_of_n", [("1-of-1", (1, 1)), ("2-of-8", (2, 8)), (" 8-of-8\n", (8, 8))])
def test_parse_shard(text, k_of_n):
    assert parse_shard(text) == k_of_n


@pytest.mark.parametrize("shard", ["0-of-3", "4-of-3", "a-of-b", "2of3", "1-of-0"])
def test_bad_shard_strings_name_the_form(shard):
    with pytest.raises(UsageError, match=f"--shard '{shard}' is not of the form k-of-n with 1 <= k <= n"):
        parse_shard(shard)


def test_empty_shard_is_an_error():
    with pytest.raises(RegionError, match=r"--shard 2-of-3 selects no region: only 1 window\(s\) of the regions"):
        shard_rows(2, 3, 1)


def test_shard_rows_partition_the_rows():
    for n_rows in (1, 7, 20, 101):
        for n in range(1, n_rows + 1, 3):
            blocks = [shard_rows(k, n, n_rows) for k in range(1, n + 1)]
            sizes = [b.stop - b.start for b in blocks]
            assert blocks[0].start == 0 and blocks[-1].stop == n_rows and max(sizes) - min(sizes) <= 1
            assert all(a.stop == b.start for a, b in zip(blocks, blocks[1:]))
