"""The ``seqlift`` command line: a thin layer over the Python API.

Defaults for any subcommand can come from ``--config file.yaml``, a mapping of
subcommand name to option values (``score: {fasta: genome.fa, n_refs: 20}``);
relative paths in it are taken relative to the config file's folder. Options
given on the command line win. User errors print one line and exit 1.
"""

from __future__ import annotations

import importlib
import shlex
import signal
import sys
import warnings
from pathlib import Path

import click
import yaml

from . import __version__
from .errors import SeqliftError

#: Config keys holding paths, resolved relative to the config file.
_PATH_KEYS = {"fasta", "model", "weights", "regions", "output", "npz_prefix", "exclude", "sites", "plot", "out",
              "motif_db"}


def _load_config(ctx: click.Context, param, value):
    if value is None:
        return None
    try:
        data = yaml.safe_load(Path(value).read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise click.BadParameter(f"{value}{where} is not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(data, dict):
        raise click.BadParameter(f"{value} must hold a mapping of subcommand to options")
    base = Path(value).resolve().parent
    name = ctx.info_name
    section = data.get(name, {}) if name in data else data
    if not isinstance(section, dict):
        raise click.BadParameter(f"{value}: section {name!r} must be a mapping of option to value")
    known = {p.name for p in ctx.command.params}
    unknown = sorted(set(section) - known)
    if unknown:
        raise click.BadParameter(f"{value}: unknown option(s) for '{name}': {', '.join(unknown)}")
    multiple = {p.name for p in ctx.command.params if getattr(p, "multiple", False)}
    defaults = {}
    for key, value in section.items():
        if key in multiple:
            values = value if isinstance(value, list) else [value]
            defaults[key] = [_resolve(base, key, v) for v in values]
        else:
            defaults[key] = _resolve(base, key, value)
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


def _resolve(base: Path, key: str, value):
    if key not in _PATH_KEYS or not isinstance(value, str):
        return value
    file, sep, cls = value.partition(":")
    if (sep and not file.endswith(".py")) or Path(file).is_absolute():
        return value  # package.module:ClassName, or already absolute
    return str(base / file) + sep + cls


config_option = click.option(
    "--config", type=click.Path(exists=True, dir_okay=False), callback=_load_config, is_eager=True,
    expose_value=False, help="YAML file of defaults for this command's options.",
)


class _Mapping(click.ParamType):
    """A mapping given as YAML/JSON text on the command line, or as a mapping in --config."""

    name = "mapping"

    def convert(self, value, param, ctx):
        if isinstance(value, dict):
            return value
        try:
            data = yaml.safe_load(value)
        except yaml.YAMLError:
            data = None
        if not isinstance(data, dict):
            self.fail(f"{value!r} is not a mapping such as '{{n_filters: 32}}'", param, ctx)
        return data


class _Rule(_Mapping):
    """A rule name, or a mapping of layer kind / module path to rule."""

    name = "rule"

    def convert(self, value, param, ctx):
        from .attribution.deeplift import RULE_PRESETS

        if isinstance(value, str) and value in RULE_PRESETS:
            return value
        if isinstance(value, str) and not value.lstrip().startswith("{"):
            self.fail(f"{value!r} is not one of {', '.join(RULE_PRESETS)}, nor a mapping such as "
                      "'{conv: rescale, dense: revealcancel}'", param, ctx)
        return super().convert(value, param, ctx)


#: Subcommands in :mod:`seqlift.commands`, imported when first used (they import helpers from here).
_LAZY_COMMANDS = {
    "logo": "seqlift.commands.logo:logo",
    "motifs": "seqlift.commands.motifs:motifs",
    "tracks": "seqlift.commands.tracks:tracks",
    "merge": "seqlift.commands.merge:merge",
    "evaluate": "seqlift.commands.evaluate:evaluate",
}


class _Group(click.Group):
    """Turns user errors and warnings into one line each on stderr; keeps the command line for provenance;
    loads the subcommands of :mod:`seqlift.commands` when they are used."""

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(_LAZY_COMMANDS))

    def get_command(self, ctx, name):
        if name in _LAZY_COMMANDS and name not in self.commands:
            module, attr = _LAZY_COMMANDS[name].split(":")
            self.add_command(getattr(importlib.import_module(module), attr), name)
        return super().get_command(ctx, name)

    def parse_args(self, ctx, args):
        ctx.meta["seqlift.argv"] = list(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx):
        def show(message, category, filename, lineno, file=None, line=None):
            click.echo(f"seqlift: warning: {message}", err=True)

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


@main.command()
@click.argument("regions", type=click.Path(dir_okay=False))
@click.option("--fasta", "-f", required=True, type=click.Path(dir_okay=False), help="Genome FASTA (indexed if needed).")
@click.option("--model", "-m", required=True, multiple=True,
              help="model.pt2, or file.py:ClassName / package.module:ClassName with --weights. "
                   "Repeat to average the scores of several models (folds).")
@click.option("--trust-model", is_flag=True,
              help="Also load a pickled full model (torch.save(model)); unpickling runs code from the file.")
@click.option("--weights", type=click.Path(dir_okay=False), help="State dict of a class model (.safetensors or torch.save'd dict).")
@click.option("--model-kwargs", type=_Mapping(), default=None, help="Constructor arguments of a class model, e.g. '{n_filters: 32}'.")
@click.option("--target", "-t", default="0", show_default=True,
              help="Output column to explain; several as 0,3,7 or all (one file per target, OUTPUT stem.<target>.h5); "
                   "counts or profile for BPNet-style profile models.")
@click.option("--output-index", type=int, default=None, help="Which output of a model that returns a tuple.")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False), help="HDF5 file to write.")
@click.option("--window", type=int, default=None, help="Window length; must match the model's input length.")
@click.option("--method", type=click.Choice(["deeplift", "gradient", "gradient-x-input", "integrated-gradients", "ism"]),
              default="deeplift", show_default=True,
              help="Attribution method; the gradient methods and ISM are there for comparison.")
