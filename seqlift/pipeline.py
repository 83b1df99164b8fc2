"""``seqlift.score``: regions in a FASTA to an HDF5 file of DeepLIFT scores.

The Python function behind ``seqlift score``; every option of the command is a
keyword argument here.
"""

from __future__ import annotations

import sys
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import torch
import yaml
from tqdm import tqdm

from . import __version__
from .attribution import prepare
from .attribution import Attributions
from .attribution.gradients import as_captured, integrated_gradients, gradient_x_input, saliency
from .attribution.graph import CapturedModel, strip_output_activation
from .attribution.ism import ism
from .attribution.split import DEFAULT_MAX_RULE
from .batching import probe_batch_size
from .errors import (
    ConvergenceError, ModelError, NonFiniteError, OutputError, RegionError, SeqliftError, UsageError,
)
from .devices import resolve_device
from .genome import Genome, fetch_one_hot, reverse_complement
from .shards import parse_shard, shard_rows
from .models import EXPORT_HINT, load_model, resolve_length, sha256_file
from .targets import parse_targets
from .references import check_kind, identical_to_input, make_references
from .regions import SkippedSidecar, iter_regions, read_regions, to_windows
from .outputs import refuse_inputs
from .writers import COMPRESSIONS, DEFAULT_COMPRESSION, ScoreWriter, check_output, partial_path, write_npz


class SeqliftWarning(UserWarning):
    """A result the user should look at (summation-to-delta, low-complexity windows)."""


class SeqliftNote(UserWarning):
    """Information about a finished run that is not a problem (e.g. the accuracy of an approximate method)."""


