"""GC-matched genomic references: real windows of the genome with the GC of each scored window.

For every scored window, :func:`gc_matched` draws K windows of the same length
L from the same FASTA whose GC fraction is within ``tolerance`` of the scored
window's, that contain no N (nor any other non-ACGT code), and that overlap
neither a scored window nor an excluded interval (such as a blacklist). Each
window's draw is seeded by :func:`seqlift.references.region_seed`, so it does
not depend on the batch, the order or the shard it is scored in, as long as
the set of candidates is the same (see :func:`gc_matched`).

The candidates are indexed once by :class:`GCIndex`: windows starting every
``stride`` bases of every chromosome, with their GC count, grouped by GC so
that finding the candidates of a GC band is two lookups, and drawing K of them
for every region is one compiled loop.

Coordinates taken and returned here are 0-based and half-open, as in BED.

Intervals are handled with numpy rather than pybedtools: the question asked is
"which of millions of candidate windows overlap any excluded interval", which
is one sort of the intervals and one binary search per candidate on arrays
already in memory, whereas bedtools would need the candidates written to and
read back from a temporary BED file. An exclude BED is read with
:func:`seqlift.regions.read_regions`, whose errors name the file and line.
"""

from __future__ import annotations

import contextlib
import hashlib
import numbers
import os
import warnings
import zipfile
from collections import namedtuple
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from numba import njit

from seqlift.errors import ReferencesError
from seqlift.genome import Genome, fetch_one_hot
from seqlift.outputs import atomic_output
from seqlift.progress import progress_bar
from seqlift.regions import Window, read_regions

from .checks import _check_count
from .shuffle import _below, _mix, region_seed

_CACHE_FORMAT = 1
_BLOCK = 1 << 24  # bases scanned at once, so memory stays bounded on long chromosomes
_CHECK_BLOCK = 1024  # windows read at once by check_candidates
_IS_GC = np.zeros(256, np.bool_)
_IS_GC[list(b"CGcg")] = True
_NOT_ACGT = np.ones(256, np.bool_)
_NOT_ACGT[list(b"ACGTacgt")] = False

_Span = namedtuple("_Span", "chrom start end strand")


