"""Recovery of known motif sites: AUROC and AUPRC of per-base contributions at the sites.

With known sites (a BED of planted or annotated motif instances), the
per-base contribution should single them out: AUROC and AUPRC (average
precision) of ``|contribution|`` and of the signed contribution, positions
inside a site against every other scored position.

Coordinates are 0-based half-open throughout. Scores of minus-strand windows
(``meta/strand`` '-') are in the region's orientation and are mapped back to
the genome's by reversing the length axis.

This module owns reading the sites, labelling window positions,
:func:`site_recovery` and :func:`evaluate_sites` (what ``seqlift evaluate
sites`` runs); the metrics are in :mod:`seqlift.evaluate.metrics`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from ..errors import RegionError
from ..outputs import check_absent
from ..progress import progress_bar
from ..regions import read_regions
from .metrics import auprc, auroc
from .tables import open_scores, write_table

#: Columns of the site-recovery table, one row per scores file.
SITE_COLUMNS = (
    "file",
    "target",
    "method",
    "n_positions",
    "n_site_positions",
    "auroc_abs",
    "auprc_abs",
    "auroc_signed",
    "auprc_signed",
)


def read_sites(path: str | os.PathLike[str], motifs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Known sites from a BED file, merged per chromosome.

    Parameters
    ----------
    path : str or Path
        BED3+ of sites (0-based half-open); the name column names the motif.
    motifs : sequence of str, optional
        Keep only sites with these names.

    Returns
    -------
    dict
        Chromosome -> np.ndarray, shape=(M, 2), int64: disjoint sorted
        ``[start, end)`` intervals covering the sites.
    """
    sites = read_regions(path)
    if motifs:
        names = {s.name for s in sites}
        unknown = [m for m in motifs if m not in names]
        if unknown:
            raise RegionError(
                f"--motif {unknown[0]} names no site in {path}; its names are {', '.join(sorted(names)[:10])}"
            )
        sites = [s for s in sites if s.name in set(motifs)]
    merged = {}
    for chrom in sorted({s.chrom for s in sites}):
        spans = sorted((s.start, s.end) for s in sites if s.chrom == chrom)
        out = [list(spans[0])]
        for start, end in spans[1:]:
            if start <= out[-1][1]:
                out[-1][1] = max(out[-1][1], end)
            else:
                out.append([start, end])
        merged[chrom] = np.array(out, np.int64)
    return merged


def site_labels(
    chroms: Sequence[str] | np.ndarray, starts: np.ndarray, ends: np.ndarray, sites: Mapping[str, np.ndarray]
) -> np.ndarray:
    """Which positions of each window lie inside a site, in genome orientation.

    Parameters
    ----------
    chroms : sequence of str, shape=(N,)
    starts, ends : np.ndarray, shape=(N,)
        Windows, 0-based half-open, all of length L.
    sites : dict
        From :func:`read_sites`.

    Returns
    -------
    np.ndarray, shape=(N, L), bool
    """
    length = int(ends[0] - starts[0])
    labels = np.zeros((len(starts), length), bool)
    for i, (chrom, lo, hi) in enumerate(zip(chroms, starts, ends)):
        spans = sites.get(chrom)
        if spans is None:
            continue
        first = np.searchsorted(spans[:, 1], lo, side="right")
        last = np.searchsorted(spans[:, 0], hi, side="left")
        for start, end in spans[first:last]:
            labels[i, max(start, lo) - lo : min(end, hi) - lo] = True
    return labels


