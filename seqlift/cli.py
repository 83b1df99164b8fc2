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
from .devices import check_device
from .errors import ConfigError, SeqliftError
from .methods import METHODS

#: Config keys holding paths, resolved relative to the config file.
_PATH_KEYS = {"fasta", "model", "weights", "regions", "output", "npz_prefix", "exclude", "sites", "plot", "out",
              "motif_db"}


def _load_config(ctx: click.Context, param, value):
    if value is None:
        return None
    config = value
    try:
        text = Path(config).read_text()
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{config}{where}: not valid YAML ({getattr(exc, 'problem', exc)}); fix the YAML syntax") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {config} ({exc}); give a readable YAML file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{config} holds a {type(data).__name__}; give a mapping of subcommand to options, "
                          "e.g. 'score: {n_refs: 20}'")
    base = Path(config).resolve().parent
    name = ctx.info_name
    in_section = name in data
    section = data.get(name, {}) if in_section else data
    lines = _key_lines(text, name if in_section else None)
    if not isinstance(section, dict):
        raise ConfigError(f"{config} line {lines.get(None, '?')}: section {name!r} must be a mapping of option to "
                          f"value, e.g. '{name}: {{seed: 0}}'")
    params = {p.name: p for p in ctx.command.params if p.name != "config"}
    unknown = sorted(set(section) - set(params), key=str)
    if unknown:
        key = unknown[0]
        where = f"{config} line {lines[key]}" if key in lines else str(config)
        raise ConfigError(f"{where}: unknown option {key!r} for 'seqlift {name}'; use one of "
                          f"{', '.join(sorted(params))}")
    defaults = {}
    for key, value in section.items():
        where = f"{config} line {lines[key]}" if key in lines else str(config)
        option = params[key]
        if getattr(option, "multiple", False) or getattr(option, "nargs", 1) == -1:
            values = value if isinstance(value, list) else [value]
            defaults[key] = [_config_value(ctx, option, key, _resolve(base, key, v), where) for v in values]
        else:
            defaults[key] = _config_value(ctx, option, key, _resolve(base, key, value), where)
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return config


def _key_lines(text: str, section: str | None) -> dict:
    """1-based line of every option key in the config's ``section`` (None: the top level); ``None`` -> the section's."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return {}
    lines = {}
    if section is not None and isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == section:
                lines[None] = key.start_mark.line + 1
                node = value
                break
    if isinstance(node, yaml.MappingNode):
        for key, _ in node.value:
            lines.setdefault(key.value, key.start_mark.line + 1)
    return lines


#: What to write instead of a config value of the wrong kind, by option.
_CONFIG_HINTS = {"target": "list several targets in one string, e.g. target: '0,1'"}


def _config_value(ctx, option: click.Parameter, key: str, value, where: str):
    """``value`` from a config, checked with ``option``'s type as the command line checks it, without coercion:
    ``2.7`` is not an integer, ``true`` is not a number, ``null`` is no value."""
    kind = option.type
    hint = _CONFIG_HINTS.get(key)
    if value is None:
        raise ConfigError(f"{where}: {key} has no value; give one, or remove the line to use the default")
    if getattr(option, "is_flag", False) or isinstance(kind, click.types.BoolParamType):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {key} is {value!r}; give true or false")
        return value
    if isinstance(kind, click.types.IntParamType):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: {key} is {value!r}, not an integer; give a whole number, e.g. {key}: "
                              f"{option.default if isinstance(option.default, int) else 1}")
    elif isinstance(kind, click.types.FloatParamType):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: {key} is {value!r}, not a number; give a number, e.g. {key}: "
                              f"{option.default if isinstance(option.default, (int, float)) else 0.5}")
    elif isinstance(kind, _Mapping):
        if not isinstance(value, (dict, str)):
            raise ConfigError(f"{where}: {key} is {value!r}; give a mapping such as {key}: {{n_filters: 32}}"
                              if type(kind) is _Mapping else f"{where}: {key} is {value!r}; give a name or a mapping")
    else:  # text: strings, paths, choices
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ConfigError(f"{where}: {key} is {value!r}, not a single value; "
                              + (hint or f"give one {kind.name} value"))
        value = str(value)
    try:
        kind.convert(value, option, ctx)
    except click.BadParameter as exc:
        raise ConfigError(f"{where}: {key}: {exc.message.rstrip('.')}; change it in the config") from None
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


class _Device(click.ParamType):
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``; whether that GPU exists is checked when the command runs."""

    name = "device"

    def get_metavar(self, *args, **kwargs):
        return "[auto|cpu|cuda|cuda:N]"

    def convert(self, value, param, ctx):
        try:
            return check_device(value)
        except SeqliftError as exc:
            self.fail(str(exc).removeprefix("--device "), param, ctx)


device_option = click.option(
    "--device", type=_Device(), default="auto", show_default=True,
    help="auto (a GPU when there is one), cpu, cuda, or cuda:N for the N-th GPU: run one process per GPU, "
         "each with its own --shard, then seqlift merge.",
)


