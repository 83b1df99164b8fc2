"""What the evaluations share: reading a scores file with the datasets they need, and writing a TSV table."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py

from ..outputs import atomic_output
from ..writers import open_scores as _open_scores

_NEEDED = ("raw/seq", "projected_shap/seq", "coords_chrom", "coords_start", "coords_end", "meta/strand")


def open_scores(path: str | Path) -> h5py.File:
    """Open a scores file written by ``seqlift score`` for reading, checking its datasets.

    Parameters
    ----------
    path : str or Path
        HDF5 file with at least ``raw/seq``, ``projected_shap/seq`` (N, 4, L),
        ``coords_chrom``, ``coords_start``, ``coords_end`` and ``meta/strand`` (N,).

    Returns
    -------
    h5py.File
        Open read-only; close it (or use it in a ``with`` block).
    """
    return _open_scores(path, _NEEDED)


def write_table(
    rows: Iterable[Mapping[str, Any]],
    columns: Sequence[str],
    path: str | Path,
    notes: Iterable[str] = (),
    force: bool = False,
) -> Path:
    """Write ``rows`` as a TSV: ``# `` note lines, a header of ``columns``, one line per row.

    Written under ``<path>.partial`` and renamed when complete. Floats are
    written with 6 significant digits (``nan`` when undefined).
    """
    path = Path(path)
    with atomic_output(path, force=force) as tmp, open(tmp, "w") as fh:
        fh.writelines(f"# {note}\n" for note in notes)
        fh.write("\t".join(columns) + "\n")
        for row in rows:
            fh.write("\t".join(f"{row[c]:.6g}" if isinstance(row[c], float) else str(row[c]) for c in columns) + "\n")
    return path