@click.option("--steps", type=int, default=50, show_default=True, help="Integration points of integrated-gradients.")
@click.option("--rule", type=_Rule(), default="rescale", show_default=True,
              help="DeepLIFT rule: rescale, revealcancel, genomics-default (RevealCancel after dense layers, "
                   "Rescale after convolutions), or a mapping '{conv: rescale, dense: revealcancel, fc1: rescale}'.")
@click.option("--split-signs", is_flag=True,
              help="Also write contributions to the positive and negative parts of the target's delta.")
@click.option("--normalize-input-weights", is_flag=True,
              help="Mean-normalise first-layer weights across A,C,G,T (scores independent of a shared offset).")
@click.option("--compile", is_flag=True,
              help="Fuse the ReLU multipliers with torch.compile: faster on large models after a one-time compile.")
@click.option("--reference", default="shuffle", show_default=True,
              help="Reference sequences: shuffle (k-mer preserving), zeros, uniform (0.25 per base), gc-matched "
                   "(genomic windows of the same GC), or file:refs.h5 (dataset 'references', (regions, K, 4, L) "
                   "or (K, 4, L)).")
@click.option("--gc-tolerance", type=float, default=0.02, show_default=True,
              help="GC-fraction tolerance of gc-matched references.")
@click.option("--exclude", type=click.Path(dir_okay=False), default=None,
              help="BED of regions never used as gc-matched references (e.g. a blacklist).")
@click.option("--rc-average", is_flag=True,
              help="Average the scores of each window and its reverse complement (mapped back).")
@click.option("--n-refs", type=int, default=20, show_default=True, help="References per region (shuffle, gc-matched).")
@click.option("--shuffle-k", type=int, default=2, show_default=True, help="k-mer order preserved by shuffles (2 = dinucleotide).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the shuffles.")
@click.option("--batch-size", "-b", type=int, default=32, show_default=True, help="Regions per model call.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--skip-invalid", is_flag=True, help="Skip regions that cannot be scored; list them in OUTPUT.skipped.bed.")
@click.option("--allow-unsupported", is_flag=True, help="Treat ops without a DeepLIFT rule as linear, with a warning.")
@click.option("--strict", is_flag=True, help="Fail if a region's summation-to-delta error exceeds --tolerance.")
@click.option("--tolerance", type=float, default=1e-3, show_default=True, help="Relative summation-to-delta tolerance.")
@click.option("--allow-nonfinite", is_flag=True,
              help="Write regions whose prediction or scores are NaN/infinite, flagged in meta/finite, instead of failing.")
@click.option("--force", is_flag=True, help="Overwrite an existing output.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from OUTPUT.partial.")
@click.option("--npz-prefix", default=None, help="Also write PREFIX.ohe.npz and PREFIX.shap.npz for modisco-lite.")
@click.option("--shard", default=None, metavar="K-of-N",
              help="Score only the K-th of N equal contiguous blocks of the regions (join them with seqlift merge).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@config_option
def score(regions, quiet, **options):
    """DeepLIFT contribution scores for every region of a BED file.

    REGIONS is a BED file (BED3+, BED6 strand, narrowPeak summit); windows of
    the model's input length are centred on the summit, else the midpoint.
    """
    from .pipeline import score as run

    argv = click.get_current_context().meta.get("seqlift.argv", sys.argv[1:])
    command = "seqlift " + " ".join(shlex.quote(str(a)) for a in argv)
    paths = run(regions, progress=not quiet, command=command, **options)
    if not quiet:
        for path in paths if isinstance(paths, list) else [paths]:
            click.echo(f"wrote {path}", err=True)


if __name__ == "__main__":  # pragma: no cover
    main()
