"""The HDF5 score file: its layout, and a writer that survives a crash and resumes.

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
``meta/finite``               (N,) bool           predictions and scores are finite (False only
                                                  with ``--allow-nonfinite``)
``positive_shap/seq``         (N, 4, L) float32   with ``--split-signs``: hypothetical contributions to
                                                  the positive part of the target's delta
``negative_shap/seq``         (N, 4, L) float32   ... and to its negative part (the two add up to
                                                  ``shap/seq``)
============================  ==================  ===============================================

How a run survives a crash
--------------------------
The output appears, by a rename, only when every row is scored. Finished
batches are written as *fragments*, ``<output>.partial/rows-<start>-<end>.npz``,
each under a temporary name, flushed to disk and renamed, so a fragment is
either complete or absent whatever instant the process dies at (kill -9, a
node failure, a full disk). A fragment holds one batch, or the consecutive
batches finished within about a second (:data:`FLUSH_S`), so that a fast model
does not pay a file and an ``fsync`` per batch; a run that stops writes the
batches it holds before it exits, and a kill loses at most that second. The
4 x L datasets are stored in a fragment as the very HDF5 chunks of the final file (byte-shuffled and deflated as h5py's
``shuffle`` + ``gzip`` filters do), so they are compressed once, as the batch
finishes. Once its fragment is safe, the writer also copies the batch's
chunks, without recompressing them, into ``<output>.partial/assembling.h5``,
the final file under construction, so that finishing a run only adds the
attributes and renames it (for :data:`MAX_ASSEMBLING` outputs at a time; the
others are assembled from their fragments when they finish). That file is never trusted after a crash: a run
that stops removes it, and a resumed run makes it anew, taking the batches of
the earlier run from their fragments. ``--resume`` checks every fragment (zip
CRC) and scores only the batches that have none, so every dataset is the same,
down to its compressed chunks, as in an uninterrupted run; the rows a run
finished are never deleted by a later run, only folded into the final file
when it is complete. The folder's ``run.json`` holds the provenance that must
match for ``--resume``, and a lock (:class:`~seqlift.outputs.OutputLock`)
keeps a second run off the same output.

This design was chosen over rewriting one HDF5 file in place (HDF5 metadata
and rewritten compressed chunks are not crash-consistent: a kill leaves rows
counted as done that cannot be read) and over SWMR (which guards readers, not
a writer's crash). It costs a second copy of the compressed bytes, made while
the next batches are scored, not a second compression.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import threading
import time
import zipfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np
from isal import isal_zlib

from .errors import OutputError, ScoresError, SeqliftError
from .outputs import OutputLock, atomic_output, check_absent, disk_error, durable_replace, fsync_dir

if TYPE_CHECKING:  # seqlift.attribution loads torch, seqlift.regions pyfaidx; the writer needs neither
    from .attribution import Attributions
    from .regions import Window

_STR = h5py.string_dtype()
#: Datasets of a window's coordinates and identity, and the column of :func:`~seqlift.regions.window_columns` each holds.
_COORDINATES = {
    "coords_chrom": "chrom",
    "coords_start": "start",
    "coords_end": "end",
    "meta/strand": "strand",
    "meta/name": "name",
    "meta/row": "row",
    "meta/line": "line",
}

#: name -> (shape after N, dtype); "4L" datasets are (N, 4, L).
_DATASETS = {
    "raw/seq": ("4L", np.uint8),
    "shap/seq": ("4L", np.float32),
    "projected_shap/seq": ("4L", np.float32),
    "meta/prediction": ((), np.float32),
    "meta/reference_prediction": ((), np.float32),
    "meta/delta_error": ((), np.float32),
    "meta/delta_rel_error": ((), np.float32),
    "meta/low_complexity": ((), bool),
    "meta/finite": ((), bool),
}

#: Written with ``--split-signs``.
SPLIT_DATASETS = {"positive_shap/seq": ("4L", np.float32), "negative_shap/seq": ("4L", np.float32)}

#: Attributes that must match for ``--resume`` to continue a partial run.
RUN_KEYS = (
    "seqlift_version",
    "model",
    "model_sha256",
    "model_kwargs",
    "method",
    "rule",
    "max_rule",
    "reference",
    "reference_sha256",
    "n_refs",
    "shuffle_k",
    "seed",
    "target",
    "output_index",
    "batch_size",
    "regions_sha256",
    "fasta",
    "fasta_sha256",
    "n_regions",
    "input_length",
    "split_signs",
    "normalize_input_weights",
    "rc_average",
    "gc_tolerance",
    "exclude",
    "exclude_sha256",
    "shard",
    "steps",
    "compression",
)

#: Compression of the 4 x L datasets: gzip-1 .. gzip-9 (deflate after h5py's byte shuffle), lzf, or none.
#: Every gzip level is read by h5py's own gzip filter. gzip-1 .. gzip-3 are deflated with ISA-L (python-isal),
#: whose levels stop at 3, gzip-4 .. gzip-9 with zlib. gzip-1 is the default: on score arrays ISA-L's level 1
#: encodes 5.4-5.6x as fast as zlib's level 1, to files within 2% of their size, and gzip-4 makes them only
#: 2-5% smaller at an eighth to a seventh of the speed (benchmarks/bench_compression.py).
COMPRESSIONS = (*(f"gzip-{level}" for level in range(1, 10)), "lzf", "none")
DEFAULT_COMPRESSION = "gzip-1"
_MAX_CHUNK_ROWS = 64
_FRAGMENT = re.compile(r"rows-([0-9]{10})-([0-9]{10})\.npz")
#: Seconds of scoring a fragment gathers at most: consecutive batches that come faster than this are written
#: to disk together, one fragment, one ``fsync``, instead of one each (a batch that takes longer is written
#: alone, as soon as it is handed over).
FLUSH_S = 1.0
#: ... and the batches all writers of the process hold are at most this many bytes of compressed chunks (fast
#: models on big batches, or ``--target all`` with one writer a target): held longer, they raised the peak memory
#: of a 30k-region run of a tiny model at 256 regions a call by 20 to 50 MiB; held to this, not at all.
FLUSH_BYTES = 4 << 20
_ASSEMBLING = "assembling.h5"


def partial_path(path: str | Path) -> Path:
    """Where an unfinished output is written (a file for most commands, a folder of fragments for ``score``)."""
    return Path(str(path) + ".partial")


def check_output(path: str | Path, force: bool = False, resume: bool = False) -> dict | None:
    """Refuse, before any work, what :class:`ScoreWriter` would refuse: an existing output without ``force``,
    a missing folder, an unfinished run without ``resume`` or ``force``.

    Returns the provenance (``run.json``) of the unfinished run that ``resume`` continues, else None.
    """
    path = check_absent(path, force)
    folder = partial_path(path)
    run = folder / "run.json"
    if force or not folder.is_dir() or not (run.exists() or any(folder.glob("rows-*.npz"))):
        return None
    if not resume:
        raise _unfinished(folder)
    try:
        return json.loads(run.read_text())
    except (OSError, ValueError):
        return None  # the writer says why it cannot resume


def _unfinished(folder) -> OutputError:
    return OutputError(f"an unfinished run left {folder}; use --resume to continue it or --force to start over")


def chunk_rows(batch_size: int) -> int:
    """Rows per HDF5 chunk: the largest divisor of ``batch_size`` up to 64, so every batch is whole chunks."""
    return max(d for d in range(1, min(batch_size, _MAX_CHUNK_ROWS) + 1) if batch_size % d == 0)


def dataset_filters(compression: str) -> dict:
    """h5py ``create_dataset`` keywords of a compression in :data:`COMPRESSIONS`."""
    if compression == "none":
        return {}
    if compression == "lzf":
        return {"compression": "lzf", "shuffle": True}
    if compression not in COMPRESSIONS:
        raise ValueError(f"unknown compression {compression!r}; choose one of {', '.join(COMPRESSIONS)}")
    return {"compression": "gzip", "compression_opts": int(compression.split("-")[1]), "shuffle": True}


def compression_of(dset: h5py.Dataset) -> str | None:
    """The name in :data:`COMPRESSIONS` whose :func:`dataset_filters` a (N, 4, L) dataset has, or None when it
    has other filters or is not such a dataset."""
    if dset.ndim != 3 or not dset.chunks or dset.fletcher32 or dset.scaleoffset is not None:
        return None
    if dset.compression == "gzip":
        name = f"gzip-{dset.compression_opts}"
    else:
        name = {"lzf": "lzf", None: "none"}.get(dset.compression)
    if name not in COMPRESSIONS or dset.shuffle != (name != "none"):
        return None
    return name


def encode_chunks(
    values: np.ndarray, rows: int, compression: str = DEFAULT_COMPRESSION
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The HDF5 chunks of ``values`` (n, 4, L), ``rows`` per chunk, as the filters of ``compression`` store them.

    gzip is done here with ISA-L (levels 1-3) or zlib (4-9), both of which let
    other threads run; lzf through an in-memory HDF5 file. The last chunk is padded with zeros (the datasets'
    fill value) to ``rows``.

    Returns
    -------
    blob : np.ndarray of uint8
        The compressed chunks, one after the other.
    ends : np.ndarray of int64
        End offset of each chunk in ``blob``.
    masks : np.ndarray of uint32
        HDF5's filter mask of each chunk (a set bit: that optional filter was skipped, as lzf does for a
        chunk it cannot shrink).
    """
    values = np.ascontiguousarray(values)
    n = len(values)
    pad = -n % rows
    if pad:
        values = np.concatenate([values, np.zeros((pad,) + values.shape[1:], values.dtype)])
    size = values.dtype.itemsize
    parts, masks = [], []
    if compression == "lzf":
        with h5py.File(f"seqlift-lzf-{id(values)}", "w", driver="core", backing_store=False) as mem:
            dset = mem.create_dataset("x", data=values, chunks=(rows, *values.shape[1:]), **dataset_filters("lzf"))
            for i in range(0, len(values), rows):
                mask, chunk = dset.id.read_direct_chunk((i, 0, 0))
                masks.append(mask)
                parts.append(chunk)
    for i in range(0, len(values), rows) if compression != "lzf" else ():
        raw = values[i : i + rows].tobytes()
        if compression == "none":
            parts.append(raw)
            continue
        if size > 1:  # the shuffle filter: byte k of every element together
            raw = np.frombuffer(raw, np.uint8).reshape(-1, size).T.tobytes()
        level = int(compression.split("-")[1])
        parts.append((isal_zlib if level <= isal_zlib.ISAL_BEST_COMPRESSION else zlib).compress(raw, level))
    ends = np.cumsum([len(p) for p in parts], dtype=np.int64)
    masks = np.asarray(masks or [0] * len(parts), dtype=np.uint32)
    return np.frombuffer(b"".join(parts), np.uint8), ends, masks


