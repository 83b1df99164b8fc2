"""bigWig tracks of a score file, in genome coordinates, for a genome browser.

Each scored window is mapped back onto the genome (a ``'-'`` window holds the
reverse complement of its genome interval: its bases are flipped back; the
per-base summaries below do not depend on the channel order, so only the
position axis needs flipping). Tracks, one value per base:

* ``contrib``: the actual base's contribution, the sum over channels of
  ``projected_shap/seq``;
* ``hyp_max`` / ``hyp_min``: the largest / smallest hypothetical contribution
  over the four bases (``shap/seq``).

Where windows overlap, one rule picks each base's value:

* ``midpoint`` (the default): the value of the window whose centre is nearest
  to the base's centre; on a tie the window that starts first (of identical
  windows, the first row). Each base keeps the value that was computed
  furthest from a window edge.
* ``mean``: the mean over every window covering the base.

Bases covered by no window have no entry (they are not set to zero).
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyBigWig

from .errors import GenomeError, UsageError
from .genome import Genome
from .outputs import atomic_output, check_absent
from .progress import progress_bar
from .writers import _norm, open_scores

OVERLAP_RULES = ("midpoint", "mean")

#: Rows read from the score file at a time.
_ROWS = 256

#: Bases per ``addEntries`` call.
_BASES = 1 << 20


def write_tracks(
    scores: str | Path,
    prefix: str | Path,
    *,
    fasta: str | Path | None = None,
    hypothetical: bool = False,
    overlap: str = "midpoint",
    force: bool = False,
    progress: bool = True,
) -> list[Path]:
    """Write bigWig tracks of a score file and a BED of its windows.

    Outputs: ``<prefix>.contrib.bw``; with ``hypothetical``,
    ``<prefix>.hyp_max.bw`` and ``<prefix>.hyp_min.bw``; and
    ``<prefix>.windows.bed``, the scored windows in row order (0-based
    half-open; columns chrom, start, end, name, score = the prediction,
    strand). Each is written under ``<name>.partial`` and renamed when
    complete. Entries are sorted by chromosome (in FASTA index order) and
    position. Per-base values are gathered in a temporary file beside the
    outputs, so memory does not grow with the number of windows.

    Parameters
    ----------
    scores : str or Path
        Score file of ``seqlift score`` (see :mod:`seqlift.writers`); windows
        in ``coords_chrom``, ``coords_start``, ``coords_end`` (0-based half-open).
    prefix : str or Path
        Output prefix.
    fasta : str or Path, optional
        FASTA (with or without its ``.fai``) giving the chromosome sizes;
        default the ``fasta`` attribute of the score file.
    hypothetical : bool
        Also write the ``hyp_max`` and ``hyp_min`` tracks.
    overlap : str
        ``midpoint`` or ``mean``: how overlapping windows share a base (see above).
    force : bool
        Overwrite existing outputs.
    progress : bool
        Show a progress bar on stderr.

    Returns
    -------
    list of Path
        The bigWig files, then the BED file.

    Raises
    ------
    UsageError
        For an unknown ``overlap``.
    ScoresError
        When ``scores`` is not a score file.
    GenomeError
        When the chromosome sizes cannot be read or do not fit the windows.
    OutputError
        When an output exists and ``force`` is false, or its folder does not exist.
    """
    if overlap not in OVERLAP_RULES:
        raise UsageError(f"unknown --overlap {overlap!r}; choose one of {', '.join(OVERLAP_RULES)}")
    names = ["contrib"] + (["hyp_max", "hyp_min"] if hypothetical else [])
    prefix = str(prefix)
    outputs = [Path(f"{prefix}.{name}.bw") for name in names] + [Path(f"{prefix}.windows.bed")]
    for path in outputs:
        check_absent(path, force)
    needed = [
        "coords_chrom",
        "coords_start",
        "coords_end",
        "meta/strand",
        "meta/name",
        "meta/prediction",
        "projected_shap/seq",
    ] + (["shap/seq"] if hypothetical else [])
    with open_scores(scores, needed) as h5:
        chroms = h5["coords_chrom"].asstr()[:]
        starts, ends = h5["coords_start"][:], h5["coords_end"][:]
        strands = h5["meta/strand"].asstr()[:]
        sizes = _chrom_sizes(scores, fasta, h5.attrs.get("fasta"))
        _check_windows(scores, chroms, starts, ends, sizes)
        with contextlib.ExitStack() as stack:  # every output is moved into place only when all are written
            tmp = [stack.enter_context(atomic_output(path, force=force)) for path in outputs]
            _write_bed(tmp[-1], chroms, starts, ends, h5["meta/name"].asstr()[:], h5["meta/prediction"][:], strands)
            plan = _plan(chroms, starts, ends, list(sizes), overlap)
            with tempfile.TemporaryFile(dir=outputs[0].parent) as scratch:
                total = np.memmap(scratch, np.float32, "w+", shape=(len(names) + 1, plan.n_bases))
                _gather(h5, strands, plan, total, hypothetical, progress)
                _write_bigwigs(tmp[:-1], sizes, plan, total)
                del total
    return outputs


def _chrom_sizes(scores, fasta, recorded) -> dict:
    """Chromosome sizes from ``fasta``, else from the FASTA recorded in the score file."""
    if fasta is not None:
        with Genome(fasta) as genome:
            return genome.chrom_sizes()
    if recorded is None:
        raise GenomeError(f"{scores} records no FASTA, so chromosome sizes are unknown; give --fasta genome.fa")
    recorded = str(_norm(recorded))
    try:
        with Genome(recorded) as genome:
            return genome.chrom_sizes()
    except GenomeError as exc:
        raise GenomeError(
            f"cannot read chromosome sizes from {recorded}, the FASTA recorded in {scores} ({exc}); "
            "give --fasta genome.fa"
        ) from None


def _check_windows(scores, chroms, starts, ends, sizes):
    known = np.isin(chroms, list(sizes))
    if not known.all():
        i = int(np.flatnonzero(~known)[0])
        raise GenomeError(
            f"window {chroms[i]}:{starts[i]}-{ends[i]} (row {i} of {scores}) is on {chroms[i]}, which the FASTA "
            "lacks; give --fasta the genome the scores were computed on"
        )
    over = ends > np.array([sizes[c] for c in chroms], dtype=np.int64)
    if over.any():
        i = int(np.flatnonzero(over)[0])
        raise GenomeError(
            f"window {chroms[i]}:{starts[i]}-{ends[i]} (row {i} of {scores}) runs past the end of {chroms[i]} "
            f"(length {sizes[chroms[i]]}); give --fasta the genome the scores were computed on"
        )


def _write_bed(path, chroms, starts, ends, names, predictions, strands):
    with open(path, "w") as handle:
        for row in zip(chroms, starts, ends, names, predictions, strands):
            handle.write("{}\t{}\t{}\t{}\t{:.6g}\t{}\n".format(*row))


class _Plan(NamedTuple):
    """Where each window's bases go in the sorted, gap-free array of covered bases.

    Attributes
    ----------
    lo, hi : np.ndarray, shape=(N,)
        Columns ``[lo, hi)`` of each window (in genome orientation) that it
        contributes; empty for a window that gives no base.
    offset : np.ndarray, shape=(N,)
        Index in the covered-base array of each window's first base.
    runs : list of tuple(str, int, int, int)
        Stretches of covered bases in output order: chrom, start, end
        (0-based half-open) and index of the first base in the array.
    n_bases : int
        Covered bases in all.
    """

    lo: np.ndarray
    hi: np.ndarray
    offset: np.ndarray
    runs: list
    n_bases: int


def _plan(chroms, starts, ends, order, overlap) -> _Plan:
    """Place the windows (0-based half-open, all of one length) on the covered bases, by the ``overlap`` rule."""
    rank = {c: i for i, c in enumerate(order)}
    chrom_id = np.array([rank[c] for c in chroms], dtype=np.int64)
    length = int(ends[0] - starts[0])
    by_pos = np.lexsort((np.arange(len(starts)), starts, chrom_id))
    c, s = chrom_id[by_pos], starts[by_pos]
    # a new stretch of covered bases starts at a new chromosome or after a gap
    new = np.r_[True, (c[1:] != c[:-1]) | (s[1:] > s[:-1] + length)]
    run = np.cumsum(new) - 1
    run_start, run_end = s[new], np.maximum.reduceat(s + length, np.flatnonzero(new))
    run_offset = np.r_[0, np.cumsum(run_end - run_start)]
    offset = np.empty_like(starts)
    offset[by_pos] = run_offset[run] + s - run_start[run]
    lo, hi = np.zeros_like(starts), np.full_like(starts, length)
    if overlap == "midpoint":
        # among distinct windows sorted by start, base p goes to the window whose centre is nearest to p + 0.5,
        # the earlier on a tie: from window a to the next window b the value changes at (s_a + s_b + L - 1) // 2 + 1
        first = np.r_[True, (c[1:] != c[:-1]) | (s[1:] != s[:-1])]
        keep, kc, ks = by_pos[first], c[first], s[first]
        same = kc[1:] == kc[:-1]
        cut = (ks[:-1] + ks[1:] + length - 1) // 2 + 1
        lo[keep] = np.r_[0, np.where(same, np.maximum(cut - ks[1:], 0), 0)]
        hi[keep] = np.r_[np.where(same, np.minimum(cut - ks[:-1], length), length), length]
        hi[by_pos[~first]] = 0
    chrom_names = np.asarray(order)
    runs = list(zip(chrom_names[c[new]].tolist(), run_start.tolist(), run_end.tolist(), run_offset[:-1].tolist()))
    return _Plan(lo, hi, offset, runs, int(run_offset[-1]))


def _gather(h5, strands, plan, total, hypothetical, progress):
    """Add each window's tracks (rows 0..k-1 of ``total``) and coverage (row k) onto the covered bases."""
    n = len(strands)
    minus = strands == "-"
    with progress_bar(desc="tracks", unit="region", show=progress, total=n) as bar:
        for a in range(0, n, _ROWS):
            b = min(n, a + _ROWS)
            tracks = [h5["projected_shap/seq"][a:b].sum(axis=1)]
            if hypothetical:
                shap = h5["shap/seq"][a:b]
                tracks += [shap.max(axis=1), shap.min(axis=1)]
            values = np.stack(tracks + [np.ones_like(tracks[0])], axis=1)  # (rows, k + 1, L)
            values[minus[a:b]] = values[minus[a:b], :, ::-1]
            for i in range(a, b):
                lo, hi, start = plan.lo[i], plan.hi[i], plan.offset[i]
                if hi > lo:
                    total[:, start + lo : start + hi] += values[i - a, :, lo:hi]
            bar.update(b - a)


def _write_bigwigs(paths, sizes, plan, total):
    """One bigWig per track: the mean of the values added on each covered base, in the runs' order."""
    handles = [pyBigWig.open(str(path), "w") for path in paths]
    try:
        for bw in handles:
            bw.addHeader(list(sizes.items()))
        for chrom, start, end, at in plan.runs:
            for a in range(0, end - start, _BASES):
                b = min(end - start, a + _BASES)
                block = total[:, at + a : at + b]
                for k, bw in enumerate(handles):
                    bw.addEntries(chrom, start + a, values=block[k] / block[-1], span=1, step=1)
    finally:
        for bw in handles:
            bw.close()
