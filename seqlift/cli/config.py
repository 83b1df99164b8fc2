"""``--config file.yaml``: defaults for a subcommand's options from a YAML file.

The file is a mapping of subcommand name to option values (``score: {fasta:
genome.fa, n_refs: 20}``), or the options of one subcommand at its top level;
relative paths in it are taken relative to the config file's folder. Each value
is checked with its option's type, as the command line checks it, and a wrong
one is reported with the file, line and key. Options given on the command line
win over the config.
"""

from __future__ import annotations

from pathlib import Path

import click
import yaml

from ..errors import ConfigError

#: Config keys holding paths, resolved relative to the config file.
_PATH_KEYS = {
    "fasta",
    "model",
    "weights",
    "regions",
    "output",
    "npz_prefix",
    "exclude",
    "sites",
    "plot",
    "out",
    "motif_db",
}


def load_config(ctx: click.Context, param, value):
    """The callback of ``--config``: the file's values for this command become ``ctx.default_map``."""
    if value is None:
        return None
    config = value
    try:
        text = Path(config).read_text()
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(
            f"{config}{where}: not valid YAML ({getattr(exc, 'problem', exc)}); fix the YAML syntax"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {config} ({exc}); give a readable YAML file") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{config} holds a {type(data).__name__}; give a mapping of subcommand to options, "
            "e.g. 'score: {n_refs: 20}'"
        )
    base = Path(config).resolve().parent
    name = ctx.info_name
    in_section = name in data
    section = data.get(name, {}) if in_section else data
    lines = _key_lines(text, name if in_section else None)
    if not isinstance(section, dict):
        raise ConfigError(
            f"{config} line {lines.get(None, '?')}: section {name!r} must be a mapping of option to "
            f"value, e.g. '{name}: {{seed: 0}}'"
        )
    params = {p.name: p for p in ctx.command.params if p.name != "config"}
    unknown = sorted(set(section) - set(params), key=str)
    if unknown:
        key = unknown[0]
        where = f"{config} line {lines[key]}" if key in lines else str(config)
        raise ConfigError(
            f"{where}: unknown option {key!r} for 'seqlift {name}'; use one of {', '.join(sorted(params))}"
        )
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
            raise ConfigError(
                f"{where}: {key} is {value!r}, not an integer; give a whole number, e.g. {key}: "
                f"{option.default if isinstance(option.default, int) else 1}"
            )
    elif isinstance(kind, click.types.FloatParamType):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(
                f"{where}: {key} is {value!r}, not a number; give a number, e.g. {key}: "
                f"{option.default if isinstance(option.default, (int, float)) else 0.5}"
            )
    elif hasattr(kind, "check_config"):  # a type of its own (seqlift.cli.options), e.g. a mapping
        kind.check_config(value, key, where)
    else:  # text: strings, paths, choices
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ConfigError(
                f"{where}: {key} is {value!r}, not a single value; " + (hint or f"give one {kind.name} value")
            )
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
