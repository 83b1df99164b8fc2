"""``seqlift motifs``: motif discovery in a scores file with modisco-lite."""

import click

from .helpers import readable_scores
from .options import config_option, force_option, quiet_option


@click.command()
@click.argument("scores", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder to write: modisco.h5, logos/, motifs.meme, seqlets.bed, report.html.",
)
@click.option(
    "--max-seqlets",
    type=click.IntRange(min=1),
    default=2000,
    show_default=True,
    help="Most seqlets clustered per sign.",
)
@click.option(
    "--window",
    type=click.IntRange(min=1),
    default=400,
    show_default=True,
    help="Central bases of each scored window to search (clipped to the scored length).",
)
@click.option(
    "--n-leiden",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Leiden clusterings, each with its own seed.",
)
@click.option(
    "--motif-db",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="MEME file of known motifs (e.g. JASPAR) to match the motifs against with TOMTOM.",
)
@click.option("--pwm", is_flag=True, help="Also draw each motif's PWM as an information-content logo.")
@force_option("Replace an existing output folder of an earlier run.")
@quiet_option("No progress on stderr.")
@config_option
def motifs(scores, output, quiet, **options):
    """Find motifs in SCORES (a 'seqlift score' HDF5 file) with modisco-lite.

    Writes modisco-lite's results, motif logos, a MEME file, the seqlets as
    BED in genome coordinates and an HTML report into the folder OUTPUT.
    """
    from ..motifs import find_motifs

    with readable_scores(scores):
        found = find_motifs(scores, output, progress=not quiet, **options)
    if not quiet:
        click.echo(f"wrote {len(found)} motifs to {output}", err=True)