def site_recovery(
    scores: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    sites: str | os.PathLike[str],
    motifs: Sequence[str] | None = None,
    batch_size: int = 1024,
    progress: bool = False,
) -> list[dict]:
    """AUROC and AUPRC of per-base contributions for the positions of known sites.

    Each scored window position (N columns left out) is one example, labelled
    positive when it lies inside a site (of any strand); a position covered
    by two overlapping windows counts once per window. The score is the actual
    base's contribution, as ``|c|`` and as signed ``c``.

    Parameters
    ----------
    scores : str, Path or sequence of them
        Scores files of ``seqlift score``.
    sites : str or Path
        BED of known sites (0-based half-open), motif in the name column.
    motifs : sequence of str, optional
        Use only the sites with these names.
    batch_size : int
        Windows read at a time.
    progress : bool
        Show a progress bar on stderr.

    Returns
    -------
    list of dict
        One row per file with the keys of :data:`SITE_COLUMNS`.
    """
    known = read_sites(sites, motifs)
    paths = [scores] if isinstance(scores, (str, os.PathLike)) else list(scores)
    table = []
    for path in progress_bar(paths, desc="sites", unit="file", show=progress):
        with open_scores(path) as h5:
            chroms, strands = h5["coords_chrom"].asstr()[:], h5["meta/strand"].asstr()[:]
            starts, ends = h5["coords_start"][:], h5["coords_end"][:]
            labels = site_labels(chroms, starts, ends, known)
            contrib, called = [], []
            for lo in range(0, len(starts), batch_size):
                rows = slice(lo, lo + batch_size)
                c, x = h5["projected_shap/seq"][rows].sum(axis=1), h5["raw/seq"][rows].any(axis=1)
                minus = strands[rows] == "-"
                c[minus], x[minus] = c[minus, ::-1], x[minus, ::-1]  # to genome orientation
                contrib.append(c)
                called.append(x)
            contrib, called = np.concatenate(contrib), np.concatenate(called)
            attrs = dict(h5.attrs)
        y, c = labels[called], contrib[called].astype(np.float64)
        if not y.any():
            what = f"{'/'.join(motifs)} site" if motifs else "site"
            raise RegionError(
                f"no {what} of {sites} overlaps a scored position of {path} ({len(starts)} windows on "
                f"{', '.join(sorted(set(chroms))[:5])}); check that both files use the same genome and names"
            )
        if y.all():
            raise RegionError(
                f"every scored position of {path} lies in a site of {sites}; AUROC needs positions "
                "outside sites too: score wider windows"
            )
        table.append(
            {
                "file": str(path),
                "target": str(attrs.get("target", "")),
                "method": str(attrs.get("method", "")),
                "n_positions": len(y),
                "n_site_positions": int(y.sum()),
                "auroc_abs": auroc(y, np.abs(c)),
                "auprc_abs": auprc(y, np.abs(c)),
                "auroc_signed": auroc(y, c),
                "auprc_signed": auprc(y, c),
            }
        )
    return table


def evaluate_sites(
    scores: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    sites: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    motifs: Sequence[str] | None = None,
    force: bool = False,
    command: str | None = None,
    progress: bool = False,
) -> list[dict]:
    """:func:`site_recovery` written as a TSV table: what ``seqlift evaluate sites`` does.

    Parameters
    ----------
    scores : str, Path or sequence of them
        Scores files.
    sites : str or Path
        BED of known sites (0-based half-open), motif in the name column.
    output : str or Path
        TSV to write, one row per scores file, columns :data:`SITE_COLUMNS`.
    motifs : sequence of str, optional
        Use only the sites with these names.
    force : bool
        Overwrite an existing output.
    command : str, optional
        The command line, written in the table's header.
    progress : bool
        Show a progress bar on stderr.

    Returns
    -------
    list of dict
        The table's rows.
    """
    check_absent(output, force)
    table = site_recovery(scores, sites, motifs, progress=progress)
    notes = [
        command or "seqlift evaluate sites",
        f"sites {sites} ({', '.join(motifs) if motifs else 'all motifs'}); positive = a scored position inside a "
        "site, negative = every other scored (non-N) position",
        "*_abs: scored by |actual-base contribution|; *_signed: by the signed contribution; auprc = average precision",
    ]
    write_table(table, SITE_COLUMNS, output, notes, force)
    return table