def score(
    regions,
    fasta,
    model,
    output,
    *,
    weights=None,
    model_kwargs=None,
    trust_model: bool = False,
    target=0,
    output_index: int | None = None,
    window: int | None = None,
    method: str = "deeplift",
    steps: int = 50,
    rule="rescale",
    max_rule: str = DEFAULT_MAX_RULE,
    split_signs: bool = False,
    normalize_input_weights: bool = False,
    compile: bool = False,
    reference: str = "shuffle",
    rc_average: bool = False,
    gc_tolerance: float = 0.02,
    exclude=None,
    n_refs: int = 20,
    shuffle_k: int = 2,
    seed: int = 0,
    batch_size: int | None = None,
    device: str = "auto",
    skip_invalid: bool = False,
    allow_unsupported: bool = False,
    strict: bool = False,
    tolerance: float = 1e-3,
    allow_nonfinite: bool = False,
    force: bool = False,
    resume: bool = False,
    npz_prefix=None,
    compression: str = DEFAULT_COMPRESSION,
    shard: str | None = None,
    progress: bool = True,
    command: str | None = None,
) -> Path:
    """Score every region of a BED file with DeepLIFT (Rescale) and write HDF5.

    Parameters
    ----------
    regions : str or Path
        BED file (BED3+, BED6 strand, narrowPeak summit). Coordinates 0-based half-open.
    fasta : str or Path
        Genome FASTA (indexed on first use).
    model : str or list of str
        ``model.pt2`` or ``file.py:ClassName`` / ``package.module:ClassName`` (with ``weights``).
        Several models (e.g. the folds of a cross-validation) are scored with
        the same references and their scores averaged.
    output : str or Path
        HDF5 file to write; see :mod:`seqlift.writers` for the layout.
    weights, model_kwargs
        State dict and constructor arguments of a class model (the same for every
        class model given).
    trust_model : bool
        Allow a pickled full module (loading it runs code from the file).
    target : int or str
        What to explain: an output column (``0``), several (``"0,3,7"`` or
        ``"all"``), or for BPNet-style profile models ``"counts"`` / ``"profile"``
        (see :mod:`seqlift.targets`). Several targets are explained from one
        forward pass and written one file per target, ``<stem>.<target>.h5``.
        A final sigmoid or softmax is removed: scores explain the logits (for
        softmax, mean-normalised), as the attribute ``target_space`` says.
        ``output_index`` picks one output of a tuple.
    window : int, optional
        Window length; must equal the model's input length when that is known.
    method : str
        ``deeplift``, or for comparison ``gradient`` (saliency),
        ``gradient-x-input``, ``integrated-gradients`` (``steps`` points along
        the path from each reference) or ``ism`` (in-silico saturation
        mutagenesis). All write the same layout.
    steps : int
        Integration points of ``integrated-gradients``.
    rule : str or dict
        ``rescale``, ``revealcancel``, ``genomics-default`` (RevealCancel after
        dense layers, Rescale after convolutions), or a mapping of layer kind
        (``conv``, ``dense``, ``default``) or module path to ``rescale`` /
        ``revealcancel``.
    max_rule : str
        How max pooling and max reductions split each window's delta between the
        element where the input peaks and the one where the reference peaks:
        ``sign`` (default: a rise to the input's peak, a fall to the reference's,
        tangermeme's rule), ``pair`` or ``shapley`` (the two-player Shapley value
        of ``max(a, b)``); see the README.
    split_signs : bool
        Also write the contributions to the positive and the negative part of
        the target's delta (needs a rule other than plain ``rescale``).
    normalize_input_weights : bool
        Mean-normalise the first convolution's weights across A, C, G, T, so
        that scores do not depend on an offset shared by the four bases (the
        model's predictions are unchanged).
    compile : bool
        Fuse the ReLU Rescale backward with ``torch.compile`` (faster on large
        models after a one-time compilation).
    reference : str
        ``shuffle`` (k-mer preserving, ``n_refs`` per region, order ``shuffle_k``),
        ``zeros``, ``uniform``, ``gc-matched`` (``n_refs`` real windows of the
        genome whose GC is within ``gc_tolerance`` of the region's, with no N,
        overlapping no scored region nor the ``exclude`` BED), or ``file:refs.h5`` (dataset ``references`` of
        shape (R, K, 4, L), one row per BED region in file order, or (K, 4, L)
        shared by all regions).
    gc_tolerance : float
        GC-fraction tolerance of ``gc-matched`` references.
    exclude : str, optional
        BED of regions never to draw ``gc-matched`` references from (a blacklist).
    rc_average : bool
        Average the scores of each window and of its reverse complement (mapped
        back), for models trained with reverse-complement augmentation.
    seed : int
        Seed of the shuffles; each region's references depend only on the seed
        and its coordinates, not on batch size or sharding.
    batch_size : int, optional
        Regions per model call (each with its ``n_refs`` references). None:
        chosen by a probe of a few sizes on the first regions (the fastest on
        the CPU, the largest that fits on a GPU; see :mod:`seqlift.batching`),
        or with ``resume``, the size of the run resumed.
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (the N-th GPU; see :mod:`seqlift.devices`).
    skip_invalid : bool
        Skip regions with an unknown chromosome or a window off the chromosome
        end, listing them in ``<output>.skipped.bed``, instead of failing.
    allow_unsupported : bool
        Treat ops with no DeepLIFT rule as linear, with a warning.
    strict : bool
        Fail when a region's summation-to-delta error exceeds ``tolerance``.
    tolerance : float
        Relative summation-to-delta error above which a region is reported.
    allow_nonfinite : bool
        Write regions whose prediction or scores are NaN or infinite, flagged
        in ``meta/finite``, instead of stopping the run with an error.
    force, resume : bool
        Overwrite an existing output; continue an interrupted run.
    npz_prefix : str, optional
        Also write ``<prefix>.ohe.npz`` and ``<prefix>.shap.npz`` for modisco-lite.
    compression : str
        Compression of the (N, 4, L) datasets: ``gzip-1`` (default) to
        ``gzip-9``, ``lzf`` or ``none`` (see :mod:`seqlift.writers`).
    shard : str, optional
        ``"k-of-n"``: score only the k-th (1-based) of n contiguous blocks of
        the windows (see :mod:`seqlift.shards`), with the references of an
        unsharded run; join the shards with ``seqlift merge``.
    progress : bool
        Show a progress bar on stderr.
    command : str, optional
        The command line, stored with the results.

    Returns
    -------
    Path or list of Path
        The finished output (one per target when there are several).
    """
    check_kind(reference)
    if n_refs < 1 or (batch_size is not None and batch_size < 1):
        raise UsageError("--n-refs and --batch-size must be at least 1")
    if compression not in COMPRESSIONS:
        raise UsageError(f"unknown compression {compression!r}; choose one of {', '.join(COMPRESSIONS)}")
    if not tolerance >= 0:
        raise UsageError(f"--tolerance {tolerance} must be a number >= 0 (a relative error)")
    k_of_n = parse_shard(shard) if shard is not None else None
    output = Path(output)
    specs = [model] if isinstance(model, (str, Path)) else list(model)
    _check_outputs(output, npz_prefix, regions, fasta, specs, weights, reference, exclude)
    dev = resolve_device(device)
    if not specs:
        raise UsageError("no model given; use --model")
    models = [load_model(str(m), weights, model_kwargs, trust_model) for m in specs]
    lengths = {resolve_length(m, window) for m in models}
    if len(lengths) > 1:
        raise ModelError(f"the models take different input lengths ({sorted(lengths)}); average models of one length")
    length = lengths.pop()
    if method == "deeplift":
        scorers = [_deeplift_scorer(m, length, rule, allow_unsupported, dev, normalize_input_weights, compile, split_signs,
                                    max_rule) for m in models]
    else:
        if rule != "rescale" or max_rule != DEFAULT_MAX_RULE or split_signs or normalize_input_weights:
            raise UsageError("--rule, --max-rule, --split-signs and --normalize-input-weights go with --method deeplift")
        scorers = [_method_scorer(method, m, length, dev, steps, lambda: batch_size) for m in models]
    forward, space = scorers[0][1], scorers[0][2]
    targets = parse_targets(target, output_index, _n_outputs(forward, length, dev, output_index) if "all" in str(target) else None)
    paths = target_paths(output, targets)
    _check_outputs(output, npz_prefix, regions, fasta, specs, weights, reference, exclude, paths)
    with Genome(fasta) as genome, SkippedSidecar(str(output) + ".skipped.bed") as skipped:
        # Only gc-matched references need the regions themselves (to leave them out); otherwise they are
        # read one by one into windows, and skipped ones go straight to the sidecar, so that no list of
        # them stays in memory.
        all_regions = read_regions(regions) if reference == "gc-matched" else iter_regions(regions)
        windows, _ = to_windows(all_regions, length, genome.chrom_sizes(), skip_invalid=skip_invalid, on_skip=skipped)
        n_regions = len(windows) + skipped.count
        if not windows:
            raise RegionError(f"no region of {regions} can be scored ({skipped.count} skipped); see the reasons with --skip-invalid")
        all_windows = windows
        if k_of_n:
            windows = all_windows[shard_rows(*k_of_n, len(all_windows), regions)]
        make_refs, n = make_references(
            reference if method in METHODS_WITH_REFERENCES else None, length, n=n_refs, seed=seed,
            shuffle_k=shuffle_k, genome=genome, windows=all_windows, regions=all_regions, tolerance=gc_tolerance,
            exclude=exclude, n_regions=n_regions,
        )

        def attribute(X, refs):
            runs = [score_batch(X, refs, targets) for score_batch, _, _ in scorers]
            if rc_average:
                rc_x, rc_refs = reverse_complement(X), reverse_complement(refs)
                runs += [[_flip(a) for a in score_batch(rc_x, rc_refs, targets)] for score_batch, _, _ in scorers]
            return [_mean(per_target) for per_target in zip(*runs)]

        recorded = [check_output(p, force, resume) for p in paths]  # refused here, before a probe
        batch_how = "given"
        if batch_size is None:
            batch_size, batch_how = _choose_batch_size(recorded, method, genome, windows, make_refs, attribute, dev)
        attrs = {
            "seqlift_version": __version__,
            "model": " ".join(m.spec for m in models),
            "model_sha256": " ".join(m.sha256 for m in models),
            "model_kwargs": repr(models[0].kwargs),
            "n_models": len(models),
            "method": method,
            "steps": steps if method == "integrated-gradients" else 0,
            "rule": (rule if isinstance(rule, str) else yaml.safe_dump(rule, default_flow_style=True).strip())
            if method == "deeplift" else "",
            "max_rule": max_rule if method == "deeplift" else "",
            "split_signs": bool(split_signs),
            "normalize_input_weights": bool(normalize_input_weights),
            "reference": reference if n else "none",
            "reference_sha256": sha256_file(reference[len("file:"):]) if n and reference.startswith("file:") else "",
            "n_refs": n,
            "shuffle_k": shuffle_k if reference == "shuffle" else 0,
            "gc_tolerance": gc_tolerance if reference == "gc-matched" else 0.0,
            "exclude": str(exclude or ""),
            "exclude_sha256": sha256_file(exclude) if exclude and reference == "gc-matched" else "",
            "seed": seed,
            "output_index": -1 if output_index is None else output_index,
            "rc_average": bool(rc_average),
            "batch_size": batch_size,
            "batch_size_probe": batch_how,
            "compression": compression,
            "regions": str(regions),
            "regions_sha256": sha256_file(regions),
            "fasta": str(fasta),
            "fasta_sha256": genome.sha256(),
            "n_regions": len(windows),
            "n_skipped": skipped.count,
            "input_length": length,
            "tolerance": tolerance,
            "device": str(dev),
            "torch_version": torch.__version__,
            "command": command or " ".join(sys.argv),
            **({"shard": "{}-of-{}".format(*k_of_n), "n_regions_total": len(all_windows)} if k_of_n else {}),
        }
        writers = []
        try:
            for t, path in zip(targets, paths):
                attrs_t = {**attrs, "target": t.name, "target_space": space(t)}
                writers.append(ScoreWriter(path, windows, length, attrs_t, batch_size, force=force, resume=resume))

            bad, low, nonfinite = _score_rows(genome, windows, writers, batch_size, make_refs, attribute, tolerance,
                                              strict, allow_nonfinite, progress)
            if skipped.count:
                skipped.commit()
            for writer in writers:
                writer.finish()
        except SeqliftError as exc:
            kept = [w.dir for w in writers if w.rows_done]
            if kept and not isinstance(exc, OutputError):
                raise type(exc)(f"{exc}; the {max(w.rows_done for w in writers)} rows finished before are kept in "
                                f"{kept[0]} for --resume") from None
            raise
        finally:
            for writer in writers:  # releases the lock; never deletes finished batches
                writer.close()
    _report(nonfinite, "prediction or scores are not finite (NaN or infinite); flagged in meta/finite",
            "check the model's weights and the references")
    if method == "integrated-gradients":
        _completeness_note(paths[0], steps)
    else:
        _report(bad, f"summation-to-delta error above tolerance {tolerance:g} (relative to max(|Δf|, 1e-3·max(1, |f(x)|)))",
                "--strict makes this an error")
    _report(low, "references all equal the input (low-complexity window; scores are 0)", "consider --reference uniform for these")
    if npz_prefix:
        for t, path in zip(targets, paths):
            write_npz(npz_prefix if len(targets) == 1 else f"{npz_prefix}.{t.name}", path)
    return paths[0] if len(paths) == 1 else paths


