"""``seqlift merge``: join the shards of one ``seqlift score --shard k-of-n`` run."""

from __future__ import annotations

import click

from .helpers import command_line
from .options import config_option, force_option, quiet_option


@click.command()
@click.argument("shards", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False), help="Merged HDF5 file to write.")
@force_option()
@quiet_option()
@config_option
def merge(shards, output, force, quiet):
    """Join score files of `seqlift score --shard K-of-N` into one, in input order.

    SHARDS are all N shard files of one run, in any order. They must come from
    the same run (same model, options, regions and FASTA), must not overlap and
    must be complete; the result equals the file of the run without --shard.
    """
    from ..merge import merge_scores

    path = merge_scores(shards, output, force=force, progress=not quiet, command=command_line())
    if not quiet:
        click.echo(f"wrote {path}", err=True)
