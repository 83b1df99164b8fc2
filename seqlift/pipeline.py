"""``seqlift.score``: regions in a FASTA to an HDF5 file of DeepLIFT scores.

The Python function behind ``seqlift score``: :func:`score` takes every
option of the command as a keyword argument and builds a
:class:`~seqlift.score_options.ScoreOptions` from them (the command line
builds one from its flags); :func:`run_score` runs it. The methods are in
:mod:`seqlift.methods`, the file layout in :mod:`seqlift.writers`.
"""

from __future__ import annotations

import sys
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np
import torch
import yaml

from . import __version__
from .attribution import Attributions
from .batching import probe_batch_size
from .errors import ConvergenceError, ModelError, NonFiniteError, OutputError, RegionError, SeqliftError
from .devices import resolve_device
from .genome import Genome, fetch_one_hot, reverse_complement
from .methods import DEFAULT_BATCH_SIZE, Method, Scorer
from .shards import shard_rows
from .models import LoadedModel, load_model, resolve_length, sha256_file
from .targets import Target, parse_targets
from .references import identical_to_input, make_references
from .regions import SkippedSidecar, Spans, iter_regions, to_windows
from .outputs import refuse_inputs
from .progress import progress_bar
from .score_options import PathLike, ScoreOptions
from .writers import ScoreWriter, check_output, partial_path, score_rows, write_npz


class SeqliftWarning(UserWarning):
    """A result the user should look at (summation-to-delta, low-complexity windows)."""


class SeqliftNote(UserWarning):
    """Information about a finished run that is not a problem (e.g. the accuracy of an approximate method)."""


def score(
    regions: PathLike, fasta: PathLike, model: PathLike | Sequence[PathLike], output: PathLike, **options: Any
) -> list[Path]:
    """Score every region of a BED file with DeepLIFT (or another method) and write HDF5.

    The keyword arguments are the fields of :class:`~seqlift.score_options.ScoreOptions`
    (every option of ``seqlift score``, documented there); they are checked
    before any work, then :func:`run_score` runs.

    Returns
    -------
    list of Path
        The finished outputs, one per target: ``[output]`` for one target,
        else ``<stem>.<target>.h5`` beside it for each (see :func:`target_paths`).
    """
    return run_score(ScoreOptions(regions, fasta, model, output, **options))