def target_paths(output, targets) -> list[Path]:
    """One output per target: ``output`` itself for one target, else ``<stem>.<target>.h5`` beside it."""
    output = Path(output)
    if len(targets) == 1:
        return [output]
    return [output.with_name(f"{output.stem}.{t.name}{output.suffix or '.h5'}") for t in targets]


#: Methods and whether they use references.
METHODS = ("deeplift", "gradient", "gradient-x-input", "integrated-gradients", "ism")
METHODS_WITH_REFERENCES = ("deeplift", "integrated-gradients")


def _deeplift_scorer(loaded, length, rule, allow_unsupported, device, normalize_input_weights, compile, split_signs,
                     max_rule=DEFAULT_MAX_RULE):
    """``(score_batch(X, refs, targets) -> [Attributions], forward(x), target_space(t))`` for DeepLIFT."""
    if loaded.kind == "torchscript":
        raise ModelError(
            f"{loaded.spec} is TorchScript, whose graph seqlift cannot rewrite for DeepLIFT; use it with --method "
            f"gradient, gradient-x-input, integrated-gradients or ism, or {EXPORT_HINT}"
        )
    engine = prepare(loaded.model, length, rule=rule, allow_unsupported=allow_unsupported, device=device,
                     normalize_input_weights=normalize_input_weights, compile=compile, max_rule=max_rule)
    engine.check_split_signs(split_signs)  # before any work, not at the first batch
    return (lambda X, refs, targets: engine.run(X, refs, targets, split_signs=split_signs)), engine.forward, engine.target_space


