"""FASTA access and one-hot encoding.

Sequences are read with pyfaidx. Coordinates taken by every function here are
0-based and half-open, as in BED: ``fetch("chr1", 0, 10)`` is the first ten
bases of ``chr1``. Fetched sequences are uppercase (soft-masked bases read as
ordinary bases).

One-hot arrays have channels in the order A, C, G, T, length last, dtype
uint8. A column of zeros stands for N or any other non-ACGT code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import warnings
from collections.abc import Iterable
from typing import Protocol

import numpy as np
import pyfaidx
from numba import njit

from seqlift.errors import GenomeError
from seqlift.outputs import atomic_output

ALPHABET = "ACGT"

# Byte -> channel index (4 means "no base"); lowercase reads as uppercase.
_CHANNEL = np.full(256, 4, dtype=np.intp)
for _i, _base in enumerate(ALPHABET):
    _CHANNEL[ord(_base)] = _CHANNEL[ord(_base.lower())] = _i
# Channel index -> one-hot column; row 4 is the all-zero column.
_COLUMNS = np.vstack([np.eye(4, dtype=np.uint8), np.zeros((1, 4), dtype=np.uint8)])
_CHANNEL8 = _CHANNEL.astype(np.int8)  # for numba
_LETTERS = np.frombuffer(b"ACGTN", dtype=np.uint8)
# Complement of the uppercase IUPAC codes; other characters are kept.
_COMPLEMENT = str.maketrans("ACGTRYKMBDHVSWN", "TGCAYRMKVHDBSWN")


def _check_strand(strand) -> None:
    if strand not in ("+", "-", "."):
        raise ValueError(f"strand must be '+', '-' or '.', got {strand!r}")


def _preview_names(names, limit=5):
    """Comma-separated first ``limit`` names, with ``...`` when there are more."""
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + ", ..." if len(names) > limit else shown


class StrandedInterval(Protocol):
    """What :func:`fetch_one_hot` reads from each window: a :class:`~seqlift.regions.Window`, or any object
    with these attributes (0-based half-open ``start``, ``end``)."""

    @property
    def chrom(self) -> str: ...

    @property
    def start(self) -> int: ...

    @property
    def end(self) -> int: ...

    @property
    def strand(self) -> str: ...


class Genome:
    """An indexed FASTA file opened for random access.

    A FASTA without a ``.fai`` index next to it is indexed on open, which
    needs write access to its folder. An existing index of a plain-text FASTA
    is checked against the file itself, not only its modification time (an
    edit within the same second, or an index copied from elsewhere, leaves
    times that look current): see :func:`index_mismatch`. An index that does
    not match is rebuilt, and is an error when it cannot be rewritten. An
    index of a bgzip-compressed FASTA is rebuilt when it is older.

    Parameters
    ----------
    path : str or os.PathLike
        FASTA file, uncompressed or bgzip-compressed.

    Raises
    ------
    GenomeError
        When the file is missing, is not a FASTA, or cannot be indexed.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        if not os.path.isfile(self.path):
            raise GenomeError(f"FASTA file not found: {self.path}; check the path")
        compression = _compression(self.path)
        if compression == "gzip":
            raise GenomeError(
                f"{self.path} is compressed with plain gzip, which cannot be read at random positions; recompress it "
                f"with bgzip (from htslib or samtools): gunzip -c {self.path} | bgzip > genome.fa.gz, or decompress it"
            )
        if compression == "bgzip" and not self.path.lower().endswith((".gz", ".bgz")):
            raise GenomeError(
                f"{self.path} is bgzip-compressed but its name does not end in .gz or .bgz, so it would be read as "
                "plain text; rename it to end in .gz"
            )
        fai = self.path + ".fai"
        mismatch = index_mismatch(self.path, fai) if os.path.isfile(fai) else None
        if mismatch:
            try:
                os.remove(fai)  # rebuilt below
            except OSError:
                raise GenomeError(self._stale_message(fai, mismatch)) from None
        try:
            with warnings.catch_warnings():  # an older index that still matches the FASTA is used as it is
                warnings.filterwarnings("ignore", "Index file .* is older than FASTA file")
                self._fasta = pyfaidx.Fasta(
                    self.path,
                    as_raw=True,
                    sequence_always_upper=True,
                    rebuild=not _plain_text(self.path),
                )
        except pyfaidx.FastaNotFoundError:
            raise GenomeError(f"cannot open {self.path}; check its read permission") from None
        except pyfaidx.FastaIndexingError as e:
            raise GenomeError(
                f"{self.path} is not a readable FASTA ({' '.join(str(e).split()).rstrip('.')}); "
                "give an uncompressed or bgzip-compressed FASTA with '>' header lines "
                "and equal line lengths within each sequence"
            ) from None
        except pyfaidx.UnsupportedCompressionFormat:
            raise GenomeError(
                f"{self.path} is compressed in a format other than bgzip and cannot be "
                "indexed; decompress it, or recompress it with `bgzip`"
            ) from None
        except ImportError:
            raise GenomeError(
                f"reading the bgzip-compressed FASTA {self.path} needs biopython >= 1.73 (a dependency of seqlift); "
                "install it with pip install biopython, or decompress the FASTA"
            ) from None
        except OSError:
            if mismatch:
                raise GenomeError(self._stale_message(fai, mismatch)) from None
            raise GenomeError(
                f"cannot write or read the index {fai}; copy the FASTA to a "
                "writable folder, or run `samtools faidx` on it where you can write"
            ) from None
        except ValueError as e:
            raise GenomeError(
                f"{self.path} is not a readable FASTA ({e}); give a plain-text FASTA with "
                f"unique sequence names, and delete {self.path}.fai if it is broken"
            ) from None

        # plain text: windows are read by their byte offsets (os.pread, see fetch_one_hot); bgzip through pyfaidx
        self._fd = os.open(self.path, os.O_RDONLY) if _plain_text(self.path) else None

    def _stale_message(self, fai, mismatch):
        return (
            f"{fai} does not match {self.path} ({mismatch}): the FASTA changed after it was indexed, and the "
            f"index cannot be rewritten; run `samtools faidx {self.path}` where you can write, or copy the FASTA "
            "to a writable folder"
        )

    def chrom_sizes(self) -> dict[str, int]:
        """Length of every sequence, in file order.

        Returns
        -------
        dict[str, int]
            Sequence name (the header up to the first whitespace) -> length.
        """
        return {name: record.rlen for name, record in self._fasta.faidx.index.items()}

    def fetch(self, chrom: str, start: int, end: int, strand: str = "+") -> str:
        """Sequence of ``chrom`` from ``start`` to ``end``, 0-based half-open.

        Parameters
        ----------
        chrom : str
            Sequence name.
        start, end : int
            0-based half-open interval, ``0 <= start < end <= length``.
        strand : {'+', '-', '.'}
            ``'-'`` returns the reverse complement; ``'.'`` reads as ``'+'``.

        Returns
        -------
        str
            Uppercase sequence of length ``end - start``.

        Raises
        ------
        GenomeError
            When ``chrom`` is not in the FASTA or the interval is off its ends.
        """
        _check_strand(strand)
        self._check_window(chrom, start, end)
        seq = self._fasta.faidx.fetch(chrom, start + 1, end)
        return seq.translate(_COMPLEMENT)[::-1] if strand == "-" else seq

    def sha256(self) -> str:
        """Hex SHA-256 of the FASTA file's bytes, from :func:`cached_sha256` (hashed once per version of the file)."""
        return cached_sha256(self.path)

    def close(self) -> None:
        """Close the FASTA file."""
        self._fasta.close()
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _check_window(self, chrom: str, start: int, end: int) -> None:
        """Raise :class:`GenomeError` unless ``chrom`` is in the FASTA and ``[start, end)`` fits in it."""
        index = self._fasta.faidx.index
        if chrom not in index:
            raise GenomeError(
                f"chromosome {chrom!r} is not in {self.path} (has "
                f"{_preview_names(index)}); use the FASTA's chromosome names"
            )
        length = index[chrom].rlen
        if not 0 <= start < end <= length:
            raise GenomeError(
                f"interval {chrom}:{start}-{end} does not fit in {chrom} (length {length}) "
                f"of {self.path}; coordinates are 0-based half-open and need "
                "0 <= start < end <= length"
            )

    def _one_hot(self, names: list[str], codes, starts, ends, minus) -> np.ndarray:
        """(N, 4, L) uint8 of windows in a plain-text FASTA, read by their byte offsets.

        Window i lies on chromosome ``names[codes[i]]``, from ``starts[i]`` to
        ``ends[i]``, reverse complemented where ``minus[i]``. Each window's
        bytes (its bases and the line ends between them) come with one
        ``os.pread``, and :func:`_decode_windows` (numba, the GIL released)
        one-hot encodes them: a batch costs little Python, and no file
        position is shared between threads.
        """
        index = self._fasta.faidx.index
        codes, starts, ends = (np.asarray(v, np.int64) for v in (codes, starts, ends))
        used, which = np.unique(codes, return_inverse=True)  # the chromosomes of these windows only
        for k, code in enumerate(used.tolist()):
            if names[code] not in index:
                i = int(np.flatnonzero(which == k)[0])
                self._check_window(names[code], int(starts[i]), int(ends[i]))
        records = [index[names[code]] for code in used.tolist()]
        fields = np.array([(r.offset, r.lenc, r.lenb, r.rlen) for r in records], np.int64).reshape(-1, 4)
        offset, line_bases, line_bytes, rlen = fields[which.reshape(-1)].T
        outside = ~((starts >= 0) & (starts < ends) & (ends <= rlen))
        if outside.any():
            i = int(np.flatnonzero(outside)[0])
            self._check_window(names[codes[i]], int(starts[i]), int(ends[i]))
        lengths = ends - starts
        if len(lengths) and (lengths != lengths[0]).any():
            i = int(np.flatnonzero(lengths != lengths[0])[0])
            raise ValueError(
                f"windows must all have the same length; {names[codes[i]]}:{starts[i]}-{ends[i]} "
                f"has length {lengths[i]}, the first has {lengths[0]}"
            )
        first = offset + starts // line_bases * line_bytes + starts % line_bases
        last = offset + (ends - 1) // line_bases * line_bytes + (ends - 1) % line_bases
        sizes = last - first + 1
        pread, fd = os.pread, self._fd
        parts = [pread(fd, n, at) for n, at in zip(sizes.tolist(), first.tolist())]
        if sum(map(len, parts)) != sizes.sum():
            raise GenomeError(f"{self.path} is shorter than its index {self.path}.fai says; delete the index")
        begins = np.cumsum(sizes) - sizes
        out = np.zeros((len(codes), 4, int(lengths[0]) if len(lengths) else 0), np.uint8)
        buf = np.frombuffer(b"".join(parts), np.uint8)
        _decode_windows(buf, begins, starts % line_bases, line_bases, line_bytes, minus, _CHANNEL8, out)
        return out

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"Genome({self.path!r})"