#: Subcommands in :mod:`seqlift.commands`, imported when first used (they import helpers from here),
#: with the one-line help that ``seqlift --help`` shows without importing them (and torch).
_LAZY_COMMANDS = {
    "logo": ("seqlift.commands.logo:logo", "Draw contribution logos of scored windows."),
    "motifs": ("seqlift.commands.motifs:motifs", "Find motifs with modisco-lite; MEME, seqlets, report."),
    "tracks": ("seqlift.commands.tracks:tracks", "bigWig tracks of the contributions in genome coordinates."),
    "merge": ("seqlift.commands.merge:merge", "Join the shards of a scoring run, in input order."),
    "evaluate": ("seqlift.commands.evaluate:evaluate", "Check scores by perturbation or against known sites."),
}


class _Group(click.Group):
    """Turns user errors and warnings into one line each on stderr; keeps the command line for provenance;
    loads the subcommands of :mod:`seqlift.commands` when they are used."""

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(_LAZY_COMMANDS))

    def get_command(self, ctx, name):
        if name in _LAZY_COMMANDS and name not in self.commands:
            module, attr = _LAZY_COMMANDS[name][0].split(":")
            self.add_command(getattr(importlib.import_module(module), attr), name)
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
@click.option("--output-index", type=click.IntRange(min=0), default=None, help="Which output of a model that returns a tuple.")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False), help="HDF5 file to write.")
@click.option("--window", type=click.IntRange(min=1), default=None, help="Window length; must match the model's input length.")
@click.option("--method", type=click.Choice(list(METHODS)), default=next(iter(METHODS)), show_default=True,
              help="Attribution method; the gradient methods and ISM are there for comparison.")
@click.option("--steps", type=click.IntRange(min=1), default=50, show_default=True, help="Integration points of integrated-gradients.")
@click.option("--rule", type=_Rule(), default="rescale", show_default=True,
              help="DeepLIFT rule: rescale, revealcancel, genomics-default (RevealCancel after dense layers, "
                   "Rescale after convolutions), or a mapping '{conv: rescale, dense: revealcancel, fc1: rescale}'.")
@click.option("--max-rule", type=click.Choice(["sign", "pair", "shapley"]), default="sign", show_default=True,
              help="How max pooling splits each window's delta between where the input and the reference peak: "
                   "sign (a rise to the input's peak, a fall to the reference's; tangermeme's rule), pair "
                   "((a+b)/2 + |a-b|/2) or shapley (two-player Shapley value of max(a, b)). All are exact.")
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
@click.option("--gc-tolerance", type=click.FloatRange(0, 1), default=0.02, show_default=True,
              help="GC-fraction tolerance of gc-matched references.")
@click.option("--exclude", type=click.Path(dir_okay=False), default=None,
              help="BED of regions never used as gc-matched references (e.g. a blacklist).")
@click.option("--rc-average", is_flag=True,
              help="Average the scores of each window and its reverse complement (mapped back).")
@click.option("--n-refs", type=click.IntRange(min=1), default=20, show_default=True, help="References per region (shuffle, gc-matched).")
@click.option("--shuffle-k", type=click.IntRange(min=1), default=2, show_default=True, help="k-mer order preserved by shuffles (2 = dinucleotide).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the shuffles.")
@click.option("--batch-size", "-b", type=click.IntRange(min=1), default=None, show_default="auto",
              help="Regions per model call. Default: probed on the first regions (the fastest on the CPU, the largest "
                   "that fits on a GPU), or with --resume the size of the run resumed.")
@device_option
@click.option("--skip-invalid", is_flag=True, help="Skip regions that cannot be scored; list them in OUTPUT.skipped.bed.")
@click.option("--allow-unsupported", is_flag=True, help="Treat ops without a DeepLIFT rule as linear, with a warning.")
@click.option("--strict", is_flag=True, help="Fail if a region's summation-to-delta error exceeds --tolerance.")
@click.option("--tolerance", type=click.FloatRange(min=0), default=1e-3, show_default=True, help="Relative summation-to-delta tolerance.")
@click.option("--allow-nonfinite", is_flag=True,
              help="Write regions whose prediction or scores are NaN/infinite, flagged in meta/finite, instead of failing.")
@click.option("--force", is_flag=True, help="Overwrite an existing output.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from OUTPUT.partial.")
@click.option("--compression", type=click.Choice(["gzip-1", "gzip-4", "gzip-6", "gzip-9", "lzf", "none"]),
              default="gzip-1", show_default=True,
              help="Compression of the (N, 4, L) datasets; gzip-1 keeps up with a GPU at nearly gzip-4's size.")
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
    from .pipeline import run_score
    from .score_options import ScoreOptions

    argv = click.get_current_context().meta.get("seqlift.argv", sys.argv[1:])
    command = "seqlift " + " ".join(shlex.quote(str(a)) for a in argv)
    paths = run_score(ScoreOptions(regions=regions, progress=not quiet, command=command, **options))
    if not quiet:
        for path in paths:
            click.echo(f"wrote {path}", err=True)


if __name__ == "__main__":  # pragma: no cover
    main()