def run_score(options: ScoreOptions) -> list[Path]:
    """Run ``seqlift score`` with checked ``options``; the outputs written, one per target (see :func:`score`).

    The steps: refuse outputs that would overwrite an input, load the models
    and make each ready for the method (:mod:`seqlift.methods`), read the
    regions into windows, make references, choose the batch size, score and
    write every batch (:func:`_score_rows`, one :class:`~seqlift.writers.ScoreWriter`
    per target, with the attributes of :func:`provenance`), then report the
    regions to look at and write the ``--npz-prefix`` files.
    """
    method = options.scoring_method
    output = Path(options.output)
    _check_outputs(options)
    dev = resolve_device(options.device)
    models, length = _load_models(options)
    chosen_batch_size: list[int] = []  # filled once chosen: the captured methods size their model calls by it
    scorers = [method.build(m, length, options, dev, lambda: chosen_batch_size[0]) for m in models]
    target, output_index = options.target, options.output_index
    n_outputs = _n_outputs(scorers[0].forward, length, dev, output_index) if "all" in str(target) else None
    targets = parse_targets(target, output_index, n_outputs)
    paths = target_paths(output, targets)
    _check_outputs(options, paths)
    regions = options.regions
    with Genome(options.fasta) as genome, SkippedSidecar(str(output) + ".skipped.bed") as skipped:
        # The regions are read one by one into windows (held as columns), and skipped ones go straight to the
        # sidecar, so that no list of them stays in memory; gc-matched references, which leave the regions out
        # of their index, get only where they lie (Spans, columns too).
        spans = Spans() if options.reference == "gc-matched" else None
        all_regions = iter_regions(regions) if spans is None else spans.passing(iter_regions(regions))
        windows, _ = to_windows(
            all_regions, length, genome.chrom_sizes(), skip_invalid=options.skip_invalid, on_skip=skipped
        )
        n_regions = len(windows) + skipped.count
        if not windows:
            raise RegionError(
                f"no region of {regions} can be scored ({skipped.count} skipped); see the reasons with --skip-invalid"
            )
        all_windows = windows
        if options.k_of_n:
            windows = all_windows[shard_rows(*options.k_of_n, len(all_windows), regions)]
        make_refs, n_refs = make_references(
            options.reference if method.uses_references else None,
            length,
            n=options.n_refs,
            seed=options.seed,
            shuffle_k=options.shuffle_k,
            genome=genome,
            windows=all_windows,
            regions=spans or (),
            tolerance=options.gc_tolerance,
            exclude=options.exclude,
            n_regions=n_regions,
            scored=windows,
            progress=options.progress,
        )
        del spans  # gc-matched: left out of the index just built; not held while scoring
        attribute = _attribute(scorers, targets, options.rc_average)
        force, resume = options.force, options.resume
        recorded = [check_output(p, force, resume) for p in paths]  # refused here, before a probe
        batch_size, batch_how = options.batch_size, "given"
        if batch_size is None:
            batch_size, batch_how = _choose_batch_size(recorded, method, genome, windows, make_refs, attribute, dev)
        chosen_batch_size.append(batch_size)
        run = dict(
            models=models,
            input_length=length,
            n_refs=n_refs,
            batch_size=batch_size,
            batch_how=batch_how,
            fasta_sha256=genome.sha256(),
            n_regions=len(windows),
            n_skipped=skipped.count,
            n_regions_total=len(all_windows),
            device=dev,
        )
        attrs = [provenance(options, **run, target=t.name, target_space=scorers[0].target_space(t)) for t in targets]
        bad, low, nonfinite = _write(
            options, paths, attrs, genome, windows, length, batch_size, make_refs, attribute, skipped
        )
    _report_run(options, method, paths, bad, low, nonfinite)
    if skipped.count:
        warnings.warn(
            f"{skipped.count} of {n_regions} regions skipped (--skip-invalid), each with its BED line and reason "
            f"in {skipped.path}",
            SeqliftNote,
            stacklevel=_caller_level(),
        )
    if options.npz_prefix:
        npz_prefix = options.npz_prefix
        for t, path in zip(targets, paths):
            write_npz(npz_prefix if len(targets) == 1 else f"{npz_prefix}.{t.name}", path)
    return paths


def _load_models(options: ScoreOptions) -> tuple[list[LoadedModel], int]:
    """The models of the run, and the input length they share."""
    models = [
        load_model(str(m), options.weights, options.model_kwargs, options.trust_model) for m in options.model_specs
    ]
    lengths = {resolve_length(m, options.window) for m in models}
    if len(lengths) > 1:
        raise ModelError(f"the models take different input lengths ({sorted(lengths)}); average models of one length")
    return models, lengths.pop()


def _attribute(scorers: list[Scorer], targets, rc_average: bool):
    """``attribute(X, refs)``: one :class:`Attributions` per target, averaged over the models (and strands)."""

    def attribute(X, refs):
        runs = [score_batch(X, refs, targets) for score_batch, _, _ in scorers]
        if rc_average:
            rc_x, rc_refs = reverse_complement(X), reverse_complement(refs)
            runs += [[_flip(a) for a in score_batch(rc_x, rc_refs, targets)] for score_batch, _, _ in scorers]
        return [_mean(per_target) for per_target in zip(*runs)]

    return attribute


