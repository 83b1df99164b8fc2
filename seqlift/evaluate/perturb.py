"""Faithfulness by perturbation: mutate the top-k scored bases and the model's target should drop.

Scores are faithful when the bases they rank highest matter most to the
model. For each region of a scores file the positions are ranked by the
actual base's contribution (``projected_shap/seq`` summed over A, C, G, T)
and the top ``k`` positions with a *positive* contribution are mutated; as
a control, as many random non-N positions are mutated the same way. The
model is run on both, in the target space the scores explain (a final
sigmoid or softmax removed, the target read as when scoring), and the
change of the target (mutated - original) is averaged over regions. A
faithful method lowers the target far more with its top positions than at
random.

This module owns :func:`perturbation`, the ``--k`` parser, the table's
columns and notes, its figure, and :func:`evaluate_perturbation` (what
``seqlift evaluate perturb`` runs).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..attribution.gradients import as_captured, model_inputs
from ..attribution.graph import strip_output_activation
from ..errors import ModelError, UsageError
from ..models import load_model, resolve_length
from ..outputs import atomic_output, check_absent
from ..progress import progress_bar
from ..devices import resolve_device
from ..references import dinucleotide_shuffle, region_seed
from ..targets import parse_targets
from .tables import open_scores, write_table

#: How ``perturbation`` mutates a chosen position.
MUTATIONS = ("shuffle", "reference")

#: Columns of the perturbation table, one row per k.
PERTURB_COLUMNS = (
    "k",
    "mean_delta_top",
    "mean_delta_random",
    "difference",
    "top_wins",
    "flip_frac_top",
    "flip_frac_random",
    "mean_n_mutated",
    "n_regions",
)

#: Explains the flip columns in the table's header.
FLIP_NOTE = (
    "flip_frac_*: fraction of regions whose target changes sign (predicted class flips); meaningful only for a "
    "binary classifier whose target is a logit (nan for counts/profile targets)"
)


def parse_ks(text: str | list[int] | tuple[int, ...]) -> list[int]:
    """The k values of ``--k``: ``"1,2,5"`` or a list of ints, each at least 1, sorted and unique."""
    items = text if isinstance(text, (list, tuple)) else [p.strip() for p in str(text).split(",") if p.strip()]
    try:
        ks = sorted({int(k) for k in items})
    except ValueError:
        raise UsageError(f"--k {text!r} is not a list of integers; give it as 1,2,5,10") from None
    if not ks or ks[0] < 1:
        raise UsageError(f"--k {text!r} must list positive integers, e.g. 1,2,5,10")
    return ks


def _mutate(x, positions, bases):
    """``x`` (4, L) with ``positions`` set to one-hot ``bases`` (a copy)."""
    x = x.copy()
    x[:, positions] = 0
    x[bases, positions] = 1
    return x


def _variants(X, contrib, seeds, ks, mutation, ref_bases):
    """Each window, then per k its top-k-mutated and random-k-mutated copies, and the counts mutated.

    Parameters
    ----------
    X : np.ndarray, shape=(B, 4, L)
    contrib : np.ndarray, shape=(B, L)
        Actual-base contribution per position.
    seeds : list of int
        One seed per window.
    ks : list of int
    mutation : str
    ref_bases : np.ndarray, shape=(B, L), or None
        Base index of a shuffle of each window (``reference`` mutation).

    Returns
    -------
    variants : np.ndarray, shape=(B, 1 + 2 * len(ks), 4, L)
    counts : np.ndarray, shape=(B, len(ks)), int
    """
    called = X.any(axis=1)
    score = np.where(called, contrib, -np.inf)  # N columns are never chosen
    ranked = np.argsort(-score, axis=1, kind="stable")
    out = np.repeat(X[:, None], 1 + 2 * len(ks), axis=1)
    counts = np.zeros((len(X), len(ks)), int)
    for i, x in enumerate(X):
        base = x.argmax(axis=0)
        for j, k in enumerate(ks):
            top = ranked[i, :k][score[i, ranked[i, :k]] > 0]
            rng = np.random.default_rng([seeds[i], k])
            rand = rng.choice(np.flatnonzero(called[i]), size=len(top), replace=False)
            for slot, pos in ((1 + 2 * j, top), (2 + 2 * j, rand)):
                new = ref_bases[i, pos] if mutation == "reference" else (base[pos] + rng.integers(1, 4, len(pos))) % 4
                out[i, slot] = _mutate(x, pos, new)
            counts[i, j] = len(top)
    return out, counts


def perturbation(
    scores: str | Path,
    model: str,
    *,
    weights: str | None = None,
    model_kwargs: dict | None = None,
    trust_model: bool = False,
    ks: str | list[int] | tuple[int, ...] = (1, 2, 5, 10, 20),
    mutation: str = "shuffle",
    seed: int = 0,
    batch_size: int = 32,
    device: str = "auto",
    progress: bool = True,
) -> list[dict]:
    """Change of the model's target when the top-k scored bases are mutated, against k random bases.

    For each region, the positions with the ``k`` largest actual-base
    contributions that are also positive are mutated (fewer than ``k`` when
    fewer are positive); the control mutates as many positions drawn at random
    among the window's non-N positions. A position is mutated to

    - ``shuffle``: a different base, drawn uniformly from the other three;
    - ``reference``: the base at that position of a dinucleotide shuffle of the
      window, seeded as ``seqlift score`` seeds its first reference (it may be
      the same base, leaving the position as it is).

    Draws depend only on ``seed``, the region and ``k``.

    Parameters
    ----------
    scores : str or Path
        Scores file of ``seqlift score``; its attributes ``target`` and
        ``output_index`` say what to read from the model.
    model : str
        ``model.pt2`` or ``file.py:ClassName`` / ``package.module:ClassName``
        with ``weights``, as for scoring.
    weights, model_kwargs, trust_model
        See :func:`seqlift.models.load_model`.
    ks : sequence of int
        Numbers of positions to mutate, each from 1 to the window length L.
    mutation : str
        ``shuffle`` or ``reference``.
    seed : int
        Seed of the random positions and bases.
    batch_size : int
        Regions per model call (each with ``2 * len(ks)`` mutated copies).
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    progress : bool
        Show a progress bar on stderr.

    Returns
    -------
    list of dict
        One row per k with the keys of :data:`PERTURB_COLUMNS`: the mean change
        of the target for the top and the random positions, their difference
        (top - random), the fraction of regions where mutating the top
        positions lowers the target more than mutating random ones (ties count
        half: 0.5 is no better than chance, 1 always better), the
        fractions of regions whose target changes sign (see :data:`FLIP_NOTE`),
        the mean number of positions mutated and the number of regions.
    """
    if mutation not in MUTATIONS:
        raise UsageError(f"--mutation {mutation!r} is unknown; choose one of {', '.join(MUTATIONS)}")
    if batch_size < 1:
        raise UsageError(f"--batch-size {batch_size} must be at least 1")
    ks = parse_ks(ks)
    dev = resolve_device(device)
    with open_scores(scores) as h5:
        n, _, length = h5["raw/seq"].shape
        if ks[-1] > length:
            raise UsageError(
                f"--k {ks[-1]} is larger than the windows of {scores} ({length} bp); give k from 1 to {length}"
            )
        attrs = dict(h5.attrs)
        loaded = load_model(model, weights, model_kwargs, trust_model)
        if loaded.input_length not in (None, length):
            raise ModelError(
                f"model {model} takes inputs of length {loaded.input_length} but {scores} holds windows of "
                f"{length} bp; give the model the scores were made with ({attrs.get('model', 'unknown')})"
            )
        captured = strip_output_activation(as_captured(loaded.model, resolve_length(loaded, length), dev))
        output_index = int(attrs.get("output_index", -1))
        target = parse_targets(str(attrs.get("target", "0")), None if output_index < 0 else output_index)[0]
        head = target.output_index or 0
        activation = captured.output_activations[head] if head < len(captured.output_activations) else None
        chroms, strands = h5["coords_chrom"].asstr()[:], h5["meta/strand"].asstr()[:]
        starts, ends = h5["coords_start"][:], h5["coords_end"][:]
        deltas, flips, counts, originals = [], [], [], []
        with progress_bar(desc="perturbing", unit="region", show=progress, total=n) as bar:
            for lo in range(0, n, batch_size):
                rows = slice(lo, min(lo + batch_size, n))
                X = h5["raw/seq"][rows]
                contrib = h5["projected_shap/seq"][rows].sum(axis=1)
                seeds = [region_seed(seed, *w) for w in zip(chroms[rows], starts[rows], ends[rows], strands[rows])]
                ref_bases = (
                    dinucleotide_shuffle(X, 1, np.array(seeds, np.uint64))[:, 0].argmax(axis=1)
                    if mutation == "reference"
                    else None
                )
                variants, count = _variants(X, contrib, seeds, ks, mutation, ref_bases)
                _, inputs = model_inputs(captured, variants.reshape((-1, 4, length)), dev)
                with torch.no_grad():
                    out = captured.module(inputs)
                    y = target.bind(out, len(inputs), activation)(out).reshape(len(X), -1).double().cpu().numpy()
                deltas.append(y[:, 1:] - y[:, :1])
                flips.append((y[:, 1:] > 0) != (y[:, :1] > 0))
                counts.append(count)
                originals.append(y[:, 0])
                bar.update(len(X))
        _check_predictions(np.concatenate(originals), h5, attrs, model, scores)
    delta, flip, count = (np.concatenate(a) for a in (deltas, flips, counts))
    flip_frac = flip.mean(axis=0) if target.kind == "index" else np.full(flip.shape[1], np.nan)
    table = []
    for j, k in enumerate(ks):
        top, rand = delta[:, 2 * j], delta[:, 2 * j + 1]
        wins = np.mean((top < rand) + 0.5 * (top == rand))
        table.append(
            {
                "k": k,
                "mean_delta_top": float(top.mean()),
                "mean_delta_random": float(rand.mean()),
                "difference": float(top.mean() - rand.mean()),
                "top_wins": float(wins),
                "flip_frac_top": float(flip_frac[2 * j]),
                "flip_frac_random": float(flip_frac[2 * j + 1]),
                "mean_n_mutated": float(count[:, j].mean()),
                "n_regions": int(n),
            }
        )
    return table


def _check_predictions(y, h5, attrs, model, scores):
    """Warn when the model's target on the windows is not the one stored with the scores."""
    if "meta/prediction" not in h5 or attrs.get("rc_average") or int(attrs.get("n_models", 1)) > 1:
        return  # averaged scores store averaged predictions
    diff = np.abs(y - h5["meta/prediction"][:])
    if diff.max() > 1e-3 * (1 + np.abs(y).max()):
        warnings.warn(
            f"the target of {model} on the windows of {scores} differs from its meta/prediction by up to "
            f"{diff.max():.3g} (region row {int(diff.argmax())}); were the scores made with another model "
            f"({attrs.get('model', 'unknown')})?",
            stacklevel=3,
        )