def gc_fraction(X: np.ndarray) -> np.ndarray:
    """GC fraction of one-hot sequences, over their non-N positions.

    Parameters
    ----------
    X : np.ndarray, shape=(N, 4, L)
        One-hot sequences, channels A, C, G, T; all-zero columns (N) are not counted.

    Returns
    -------
    np.ndarray, shape=(N,), float64
        (C + G) / (A + C + G + T) per sequence; NaN for a sequence with no base.
    """
    X = np.asarray(X)
    if X.ndim != 3 or X.shape[1] != 4:
        raise ReferencesError(
            f"X has shape {X.shape}, not (N, 4, L); pass one-hot sequences with channels A, C, G, T on axis 1."
        )
    counts = X.sum(axis=2, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (counts[:, 1] + counts[:, 2]) / counts.sum(axis=1)


def _check_tolerance(tolerance):
    ok = isinstance(tolerance, numbers.Real) and not isinstance(tolerance, bool)
    if not ok or not 0 <= tolerance <= 1:
        raise ReferencesError(
            f"tolerance={tolerance!r} is not a valid GC tolerance; pass a fraction from 0 to 1, such as 0.02."
        )


class Intervals(NamedTuple):
    """Intervals as columns: ``chrom`` (object array of str), ``start`` and ``end`` (int64), 0-based half-open."""

    chrom: np.ndarray
    start: np.ndarray
    end: np.ndarray

    @classmethod
    def of(cls, *sources) -> Intervals:
        """The intervals of every source, one source after the other.

        A source is None (no interval), a BED path, an :class:`Intervals`, an
        object whose ``intervals()`` gives the three columns (such as
        :class:`~seqlift.regions.Windows` and :class:`~seqlift.regions.Spans`,
        which make no object per interval), or an iterable of (chrom, start,
        end) tuples or of objects with ``chrom``, ``start`` and ``end``
        attributes, such as regions and windows.
        """
        parts = [cls._one(source) for source in sources if source is not None] or [cls._one(())]
        if len(parts) == 1:
            return parts[0]
        return cls(*(np.concatenate(column) for column in zip(*parts)))

    @classmethod
    def _one(cls, source) -> Intervals:
        if isinstance(source, Intervals):
            return source
        if isinstance(source, (str, os.PathLike)):
            source = read_regions(source)
        if hasattr(source, "intervals"):
            return cls(*source.intervals())
        rows = [(iv.chrom, iv.start, iv.end) if hasattr(iv, "chrom") else tuple(iv[:3]) for iv in source]
        chrom = np.empty(len(rows), object)
        chrom[:] = [r[0] for r in rows]
        return cls(chrom, *(np.array([r[i] for r in rows], np.int64) for i in (1, 2)))


def _offsets(chrom_sizes):
    """Start of each chromosome on the genome laid end to end, in FASTA order."""
    return np.concatenate([[0], np.cumsum(list(chrom_sizes.values()), dtype=np.int64)[:-1]])


def _linear(chrom_sizes, intervals: Intervals):
    """Intervals as half-open (lo, hi) arrays on the genome laid end to end, clipped to their chromosome.

    An interval on a chromosome missing from ``chrom_sizes`` becomes empty (lo == hi).
    """
    where = dict(zip(chrom_sizes, zip(_offsets(chrom_sizes).tolist(), chrom_sizes.values())))
    offset, size = np.array([where.get(c, (-1, 0)) for c in intervals.chrom.tolist()], np.int64).reshape(-1, 2).T
    known = offset >= 0
    lo = np.where(known, offset + np.clip(intervals.start, 0, size), 0)
    hi = np.where(known, offset + np.clip(intervals.end, 0, size), 0)
    return lo, hi


def _overlap_any(starts, length, lo, hi):
    """Which windows ``[starts, starts + length)`` overlap any non-empty interval ``[lo, hi)``."""
    lo, hi = lo[hi > lo], hi[hi > lo]
    if not lo.size:
        return np.zeros(len(starts), bool)
    order = np.argsort(lo, kind="stable")
    reach = np.maximum.accumulate(hi[order])  # furthest end among the intervals sorted by start
    before = np.searchsorted(lo[order], starts + length)  # how many intervals start before each window ends
    return (before > 0) & (reach[before - 1] > starts)


def _window_sums(flags, starts, length):
    """Number of True ``flags`` in each window ``[start, start + length)``."""
    cumulative = np.zeros(len(flags) + 1, np.int32)
    np.cumsum(flags, dtype=np.int32, out=cumulative[1:])
    return cumulative[starts + length] - cumulative[starts]


def _scan(genome, length, stride, progress=False):
    """Every window free of non-ACGT codes, in genome order.

    Returns
    -------
    starts : np.ndarray, shape=(M,), int64
        Start of each window on the genome laid end to end (chromosomes in
        FASTA order), 0-based; increasing.
    gc : np.ndarray, shape=(M,), int32
        Number of C and G in each window.
    """
    starts, gc = [np.zeros(0, np.int64)], [np.zeros(0, np.int32)]
    offset = 0
    per_block = max(1, _BLOCK // stride)
    sizes = genome.chrom_sizes()
    with progress_bar(desc="GC index", unit="bp", show=progress, total=sum(sizes.values()), unit_scale=True) as bar:
        for chrom, size in sizes.items():
            n_windows = (size - length) // stride + 1 if size >= length else 0
            for first in range(0, n_windows, per_block):
                last = min(n_windows, first + per_block)
                begin = first * stride
                seq = genome.fetch(chrom, begin, (last - 1) * stride + length)
                codes = np.frombuffer(seq.encode("ascii", errors="replace"), np.uint8)
                relative = np.arange(last - first, dtype=np.int64) * stride
                clean = _window_sums(_NOT_ACGT[codes], relative, length) == 0
                starts.append(offset + begin + relative[clean])
                gc.append(_window_sums(_IS_GC[codes], relative[clean], length))
                bar.update(min(size, last * stride) - begin)
            offset += size
            bar.update(offset - bar.n)  # the chromosome's tail, and chromosomes shorter than a window
    return np.concatenate(starts), np.concatenate(gc)


def _cache_key(genome, length, stride):
    with open(genome.path + ".fai", "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    stat = os.stat(genome.path)
    return (
        f"seqlift GC index format {_CACHE_FORMAT}; fai sha256 {digest}; FASTA size {stat.st_size}, "
        f"mtime_ns {stat.st_mtime_ns}; length {length}; stride {stride}"
    )


def _load_cache(path, key):
    """(starts, gc) from the cache at ``path``, or None when it is missing, unreadable or stale."""
    with contextlib.suppress(OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        with np.load(path, allow_pickle=False) as saved:
            if str(saved["key"]) == key:
                return saved["starts"], saved["gc"]
    return None


def _save_cache(path, key, starts, gc):
    """Write the cache atomically (readers never see half a file); warn when it cannot be written."""
    try:
        with atomic_output(path, force=True, suffix=f".{os.getpid()}.partial") as tmp, open(tmp, "wb") as handle:
            np.savez(handle, key=np.array(key), starts=starts, gc=gc)
    except OSError as e:
        warnings.warn(
            f"cannot write the GC index cache {path} ({e.strerror or e}); the index will be rebuilt "
            "next time; pass a writable cache path to keep it",
            stacklevel=3,
        )


@njit(cache=True, nogil=True)
def _floyd(lo, hi, seeds, n, out):
    """Write into ``out[i]`` n distinct integers drawn uniformly from [lo[i], hi[i]).

    Floyd's algorithm on a splitmix64 stream seeded by ``seeds[i]`` alone, so
    row i does not depend on the other rows. Needs ``hi[i] - lo[i] >= n``.
    """
    for i in range(lo.shape[0]):
        state = _mix(seeds[i])
        size = hi[i] - lo[i]
        for j in range(n):
            top = size - n + j
            state, pick = _below(state, top + 1)
            for q in range(j):
                if out[i, q] == lo[i] + pick:
                    pick = top
                    break
            out[i, j] = lo[i] + pick


def _too_few(found, length, gc, tolerance, n):
    return (
        f"only {found} genomic windows of length {length} have GC within {tolerance:g} of {gc:.3f}, "
        f"fewer than the {n} references needed; raise --gc-tolerance or lower --n-refs"
    )


class GCIndex:
    """Candidate reference windows of length L over a genome, grouped by GC.

    The candidates are the windows ``[start, start + L)`` with ``start`` a
    multiple of ``stride`` on each chromosome (0-based half-open), that
    contain only A, C, G and T, and that overlap no excluded interval. Build
    one with :meth:`build`.

    Attributes
    ----------
    length : int
        L, the length of every candidate.
    stride : int
        Distance between consecutive candidate starts on a chromosome.
    chroms : tuple of str
        Chromosome names, in FASTA order.
    offsets : np.ndarray, shape=(C,), int64
        Where each chromosome starts on the genome laid end to end.

    Notes
    -----
    An index holds about 20 bytes per candidate: with the default stride of
    L // 2, some 6 million candidates (120 MB) for a 3 Gb genome and L = 1000,
    30 million (600 MB) for L = 200; a larger stride makes it smaller.
    """

    def __init__(
        self, chrom_sizes: Mapping[str, int], length: int, stride: int, starts: np.ndarray, gc: np.ndarray
    ) -> None:
        # starts: increasing int64 starts on the genome laid end to end; gc: their C + G counts.
        self.length, self.stride = length, stride
        self.chroms = tuple(chrom_sizes)
        self.offsets = _offsets(chrom_sizes)
        self._sizes = dict(chrom_sizes)
        self._starts = starts
        self._by_gc = np.argsort(gc, kind="stable")
        self._first = np.concatenate([[0], np.cumsum(np.bincount(gc, minlength=length + 1))])

    @classmethod
    def build(
        cls,
        genome: Genome,
        length: int,
        exclude: str | os.PathLike[str] | Iterable[Any] = (),
        stride: int | None = None,
        cache: bool | str | os.PathLike[str] | None = None,
        progress: bool = False,
    ) -> GCIndex:
        """Index the candidate windows of ``genome``, reading it one block at a time.

        Parameters
        ----------
        genome : Genome
            The FASTA to draw from.
        length : int
            L, the length of the scored windows.
        exclude : str, os.PathLike, Intervals or iterable, optional
            A BED file, or intervals as (chrom, start, end) tuples or objects
            with ``chrom``, ``start`` and ``end`` (0-based half-open), such as
            the scored windows, or as columns (any source of
            :meth:`Intervals.of`); candidates overlapping any are dropped.
            Intervals on chromosomes that the FASTA lacks are ignored.
        stride : int, optional
            Distance between candidate starts; default ``max(1, L // 2)``.
        cache : bool, str or os.PathLike, optional
            Where to keep the scan of the genome, as an ``.npz`` file: True
            writes ``<fasta>.gc-L<L>-s<stride>.npz`` next to the FASTA and its
            ``.fai``; a path writes there; None (the default) keeps nothing.
            The file records the sha256 of the ``.fai``, the FASTA's size and
            modification time, L and stride, and is rebuilt when any differs.
            It holds the candidates before exclusion, so one file serves every
            ``exclude``. A cache that cannot be written is a warning.
        progress : bool
            Show the scan's progress on stderr (it is not needed when the cache holds it).

        Returns
        -------
        GCIndex
        """
        _check_count("length", "window length", length, 1)
        stride = max(1, length // 2) if stride is None else stride
        _check_count("stride", "stride between candidate windows", stride, 1)
        path = (
            None
            if cache is None or cache is False
            else (f"{genome.path}.gc-L{length}-s{stride}.npz" if cache is True else os.fspath(cache))
        )
        key = None if path is None else _cache_key(genome, length, stride)
        scanned = None if path is None else _load_cache(path, key)
        if scanned is None:
            scanned = _scan(genome, length, stride, progress)
            if path is not None:
                _save_cache(path, key, *scanned)
        starts, gc = scanned
        sizes = genome.chrom_sizes()
        keep = ~_overlap_any(starts, length, *_linear(sizes, Intervals.of(exclude)))
        return cls(sizes, length, stride, starts[keep], gc[keep])

    def __len__(self):
        return len(self._starts)

    def overlapping(self, intervals: Iterable[Any]) -> np.ndarray:
        """Which intervals overlap a candidate window.

        Parameters
        ----------
        intervals : iterable
            (chrom, start, end) tuples or objects with those attributes,
            0-based half-open.

        Returns
        -------
        np.ndarray, shape=(len(intervals),), bool
        """
        lo, hi = _linear(self._sizes, Intervals.of(intervals))
        between = np.searchsorted(self._starts, hi, "left") - np.searchsorted(self._starts, lo - self.length, "right")
        return (hi > lo) & (between > 0)

    def _band(self, gc, tolerance):
        """Range [a, b) of the GC-ordered candidates within ``tolerance`` of each ``gc``."""
        _check_tolerance(tolerance)
        gc = np.asarray(gc, np.float64)
        if gc.ndim != 1 or not np.all((gc >= 0) & (gc <= 1)):
            raise ReferencesError(
                f"gc has shape {gc.shape} and values from {np.nanmin(gc, initial=0):g} to "
                f"{np.nanmax(gc, initial=0):g}; pass one GC fraction from 0 to 1 per region, shape (N,)."
            )
        slack = 1e-6  # so that a bound that is a whole count up to rounding is inside
        low = np.clip(np.ceil((gc - tolerance) * self.length - slack), 0, self.length + 1).astype(np.int64)
        high = np.clip(np.floor((gc + tolerance) * self.length + slack) + 1, 0, self.length + 1).astype(np.int64)
        return self._first[low], self._first[np.maximum(low, high)]

    def count(self, gc: np.ndarray, tolerance: float = 0.02) -> np.ndarray:
        """Number of candidates with GC fraction within ``tolerance`` of each ``gc``.

        Parameters
        ----------
        gc : np.ndarray, shape=(N,)
            GC fractions, from 0 to 1.
        tolerance : float
            Largest allowed |GC(candidate) - gc|, inclusive.

        Returns
        -------
        np.ndarray, shape=(N,), int64
        """
        lo, hi = self._band(gc, tolerance)
        return hi - lo

    def sample(
        self, gc: np.ndarray, n: int, seeds: np.ndarray, tolerance: float = 0.02
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n`` distinct candidates for each GC fraction.

        Parameters
        ----------
        gc : np.ndarray, shape=(N,)
            GC fractions, from 0 to 1.
        n : int
            Candidates per row.
        seeds : np.ndarray, shape=(N,)
            One integer seed per row (taken modulo 2**64); row i depends only
            on ``gc[i]``, ``seeds[i]``, ``n``, ``tolerance`` and the index.
        tolerance : float
            Largest allowed |GC(candidate) - gc|, inclusive.

        Returns
        -------
        chroms : np.ndarray, shape=(N, n), str
        starts : np.ndarray, shape=(N, n), int64
            The drawn windows are ``[starts, starts + L)``, 0-based half-open.

        Raises
        ------
        ReferencesError
            When a row has fewer than ``n`` candidates.
        """
        _check_count("n", "number of references per sequence", n, 1)
        gc = np.asarray(gc, np.float64)
        lo, hi = self._band(gc, tolerance)
        seeds = np.asarray(seeds)
        if seeds.shape != lo.shape or not np.issubdtype(seeds.dtype, np.integer):
            raise ReferencesError(
                f"seeds has shape {seeds.shape} and dtype {seeds.dtype}; pass one integer seed per GC value, "
                f"shape {lo.shape}."
            )
        short = np.flatnonzero(hi - lo < n)
        if short.size:
            i = short[0]
            raise ReferencesError(_too_few(hi[i] - lo[i], self.length, gc[i], tolerance, n))
        picks = np.empty((len(lo), n), np.int64)
        _floyd(lo, hi, seeds.astype(np.uint64), n, picks)
        starts = self._starts[self._by_gc[picks]]
        chrom = np.searchsorted(self.offsets, starts, side="right") - 1
        return np.asarray(self.chroms)[chrom], starts - self.offsets[chrom]


def _label(window):
    return f"Region {window.name} ({window.path} line {window.line}, window {window.chrom}:{window.start}-{window.end})"


def _unmatched(windows, gc, index, n, tolerance) -> tuple[int, str | None]:
    """How many of ``windows`` (with GC fractions ``gc``) have no base or fewer than ``n`` candidates in
    ``index``, and the error that names the first of them (None when there is none)."""
    no_base = np.isnan(gc)
    found = index.count(np.where(no_base, 0.0, gc), tolerance)
    bad = no_base | (found < n)
    if not bad.any():
        return 0, None
    i = int(np.flatnonzero(bad)[0])
    if no_base[i]:
        return int(bad.sum()), (
            f"{_label(windows[i])} has no A, C, G or T, so it has no GC to match; remove it from the BED "
            "or use another --reference."
        )
    return int(bad.sum()), f"{_label(windows[i])}: {_too_few(found[i], index.length, gc[i], tolerance, n)}"


def check_candidates(
    genome: Genome, windows: Sequence[Window], index: GCIndex, n: int, tolerance: float, progress: bool = False
) -> None:
    """Refuse, before any is scored, a run with a window that :func:`gc_matched` could not give ``n`` references.

    Each window's sequence is read once more, in blocks (memory stays flat), for its GC fraction: a run of
    many regions then stops at its start, not when it reaches such a window hours later. ``progress`` shows
    the windows checked on stderr.

    Raises
    ------
    ReferencesError
        Naming the first such window (as :func:`gc_matched` would) and how many there are.
    """
    total, first = 0, None
    with progress_bar(desc="GC matches", unit="window", show=progress, total=len(windows)) as bar:
        for i in range(0, len(windows), _CHECK_BLOCK):
            batch = windows[i : i + _CHECK_BLOCK]
            count, message = _unmatched(batch, gc_fraction(fetch_one_hot(genome, batch)), index, n, tolerance)
            total += count
            first = first or message
            bar.update(len(batch))
    if first:
        raise ReferencesError(f"{first} ({total} of {len(windows)} windows cannot be matched; none was scored)")


def gc_matched(
    genome: Genome,
    windows: Sequence[Window],
    X: np.ndarray,
    n: int = 20,
    seed: int = 0,
    tolerance: float = 0.02,
    exclude: str | os.PathLike[str] | Iterable[Any] | None = None,
    index: GCIndex | None = None,
) -> np.ndarray:
    """GC-matched genomic references for scored windows.

    Reference j of window i is a window of the genome, read on the '+' strand,
    with a GC fraction within ``tolerance`` of ``gc_fraction(X)[i]``, no N,
    and no overlap with any scored window or excluded interval. The draw for
    window i is seeded by ``region_seed(seed, chrom, start, end, strand)``.

    A window's references depend on the candidates too, so score in batches
    or shards with one index: build it once with every scored window (of all
    shards) excluded, ``GCIndex.build(genome, L, exclude=all_windows +
    blacklist)``, and pass it as ``index``. Without ``index``, one is built
    from ``windows`` and ``exclude``, which suits one call over all windows.

    Parameters
    ----------
    genome : Genome
        The FASTA the windows were read from.
    windows : sequence of Window
        The scored windows (0-based half-open), one per row of ``X``.
    X : np.ndarray, shape=(N, 4, L)
        Their one-hot sequences, channels A, C, G, T.
    n : int
        References per window.
    seed : int
        The run's seed.
    tolerance : float
        Largest allowed |GC(reference) - GC(window)|, inclusive.
    exclude : str, os.PathLike or iterable, optional
        A BED file (such as a blacklist) or (chrom, start, end) intervals,
        0-based half-open, that references must not overlap. Only without
        ``index`` (with one, it was applied when the index was built).
    index : GCIndex, optional
        Candidates of length L that exclude every scored window.

    Returns
    -------
    refs : np.ndarray, shape=(N, n, 4, L), float32

    Raises
    ------
    ReferencesError
        When a window has no base, has fewer than ``n`` candidates of its GC,
        or overlaps a candidate of ``index``.
    """
    windows = list(windows)
    X = np.asarray(X)
    if X.ndim != 3 or X.shape[1] != 4 or X.shape[0] != len(windows):
        raise ReferencesError(
            f"X has shape {X.shape}, which does not fit {len(windows)} windows; pass their one-hot "
            f"sequences, shape ({len(windows)}, 4, L)."
        )
    _check_count("n", "number of references per sequence", n, 1)
    _check_tolerance(tolerance)
    length = X.shape[2]
    if index is None:
        index = GCIndex.build(genome, length, exclude=Intervals.of(windows, exclude))
    elif exclude is not None:
        raise ReferencesError("exclude was given with index; pass exclude to GCIndex.build when building the index.")
    elif index.length != length:
        raise ReferencesError(
            f"the GC index has windows of length {index.length}, the scored windows have length {length}; "
            f"build the index with length {length}."
        )
    elif index.overlapping(windows).any():
        i = np.flatnonzero(index.overlapping(windows))[0]
        raise ReferencesError(
            f"{_label(windows[i])} overlaps candidate windows of the GC index; build the index with "
            "exclude set to every scored window, so that no reference overlaps a scored region."
        )
    gc = gc_fraction(X)
    unmatched, message = _unmatched(windows, gc, index, n, tolerance)
    if unmatched:
        raise ReferencesError(message)
    seeds = np.array([region_seed(seed, w.chrom, w.start, w.end, w.strand) for w in windows], np.uint64)
    chroms, starts = index.sample(gc, n, seeds, tolerance)
    spans = [_Span(c, s, s + length, "+") for c, s in zip(chroms.ravel().tolist(), starts.ravel().tolist())]
    return fetch_one_hot(genome, spans).reshape(len(windows), n, 4, length).astype(np.float32)