def provenance(
    options: ScoreOptions,
    *,
    models: list[LoadedModel],
    input_length: int,
    n_refs: int,
    batch_size: int,
    batch_how: str,
    fasta_sha256: str,
    n_regions: int,
    n_skipped: int,
    n_regions_total: int,
    device: torch.device | str,
    target: str,
    target_space: str,
) -> dict:
    """The attributes of one output file: how its scores were made (the README lists them).

    ``options`` is what the run was given; the keywords are what it found or
    chose: the loaded models, their input length, the references per region
    (0 for a method without references), the batch size and how it was
    chosen, the FASTA's checksum, the windows scored and skipped (and of all
    shards), the device, and the target of this file with the space its
    scores explain.
    """
    scoring, reference, rule, exclude, k_of_n = (
        options.scoring_method,
        options.reference,
        options.rule,
        options.exclude,
        options.k_of_n,
    )
    return {
        "seqlift_version": __version__,
        "model": " ".join(m.spec for m in models),
        "model_sha256": " ".join(m.sha256 for m in models),
        "model_kwargs": repr(models[0].kwargs),
        "n_models": len(models),
        "method": scoring.name,
        "steps": options.steps if scoring.uses_steps else 0,
        "rule": (rule if isinstance(rule, str) else yaml.safe_dump(rule, default_flow_style=True).strip())
        if scoring.layer_rules
        else "",
        "max_rule": options.max_rule if scoring.layer_rules else "",
        "split_signs": bool(options.split_signs),
        "normalize_input_weights": bool(options.normalize_input_weights),
        "reference": reference if n_refs else "none",
        "reference_sha256": sha256_file(reference[len("file:") :]) if n_refs and reference.startswith("file:") else "",
        "n_refs": n_refs,
        "shuffle_k": options.shuffle_k if reference == "shuffle" else 0,
        "gc_tolerance": options.gc_tolerance if reference == "gc-matched" else 0.0,
        "exclude": str(exclude or ""),
        "exclude_sha256": sha256_file(exclude) if exclude and reference == "gc-matched" else "",
        "seed": options.seed,
        "output_index": -1 if options.output_index is None else options.output_index,
        "rc_average": bool(options.rc_average),
        "batch_size": batch_size,
        "batch_size_probe": batch_how,
        "compression": options.compression,
        "regions": str(options.regions),
        "regions_sha256": sha256_file(options.regions),
        "fasta": str(options.fasta),
        "fasta_sha256": fasta_sha256,
        "n_regions": n_regions,
        "n_skipped": n_skipped,
        "input_length": input_length,
        "tolerance": options.tolerance,
        "device": str(device),
        "torch_version": torch.__version__,
        "command": options.command or " ".join(sys.argv),
        **({"shard": "{}-of-{}".format(*k_of_n), "n_regions_total": n_regions_total} if k_of_n else {}),
        "target": target,
        "target_space": target_space,
    }


def _write(
    options: ScoreOptions, paths, attrs, genome, windows, length, batch_size, make_refs, attribute, skipped
) -> tuple[_Named, _Named, _Named]:
    """Score the windows into one :class:`ScoreWriter` per output and finish them; the regions to report.

    A run that stops keeps its finished batches for ``--resume``, and its
    error says where.
    """
    force, resume = options.force, options.resume
    writers = []
    with ExitStack() as open_writers:  # leaving releases the locks; never deletes finished batches
        try:
            for path, attrs_t in zip(paths, attrs):
                writers.append(
                    open_writers.enter_context(
                        ScoreWriter(path, windows, length, attrs_t, batch_size, force=force, resume=resume)
                    )
                )
            named = _score_rows(
                genome,
                windows,
                writers,
                batch_size,
                make_refs,
                attribute,
                options.tolerance,
                options.strict,
                options.allow_nonfinite,
                options.progress,
            )
            skipped.finish()
            for writer in writers:
                writer.finish()
        except SeqliftError as exc:
            for writer in writers:  # the batches scored before the error are finished work: on disk first
                with suppress(OSError, SeqliftError):
                    writer.flush()
            kept = [w.dir for w in writers if w.rows_done]
            if kept and not isinstance(exc, OutputError):
                raise type(exc)(
                    f"{exc}; the {max(w.rows_done for w in writers)} rows finished before are kept in "
                    f"{kept[0]} for --resume"
                ) from None
            raise
    return named