def plot_perturbation(
    rows: Sequence[Mapping[str, Any]], path: str | Path, title: str = "", force: bool = False
) -> Path:
    """Plot the mean change of the target against k, top-k against random-k, with matplotlib (Agg).

    The format follows the suffix of ``path`` (png, pdf, svg); written under
    ``<path>.partial`` and renamed when complete.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = check_absent(path, force)
    ks = [r["k"] for r in rows]
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    ax.plot(ks, [r["mean_delta_top"] for r in rows], "o-", label="top-k scored positions")
    ax.plot(ks, [r["mean_delta_random"] for r in rows], "s--", label="k random positions")
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xlabel("positions mutated (k)")
    ax.set_ylabel("mean change of target")
    ax.set_title(title, fontsize=9)
    ax.legend(frameon=False)
    fig.tight_layout()
    try:
        with atomic_output(path, force=force) as tmp:
            fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=150)
    finally:
        plt.close(fig)
    return path


def evaluate_perturbation(
    scores: str | Path,
    model: str,
    output: str | Path,
    *,
    plot: str | Path | None = None,
    force: bool = False,
    command: str | None = None,
    **options: Any,
) -> list[dict]:
    """:func:`perturbation`, written as a TSV table (and a figure): what ``seqlift evaluate perturb`` does.

    Parameters
    ----------
    scores, model
        As for :func:`perturbation`.
    output : str or Path
        TSV to write: ``#`` lines saying what was run and what the columns
        mean, then one row per k with the columns of :data:`PERTURB_COLUMNS`.
    plot : str or Path, optional
        Figure of the mean change against k (see :func:`plot_perturbation`).
    force : bool
        Overwrite existing outputs.
    command : str, optional
        The command line, written in the table's header.
    **options
        Keyword arguments of :func:`perturbation`.

    Returns
    -------
    list of dict
        The table's rows.
    """
    for path in (output, plot):
        if path is not None:
            check_absent(path, force)
    with open_scores(scores) as h5:
        attrs = dict(h5.attrs)
    table = perturbation(scores, model, **options)
    mutation = options.get("mutation", "shuffle")
    notes = [
        command or "seqlift evaluate perturb",
        f"scores {scores} (method {attrs.get('method', '?')}, target {attrs.get('target', '?')} in "
        f"{attrs.get('target_space', '?')} space); model {model}; mutation {mutation}; seed {options.get('seed', 0)}",
        "mean_delta_*: mean over regions of target(mutated) - target(original); top = the k positions with the "
        "largest positive contributions, random = as many random non-N positions; difference = top - random "
        "(negative when the top positions matter more); top_wins: fraction of regions where the top positions "
        "lower the target more than random ones (0.5 = chance)",
        FLIP_NOTE,
    ]
    write_table(table, PERTURB_COLUMNS, output, notes, force)
    if plot is not None:
        plot_perturbation(table, plot, f"{Path(scores).name}: {mutation} mutation", force)
    return table