def _method_scorer(method, loaded, length, device, steps, batch_size):
    """``batch_size()``: the regions per call, known once chosen (see :func:`_choose_batch_size`)."""
    """The same triple as :func:`_deeplift_scorer` for a gradient method or ISM (on the logits, like DeepLIFT)."""
    if method not in METHODS:
        raise UsageError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if loaded.kind == "torchscript":
        captured = CapturedModel(module=loaded.model.to(device), input_length=length)
    else:
        captured = strip_output_activation(as_captured(loaded.model, length, device))
    activation = lambda t: (captured.output_activations[t.output_index or 0]
                            if (t.output_index or 0) < len(captured.output_activations) else None)
    space = lambda t: {"sigmoid": "logits", "softmax": "mean-normalised logits"}.get(activation(t), "output")
    def bound(t):
        return lambda out: t.bind(out, _rows(out), activation(t))(out)

    def score_batch(X, refs, targets):
        out, rows = [], max(64, 8 * batch_size())
        for t in targets:
            if method == "gradient":
                out.append(saliency(captured, X, bound(t), batch_size=rows, device=device))
            elif method == "gradient-x-input":
                out.append(gradient_x_input(captured, X, bound(t), batch_size=rows, device=device))
            elif method == "integrated-gradients":
                out.append(integrated_gradients(captured, X, refs, bound(t), steps=steps, batch_size=rows, device=device))
            else:
                out.append(ism(captured, X, bound(t), batch_size=rows, device=device, fast=loaded.kind != "torchscript"))
        return out

    return score_batch, captured.module, space