def _report_run(options: ScoreOptions, method: Method, paths, bad: _Named, low: _Named, nonfinite: _Named) -> None:
    """Warn about the regions to look at; for an approximate method, say how close its sums came."""
    tolerance = options.tolerance
    _report(
        nonfinite,
        "prediction or scores are not finite (NaN or infinite); flagged in meta/finite",
        "check the model's weights and the references",
    )
    if method.summation == "approximate":
        _completeness_note(paths[0], options.steps)
    else:
        _report(
            bad,
            f"summation-to-delta error above tolerance {tolerance:g} (relative to max(|Δf|, 1e-3·max(1, |f(x)|)))",
            "--strict makes this an error",
        )
    _report(
        low,
        "references all equal the input (low-complexity window; scores are 0)",
        "consider --reference uniform for these",
    )


def target_paths(output: PathLike, targets: Sequence[Target]) -> list[Path]:
    """One output per target: ``output`` itself for one target, else ``<stem>.<target>.h5`` beside it."""
    output = Path(output)
    if len(targets) == 1:
        return [output]
    return [output.with_name(f"{output.stem}.{t.name}{output.suffix or '.h5'}") for t in targets]


def _choose_batch_size(recorded, method, genome, windows, make_refs, attribute, device) -> tuple[int, str]:
    """``(batch size, how it was chosen)`` when ``--batch-size`` is not given.

    ``recorded`` holds the provenance of the unfinished runs that ``--resume``
    continues (None for none): their batch size is reused, since the batches
    are what a run resumes. Otherwise a method marked ``probed`` in
    :data:`seqlift.methods.METHODS` (DeepLIFT) is probed on the first regions
    (:func:`seqlift.batching.probe_batch_size`), and the others take
    :data:`seqlift.methods.DEFAULT_BATCH_SIZE`.
    """
    for old in recorded:
        if old and isinstance(old.get("batch_size"), int) and old["batch_size"] >= 1:
            return old["batch_size"], f"resumed: {old.get('batch_size_probe', 'given')}"
    if not method.probed:
        return DEFAULT_BATCH_SIZE, f"default of --method {method.name} (not probed)"
    data = {}

    def call(b):
        if len(data.get("X", ())) < b:
            batch = windows[:b]
            X = fetch_one_hot(genome, batch)
            data["refs"], data["X"] = make_refs(X, batch), X.astype(np.float32)
        attribute(data["X"][:b], data["refs"][:b])

    probe = probe_batch_size(call, len(windows), device)
    return probe.batch_size, probe.summary


def _n_outputs(forward, length, device, output_index) -> int:
    """Columns of the (chosen) model output, from one forward pass on an all-N window."""
    with torch.no_grad():
        out = forward(torch.zeros(2, 4, length, device=device))
    if isinstance(out, (tuple, list)):
        out = out[output_index or 0]
    return out.shape[1] if out.dim() == 2 else 1


def _flip(a: Attributions) -> Attributions:
    """Scores of reverse-complemented windows mapped back onto the windows."""
    return a._replace(**{f: reverse_complement(getattr(a, f)) for f in _PER_BASE if getattr(a, f) is not None})


_PER_BASE = ("hypothetical", "contributions", "hypothetical_positive", "hypothetical_negative")


def _mean(parts) -> Attributions:
    """Average of several runs' scores (models, strands); errors are the worst of them."""
    if len(parts) == 1:
        return parts[0]
    fields = {}
    for f in Attributions._fields:
        values = [getattr(p, f) for p in parts]
        if values[0] is None:
            fields[f] = None
        elif f in ("delta_error", "relative_error"):
            fields[f] = np.max(values, axis=0)
        else:
            fields[f] = np.mean(values, axis=0)
    return Attributions(**fields)


