"""``seqlift evaluate``: faithfulness by perturbation (``perturb``) and recovery of known motif sites (``sites``)."""

from __future__ import annotations

import click

from .helpers import command_line, readable_scores
from .options import MODEL_FORMS, config_option, device_option, force_option, model_options, quiet_option

#: The choices of --mutation: :data:`seqlift.evaluate.MUTATIONS`, written out so that ``--help`` need not import
#: :mod:`seqlift.evaluate` (and torch); tests/test_cli_group.py checks that they are the same.
MUTATIONS = ("shuffle", "reference")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def evaluate():
    """Check scores files: do their top bases move the model (perturb), do they find known sites (sites)?"""


@evaluate.command(short_help="Mutate top-k scored bases vs k random bases.")
@click.argument("scores", type=click.Path(dir_okay=False))
@model_options(f"The model the scores were made with: {MODEL_FORMS}")
@click.option(
    "--k", "ks", default="1,2,5,10,20", show_default=True, help="Numbers of positions to mutate, comma-separated."
)
@click.option(
    "--mutation",
    type=click.Choice(MUTATIONS),
    default="shuffle",
    show_default=True,
    help="shuffle: each position to a different random base; reference: to the base of a dinucleotide "
    "shuffle of the window.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random positions and bases.")
@click.option(
    "--batch-size", "-b", type=click.IntRange(min=1), default=32, show_default=True, help="Regions per model call."
)
@device_option
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False), help="TSV table to write.")
@click.option(
    "--plot", type=click.Path(dir_okay=False), default=None, help="Also plot mean change vs k (png, pdf, svg)."
)
@force_option()
@quiet_option()
@config_option
def perturb(scores, model, output, plot, force, quiet, **options):
    """Mutate the top-k scored bases of each region and k random ones; compare the change of the target.

    SCORES is a file of seqlift score; the target and output index are read
    from it. The table has one row per k: mean change (mutated - original) for
    the top-k positive positions and for k random positions, their difference,
    the fraction of regions where the top positions move the target more, and
    the fractions of regions whose target changes sign (meaningful for binary
    classifiers only).
    """
    from ..evaluate import evaluate_perturbation

    with readable_scores(scores):
        evaluate_perturbation(
            scores, model, output, plot=plot, force=force, command=command_line(), progress=not quiet, **options
        )
    if not quiet:
        click.echo(f"wrote {output}" + (f" and {plot}" if plot else ""), err=True)


@evaluate.command(short_help="AUROC/AUPRC of scores at known motif sites.")
@click.argument("scores", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--sites",
    "-s",
    required=True,
    type=click.Path(dir_okay=False),
    help="BED of known sites (0-based half-open), motif name in column 4.",
)
@click.option(
    "--motif", "motifs", multiple=True, help="Use only the sites of this motif (BED name); repeat for several."
)
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False), help="TSV table to write.")
@force_option()
@quiet_option()
@config_option
def sites(scores, sites, motifs, output, force, quiet):
    """AUROC and AUPRC of per-base contributions for positions inside known sites, one row per SCORES file."""
    from ..evaluate import evaluate_sites

    with readable_scores(scores):
        evaluate_sites(
            list(scores),
            sites,
            output,
            motifs=list(motifs) or None,
            force=force,
            command=command_line(),
            progress=not quiet,
        )
    if not quiet:
        click.echo(f"wrote {output}", err=True)
