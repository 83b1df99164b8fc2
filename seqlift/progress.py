"""Progress bars of long work, on stderr (stdout stays for data), hidden by ``--quiet``."""

from __future__ import annotations

import sys
from collections.abc import Iterable

from tqdm import tqdm


def progress_bar(
    iterable: Iterable | None = None, *, desc: str, unit: str, show: bool = True, total: int | None = None, **options
) -> tqdm:
    """A tqdm bar named ``desc`` counting ``unit``s on stderr, resized with the terminal; nothing when not
    ``show``. Use it as tqdm: wrap ``iterable``, or give ``total`` and call ``update``; ``options`` go to tqdm
    (``initial``, ``unit_scale``)."""
    return tqdm(
        iterable, total=total, desc=desc, unit=unit, disable=not show, file=sys.stderr, dynamic_ncols=True, **options
    )