class _Labels:
    """``labels[j]``: how warnings name window ``j`` of a batch, made only for the windows named."""

    def __init__(self, batch):
        self.batch = batch

    def __getitem__(self, j) -> str:
        w = self.batch[j]
        return f"{w.name} ({w.chrom}:{w.start}-{w.end})"


class _Named:
    """Regions named in a warning: a count, and the first few names (memory stays flat however many there are)."""

    def __init__(self, keep: int = 5):
        self.count, self.names, self.keep = 0, [], keep

    def add(self, names) -> None:
        names = list(names)
        self.count += len(names)
        self.names += names[: max(0, self.keep - len(self.names))]

    def __bool__(self):
        return self.count > 0


#: Batches prepared ahead of the model, and batches waiting to be written, at most.
_AHEAD = 2


def _score_rows(
    genome, windows, writers, batch_size, make_refs, attribute, tolerance, strict, allow_nonfinite, progress
):
    """Score every batch that some writer lacks, in three overlapping stages.

    A reader thread fetches sequences and makes references for the next
    batches, the calling thread runs the model, and a writer thread compresses
    and stores finished batches (each a durable fragment, see
    :mod:`seqlift.writers`), each stage at most :data:`_AHEAD` batches ahead.
    Returns the regions over tolerance, low-complexity and non-finite (:class:`_Named`).
    """
    bad, low, nonfinite = _Named(), _Named(), _Named()
    starts = [i for i in range(0, len(windows), batch_size) if not all(w.has(i) for w in writers)]
    done = len(windows) - sum(len(windows[i : i + batch_size]) for i in starts)

    def prepare(i):
        batch = windows[i : i + batch_size]
        X = fetch_one_hot(genome, batch)
        refs = make_refs(X, batch)
        # no references (gradient, ISM): nothing to compare with the input
        same = identical_to_input(X, refs) if refs.shape[1] else np.zeros(len(X), bool)
        return _Labels(batch), X, X.astype(np.float32), refs, same

    reader = ThreadPoolExecutor(1, thread_name_prefix="seqlift-read")
    storer = ThreadPoolExecutor(1, thread_name_prefix="seqlift-write")
    ahead = deque(reader.submit(prepare, i) for i in starts[:_AHEAD])
    writes = deque()
    try:
        with progress_bar(desc="scoring", unit="region", show=progress, total=len(windows), initial=done) as bar:
            for n, i in enumerate(starts):
                names, X, X32, refs, same = ahead.popleft().result()
                low.add(names[j] for j in np.flatnonzero(same))
                # queued only now, so that the reader's Python runs while the model computes (the GIL free), not
                # while this thread does its own short Python steps between two model calls
                if n + _AHEAD < len(starts):
                    ahead.append(reader.submit(prepare, starts[n + _AHEAD]))
                for writer, a in zip(writers, attribute(X32, refs)):
                    finite = _finite(a, refs)
                    if not finite.all():
                        where = [names[j] for j in np.flatnonzero(~finite)]
                        if not allow_nonfinite:
                            raise NonFiniteError(
                                f"the model's prediction or scores are not finite (NaN or infinite) for {len(where)} "
                                f"region(s) of this batch: {', '.join(where[:5])}; check the model's weights and the "
                                "references, or pass --allow-nonfinite to write them flagged in meta/finite"
                            )
                        nonfinite.add(where)
                    over = finite & ~(a.relative_error <= tolerance)
                    bad.add(names[j] for j in np.flatnonzero(over))
                    if strict and over.any():
                        j = int(np.flatnonzero(over)[0])
                        raise ConvergenceError(
                            f"summation-to-delta fails for {names[j]}: relative error {a.relative_error[j]:.3g} > "
                            f"--tolerance {tolerance:g}; check the model's ops or raise --tolerance"
                        )
                    if not writer.has(i):  # resumed: this writer may have these rows already
                        writes.append(storer.submit(writer.write, i, score_rows(X, a, same, finite)))
                while len(writes) > _AHEAD * len(writers) or (writes and writes[0].done()):
                    writes.popleft().result()  # raises a failed write here
                bar.update(len(X))
            while writes:
                writes.popleft().result()
    finally:
        reader.shutdown(wait=True, cancel_futures=True)
        storer.shutdown(wait=True)  # batches already scored are stored, even when the run stops
    return bad, low, nonfinite