def write_chunks(dset: h5py.Dataset, start: int, blob: np.ndarray, ends: np.ndarray, masks: np.ndarray) -> None:
    """Store chunks made by :func:`encode_chunks` in ``dset`` as they are, the first at row ``start``."""
    rows, begin = dset.chunks[0], 0
    for j, (stop, mask) in enumerate(zip(ends, masks)):
        offset = (start + j * rows,) + (0,) * (dset.ndim - 1)
        dset.id.write_direct_chunk(offset, blob[begin:stop].tobytes(), filter_mask=int(mask))
        begin = stop


#: Assembling files (see :meth:`ScoreWriter._store`) one process keeps open at once. Outputs beyond them (as
#: with ``--target all`` on a model of many outputs) are assembled from their fragments when they finish, so
#: that a run never holds more than this many extra file descriptors.
MAX_ASSEMBLING = 16


class ScoreWriter:
    """Collects score rows batch by batch in crash-safe fragments, then assembles the HDF5 file.

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
    batch_size : int, optional
        Rows per batch; batch ``i`` holds rows ``[i * batch_size, (i + 1) * batch_size)``. Default: all rows.
    force : bool
        Overwrite an existing output, and discard the fragments of an earlier, unfinished run.
    resume : bool
        Continue an unfinished run: keep its fragments, score the rest.

    Raises
    ------
    OutputError
        When the output exists (without ``force``), an unfinished run is there
        (without ``resume`` or ``force``), it was started with other options,
        another process is writing it, or its folder cannot be written.
    """

    _open_assemblies = 0  # assembling files open in this process (MAX_ASSEMBLING at most)
    _held_bytes = 0  # bytes of the batches that all writers of this process hold for their next fragment
    _held_lock = threading.Lock()  # ... counted under this lock: runs in threads of one process share it

    def __init__(
        self,
        path: str | Path,
        windows: Sequence[Window],
        length: int,
        attrs: Mapping[str, Any],
        batch_size: int | None = None,
        force: bool = False,
        resume: bool = False,
    ) -> None:
        self.path = Path(path)
        self.dir = partial_path(self.path)
        self.windows = windows
        self.length = int(length)
        self.batch_size = int(batch_size or max(1, len(windows)))
        self.chunk = chunk_rows(max(1, min(self.batch_size, len(windows))))  # a chunk fits in the dataset
        self.attrs = {k: (str(v) if isinstance(v, str) else v) for k, v in attrs.items()}
        self.datasets = {**_DATASETS, **(SPLIT_DATASETS if attrs.get("split_signs") else {})}
        self.compression = str(attrs.get("compression", DEFAULT_COMPRESSION))
        dataset_filters(self.compression)  # checks the name
        self.lock = None
        self.created = False
        self.done: set[int] = set()
        self._h5 = None  # the final file under construction, <dir>/assembling.h5 (see _store)
        self._chunked: dict[str, h5py.Dataset] = {}  # its 4 x L datasets, opened once
        self._meta: dict[str, np.ndarray] = {}  # its (N,) datasets, written by finish()
        self._stored: set[int] = set()  # batch starts already in it
        self._fragments: dict[int, tuple[int, int]] = {}  # batch start -> rows of the fragment holding it
        self._pending: list[tuple[int, int, dict]] = []  # batches handed over, not yet in a fragment (flush)
        self._pending_since = 0.0  # time.monotonic() when the first of them came
        self._pending_bytes = 0
        self._last_write: float | None = None  # ... and when the last batch came, to tell how fast they come
        self._interval = float("inf")
        check_output(self.path, force, resume)
        if self.dir.is_file() or self.dir.is_symlink():
            if not force:
                raise OutputError(f"{self.dir} is a partial file of an older seqlift; use --force to start over")
            self.dir.unlink()
        hint = f"choose an output in a folder you can write, with room for about {self._estimate()}"
        try:
            if not self.dir.exists():
                self.dir.mkdir()
                self.created = True
            self.lock = OutputLock(self.dir / "lock", self.path)
        except OSError as exc:
            raise disk_error(exc, self.dir, hint) or exc from None
        try:
            self._open(force, resume, hint)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> ScoreWriter:
        return self

    def __exit__(self, *exc) -> None:
        """Release the lock as :meth:`close` does: finished batches stay for ``--resume``."""
        self.close()

    def _estimate(self) -> str:
        n4 = sum(1 for shape, _ in self.datasets.values() if shape == "4L")
        return f"{len(self.windows) * 4 * self.length * n4 * 2 / 1e9:.2g} GB"

    def _open(self, force, resume, hint):
        run = self.dir / "run.json"
        fragments = sorted(self.dir.glob("rows-*.npz"))
        if run.exists() or fragments:
            if resume and not force:
                self._check_resumable(run)
                self.done = self._verify(fragments)
                return
            if not force:
                raise _unfinished(self.dir)
            for item in self.dir.iterdir():  # --force: start over (the lock keeps live runs out)
                if item.name != "lock":
                    shutil.rmtree(item) if item.is_dir() else item.unlink()
        try:
            tmp = self.dir / f".run.json.{os.getpid()}"
            tmp.write_text(json.dumps(self.attrs, default=_jsonable, indent=1, sort_keys=True))
            durable_replace(tmp, run)
        except OSError as exc:
            raise disk_error(exc, run, hint) or exc from None

    def _check_resumable(self, run: Path) -> None:
        try:
            old = json.loads(run.read_text())
        except (OSError, ValueError) as exc:
            raise OutputError(
                f"cannot resume {self.dir}: {run.name} is unreadable ({exc}); use --force to start over"
            ) from None
        diff = [k for k in RUN_KEYS if k in self.attrs and _norm(old.get(k)) != _norm(self.attrs[k])]
        if diff:
            key = diff[0]
            raise OutputError(
                f"cannot resume {self.dir}: it was started with {key}={_norm(old.get(key))!r}, this run has "
                f"{key}={self.attrs[key]!r}; rerun with the same options or use --force to start over"
            )

    def _verify(self, fragments) -> set[int]:
        """Batch starts whose fragment is complete and intact; a damaged one is set aside as ``.bad``."""
        done = set()
        n = len(self.windows)
        for frag in fragments:
            match = _FRAGMENT.fullmatch(frag.name)
            ok = match is not None
            if ok:
                start, end = int(match[1]), int(match[2])
                starts = range(start, end, self.batch_size)
                ok = (
                    start % self.batch_size == 0
                    and start < end <= n
                    and (end % self.batch_size == 0 or end == n)
                    and not any(s in done for s in starts)
                )
            if ok:
                try:
                    with zipfile.ZipFile(frag) as z:
                        ok = z.testzip() is None and "meta__finite.npy" in z.namelist()
                except (OSError, zipfile.BadZipFile, EOFError):
                    ok = False
            if ok:
                done.update(starts)
                self._fragments.update(dict.fromkeys(starts, (start, end)))
            else:
                os.replace(frag, frag.with_name(frag.name + ".bad"))
        return done

    @property
    def rows_done(self) -> int:
        """Rows in finished fragments."""
        n = len(self.windows)
        return sum(min(s + self.batch_size, n) - s for s in self.done)

    def has(self, start: int) -> bool:
        """Whether the batch starting at row ``start`` is finished."""
        return start in self.done

    def write(self, start: int, rows: dict) -> None:
        """Hand over the batch starting at row ``start``; it is written durably, as a fragment of its own or
        with the batches that follow it within :data:`FLUSH_S` (:meth:`flush`).

        Parameters
        ----------
        start : int
            First row; a multiple of ``batch_size``.
        rows : dict
            Dataset name -> array with one row per window of the batch. A dataset left out keeps the fill
            value (0; True for ``meta/finite``).
        """
        n = len(self.windows)
        end = min(start + self.batch_size, n)
        if start % self.batch_size or start >= n:
            raise ValueError(f"batch start {start} is not on the batch grid of {self.batch_size} rows")
        arrays = {}
        for name, (shape, dtype) in self.datasets.items():
            if name not in rows:
                if shape == "4L":
                    continue
                values = np.full(end - start, name == "meta/finite", dtype)
            else:
                values = np.asarray(rows[name]).astype(dtype, copy=False)
            if len(values) != end - start:
                raise ValueError(f"{name}: {len(values)} rows for a batch of {end - start}")
            if shape == "4L":
                key = _key(name)
                arrays[key], arrays[key + ".ends"], arrays[key + ".masks"] = encode_chunks(
                    values, self.chunk, self.compression
                )
            else:
                arrays[_key(name)] = values
        now = time.monotonic()
        if self._pending and self._pending[-1][1] != start:  # not the next batch: not in the same fragment
            self.flush()
        if self._last_write is not None:
            self._interval = now - self._last_write
        self._last_write = now
        if not self._pending:
            self._pending_since = now
        self._pending.append((start, end, arrays))
        size = sum(v.nbytes for v in arrays.values())
        self._pending_bytes += size
        with ScoreWriter._held_lock:
            ScoreWriter._held_bytes += size
            held = ScoreWriter._held_bytes
        # the next batch would come too late, or the batches held take too much memory
        if now - self._pending_since + self._interval >= FLUSH_S or held >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write the batches handed to :meth:`write` and not yet on disk, as one fragment, durably."""
        if not self._pending:
            return
        pending, n = self._pending, len(self.windows)
        start, end = pending[0][0], pending[-1][1]
        if len(pending) == 1:
            arrays = pending[0][2]
        else:
            arrays = {}
            for key in pending[0][2]:
                if key.endswith(".ends"):  # made with its blob, below
                    continue
                parts = [batch[key] for _, _, batch in pending]
                arrays[key] = np.concatenate(parts)
                if key + ".ends" in pending[0][2]:  # a blob of chunks: its ends continue from the last batch's
                    shift = np.cumsum([0] + [len(p) for p in parts[:-1]])
                    arrays[key + ".ends"] = np.concatenate(
                        [batch[key + ".ends"] + k for k, (_, _, batch) in zip(shift, pending)]
                    )
        final = self.dir / f"rows-{start:010d}-{end:010d}.npz"
        tmp = self.dir / f".{final.name}.{os.getpid()}.tmp"
        try:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
            durable_replace(tmp, final)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            err = disk_error(
                exc,
                final,
                f"{self.rows_done} of {n} rows are finished in {self.dir}: make room, "
                "then rerun the same command with --resume",
            )
            raise err or exc from None
        finally:
            with ScoreWriter._held_lock:
                ScoreWriter._held_bytes -= self._pending_bytes
            self._pending, self._pending_bytes = [], 0
        starts = [s for s, _, _ in pending]
        self.done.update(starts)
        self._fragments.update(dict.fromkeys(starts, (start, end)))
        if self._h5 is None and ScoreWriter._open_assemblies >= MAX_ASSEMBLING:
            return  # finish() assembles this output from its fragments
        try:
            self._store(start, end, arrays)
        except OSError:
            self._drop_assembly()  # the fragment is safe: finish() puts the batch in from there

    def finish(self, extra_attrs: dict | None = None) -> Path:
        """Complete ``<dir>/assembling.h5`` (the batches not in it yet come from their fragments), move it to the
        output, and remove the fragments."""
        self.flush()
        n = len(self.windows)
        missing = [s for s in range(0, n, self.batch_size) if s not in self.done]
        if missing:
            raise RuntimeError(f"cannot finish {self.path}: batch at row {missing[0]} is not scored")
        try:
            # resumed, or left out after a failed write
            for start, end in sorted({self._fragments[s] for s in self.done - self._stored}):
                with np.load(self.dir / f"rows-{start:010d}-{end:010d}.npz", allow_pickle=False) as frag:
                    self._store(start, end, frag)
            h5, meta = self._assembly(), self._meta
            rows = max(1, min(n, 4096))
            for name, values in meta.items():
                h5.create_dataset(name, data=values, chunks=(rows,))
            for key, value in {**self.attrs, **(extra_attrs or {})}.items():
                h5.attrs[key] = value
            h5.attrs["rows_done"] = n
            tol = float(self.attrs.get("tolerance", 1e-3))
            h5.attrs["n_delta_violations"] = int((~(meta["meta/delta_rel_error"] <= tol)).sum())
            h5.attrs["n_low_complexity"] = int(meta["meta/low_complexity"].sum())
            h5.attrs["n_nonfinite"] = int((~meta["meta/finite"]).sum())
            self._close_assembly()
            durable_replace(self.dir / _ASSEMBLING, self.path)
        except (OSError, RuntimeError) as exc:
            self._drop_assembly()
            err = (
                disk_error(
                    exc,
                    self.path,
                    f"every row is finished in {self.dir}: make room, then rerun the same command with --resume",
                )
                if isinstance(exc, OSError)
                else None
            )
            raise err or exc from None
        self.close(remove=True)
        return self.path

    def _assembly(self) -> h5py.File:
        """``<dir>/assembling.h5``, open: made on first use with the 4 x L datasets and the coordinates (the
        per-row values wait in memory, :attr:`_meta`, to be written at the end in one go)."""
        if self._h5 is not None:
            return self._h5
        n, windows = len(self.windows), self.windows
        h5 = self._h5 = h5py.File(self.dir / _ASSEMBLING, "w")
        ScoreWriter._open_assemblies += 1
        self._meta = {}
        for name, (shape, dtype) in self.datasets.items():
            if shape == "4L":
                self._chunked[name] = h5.create_dataset(
                    name,
                    shape=(n, 4, self.length),
                    dtype=dtype,
                    chunks=(self.chunk, 4, self.length),
                    fillvalue=0,
                    **dataset_filters(self.compression),
                )
            else:
                self._meta[name] = np.empty(n, dtype)
        # imported here: seqlift.regions loads pyfaidx, which the rest of the writer needs not
        from .regions import window_columns

        columns = window_columns(windows)
        for dataset, column in _COORDINATES.items():
            values = columns[column]
            h5.create_dataset(dataset, data=values, **({"dtype": _STR} if values.dtype == object else {}))
        return h5

    def _store(self, start: int, end: int, arrays: Mapping[str, np.ndarray]) -> None:
        """Put the batch of rows ``[start, end)`` into the assembling file, from the arrays of its fragment
        (the 4 x L datasets as their compressed chunks, copied without recompressing them).

        The batch's fragment is durable before this runs, so the assembling file
        needs no care in a crash: a later run makes it anew from the fragments.
        """
        self._assembly()
        for name, (shape, _) in self.datasets.items():
            key = _key(name)
            if shape != "4L":
                self._meta[name][start:end] = arrays[key]
            elif key in arrays:  # else never written: the fill value
                write_chunks(self._chunked[name], start, *(arrays[key + suffix] for suffix in ("", ".ends", ".masks")))
        self._stored.update(range(start, end, self.batch_size))

    def _close_assembly(self) -> None:
        h5, self._h5 = self._h5, None
        self._chunked = {}
        if h5 is not None:
            ScoreWriter._open_assemblies -= 1
            h5.close()

    def _drop_assembly(self) -> None:
        """Close and remove the assembling file; the fragments stay."""
        self._stored.clear()
        self._meta = {}
        with contextlib.suppress(Exception):  # a file that cannot be closed cleanly is removed all the same
            self._close_assembly()
        with contextlib.suppress(OSError):  # where it cannot go, the next run's "w" truncates it
            (self.dir / _ASSEMBLING).unlink(missing_ok=True)

    def close(self, remove: bool = False) -> None:
        """Release the lock. The fragments stay for ``--resume``; the folder goes only when ``remove`` (the
        output is complete) or when this run made it and finished no batch."""
        if self.lock is None:
            return
        try:
            if not remove:
                with contextlib.suppress(OSError, SeqliftError):  # a failed write has said why already
                    self.flush()
                self._drop_assembly()
            if remove or (self.created and not any(self.dir.glob("rows-*.npz"))):
                shutil.rmtree(self.dir, ignore_errors=True)
                fsync_dir(self.dir.parent)
        finally:
            self.lock.release()
            self.lock = None


def score_rows(X: np.ndarray, a: Attributions, same: np.ndarray, finite: np.ndarray) -> dict[str, np.ndarray]:
    """The rows of one batch for :meth:`ScoreWriter.write`: every dataset of the layout, from a method's result.

    Parameters
    ----------
    X : np.ndarray, shape=(B, 4, L)
        One-hot inputs of the batch.
    a : Attributions
        The method's result for ``X``.
    same : np.ndarray, shape=(B,), bool
        Windows whose every reference equals the input (``meta/low_complexity``).
    finite : np.ndarray, shape=(B,), bool
        Windows whose predictions and scores are finite (``meta/finite``).

    Returns
    -------
    dict
        Dataset name -> array with one row per window.
    """
    hyp = a.hypothetical.astype(np.float32)
    rows = {
        "raw/seq": X,
        "shap/seq": hyp,
        "projected_shap/seq": hyp * X,
        "meta/prediction": a.predictions,
        "meta/reference_prediction": (
            a.reference_predictions.mean(axis=1)
            if a.reference_predictions.shape[1]
            else np.full(len(X), np.nan, np.float32)
        ),
        "meta/delta_error": a.delta_error,
        "meta/delta_rel_error": a.relative_error,
        "meta/low_complexity": same,
        "meta/finite": finite,
    }
    if a.hypothetical_positive is not None:
        rows["positive_shap/seq"] = a.hypothetical_positive.astype(np.float32)
        rows["negative_shap/seq"] = a.hypothetical_negative.astype(np.float32)
    return rows


def _key(name: str) -> str:
    return name.replace("/", "__")


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _norm(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def open_scores(
    path: str | Path, needed: Iterable[str] = ("raw/seq", "shap/seq", "coords_chrom", "coords_start", "coords_end")
) -> h5py.File:
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
        raise ScoresError(
            f"{path} is not a seqlift scores file: it has no dataset {missing[0]}; make one with 'seqlift score'"
        )
    return h5


def write_npz(prefix: str | Path, h5_path: str | Path) -> tuple[Path, Path]:
    """modisco-lite inputs from a finished score file.

    Writes ``<prefix>.ohe.npz`` (one-hot, (N, 4, L)) and ``<prefix>.shap.npz``
    (hypothetical contributions, (N, 4, L)), each under ``arr_0``, for
    ``modisco motifs -s <prefix>.ohe.npz -a <prefix>.shap.npz``.
    """
    prefix = str(prefix)
    ohe, shap = Path(prefix + ".ohe.npz"), Path(prefix + ".shap.npz")
    with h5py.File(h5_path, "r") as h5:
        for out, name in ((ohe, "raw/seq"), (shap, "shap/seq")):
            with atomic_output(out, force=True, suffix=".partial.npz") as tmp:  # savez adds .npz to other names
                np.savez_compressed(tmp, h5[name][:])
    return ohe, shap
