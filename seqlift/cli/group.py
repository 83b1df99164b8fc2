"""The ``seqlift`` command group: its subcommands, loaded when used, and how errors and warnings are shown.

User errors (:class:`~seqlift.errors.SeqliftError`) print one line and exit 1;
warnings print one line each. ``seqlift --version``, ``seqlift --help`` and
``seqlift CMD --help`` answer without importing torch.
"""

from __future__ import annotations

import importlib
import signal
import warnings

import click

from .. import __version__
from ..errors import SeqliftError
from .score import score

#: Subcommands other than ``score``, each a module of :mod:`seqlift.cli` imported when the command is first used,
#: with the one-line help that ``seqlift --help`` shows without importing them (and torch).
_LAZY_COMMANDS = {
    "logo": ("seqlift.cli.logo:logo", "Draw contribution logos of scored windows."),
    "motifs": ("seqlift.cli.motifs:motifs", "Find motifs with modisco-lite; MEME, seqlets, report."),
    "tracks": ("seqlift.cli.tracks:tracks", "bigWig tracks of the contributions in genome coordinates."),
    "merge": ("seqlift.cli.merge:merge", "Join the shards of a scoring run, in input order."),
    "evaluate": ("seqlift.cli.evaluate:evaluate", "Check scores by perturbation or against known sites."),
}


def _load(name: str, path: str) -> click.Command:
    """The click command at ``path`` (``package.module:attribute``) of the lazy subcommand ``name``.

    A path that names no module, no attribute or no click command is a mistake in
    :data:`_LAZY_COMMANDS`, reported as such; an import error inside the module
    (a missing dependency) is raised as it is.
    """
    module_name, _, attr = path.partition(":")
    try:
        command = getattr(importlib.import_module(module_name), attr, None)
    except ModuleNotFoundError as exc:
        if not (exc.name and f"{module_name}.".startswith(f"{exc.name}.")):
            raise  # a module that the command's module imports is missing
        command = None
    if not isinstance(command, click.Command):
        raise RuntimeError(
            f"seqlift {name}: {path!r} in seqlift.cli.group._LAZY_COMMANDS names no click command; "
            "give the command as package.module:attribute"
        )
    return command


class _Group(click.Group):
    """Turns user errors and warnings into one line each on stderr; keeps the command line for provenance;
    loads the subcommands of :data:`_LAZY_COMMANDS` when they are used."""

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(_LAZY_COMMANDS))

    def get_command(self, ctx, name):
        if name in _LAZY_COMMANDS and name not in self.commands:
            self.add_command(_load(name, _LAZY_COMMANDS[name][0]), name)
        return super().get_command(ctx, name)

    def format_commands(self, ctx, formatter):
        rows = []
        for name in self.list_commands(ctx):
            if name in _LAZY_COMMANDS:
                rows.append((name, _LAZY_COMMANDS[name][1]))
            else:
                rows.append((name, self.get_command(ctx, name).get_short_help_str(formatter.width)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def parse_args(self, ctx, args):
        ctx.meta["seqlift.argv"] = list(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx):
        def show(message, category, filename, lineno, file=None, line=None):
            kind = "note" if category.__name__ == "SeqliftNote" else "warning"
            click.echo(f"seqlift: {kind}: {message}", err=True)

        warnings.showwarning = show
        # library deprecation notices are for developers, not for the person running seqlift
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        # A scheduler's SIGTERM (time limit, preemption) stops the run like Ctrl-C:
        # finished batches stay in OUTPUT.partial for --resume.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            return super().invoke(ctx)
        except SeqliftError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            raise click.ClickException(
                "interrupted; finished batches are kept in OUTPUT.partial: rerun the same command with --resume"
            ) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="seqlift")
def main():
    """seqlift: which bases made the model say that? DeepLIFT scores for DNA models."""


main.add_command(score)
