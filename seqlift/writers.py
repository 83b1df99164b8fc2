"""The HDF5 score file: chunked, streamed, resumable.

Layout (one target per file; ``modisco motifs -i`` reads it as it is):

============================  ==================  ===============================================
dataset                       shape, dtype        meaning
============================  ==================  ===============================================
``raw/seq``                   (N, 4, L) uint8     one-hot input, channels A, C, G, T
``shap/seq``                  (N, 4, L) float32   hypothetical contributions, mean over references
``projected_shap/seq``        (N, 4, L) float32   ``shap/seq`` x one-hot
``coords_chrom``              (N,) str            scored window, 0-based half-open
``coords_start``              (N,) int64
``coords_end``                (N,) int64
``meta/strand``               (N,) str
``meta/name``                 (N,) str            region name
``meta/row``                  (N,) int64          the region's line order in the input BED
``meta/line``                 (N,) int64          the region's 1-based line number in the BED
``meta/prediction``           (N,) float32        target on the input
``meta/reference_prediction`` (N,) float32        mean target over references
``meta/delta_error``          (N,) float32        max over references of ``|sum(contrib) - delta|``
``meta/delta_rel_error``      (N,) float32        ``delta_error / max |f(x) - f(r)|``
``meta/low_complexity``       (N,) bool           every reference equals the input
``positive_shap/seq``         (N, 4, L) float32   with ``--split-signs``: hypothetical contributions to
                                                  the positive part of the target's delta
``negative_shap/seq``         (N, 4, L) float32   ... and to its negative part (the two add up to
                                                  ``shap/seq``)
============================  ==================  ===============================================

The file is written under ``<output>.partial`` and renamed when every row is
in. Rows are written in order as batches finish; the attribute ``rows_done``
counts them, so ``--resume`` continues an interrupted run from there with the
same batch boundaries, giving the same bytes as an uninterrupted run.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from .errors import OutputError, ScoresError

_STR = h5py.string_dtype()

#: name -> (shape after N, dtype); L is filled in at creation.
_DATASETS = {
    "raw/seq": ("4L", np.uint8),
    "shap/seq": ("4L", np.float32),
    "projected_shap/seq": ("4L", np.float32),
    "meta/prediction": ((), np.float32),
    "meta/reference_prediction": ((), np.float32),
    "meta/delta_error": ((), np.float32),
    "meta/delta_rel_error": ((), np.float32),
    "meta/low_complexity": ((), bool),
}

#: Written with ``--split-signs``.
SPLIT_DATASETS = {"positive_shap/seq": ("4L", np.float32), "negative_shap/seq": ("4L", np.float32)}

#: Attributes that must match for ``--resume`` to continue a partial file.
RUN_KEYS = (
    "seqlift_version", "model", "model_sha256", "method", "rule", "reference", "n_refs", "shuffle_k", "seed",
    "target", "output_index", "batch_size", "regions_sha256", "fasta", "n_regions", "input_length", "split_signs",
    "normalize_input_weights", "rc_average", "gc_tolerance", "exclude", "shard", "steps",
)


def partial_path(path) -> Path:
    """Where an unfinished output is written."""
    return Path(str(path) + ".partial")


class ScoreWriter:
    """Streams score rows into an HDF5 file under a temporary name.

    Parameters
    ----------
    path : str or Path
        Final output path.
    windows : list of Window
        The scored windows in output order (coordinates 0-based half-open).
    length : int
        Window length ``L``.
    attrs : dict
        Provenance attributes; those in :data:`RUN_KEYS` must match on resume.
    force : bool
        Overwrite an existing output (and discard a partial one).
    resume : bool
        Continue ``<path>.partial`` from its last finished row.
    chunk : int
        Rows per HDF5 chunk.
    """

    def __init__(self, path, windows, length, attrs, force=False, resume=False, chunk=64):
        self.path = Path(path)
        self.tmp = partial_path(self.path)
        if self.path.exists() and not force:
            raise OutputError(f"output {self.path} exists; use --force to overwrite it")
        if not self.path.parent.is_dir():
            raise OutputError(f"cannot write {self.path}: folder {self.path.parent} does not exist")
        n = len(windows)
        if resume and self.tmp.exists():
            try:
                self.h5 = h5py.File(self.tmp, "r+")
            except OSError as exc:
                raise OutputError(
                    f"cannot resume {self.tmp}: the file is damaged ({exc}); use --force to start over"
                ) from exc
            self._check_resumable(attrs)
        else:
            if self.tmp.exists() and not force:
                raise OutputError(
                    f"an unfinished run left {self.tmp}; use --resume to continue it or --force to start over"
                )
            self.h5 = h5py.File(self.tmp, "w")
            self._create(windows, n, length, attrs, chunk)

    @property
    def rows_done(self) -> int:
        return int(self.h5.attrs["rows_done"])

    def _check_resumable(self, attrs):
        old = dict(self.h5.attrs)
        diff = [k for k in RUN_KEYS if k in attrs and _norm(old.get(k)) != _norm(attrs[k])]
        if diff:
            key = diff[0]
            self.h5.close()
            raise OutputError(
                f"cannot resume {self.tmp}: it was started with {key}={_norm(old.get(key))!r}, this run has "
                f"{key}={attrs[key]!r}; rerun with the same options or use --force to start over"
            )

    def _create(self, windows, n, length, attrs, chunk):
        h5 = self.h5
        rows = max(1, min(chunk, n))
        datasets = {**_DATASETS, **(SPLIT_DATASETS if attrs.get("split_signs") else {})}
        for name, (shape, dtype) in datasets.items():
            full = (n, 4, length) if shape == "4L" else (n,)
            chunks = (rows, 4, length) if shape == "4L" else (max(rows, min(n, 4096)),)
            kw = {"compression": "gzip", "compression_opts": 4, "shuffle": True} if shape == "4L" else {}
            h5.create_dataset(name, shape=full, dtype=dtype, chunks=chunks, fillvalue=0, **kw)
        h5.create_dataset("coords_chrom", data=np.array([w.chrom for w in windows], dtype=object), dtype=_STR)
        h5.create_dataset("coords_start", data=np.array([w.start for w in windows], dtype=np.int64))
        h5.create_dataset("coords_end", data=np.array([w.end for w in windows], dtype=np.int64))
        h5.create_dataset("meta/strand", data=np.array([w.strand for w in windows], dtype=object), dtype=_STR)
        h5.create_dataset("meta/name", data=np.array([w.name for w in windows], dtype=object), dtype=_STR)
        h5.create_dataset("meta/row", data=np.array([w.row for w in windows], dtype=np.int64))
        h5.create_dataset("meta/line", data=np.array([w.line for w in windows], dtype=np.int64))
        for key, value in attrs.items():
            h5.attrs[key] = str(value) if isinstance(value, str) else value  # plain str for str subclasses
        h5.attrs["rows_done"] = 0
        h5.flush()

    def write(self, start: int, rows: dict) -> None:
        """Write rows ``start .. start + n`` and mark them done.

        Parameters
        ----------
        start : int
            First row; must equal :attr:`rows_done` (rows are written in order).
        rows : dict
            Dataset name -> array with ``n`` rows, for the names in the layout.
        """
        if start != self.rows_done:
            raise RuntimeError(f"rows must be written in order: expected row {self.rows_done}, got {start}")
        n = None
        for name, values in rows.items():
            n = len(values)
            self.h5[name][start : start + n] = values
        self.h5.attrs["rows_done"] = start + n
        self.h5.flush()

    def finish(self, extra_attrs: dict | None = None) -> Path:
        """Close the file and move it to its final name."""
        for key, value in (extra_attrs or {}).items():
            self.h5.attrs[key] = value
        self.h5.close()
        os.replace(self.tmp, self.path)
        return self.path

    def close(self) -> None:
        """Close without finishing (the partial file stays for ``--resume``)."""
        if self.h5.id.valid:
            self.h5.close()


def _norm(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def open_scores(path, needed=("raw/seq", "shap/seq", "coords_chrom", "coords_start", "coords_end")) -> h5py.File:
    """Open a scores file (written by ``seqlift score``) for reading, checking that it has ``needed`` datasets.

    Raises :class:`~seqlift.errors.ScoresError` (one line, with the fix) when the
    file is missing, is not HDF5, or lacks one of the datasets. Close the file
    when done (or use it in a ``with`` block).
    """
    if not Path(path).is_file():
        raise ScoresError(f"scores file {path} does not exist; make one with 'seqlift score'")
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise ScoresError(f"{path} is not an HDF5 scores file ({exc}); make one with 'seqlift score'") from None
    missing = [name for name in needed if name not in h5]
    if missing:
        h5.close()
        raise ScoresError(f"{path} is not a seqlift scores file: it has no dataset {missing[0]}; make one with 'seqlift score'")
    return h5


def write_npz(prefix, h5_path) -> tuple[Path, Path]:
    """modisco-lite inputs from a finished score file.

    Writes ``<prefix>.ohe.npz`` (one-hot, (N, 4, L)) and ``<prefix>.shap.npz``
    (hypothetical contributions, (N, 4, L)), each under ``arr_0``, for
    ``modisco motifs -s <prefix>.ohe.npz -a <prefix>.shap.npz``.
    """
    prefix = str(prefix)
    ohe, shap = Path(prefix + ".ohe.npz"), Path(prefix + ".shap.npz")
    with h5py.File(h5_path, "r") as h5:
        for out, name in ((ohe, "raw/seq"), (shap, "shap/seq")):
            tmp = out.with_name(out.name + ".partial.npz")
            np.savez_compressed(tmp, h5[name][:])
            os.replace(tmp, out)
    return ohe, shap
