"""Merging the shards of one ``seqlift score --shard k-of-n`` run back into one file.

Which rows a shard scores is decided in :mod:`seqlift.shards`. A region's
references depend only on the seed and its coordinates, so a shard's rows equal
the same rows of an unsharded run, and :func:`merge_scores` puts the shards
back together in input order (by ``meta/row``), giving the datasets of the
unsharded run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from .errors import ScoresError, UsageError
from .outputs import atomic_output, check_absent
from .progress import progress_bar
from .shards import parse_shard
from .writers import RUN_KEYS, _norm, compression_of, dataset_filters, encode_chunks, open_scores, write_chunks

#: Attributes that must be equal in every shard of one run (those that change the scores).
MERGE_KEYS = tuple(k for k in RUN_KEYS if k not in ("batch_size", "n_regions", "shard")) + (
    "n_models",
    "target_space",
    "n_regions_total",
)

#: Datasets a shard must have to be merged (the rows are put in order by ``meta/row``; the rest is copied as it is).
_NEEDED = ("meta/row",)

#: Per-row counts, summed over the shards.
_COUNTS = ("n_regions", "rows_done", "n_delta_violations", "n_low_complexity")

#: Bytes of one dataset read per copy step.
_STEP_BYTES = 32 << 20


def merge_scores(
    inputs: Sequence[str | Path],
    output: str | Path,
    *,
    force: bool = False,
    progress: bool = True,
    command: str | None = None,
) -> Path:
    """Join the shards of one ``seqlift score --shard k-of-n`` run into one score file.

    The result holds every dataset of the shards with the rows in input order
    (by ``meta/row``), equal to the datasets of the same run without
    ``--shard``. Rows are copied chunk by chunk (memory does not grow with N)
    into ``<output>.partial``, renamed when complete. Attributes: those equal
    in every shard, the per-row counts (``n_regions``, ``n_delta_violations``,
    ...) summed, ``merged_from`` (the input paths, in shard order) and ``command``;
    ``shard`` and ``n_regions_total`` are dropped, and so are attributes that
    differ between shards without changing the scores (``batch_size`` and ``batch_size_probe``,
    ``device``; the shards keep them).

    Parameters
    ----------
    inputs : sequence of str or Path
        Shard files, in any order: all ``n`` shards of one ``k-of-n`` split.
    output : str or Path
        The merged HDF5 file.
    force : bool
        Overwrite an existing output.
    progress : bool
        Show a progress bar on stderr.
    command : str, optional
        The command line, stored with the result.

    Returns
    -------
    Path
        The merged file.

    Raises
    ------
    UsageError
        When no shard is given.
    ScoresError
        When a shard file is missing, is not HDF5, has no ``meta/row`` or is not a shard (the first three as
        :func:`seqlift.writers.open_scores` says them), or the shards come from different runs, hold other
        datasets, overlap (a ``meta/row`` twice) or are incomplete (a shard ``k`` missing).
    OutputError
        When ``output`` exists and ``force`` is false, or its folder does not exist.
    """
    output = Path(output)
    paths = [Path(p) for p in inputs]
    if not paths:
        raise UsageError("no shard given; pass the files written by seqlift score --shard k-of-n")
    check_absent(output, force)
    files = []
    try:
        for path in paths:
            files.append(open_scores(path, _NEEDED))
        files, shards = _order(files)
        datasets = _check_same_run(files)
        n_rows = _check_rows(files, shards)
        with atomic_output(output, force=force) as tmp, h5py.File(tmp, "w") as out:
            _copy(files, datasets, n_rows, out, progress)
            out.attrs.update(_merged_attrs(files, command))
    finally:
        for h5 in files:
            h5.close()
    return output


def _order(files):
    """The files sorted by shard index, and their ``(k, n)``; every file must be a shard of the same ``n``."""
    shards = []
    for h5 in files:
        if "shard" not in h5.attrs:
            raise ScoresError(
                f"{h5.filename} has no 'shard' attribute, so it is not a shard; merge the outputs of "
                "seqlift score --shard k-of-n"
            )
        shards.append(parse_shard(str(_norm(h5.attrs["shard"]))))
    n = {s[1] for s in shards}
    if len(n) > 1:
        given = ", ".join(f"{k}-of-{m}" for k, m in shards)
        raise ScoresError(
            f"the shards split the regions in different numbers of parts ({given}); merge the shards of one split"
        )
    order = sorted(range(len(files)), key=lambda i: (shards[i][0], files[i].filename))
    return [files[i] for i in order], [shards[i] for i in order]


def _check_same_run(files) -> dict:
    """Dataset name -> (dtype, shape after N) shared by every file; provenance that must match does."""
    first = files[0]
    expected = _datasets(first)
    for h5 in files[1:]:
        for key in MERGE_KEYS:
            a, b = _norm(first.attrs.get(key)), _norm(h5.attrs.get(key))
            if a != b:
                raise ScoresError(
                    f"{h5.filename} is not from the same run as {first.filename}: {key} is {b!r} there and {a!r} in "
                    f"{first.filename}; merge shards scored with the same options"
                )
        found = _datasets(h5)
        if found != expected:
            name = sorted(set(found.items()) ^ set(expected.items()))[0][0]
            raise ScoresError(
                f"{h5.filename} and {first.filename} hold different datasets: {name!r} differs or is missing in one; "
                "merge shards scored with the same options"
            )
    return expected


def _datasets(h5) -> dict:
    n = h5["meta/row"].shape[0]
    found = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            if obj.ndim == 0 or obj.shape[0] != n:
                raise ScoresError(
                    f"dataset {name!r} of {h5.filename} has shape {obj.shape}, not one row per region ({n}); "
                    "give score files written by seqlift score --shard"
                )
            found[name] = (obj.dtype.str, h5py.check_string_dtype(obj.dtype) is not None, obj.shape[1:])

    h5.visititems(visit)
    return found


def _check_rows(files, shards) -> int:
    """Rows of the merged file; the shards must not overlap, must be complete and in input order."""
    per_file = [h5["meta/row"][:] for h5 in files]
    rows = np.concatenate(per_file)
    values, counts = np.unique(rows, return_counts=True)
    if (counts > 1).any():
        row = values[np.flatnonzero(counts > 1)[0]]
        holders = [h5.filename for h5, r in zip(files, per_file) if row in r]
        raise ScoresError(
            f"the shards overlap: region row {row} (0-based, input order) is in {' and '.join(holders)}; "
            "give each shard once"
        )
    n = shards[0][1]
    missing = sorted(set(range(1, n + 1)) - {k for k, _ in shards})
    if missing:
        raise ScoresError(
            f"shard(s) {', '.join(f'{k}-of-{n}' for k in missing)} missing: {len(files)} of {n} shards given; "
            "score the missing shards and merge all of them"
        )
    if (np.diff(rows) <= 0).any():
        raise ScoresError(
            "the shards' meta/row are not consecutive blocks in input order; merge the unmodified outputs of "
            "seqlift score --shard k-of-n"
        )
    return len(rows)


def _copy(files, datasets, n, out, progress):
    """Copy every dataset, shard after shard, a bounded number of rows at a time.

    The (N, 4, L) datasets are compressed by the score writer's own encoding
    (:func:`~seqlift.writers.encode_chunks`, ISA-L for gzip-1), their chunks
    written whole; the rest goes through HDF5's filters.
    """
    first = files[0]
    chunked = {}
    for name in datasets:
        src = first[name]
        rows = max((h5[name].chunks or (n,))[0] for h5 in files)
        compression = compression_of(src)
        if compression is not None and all(compression_of(h5[name]) == compression for h5 in files):
            filters = dataset_filters(compression)
        else:
            compression = None
            filters = dict(compression=src.compression, compression_opts=src.compression_opts, shuffle=src.shuffle)
        out.create_dataset(
            name,
            shape=(n,) + src.shape[1:],
            dtype=src.dtype,
            chunks=(min(rows, n),) + src.chunks[1:] if src.chunks else None,
            **filters,
        )
        if compression is not None:
            chunked[name] = _ChunkWriter(out[name], compression)
    with progress_bar(desc="merging", unit="region", show=progress, total=n) as bar:
        offset = 0
        for h5 in files:
            size = h5["meta/row"].shape[0]
            for name in datasets:
                src, dst = h5[name], out[name]
                step = max(1, _STEP_BYTES // max(1, src.dtype.itemsize * int(np.prod(src.shape[1:]))))
                for a in range(0, size, step):
                    b = min(size, a + step)
                    if name in chunked:
                        chunked[name].add(src[a:b])
                    else:
                        dst[offset + a : offset + b] = src[a:b]
            offset += size
            bar.update(size)
        for writer in chunked.values():
            writer.add(None)


class _ChunkWriter:
    """Writes the rows of one dataset, handed over in order in blocks of any size, as whole compressed chunks."""

    def __init__(self, dset, compression: str) -> None:
        self.dset, self.compression, self.chunk = dset, compression, dset.chunks[0]
        self.pending: list[np.ndarray] = []
        self.start = 0  # first row not written yet

    def add(self, values: np.ndarray | None) -> None:
        """Add the next rows; None: there are no more (the last chunk is written, padded)."""
        if values is not None:
            self.pending.append(values)
        rows = sum(len(v) for v in self.pending)
        whole = rows if values is None else rows - rows % self.chunk
        if not whole:
            return
        block = np.concatenate(self.pending) if len(self.pending) > 1 else self.pending[0]
        write_chunks(self.dset, self.start, *encode_chunks(block[:whole], self.chunk, self.compression))
        self.start += whole
        self.pending = [block[whole:]] if whole < rows else []


def _merged_attrs(files, command) -> dict:
    attrs = {}
    for key, value in files[0].attrs.items():
        if key in _COUNTS:
            attrs[key] = sum(int(h5.attrs.get(key, 0)) for h5 in files)
        elif all(key in h5.attrs and _norm(h5.attrs[key]) == _norm(value) for h5 in files[1:]):
            attrs[key] = value
    for key in ("shard", "n_regions_total"):
        attrs.pop(key, None)
    attrs["merged_from"] = [h5.filename for h5 in files]
    if command:
        attrs["command"] = command
    return attrs
