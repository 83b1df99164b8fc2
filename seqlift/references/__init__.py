"""Reference sequences for DeepLIFT, and :func:`make_references`, which makes the references of a run.

Kinds of reference (``--reference`` of ``seqlift score``), and the module that owns each:

==============  ====================================================  ========================================
kind            references of a region                                module
==============  ====================================================  ========================================
``shuffle``     K k-mer-preserving shuffles of it, seeded per region  :mod:`seqlift.references.shuffle`
``zeros``       one all-zero reference                                :mod:`seqlift.references.simple`
``uniform``     one reference of 0.25 in every non-N column           :mod:`seqlift.references.simple`
``gc-matched``  K windows of the genome with its GC, seeded           :mod:`seqlift.references.gc`
``file:PATH``   dataset ``references`` of an HDF5 file                :mod:`seqlift.references.simple`
==============  ====================================================  ========================================

The strategies in :data:`REFERENCES` have the signature ``f(X, n, seeds) -> refs``,
with ``X`` of shape (N, 4, L) and ``refs`` float32 of shape (N, n, 4, L), so a
strategy is passed around as a callable and looked up by name. Row i of the
result depends only on ``X[i]``, ``seeds[i]`` and the options, never on the
other rows, so the references do not change with the batch size or the
sharding. GC-matched references are seeded per region in the same way.

One-hot channel order is A, C, G, T; an all-zero column is N and stays all-zero
in every reference.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from seqlift.errors import UsageError
from seqlift.genome import Genome
from seqlift.regions import Region, Spans, Window

from .checks import identical_to_input
from .gc import GCIndex, Intervals, check_candidates, gc_fraction, gc_matched
from .shuffle import dinucleotide_shuffle, region_seed
from .simple import read_references, uniform, zeros

REFERENCES = {"shuffle": dinucleotide_shuffle, "zeros": zeros, "uniform": uniform}

#: References that are the same for every draw: one is enough.
_FIXED_REFERENCES = {"zeros", "uniform"}

__all__ = [
    "GCIndex",
    "REFERENCES",
    "check_kind",
    "dinucleotide_shuffle",
    "gc_fraction",
    "gc_matched",
    "identical_to_input",
    "make_references",
    "read_references",
    "region_seed",
    "uniform",
    "zeros",
]


def check_kind(kind: str) -> None:
    """Raise :class:`UsageError` unless ``kind`` is a kind of reference that :func:`make_references` makes."""
    if kind not in REFERENCES and kind != "gc-matched" and not kind.startswith("file:"):
        raise UsageError(
            f"unknown reference {kind!r}; choose one of {', '.join(REFERENCES)}, gc-matched or file:refs.h5"
        )


def make_references(
    kind: str | None,
    length: int,
    *,
    n: int = 20,
    seed: int = 0,
    shuffle_k: int = 2,
    genome: Genome | None = None,
    windows: Iterable[Window] = (),
    regions: Iterable[Region] | Spans = (),
    tolerance: float = 0.02,
    exclude: str | os.PathLike[str] | None = None,
    n_regions: int | None = None,
    scored: Sequence[Window] | None = None,
    progress: bool = False,
) -> tuple[Callable[[np.ndarray, Sequence[Window]], np.ndarray], int]:
    """The references of a run of any kind: ``(make, K)``, with ``make(X, batch)`` the references of a batch.

    What is read or built once per run (the GC index of the genome, a
    references file) is done here, so each batch costs only its own draws.

    Parameters
    ----------
    kind : str or None
        ``"shuffle"``, ``"zeros"``, ``"uniform"``, ``"gc-matched"`` or
        ``"file:PATH"``; None for a method that uses no references (K = 0).
    length : int
        L, the length of the scored windows.
    n : int
        References per region of ``shuffle`` and ``gc-matched``; ``zeros``
        and ``uniform`` make one, and a file has its own K.
    seed : int
        The run's seed; a region's shuffles and GC-matched windows depend only
        on it and the region (:func:`region_seed`).
    shuffle_k : int
        Length of the k-mers that a shuffle preserves.
    genome : Genome, optional
        The FASTA the windows are read from; needed by ``gc-matched``.
    windows : sequence of Window
        ``gc-matched``: every scored window of the run, of all shards; no
        reference overlaps one. Taken as columns when a
        :class:`~seqlift.regions.Windows`.
    regions : sequence of Region, or Spans
        ``gc-matched``: the regions of the BED, left out like the windows;
        a :class:`~seqlift.regions.Spans` holds only where they lie.
    tolerance : float
        ``gc-matched``: largest allowed |GC(reference) - GC(window)|.
    exclude : str or os.PathLike, optional
        ``gc-matched``: a BED of regions never drawn from (a blacklist).
    n_regions : int, optional
        ``file:PATH``: regions in the BED, scored or skipped; a per-region
        dataset has one row for each, read by the windows' ``row``.
    scored : sequence of Window, optional
        ``gc-matched``: the windows this run scores (one shard's; default
        ``windows``), each checked here to have ``n`` candidates of its GC
        (:func:`~seqlift.references.gc.check_candidates`).
    progress : bool
        ``gc-matched``: show the genome's scan (when not cached) and that
        check on stderr.

    Returns
    -------
    make : callable
        ``make(X, batch) -> refs`` with ``X`` the (N, 4, L) one-hot sequences
        of the N windows ``batch`` and ``refs`` float32 of shape (N, K, 4, L).
    K : int
        References per region.

    Raises
    ------
    UsageError
        For an unknown kind; :class:`~seqlift.errors.ReferencesError` for a
        references file that cannot be read or does not fit, or a scored
        window that ``gc-matched`` cannot match.
    """
    if kind is None:
        return (lambda X, batch: np.zeros(X.shape[:1] + (0,) + X.shape[1:], np.float32)), 0
    check_kind(kind)
    if kind == "gc-matched":
        return _gc_maker(genome, windows, regions, length, n, seed, tolerance, exclude, scored, progress)
    if kind.startswith("file:"):
        data = read_references(kind[len("file:") :], n_regions, length)
        rows = (lambda batch: [w.row for w in batch]) if data.shape[0] > 1 else (lambda batch: [0] * len(batch))
        return (lambda X, batch: data[rows(batch)]), data.shape[1]
    strategy = REFERENCES[kind]
    n = 1 if kind in _FIXED_REFERENCES else n
    opts = {"k": shuffle_k} if kind == "shuffle" else {}

    def make(X, batch):
        seeds = np.array([region_seed(seed, w.chrom, w.start, w.end, w.strand) for w in batch], dtype=np.uint64)
        return strategy(X, n, seeds, **opts)

    return make, n


def _gc_maker(genome, windows, regions, length, n_refs, seed, tolerance, exclude, scored, progress):
    """GC-matched references from one index of the genome that leaves out every scored window and region."""
    # as columns, no object per window or region; intervals on chromosomes the FASTA lacks are ignored by the index
    avoid = Intervals.of(windows, regions, exclude or None)
    index = GCIndex.build(genome, length, exclude=avoid, cache=True, progress=progress)
    check_candidates(genome, windows if scored is None else scored, index, n_refs, tolerance, progress)

    def make(X, batch):
        return gc_matched(genome, batch, X, n_refs, seed, tolerance, index=index)

    return make, n_refs
