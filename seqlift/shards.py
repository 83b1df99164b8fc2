"""Shards of one ``seqlift score`` run: which rows ``--shard k-of-n`` scores.

``seqlift score --shard k-of-n`` scores the k-th (1-based) of n contiguous blocks
of the scored windows, in input order: block k holds rows
``[floor((k - 1) * N / n), floor(k * N / n))`` of the N windows, so block sizes
differ by at most one. A region's references depend only on the seed and its
coordinates, so a shard's rows equal the same rows of an unsharded run;
``seqlift merge`` (:mod:`seqlift.merge`) joins the shards back into one file.
"""

from __future__ import annotations

import re

from .errors import RegionError, UsageError

_SHARD = re.compile(r"([0-9]+)-of-([0-9]+)")


def parse_shard(text: str) -> tuple[int, int]:
    """``"k-of-n"`` -> ``(k, n)``, with ``1 <= k <= n``.

    Raises
    ------
    UsageError
        When ``text`` is not of that form.
    """
    match = _SHARD.fullmatch(str(text).strip())
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise UsageError(f"--shard {text!r} is not of the form k-of-n with 1 <= k <= n; give e.g. --shard 2-of-8")
    return int(match[1]), int(match[2])


def shard_rows(k: int, n: int, n_rows: int, what: str = "the regions") -> slice:
    """Rows ``[floor((k - 1) * n_rows / n), floor(k * n_rows / n))`` (0-based, half-open) of shard ``k`` of ``n``.

    Raises
    ------
    RegionError
        When the shard is empty (``n > n_rows``); ``what`` names the rows in the message.
    """
    rows = slice((k - 1) * n_rows // n, k * n_rows // n)
    if rows.start == rows.stop:
        raise RegionError(
            f"--shard {k}-of-{n} selects no region: only {n_rows} window(s) of {what} can be scored; "
            f"split them into at most {n_rows} shards"
        )
    return rows