def _finite(a: Attributions, refs) -> np.ndarray:
    """(N,) bool: the prediction, the reference predictions and every score of a row are finite."""
    ok = np.isfinite(a.predictions) & np.isfinite(a.delta_error) & np.isfinite(a.hypothetical).all(axis=(1, 2))
    if a.reference_predictions.shape[1]:
        ok &= np.isfinite(a.reference_predictions).all(axis=1)
    if refs.shape[1]:
        ok &= np.isfinite(refs).all(axis=(1, 2, 3))
    return ok


def _check_outputs(options: ScoreOptions, paths=None):
    """Refuse outputs that would overwrite an input, and an ``npz_prefix`` in a missing folder, before any work.

    ``paths``: the outputs, one per target, once the targets are known; else ``options.output``.
    """
    output, npz_prefix, regions, fasta = options.output, options.npz_prefix, options.regions, options.fasta
    weights, reference, exclude, specs = options.weights, options.reference, options.exclude, options.model_specs
    paths = list(paths) if paths else [Path(output)]
    outs = [*paths, *(partial_path(p) for p in paths), Path(str(output) + ".skipped.bed")]
    if npz_prefix:
        folder = Path(str(npz_prefix)).parent
        if not folder.is_dir():
            raise OutputError(f"--npz-prefix {npz_prefix}: folder {folder} does not exist; create it or choose another")
        outs += [Path(str(npz_prefix) + suffix) for suffix in (".ohe.npz", ".shap.npz")]
    inputs = {
        "REGIONS": regions,
        "--fasta": fasta,
        "--fasta index": f"{fasta}.fai",
        "--weights": weights,
        "--exclude": exclude,
    }
    for m in specs:
        m = str(m)
        inputs[f"--model {m}"] = m.rpartition(":")[0] if ":" in m and not Path(m).exists() else m  # file.py:Class
    if isinstance(reference, str) and reference.startswith("file:"):
        inputs["--reference"] = reference[len("file:") :]
    refuse_inputs(outs, inputs)


def _completeness_note(path, steps):
    """Integrated gradients approximates a path integral: say how close its sums come to f(x) - f(r)."""
    with h5py.File(path, "r") as h5:
        rel = h5["meta/delta_rel_error"][:]
    rel = rel[np.isfinite(rel)]
    if len(rel):
        warnings.warn(
            f"integrated gradients is approximate: with --steps {steps} its attributions sum to f(x) - f(r) within a "
            f"relative error of {np.median(rel):.2g} (median) to {rel.max():.2g} (max) over {len(rel)} regions, "
            "stored in meta/delta_rel_error; more --steps lowers it",
            SeqliftNote,
            stacklevel=_caller_level(),
        )


def _report(named: _Named, what, hint):
    if named:
        more = named.count - len(named.names)
        shown = ", ".join(named.names) + (f" and {more} more" if more > 0 else "")
        warnings.warn(f"{named.count} region(s): {what}: {shown}; {hint}", SeqliftWarning, stacklevel=_caller_level())


def _caller_level() -> int:
    """The ``stacklevel`` that makes a warning from this module name the code that called the pipeline."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename == __file__:
        frame, level = frame.f_back, level + 1
    return level