#: Regions per call of the methods other than DeepLIFT when --batch-size is not given (they are not probed).
DEFAULT_BATCH_SIZE = 32


def _choose_batch_size(recorded, method, genome, windows, make_refs, attribute, device) -> tuple[int, str]:
    """``(batch size, how it was chosen)`` when ``--batch-size`` is not given.

    ``recorded`` holds the provenance of the unfinished runs that ``--resume``
    continues (None for none): their batch size is reused, since the batches
    are what a run resumes. Otherwise DeepLIFT is probed on the first regions
    (:func:`seqlift.batching.probe_batch_size`).
    """
    for old in recorded:
        if old and isinstance(old.get("batch_size"), int) and old["batch_size"] >= 1:
            return old["batch_size"], f"resumed: {old.get('batch_size_probe', 'given')}"
    if method != "deeplift":
        return DEFAULT_BATCH_SIZE, f"default of --method {method} (not probed)"
    data = {}

    def call(b):
        if len(data.get("X", ())) < b:
            batch = windows[:b]
            X = fetch_one_hot(genome, batch)
            data["refs"], data["X"] = make_refs(X, batch), X.astype(np.float32)
        attribute(data["X"][:b], data["refs"][:b])

    probe = probe_batch_size(call, len(windows), device)
    return probe.batch_size, probe.summary


