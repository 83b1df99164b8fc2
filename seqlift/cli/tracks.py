"""``seqlift tracks``: bigWig tracks of a score file for a genome browser."""

from __future__ import annotations

import click

from .helpers import readable_scores
from .options import config_option, force_option, quiet_option


@click.command()
@click.argument("scores", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--output",
    "-o",
    required=True,
    metavar="PREFIX",
    help="Output prefix: writes PREFIX.contrib.bw and PREFIX.windows.bed.",
)
@click.option(
    "--fasta",
    "-f",
    type=click.Path(dir_okay=False),
    default=None,
    help="Genome FASTA for the chromosome sizes (default: the FASTA recorded in SCORES).",
)
@click.option(
    "--hypothetical",
    is_flag=True,
    help="Also write PREFIX.hyp_max.bw and PREFIX.hyp_min.bw (max / min over the 4 bases of shap/seq).",
)
@click.option(
    "--overlap",
    type=click.Choice(["midpoint", "mean"]),
    default="midpoint",
    show_default=True,
    help="Overlapping windows: each base from the window with the nearest centre (midpoint), "
    "or the mean of the windows covering it (mean).",
)
@force_option()
@quiet_option()
@config_option
def tracks(scores, output, fasta, hypothetical, overlap, force, quiet):
    """bigWig tracks of the per-base contributions in SCORES, in genome coordinates.

    PREFIX.contrib.bw holds each base's actual contribution (minus-strand
    windows mapped back to the genome's orientation); bases outside every
    window have no value. PREFIX.windows.bed lists the scored windows
    (name, prediction as score, strand).
    """
    from ..tracks import write_tracks

    with readable_scores(scores):
        paths = write_tracks(
            scores, output, fasta=fasta, hypothetical=hypothetical, overlap=overlap, force=force, progress=not quiet
        )
    if not quiet:
        for path in paths:
            click.echo(f"wrote {path}", err=True)