#: Entries kept in the digest cache (the most recently hashed files).
_DIGEST_CACHE_ENTRIES = 64
#: A file changed less than this many seconds before it is hashed is not cached: a later write within the
#: same timestamp tick would leave its size and times as they were (the "racy" case of git's index).
_RACY_S = 2.0


def cache_dir() -> str:
    """seqlift's per-user cache folder: ``$SEQLIFT_CACHE_DIR``, else ``$XDG_CACHE_HOME/seqlift``, else
    ``~/.cache/seqlift``."""
    if os.environ.get("SEQLIFT_CACHE_DIR"):
        return os.environ["SEQLIFT_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "seqlift")


def _stat_key(path):
    st = os.stat(path)
    return {
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
        "inode": st.st_ino,
        "device": st.st_dev,
    }


def cached_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a (large) file, hashed again only when the file changed.

    The digest is kept in ``sha256.json`` in :func:`cache_dir`, a per-user
    folder, so a FASTA in a read-only or shared folder is cached too, and no
    other user's file is trusted. An entry is used only while the file's
    resolved path, size, modification and status-change times (ns), inode and
    device are those it was hashed with: an edit, a copy over it, or a reset
    of its modification time changes one of them (the status-change time
    cannot be set back). A file changed within :data:`_RACY_S` seconds of
    hashing is not cached. A cache that cannot be read or written costs only
    the hashing.
    """
    real = os.path.realpath(path)
    cache = os.path.join(cache_dir(), "sha256.json")
    key = _stat_key(real)
    entries = {}
    with contextlib.suppress(OSError, ValueError):
        with open(cache, encoding="utf-8") as fh:
            entries = json.load(fh)
        entries = entries if isinstance(entries, dict) else {}
        hit = entries.get(real)
        if isinstance(hit, dict) and {k: hit.get(k) for k in key} == key and isinstance(hit.get("sha256"), str):
            return hit["sha256"]
    started = time.time_ns()
    digest = hashlib.sha256()
    with open(real, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    hexdigest = digest.hexdigest()
    racy = started - max(key["mtime_ns"], key["ctime_ns"]) < _RACY_S * 1e9
    if racy or _stat_key(real) != key:  # too fresh to trust its times, or it changed while being read
        return hexdigest
    entries.pop(real, None)
    entries[real] = {**key, "sha256": hexdigest}
    entries = dict(list(entries.items())[-_DIGEST_CACHE_ENTRIES:])
    with contextlib.suppress(OSError):  # written whole, then renamed: a reader sees the old cache or the new one
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        with atomic_output(cache, force=True, suffix=f".{os.getpid()}.tmp") as tmp:
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(entries, fh, indent=1)
    return hexdigest


def _compression(path):
    """``plain``, ``bgzip`` or ``gzip`` (plain gzip), from the first bytes of ``path``.

    A BGZF block is a gzip member with an extra field whose first subfield is
    ``BC`` (the block size), which plain gzip never writes.
    """
    with open(path, "rb") as fh:
        head = fh.read(18)
    if head[:2] != b"\x1f\x8b":
        return "plain"
    return "bgzip" if len(head) >= 14 and head[3] & 4 and head[12:14] == b"BC" else "gzip"


def _plain_text(path):
    """Whether ``path`` is not gzip/bgzip-compressed (told apart by its first bytes)."""
    with open(path, "rb") as fh:
        return fh.read(2) != b"\x1f\x8b"


#: Bytes read back from a sequence's start to find its header line.
_HEADER_LOOKBACK = 4096


def index_mismatch(fasta: str | os.PathLike[str], fai: str | os.PathLike[str]) -> str | None:
    """Why the ``.fai`` index ``fai`` does not describe the plain-text ``fasta``, or None when it does.

    Every record of the index must point at a sequence that starts right after
    a header line ``>name``, has newlines where the index says its lines end,
    and is followed by the next header (or, for the last, by the end of the
    file). This catches edits that keep or restore the modification time, and
    indexes copied from another FASTA; it reads a few bytes per sequence.

    Parameters
    ----------
    fasta, fai : str or os.PathLike
        The FASTA and its index. A compressed FASTA is not checked (None).

    Returns
    -------
    str or None
        The first disagreement, for a message.
    """
    if not _plain_text(fasta):
        return None
    records = []
    try:
        with open(fai, encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                fields = line.rstrip("\r\n").split("\t")
                if len(fields) < 5 or not all(f.isdigit() for f in fields[1:5]):
                    return f"line {number} of the index is not name, length, offset, line bases, line bytes"
                records.append((int(fields[2]), fields[0], int(fields[1]), int(fields[3]), int(fields[4])))
    except (OSError, UnicodeDecodeError) as exc:
        return f"the index cannot be read: {exc}"
    if not records:
        return "the index is empty"
    records.sort()
    size = os.path.getsize(fasta)
    with open(fasta, "rb") as fh:
        for i, (offset, name, length, bases, width) in enumerate(records):
            if offset > size:
                return f"{name} starts at byte {offset}, past the end of the file ({size} bytes)"
            start = max(0, offset - len(name) - _HEADER_LOOKBACK)
            fh.seek(start)
            before = fh.read(offset - start)
            if not before.endswith(b"\n"):
                return f"{name} does not start after a header line at byte {offset}"
            lines = before[:-1].split(b"\n")
            if len(lines) > 1 or start == 0:
                header = lines[-1].rstrip(b"\r")
                words = header[1:].split(maxsplit=1)
                if not header.startswith(b">") or not words or words[0].decode("utf-8", "replace") != name:
                    return f"the header before {name}'s sequence is {header[:40].decode('utf-8', 'replace')!r}"
            if length == 0:
                continue
            if bases < 1 or width <= bases:
                return f"{name} has line lengths {bases} and {width} in the index"
            newline = width - bases
            full, rest = divmod(length, bases)
            end = offset + full * width + (rest + newline if rest else 0)
            if end - newline > size:
                return f"{name} ends past the end of the file ({size} bytes)"
            if length > bases:
                fh.seek(offset + bases)
                if fh.read(newline).strip(b"\r\n"):
                    return f"{name}'s first line is not {bases} bases long"
            fh.seek(end - newline)
            tail = fh.read(newline + 64)
            if tail[:newline].strip(b"\r\n") or (len(tail) < newline and i + 1 < len(records)):
                return f"{name} does not end after {length} bases"
            after = tail[newline:].lstrip()
            if i + 1 < len(records):
                if not after.startswith(b">"):
                    return f"{name} does not end after {length} bases"
            elif after:
                return f"the file goes on after {name}, the last sequence of the index"
    return None


def one_hot_encode(seq: str) -> np.ndarray:
    """One-hot encode a DNA sequence.

    Parameters
    ----------
    seq : str
        Sequence of length L; case is ignored. N and any other character
        than A, C, G, T give an all-zero column.

    Returns
    -------
    X : np.ndarray, shape=(4, L), dtype=uint8
        Channels A, C, G, T.
    """
    codes = np.frombuffer(seq.encode("ascii", errors="replace"), dtype=np.uint8)
    return np.ascontiguousarray(_COLUMNS[_CHANNEL[codes]].T)


def one_hot_decode(X: np.ndarray) -> str:
    """Sequence of a one-hot matrix.

    Parameters
    ----------
    X : np.ndarray, shape=(4, L)
        Channels A, C, G, T. Each column reads as its largest channel; an
        all-zero column reads as N.

    Returns
    -------
    str
        Uppercase sequence of length L.
    """
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] != 4:
        raise ValueError(f"expected a one-hot array of shape (4, L), got shape {X.shape}")
    channel = np.where(X.any(axis=0), X.argmax(axis=0), 4)
    return _LETTERS[channel].tobytes().decode("ascii")


def reverse_complement(X: np.ndarray) -> np.ndarray:
    """Reverse complement of one-hot sequences.

    With channels A, C, G, T, complementing reverses the channel axis, so
    both the channel and the length axis are flipped.

    Parameters
    ----------
    X : np.ndarray, shape=(..., 4, L)
        One-hot sequences (or per-base scores laid out the same way).

    Returns
    -------
    np.ndarray, shape=(..., 4, L)
        A new array; ``X`` is unchanged.
    """
    X = np.asarray(X)
    if X.ndim < 2 or X.shape[-2] != 4:
        raise ValueError(f"expected an array of shape (..., 4, L), got shape {X.shape}")
    return X[..., ::-1, ::-1].copy()


def fetch_one_hot(genome: Genome, windows: Iterable[StrandedInterval]) -> np.ndarray:
    """One-hot sequences of equal-length windows.

    Parameters
    ----------
    genome : Genome
        The FASTA to read from.
    windows : iterable
        Objects with ``chrom``, ``start``, ``end`` (0-based half-open) and
        ``strand``; all of the same length L. Minus-strand windows are
        reverse complemented.

    Returns
    -------
    X : np.ndarray, shape=(N, 4, L), dtype=uint8
        One row per window, in the order given.
    """
    if getattr(genome, "_fd", None) is not None:
        if hasattr(windows, "strand_codes"):  # seqlift.regions.Windows: its columns, no Window made
            names, codes, starts, ends = windows.chrom_codes()
            return genome._one_hot(names, codes, starts, ends, windows.strand_codes() == 1)
        windows = list(windows)
        if not windows:
            return np.zeros((0, 4, 0), dtype=np.uint8)
        names: dict[str, int] = {}
        codes = [names.setdefault(w.chrom, len(names)) for w in windows]
        strands = [w.strand for w in windows]
        for strand in dict.fromkeys(strands):  # the first bad one, in order
            _check_strand(strand)
        starts, ends = [w.start for w in windows], [w.end for w in windows]
        return genome._one_hot(list(names), codes, starts, ends, np.array([s == "-" for s in strands], bool))
    windows = list(windows)
    seqs = [genome.fetch(w.chrom, w.start, w.end, w.strand) for w in windows]
    if not seqs:
        return np.zeros((0, 4, 0), dtype=np.uint8)
    length = len(seqs[0])
    for w, seq in zip(windows, seqs):
        if len(seq) != length:
            raise ValueError(
                f"windows must all have the same length; {w.chrom}:{w.start}-{w.end} "
                f"has length {len(seq)}, the first has {length}"
            )
    X = one_hot_encode("".join(seqs)).reshape(4, len(seqs), length)
    return np.ascontiguousarray(X.transpose(1, 0, 2))


@njit(cache=True, nogil=True)
def _decode_windows(buf, begins, column, line_bases, line_bytes, minus, channel, out):
    """One-hot encode windows from their FASTA bytes (see :meth:`Genome._one_hot`).

    Window i's bytes start at ``buf[begins[i]]``, its first base at ``column[i]`` of a line of
    ``line_bases[i]`` bases in ``line_bytes[i]`` bytes; ``channel`` maps a byte to its channel (4: none);
    minus-strand windows are written reverse complemented. ``out`` (N, 4, L) must be all zeros.
    """
    length = out.shape[2]
    for i in range(len(begins)):
        at, col, skip = begins[i], column[i], line_bytes[i] - line_bases[i]
        for q in range(length):
            c = channel[buf[at]]
            if c < 4:
                if minus[i]:
                    out[i, 3 - c, length - 1 - q] = 1
                else:
                    out[i, c, q] = 1
            at += 1
            col += 1
            if col == line_bases[i]:
                col = 0
                at += skip