def _rows(out) -> int:
    return (out[0] if isinstance(out, (tuple, list)) else out).shape[0]


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


def _score_rows(genome, windows, writers, batch_size, make_refs, attribute, tolerance, strict, allow_nonfinite,
                progress):
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
        return batch, X, make_refs(X, batch)

    reader = ThreadPoolExecutor(1, thread_name_prefix="seqlift-read")
    storer = ThreadPoolExecutor(1, thread_name_prefix="seqlift-write")
    ahead = deque(reader.submit(prepare, i) for i in starts[:_AHEAD])
    writes = deque()
    try:
        with tqdm(total=len(windows), initial=done, unit="region", disable=not progress, file=sys.stderr,
                  desc="scoring", dynamic_ncols=True) as bar:
            for n, i in enumerate(starts):
                batch, X, refs = ahead.popleft().result()
                if n + _AHEAD < len(starts):
                    ahead.append(reader.submit(prepare, starts[n + _AHEAD]))
                # no references (gradient, ISM): nothing to compare with the input
                same = identical_to_input(X, refs) if refs.shape[1] else np.zeros(len(X), bool)
                names = [f"{w.name} ({w.chrom}:{w.start}-{w.end})" for w in batch]
                low.add(names[j] for j in np.flatnonzero(same))
                for writer, a in zip(writers, attribute(X.astype(np.float32), refs)):
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
                bar.update(len(batch))
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


def score_rows(X, a: Attributions, same, finite) -> dict:
    """The rows of the score file (:mod:`seqlift.writers`) for one batch."""
    hyp = a.hypothetical.astype(np.float32)
    rows = {
        "raw/seq": X,
        "shap/seq": hyp,
        "projected_shap/seq": hyp * X,
        "meta/prediction": a.predictions,
        "meta/reference_prediction": (a.reference_predictions.mean(axis=1) if a.reference_predictions.shape[1]
                                      else np.full(len(X), np.nan, np.float32)),
        "meta/delta_error": a.delta_error,
        "meta/delta_rel_error": a.relative_error,
        "meta/low_complexity": same,
        "meta/finite": finite,
    }
    if a.hypothetical_positive is not None:
        rows["positive_shap/seq"] = a.hypothetical_positive.astype(np.float32)
        rows["negative_shap/seq"] = a.hypothetical_negative.astype(np.float32)
    return rows


def _check_outputs(output, npz_prefix, regions, fasta, specs, weights, reference, exclude, paths=None):
    """Refuse outputs that would overwrite an input, and an ``npz_prefix`` in a missing folder, before any work."""
    paths = list(paths) if paths else [Path(output)]
    outs = [*paths, *(partial_path(p) for p in paths), Path(str(output) + ".skipped.bed")]
    if npz_prefix:
        folder = Path(str(npz_prefix)).parent
        if not folder.is_dir():
            raise OutputError(f"--npz-prefix {npz_prefix}: folder {folder} does not exist; create it or choose another")
        outs += [Path(str(npz_prefix) + suffix) for suffix in (".ohe.npz", ".shap.npz")]
    inputs = {"REGIONS": regions, "--fasta": fasta, "--fasta index": f"{fasta}.fai", "--weights": weights,
              "--exclude": exclude}
    for m in specs:
        m = str(m)
        inputs[f"--model {m}"] = m.rpartition(":")[0] if ":" in m and not Path(m).exists() else m  # file.py:Class
    if isinstance(reference, str) and reference.startswith("file:"):
        inputs["--reference"] = reference[len("file:"):]
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
            "stored in meta/delta_rel_error; more --steps lowers it", SeqliftNote, stacklevel=3)


def _report(named: _Named, what, hint):
    if named:
        more = named.count - len(named.names)
        shown = ", ".join(named.names) + (f" and {more} more" if more > 0 else "")
        warnings.warn(f"{named.count} region(s): {what}: {shown}; {hint}", SeqliftWarning, stacklevel=3)
