"""What the commands share: parameter types, and the options that more than one command has.

Each shared option is defined here once, so that its name, type and help are
the same in every command that has it. Nothing here imports torch.
"""

from __future__ import annotations

import click
import yaml

from ..devices import check_device
from ..errors import ConfigError, SeqliftError
from .config import load_config


class MappingParam(click.ParamType):
    """A mapping given as YAML/JSON text on the command line, or as a mapping in --config."""

    name = "mapping"
    #: What a --config value of this option should be, for the message when it is something else.
    config_form = "a mapping such as {key}: {{n_filters: 32}}"

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

    def check_config(self, value, key: str, where: str):
        """A --config ``value`` of ``key`` is a mapping, or text to read as one (``where``: file and line)."""
        if not isinstance(value, (dict, str)):
            raise ConfigError(f"{where}: {key} is {value!r}; give {self.config_form.format(key=key)}")


class RuleParam(MappingParam):
    """A rule name, or a mapping of layer kind / module path to rule."""

    name = "rule"
    config_form = "a name or a mapping"

    def convert(self, value, param, ctx):
        from ..attribution.deeplift import RULE_PRESETS

        if isinstance(value, str) and value in RULE_PRESETS:
            return value
        if isinstance(value, str) and not value.lstrip().startswith("{"):
            self.fail(
                f"{value!r} is not one of {', '.join(RULE_PRESETS)}, nor a mapping such as "
                "'{conv: rescale, dense: revealcancel}'",
                param,
                ctx,
            )
        return super().convert(value, param, ctx)


class DeviceParam(click.ParamType):
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``; whether that GPU exists is checked when the command runs."""

    name = "device"

    def get_metavar(self, *args, **kwargs):
        return "[auto|cpu|cuda|cuda:N]"

    def convert(self, value, param, ctx):
        try:
            return check_device(value)
        except SeqliftError as exc:
            self.fail(str(exc).removeprefix("--device "), param, ctx)


config_option = click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False),
    callback=load_config,
    is_eager=True,
    expose_value=False,
    help="YAML file of defaults for this command's options.",
)

device_option = click.option(
    "--device",
    type=DeviceParam(),
    default="auto",
    show_default=True,
    help="auto (a GPU when there is one), cpu, cuda, or cuda:N for the N-th GPU: run one process per GPU, "
    "each with its own --shard, then seqlift merge.",
)

#: The forms of a model that --model takes.
MODEL_FORMS = "model.pt2, or file.py:ClassName / package.module:ClassName with --weights."


def model_options(help: str, multiple: bool = False):
    """``--model/-m`` (required; ``help`` says what it is, ``multiple``: may be repeated) and the options that load
    a model: ``--trust-model``, ``--weights``, ``--model-kwargs``."""
    options = [
        click.option("--model", "-m", required=True, multiple=multiple, help=help),
        click.option(
            "--trust-model",
            is_flag=True,
            help="Also load a pickled full model (torch.save(model)); unpickling runs code from the file.",
        ),
        click.option(
            "--weights",
            type=click.Path(dir_okay=False),
            help="State dict of a class model (.safetensors or torch.save'd dict).",
        ),
        click.option(
            "--model-kwargs",
            type=MappingParam(),
            default=None,
            help="Constructor arguments of a class model, e.g. '{n_filters: 32}'.",
        ),
    ]

    def decorate(command):
        for option in reversed(options):  # as listed, in the command's help
            command = option(command)
        return command

    return decorate


def force_option(help: str = "Overwrite existing outputs."):
    """``--force``; ``help`` where overwriting means more than replacing the output files."""
    return click.option("--force", is_flag=True, help=help)


def quiet_option(help: str = "No progress bar."):
    """``--quiet/-q``: no progress, and no 'wrote ...' lines; ``help`` where the progress is not a bar."""
    return click.option("--quiet", "-q", is_flag=True, help=help)
