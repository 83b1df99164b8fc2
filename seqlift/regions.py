"""Reading and validating BED regions, and resizing them to scoring windows.

All coordinates are 0-based and half-open, as in BED: a region with start 10
and end 20 covers the ten bases 10..19. Line numbers are 1-based and count
every line of the file, comments included.

BED lines are parsed here rather than with pybedtools: a pybedtools interval
carries no line number, and its errors for a malformed line (such as "Start
is greater than stop") do not say which line it is. Parsing a line is cheap,
so this module reads the file itself (plain or gzip-compressed) and checks
every field, so that each error can name the file, the line, the value and
the fix. The tests use pybedtools as an oracle on valid files.
"""

from __future__ import annotations

import gzip
import numbers
import contextlib
import os
import re
import sys
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from seqlift.errors import RegionError
from seqlift.genome import _preview_names

_INTEGER = re.compile(r"-?[0-9]+")
_SKIP_HINT = "use --skip-invalid to skip such regions"


@dataclass(frozen=True, slots=True)
class Region:
    """One BED line.

    Attributes
    ----------
    chrom : str
    start, end : int
        0-based half-open, as in the file.
    name : str
        Column 4 when present and not ``'.'``, else ``"chrom:start-end"``.
    strand : str
        ``'+'``, ``'-'`` or ``'.'`` (column 6; ``'.'`` when absent).
    summit : int or None
        Absolute 0-based summit position (narrowPeak column 10 added to
        ``start``); None when absent or -1.
    line : int
        1-based line number in the file.
    path : str
        The BED file, as given.
    """

    chrom: str
    start: int
    end: int
    name: str
    strand: str
    summit: int | None
    line: int
    path: str


@dataclass(frozen=True, slots=True)
class Window:
    """The interval that is scored for a region.

    Attributes
    ----------
    chrom : str
    start, end : int
        0-based half-open; ``end - start`` is the window width.
    strand : str
        The region's strand; ``'-'`` windows are read reverse complemented.
    name : str
        The region's name.
    row : int
        0-based index of the region among the regions read.
    line : int
        1-based line number of the region in its file.
    path : str
        The region's BED file.
    """

    chrom: str
    start: int
    end: int
    strand: str
    name: str
    row: int
    line: int
    path: str


_STRANDS = "+-."

#: The columns of :meth:`Windows.columns` and :func:`window_columns`, in order.
WINDOW_COLUMNS = ("chrom", "start", "end", "strand", "name", "row", "line")


