"""``seqlift score``: DeepLIFT (or, to compare, gradient or ISM) contribution scores of the regions of a BED file."""

from __future__ import annotations

import click

from ..methods import METHODS
from .helpers import command_line
from .options import MODEL_FORMS, RuleParam, config_option, device_option, force_option, model_options, quiet_option


@click.command()
@click.argument("regions", type=click.Path(dir_okay=False))
@click.option("--fasta", "-f", required=True, type=click.Path(dir_okay=False), help="Genome FASTA (indexed if needed).")
@model_options(f"{MODEL_FORMS} Repeat to average the scores of several models (folds).", multiple=True)
@click.option(
    "--target",
    "-t",
    default="0",
    show_default=True,
    help="Output column to explain; several as 0,3,7 or all (one file per target, OUTPUT stem.<target>.h5); "
    "counts or profile for BPNet-style profile models.",
)
@click.option(
    "--output-index", type=click.IntRange(min=0), default=None, help="Which output of a model that returns a tuple."
)
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False), help="HDF5 file to write.")
@click.option(
    "--window", type=click.IntRange(min=1), default=None, help="Window length; must match the model's input length."
)
@click.option(
    "--method",
    type=click.Choice(list(METHODS)),
    default=next(iter(METHODS)),
    show_default=True,
    help="Attribution method; the gradient methods and ISM are there for comparison.",
)
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="Integration points of integrated-gradients.",
)
@click.option(
    "--rule",
    type=RuleParam(),
    default="rescale",
    show_default=True,
    help="DeepLIFT rule: rescale, revealcancel, genomics-default (RevealCancel after dense layers, "
    "Rescale after convolutions), or a mapping '{conv: rescale, dense: revealcancel, fc1: rescale}'.",
)
@click.option(
    "--max-rule",
    type=click.Choice(["sign", "pair", "shapley"]),
    default="sign",
    show_default=True,
    help="How max pooling splits each window's delta between where the input and the reference peak: "
    "sign (a rise to the input's peak, a fall to the reference's; tangermeme's rule), pair "
    "((a+b)/2 + |a-b|/2) or shapley (two-player Shapley value of max(a, b)). All are exact.",
)
@click.option(
    "--split-signs",
    is_flag=True,
    help="Also write contributions to the positive and negative parts of the target's delta.",
)
@click.option(
    "--normalize-input-weights",
    is_flag=True,
    help="Mean-normalise first-layer weights across A,C,G,T (scores independent of a shared offset).",
)
@click.option(
    "--compile",
    is_flag=True,
    help="Fuse the ReLU multipliers with torch.compile (for GPUs; the CPU already runs them as one compiled loop).",
)
@click.option(
    "--reference",
    default="shuffle",
    show_default=True,
    help="Reference sequences: shuffle (k-mer preserving), zeros, uniform (0.25 per base), gc-matched "
    "(genomic windows of the same GC), or file:refs.h5 (dataset 'references', (regions, K, 4, L) "
    "or (K, 4, L)).",
)
@click.option(
    "--gc-tolerance",
    type=click.FloatRange(0, 1),
    default=0.02,
    show_default=True,
    help="GC-fraction tolerance of gc-matched references.",
)
@click.option(
    "--exclude",
    type=click.Path(dir_okay=False),
    default=None,
    help="BED of regions never used as gc-matched references (e.g. a blacklist).",
)
@click.option(
    "--rc-average", is_flag=True, help="Average the scores of each window and its reverse complement (mapped back)."
)
@click.option(
    "--n-refs",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="References per region (shuffle, gc-matched).",
)
@click.option(
    "--shuffle-k",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="k-mer order preserved by shuffles (2 = dinucleotide).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the shuffles.")
@click.option(
    "--batch-size",
    "-b",
    type=click.IntRange(min=1),
    default=None,
    show_default="auto",
    help="Regions per model call. Default: probed on the first regions (the fastest on the CPU, the largest "
    "that fits on a GPU), or with --resume the size of the run resumed.",
)
@device_option
@click.option(
    "--skip-invalid", is_flag=True, help="Skip regions that cannot be scored; list them in OUTPUT.skipped.bed."
)
@click.option("--allow-unsupported", is_flag=True, help="Treat ops without a DeepLIFT rule as linear, with a warning.")
@click.option("--strict", is_flag=True, help="Fail if a region's summation-to-delta error exceeds --tolerance.")
@click.option(
    "--tolerance",
    type=click.FloatRange(min=0),
    default=1e-3,
    show_default=True,
    help="Relative summation-to-delta tolerance.",
)
@click.option(
    "--allow-nonfinite",
    is_flag=True,
    help="Write regions whose prediction or scores are NaN/infinite, flagged in meta/finite, instead of failing.",
)
@force_option()
@click.option("--resume", is_flag=True, help="Continue an interrupted run from OUTPUT.partial.")
@click.option(
    "--compression",
    type=click.Choice(["gzip-1", "gzip-4", "gzip-6", "gzip-9", "lzf", "none"]),
    default="gzip-1",
    show_default=True,
    help="Compression of the (N, 4, L) datasets; gzip-1 keeps up with a GPU at nearly gzip-4's size.",
)
@click.option("--npz-prefix", default=None, help="Also write PREFIX.ohe.npz and PREFIX.shap.npz for modisco-lite.")
@click.option(
    "--shard",
    default=None,
    metavar="K-of-N",
    help="Score only the K-th of N equal contiguous blocks of the regions (join them with seqlift merge).",
)
@quiet_option()
@config_option
def score(regions, quiet, **options):
    """DeepLIFT contribution scores for every region of a BED file.

    REGIONS is a BED file (BED3+, BED6 strand, narrowPeak summit); windows of
    the model's input length are centred on the summit, else the midpoint.
    """
    from ..pipeline import run_score
    from ..score_options import ScoreOptions

    paths = run_score(ScoreOptions(regions=regions, progress=not quiet, command=command_line(), **options))
    if not quiet:
        for path in paths:
            click.echo(f"wrote {path}", err=True)
