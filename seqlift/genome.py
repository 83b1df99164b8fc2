"""FASTA access and one-hot encoding.

Sequences are read with pyfaidx. Coordinates taken by every function here are
0-based and half-open, as in BED: ``fetch("chr1", 0, 10)`` is the first ten
bases of ``chr1``. Fetched sequences are uppercase (soft-masked bases read as
ordinary bases).

One-hot arrays have channels in the order A, C, G, T, length last, dtype
uint8. A column of zeros stands for N or any other non-ACGT code.
"""

import os
import warnings

import numpy as np
import pyfaidx

from seqlift.errors import GenomeError

ALPHABET = "ACGT"

# Byte -> channel index (4 means "no base"); lowercase reads as uppercase.
_CHANNEL = np.full(256, 4, dtype=np.intp)
for _i, _base in enumerate(ALPHABET):
    _CHANNEL[ord(_base)] = _CHANNEL[ord(_base.lower())] = _i
# Channel index -> one-hot column; row 4 is the all-zero column.
_COLUMNS = np.vstack([np.eye(4, dtype=np.uint8), np.zeros((1, 4), dtype=np.uint8)])
_LETTERS = np.frombuffer(b"ACGTN", dtype=np.uint8)
# Complement of the uppercase IUPAC codes; other characters are kept.
_COMPLEMENT = str.maketrans("ACGTRYKMBDHVSWN", "TGCAYRMKVHDBSWN")


def _preview_names(names, limit=5):
    """Comma-separated first ``limit`` names, with ``...`` when there are more."""
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + ", ..." if len(names) > limit else shown


class Genome:
    """An indexed FASTA file opened for random access.

    A FASTA without a ``.fai`` index next to it is indexed on open, which
    needs write access to its folder. An index older than the FASTA is
    rebuilt; when it cannot be rewritten it is used as it is, with a warning.

    Parameters
    ----------
    path : str or os.PathLike
        FASTA file, uncompressed or bgzip-compressed.

    Raises
    ------
    GenomeError
        When the file is missing, is not a FASTA, or cannot be indexed.
    """

    def __init__(self, path):
        self.path = str(path)
        if not os.path.isfile(self.path):
            raise GenomeError(f"FASTA file not found: {self.path}; check the path")
        fai = self.path + ".fai"
        keep_stale_index = (
            os.path.isfile(fai)
            and os.path.getmtime(self.path) > os.path.getmtime(fai)
            and not os.access(fai, os.W_OK)
        )
        if keep_stale_index:
            warnings.warn(
                f"{fai} is older than {self.path} and cannot be rewritten; using it as it is "
                f"(if the FASTA has changed, run `samtools faidx {self.path}` where you can write)",
                stacklevel=2,
            )
        try:
            with warnings.catch_warnings():  # the stale index was warned about above
                warnings.filterwarnings("ignore", "Index file .* is older than FASTA file")
                self._fasta = pyfaidx.Fasta(
                    self.path, as_raw=True, sequence_always_upper=True,
                    rebuild=not keep_stale_index,
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
                f"reading the compressed FASTA {self.path} needs biopython; "
                "install biopython or decompress the FASTA"
            ) from None
        except OSError:
            raise GenomeError(
                f"cannot write or read the index {fai}; copy the FASTA to a "
                "writable folder, or run `samtools faidx` on it where you can write"
            ) from None
        except ValueError as e:
            raise GenomeError(
                f"{self.path} is not a readable FASTA ({e}); give a plain-text FASTA with "
                f"unique sequence names, and delete {self.path}.fai if it is broken"
            ) from None

    def chrom_sizes(self):
        """Length of every sequence, in file order.

        Returns
        -------
        dict[str, int]
            Sequence name (the header up to the first whitespace) -> length.
        """
        return {name: record.rlen for name, record in self._fasta.faidx.index.items()}

    def fetch(self, chrom, start, end, strand="+"):
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
        if strand not in ("+", "-", "."):
            raise ValueError(f"strand must be '+', '-' or '.', got {strand!r}")
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
        seq = self._fasta.faidx.fetch(chrom, start + 1, end)
        return seq.translate(_COMPLEMENT)[::-1] if strand == "-" else seq

    def close(self):
        """Close the FASTA file."""
        self._fasta.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"Genome({self.path!r})"


def one_hot_encode(seq):
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


def one_hot_decode(X):
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


def reverse_complement(X):
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


def fetch_one_hot(genome, windows):
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