class Windows(Sequence):
    """Windows held as columns: 60 bytes a window with a 7-character name, where a list of :class:`Window`
    objects took 280 (and 580 of resident memory read from a BED), so that a genome-wide tiling of millions of
    windows stays small.

    A sequence of :class:`Window`: an integer index makes the window, a slice or an integer array gives the
    selected windows, sharing the columns. :meth:`columns` gives the columns themselves. Built by
    :func:`to_windows`.
    """

    __slots__ = ("_chroms", "_paths", "_names", "_cols")
    _FIELDS = ("chrom", "start", "end", "strand", "name_at", "name_len", "row", "line", "path")

    def __init__(self, chroms: list[str], paths: list[str], names: bytes, cols: dict[str, np.ndarray]) -> None:
        self._chroms, self._paths, self._names, self._cols = chroms, paths, names, cols

    @classmethod
    def build(cls, windows: Iterable[Window]) -> Windows:
        """Columns of ``windows``, taken one at a time."""
        chroms, paths, names = {}, {}, bytearray()
        cols = {f: array("q") for f in cls._FIELDS}
        for w in windows:
            name = w.name.encode()
            values = (
                chroms.setdefault(w.chrom, len(chroms)),
                w.start,
                w.end,
                _STRANDS.index(w.strand),
                len(names),
                len(name),
                w.row,
                w.line,
                paths.setdefault(w.path, len(paths)),
            )
            for f, v in zip(cls._FIELDS, values):
                cols[f].append(v)
            names += name
        small = {"chrom": np.int32, "strand": np.int8, "name_len": np.int32, "path": np.int32}
        arrays = {f: np.frombuffer(cols[f], np.int64).astype(small.get(f, np.int64)) for f in cls._FIELDS}
        return cls(list(chroms), list(paths), bytes(names), arrays)

    def __len__(self) -> int:
        return len(self._cols["start"])

    def __getitem__(self, key):
        if isinstance(key, numbers.Integral):
            i = range(len(self))[key]  # IndexError past either end, negative from the end
            return self._window(*(self._cols[f][i].item() for f in self._FIELDS))
        return Windows(self._chroms, self._paths, self._names, {f: v[key] for f, v in self._cols.items()})

    def __iter__(self) -> Iterator[Window]:
        return (self._window(*values) for values in zip(*(self._cols[f].tolist() for f in self._FIELDS)))

    def _window(self, chrom, start, end, strand, name_at, name_len, row, line, path) -> Window:
        """The window of one row's column values (Python ints)."""
        name = self._names[name_at : name_at + name_len].decode()
        return Window(self._chroms[chrom], start, end, _STRANDS[strand], name, row, line, self._paths[path])

    def __eq__(self, other) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        return len(other) == len(self) and all(a == b for a, b in zip(self, other))

    __hash__ = None

    def __add__(self, other) -> list:
        """A list of these windows, then ``other``'s items (as a list of windows would give)."""
        return [*self, *other]

    def __radd__(self, other) -> list:
        return [*other, *self]

    def __repr__(self) -> str:
        return f"Windows({len(self)} windows)"

    def intervals(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Where the windows lie: ``chrom`` (object array of str), ``start`` and ``end`` (int64), 0-based half-open."""
        c = self._cols
        return np.array(self._chroms, dtype=object)[c["chrom"]], c["start"], c["end"]

    def chrom_codes(self) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        """Where the windows lie, as codes: the chromosome names, each window's index into them (int32), and
        ``start`` and ``end`` (int64)."""
        c = self._cols
        return self._chroms, c["chrom"], c["start"], c["end"]

    def strand_codes(self) -> np.ndarray:
        """(N,) int8: each window's strand as its index in ``"+-."`` (1 is the minus strand)."""
        return self._cols["strand"]

    def columns(self) -> dict[str, np.ndarray]:
        """``chrom``, ``strand`` and ``name`` (object arrays of str), ``start``, ``end``, ``row`` and ``line``
        (int64), one entry per window (:data:`WINDOW_COLUMNS`)."""
        c = self._cols
        ats, lens = c["name_at"].tolist(), c["name_len"].tolist()
        chrom, start, end = self.intervals()
        return {
            "chrom": chrom,
            "start": start,
            "end": end,
            "strand": np.array(list(_STRANDS), dtype=object)[c["strand"]],
            "name": np.array([self._names[a : a + n].decode() for a, n in zip(ats, lens)], dtype=object),
            "row": c["row"],
            "line": c["line"],
        }


class Spans:
    """Where regions lie, as columns (20 bytes a region), recorded as they stream by: what needs only their
    coordinates (the GC index leaves the scored regions out) then holds no :class:`Region` objects.

    >>> spans = Spans()
    >>> windows, _ = to_windows(spans.passing(iter_regions("peaks.bed")), 1000, sizes)  # doctest: +SKIP
    >>> chrom, start, end = spans.intervals()  # doctest: +SKIP
    """

    def __init__(self) -> None:
        self._chroms: dict[str, int] = {}
        self._codes, self._starts, self._ends = array("i"), array("q"), array("q")

    def passing(self, regions: Iterable[Region]) -> Iterator[Region]:
        """``regions`` unchanged, each one's chrom, start and end recorded as it goes by."""
        for region in regions:
            self._codes.append(self._chroms.setdefault(region.chrom, len(self._chroms)))
            self._starts.append(region.start)
            self._ends.append(region.end)
            yield region

    def __len__(self) -> int:
        return len(self._starts)

    def intervals(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``chrom`` (object array of str), ``start`` and ``end`` (int64) of the regions recorded, in order."""
        chroms = np.array(list(self._chroms), dtype=object)[np.array(self._codes, np.int32)]
        return chroms, np.array(self._starts, np.int64), np.array(self._ends, np.int64)


def window_columns(windows: Sequence[Window]) -> dict[str, np.ndarray]:
    """The columns of :meth:`Windows.columns` for any sequence of windows (objects with those attributes)."""
    if isinstance(windows, Windows):
        return windows.columns()
    text = ("chrom", "strand", "name")
    return {
        f: np.array([getattr(w, f) for w in windows], dtype=object if f in text else np.int64) for f in WINDOW_COLUMNS
    }


def _open_text(path):
    """Open a plain or gzip-compressed text file (told apart by its first bytes)."""
    with open(path, "rb") as handle:
        gzipped = handle.read(2) == b"\x1f\x8b"
    if gzipped:
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def _integer(text, what, where):
    if not _INTEGER.fullmatch(text):
        raise RegionError(
            f"{where}: {what} ({text!r}) is not an integer; fix the BED line (header lines must start with '#')"
        )
    return int(text)


def _parse_region(fields, path, line):
    """Validate the tab-separated fields of one BED line into a Region."""
    where = f"{path} line {line}"
    if len(fields) < 3:
        fix = (
            "separate the columns with tabs"
            if len(" ".join(fields).split()) >= 3
            else "give at least chrom, start and end"
        )
        raise RegionError(
            f"{where}: expected at least 3 tab-separated columns (chrom, start, end), found {len(fields)}; {fix}"
        )
    chrom = sys.intern(fields[0])  # one string per chromosome, not per line
    if not chrom:
        raise RegionError(f"{where}: the chromosome name (column 1) is empty; fix the BED line")
    start = _integer(fields[1], "start", where)
    end = _integer(fields[2], "end", where)
    if start < 0:
        raise RegionError(f"{where}: start ({start}) is negative; BED starts are 0-based and at least 0")
    if end <= start:
        raise RegionError(f"{where}: end ({end}) is not greater than start ({start}); fix the BED line")
    name = fields[3] if len(fields) > 3 and fields[3] not in ("", ".") else f"{chrom}:{start}-{end}"
    strand = fields[5] if len(fields) > 5 else "."
    if strand not in ("+", "-", "."):
        raise RegionError(f"{where}: strand (column 6) is {strand!r}; use '+', '-' or '.'")
    summit = None
    if len(fields) == 10:  # narrowPeak: column 10 is the summit offset from start
        offset = _integer(fields[9], "summit offset (column 10)", where)
        if offset != -1:
            if not 0 <= offset < end - start:
                raise RegionError(
                    f"{where}: summit offset ({offset}) is outside the region "
                    f"(length {end - start}); give an offset from 0 to {end - start - 1}, "
                    "or -1 for none"
                )
            summit = start + offset
    return Region(chrom, start, end, name, strand, summit, line, path)


def read_regions(path: str | os.PathLike[str]) -> list[Region]:
    """Read and validate the regions of a BED file: :func:`iter_regions` as a list.

    Accepts BED3 and wider, strand in column 6, and narrowPeak (exactly 10
    columns, summit offset in column 10, -1 for none). Blank lines and lines
    starting with ``#``, ``track`` or ``browser`` are skipped. The file may be
    gzip-compressed.

    Parameters
    ----------
    path : str or os.PathLike
        BED file.

    Returns
    -------
    list of Region
        In file order; coordinates 0-based half-open.

    Raises
    ------
    RegionError
        When the file is missing or unreadable, has no regions, or has a
        malformed line (the message names the file and line).
    """
    return list(iter_regions(path))


def iter_regions(path: str | os.PathLike[str]) -> Iterator[Region]:
    """The regions of a BED file one by one, as :func:`read_regions` reads them (same checks and errors), for
    a caller that does not keep them all."""
    path = str(path)
    found = False
    try:
        with _open_text(path) as handle:
            for line, text in enumerate(handle, start=1):
                if line == 1 and text.startswith("\ufeff"):
                    raise RegionError(
                        f"{path} line 1: the file starts with a UTF-8 byte order mark (BOM), which would become "
                        f"part of the first chromosome name; save the file without it, e.g. "
                        f"sed -i '1s/^\\xEF\\xBB\\xBF//' {path}"
                    )
                words = text.split(maxsplit=1)
                if not words or words[0].startswith("#") or words[0] in ("track", "browser"):
                    continue
                found = True
                yield _parse_region(text.rstrip("\r\n").split("\t"), path, line)
    except FileNotFoundError:
        raise RegionError(f"BED file not found: {path}; check the path") from None
    except (OSError, EOFError) as e:
        raise RegionError(f"cannot read BED file {path} ({e}); give a readable plain or gzip-compressed BED") from None
    if not found:
        raise RegionError(
            f"{path} has no regions (only blank, comment, track or browser lines); "
            "give a BED file with at least one region"
        )


def _invalid(region, start, end, chrom_sizes):
    """(reason, message) when a region's window cannot be scored, else None."""
    label = f"Region {region.chrom}:{region.start}-{region.end} ({region.path} line {region.line})"
    chrom = region.chrom
    length = chrom_sizes.get(chrom)
    if length is None:
        return "unknown chromosome", (
            f"{label}: chromosome {chrom!r} is not in the FASTA (has {_preview_names(chrom_sizes)}); {_SKIP_HINT}"
        )
    if start < 0:
        return "window off chromosome end", (
            f"{label}: its window {chrom}:{start}-{end} runs past the start of {chrom} (position 0); {_SKIP_HINT}"
        )
    if end > length:
        return "window off chromosome end", (
            f"{label}: its window {chrom}:{start}-{end} runs past the end of {chrom} (length {length}); {_SKIP_HINT}"
        )
    return None


def to_windows(
    regions: Iterable[Region],
    width: int,
    chrom_sizes: Mapping[str, int],
    skip_invalid: bool = False,
    on_skip: Callable[[Region, str], object] | None = None,
) -> tuple[Windows, list[tuple[Region, str]]]:
    """Windows of ``width`` bases centred on each region's summit or midpoint.

    The centre is the summit when the region has one, else
    ``(start + end) // 2``; the window is ``[centre - width // 2,
    centre - width // 2 + width)``, 0-based half-open.

    Parameters
    ----------
    regions : sequence of Region
        Regions in input order.
    width : int
        Window length in bases (the model's input length).
    chrom_sizes : dict[str, int]
        Chromosome lengths of the FASTA (see ``Genome.chrom_sizes``).
    skip_invalid : bool
        Skip regions on a chromosome missing from the FASTA or whose window
        runs off a chromosome end, instead of raising.
    on_skip : callable, optional
        ``on_skip(region, reason)`` for each skipped region, which is then not
        kept in ``skipped`` (e.g. a :class:`SkippedSidecar`, so that memory does
        not grow with the number skipped).

    Returns
    -------
    windows : Windows
        One per kept region, in input order, held as columns; ``row`` is the
        region's index in ``regions``.
    skipped : list of tuple(Region, str)
        Skipped regions with the reason (``"unknown chromosome"`` or
        ``"window off chromosome end"``); empty unless ``skip_invalid``.

    Raises
    ------
    RegionError
        When ``width`` is not a positive integer, or, unless
        ``skip_invalid``, at the first region that cannot be scored.
    """
    if not isinstance(width, numbers.Integral) or width < 1:
        raise RegionError(f"window width must be a positive integer, got {width!r}; give the model's input length")
    width = int(width)
    skipped = []

    def kept():
        for row, region in enumerate(regions):
            centre = region.summit if region.summit is not None else (region.start + region.end) // 2
            start = centre - width // 2
            end = start + width
            invalid = _invalid(region, start, end, chrom_sizes)
            if invalid is None:
                yield Window(region.chrom, start, end, region.strand, region.name, row, region.line, region.path)
            elif skip_invalid and on_skip is not None:
                on_skip(region, invalid[0])
            elif skip_invalid:
                skipped.append((region, invalid[0]))
            else:
                raise RegionError(invalid[1])

    return Windows.build(kept()), skipped


def write_skipped(path: str | os.PathLike[str], skipped: Iterable[tuple[Region, str]]) -> None:
    """Write skipped regions as a tab-separated, BED-like file.

    Columns: chrom, start, end (the region's own coordinates, 0-based
    half-open), name, line (1-based, in the region's BED file) and reason,
    under a ``#`` header line.

    Parameters
    ----------
    path : str or os.PathLike
        Output file; overwritten if it exists.
    skipped : iterable of tuple(Region, str)
        As returned by :func:`to_windows`.
    """
    with SkippedSidecar(path) as sidecar:
        for region, reason in skipped:
            sidecar(region, reason)
        sidecar.commit()


class SkippedSidecar:
    """Skipped regions written as they are met (see :func:`write_skipped` for the format), to a temporary
    file next to ``path`` that :meth:`commit` moves into place; leaving the ``with`` block without a commit
    removes it. Only the count stays in memory.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.tmp = f"{self.path}.{os.getpid()}.tmp"
        self.count = 0
        self._handle = None

    def _open(self):
        if self._handle is None:
            self._handle = open(self.tmp, "w")
            self._handle.write("#chrom\tstart\tend\tname\tline\treason\n")
        return self._handle

    def __call__(self, region, reason):
        self._open().write(f"{region.chrom}\t{region.start}\t{region.end}\t{region.name}\t{region.line}\t{reason}\n")
        self.count += 1

    def commit(self) -> None:
        """Move the file into place (a header alone when nothing was skipped)."""
        self._open().close()
        os.replace(self.tmp, self.path)

    def finish(self) -> None:
        """The end of a run: :meth:`commit` what was skipped; when nothing was, remove an earlier run's list at
        ``path``, which would name regions beside an output that this run has replaced."""
        if self.count:
            self.commit()
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._handle is not None:
            self._handle.close()
        if os.path.exists(self.tmp):
            os.remove(self.tmp)
