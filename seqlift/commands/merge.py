"""``seqlift merge``: join the shards of one ``seqlift score --shard k-of-n`` run."""

from __future__ import annotations

import shlex
import sys

import click

from ..cli import config_option


@click.command()
@click.argument("shards", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False), help="Merged HDF5 file to write.")
@click.option("--force", is_flag=True, help="Overwrite an existing output.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@config_option
def merge(shards, output, force, quiet):
    """Join score files of `seqlift score --shard K-of-N` into one, in input order.

    SHARDS are all N shard files of one run, in any order. They must come from
    the same run (same model, options, regions and FASTA), must not overlap and
    must be complete; the result equals the file of the run without --shard.
    """
    from ..merge import merge_scores

    argv = click.get_current_context().meta.get("seqlift.argv", sys.argv[1:])
    path = merge_scores(shards, output, force=force, progress=not quiet,
                        command="seqlift " + " ".join(shlex.quote(str(a)) for a in argv))
    if not quiet:
        click.echo(f"wrote {path}", err=True)
