"""The command group: every subcommand, lazy or not and nested or not, loads through ``main``; a wrong entry in
the table of lazy subcommands is named as such."""

import click
import pytest
from click.testing import CliRunner

import seqlift.evaluate
from seqlift.cli import evaluate as cli_evaluate, main
from seqlift.cli.group import _LAZY_COMMANDS


def _names():
    with click.Context(main, info_name="seqlift") as ctx:
        return main.list_commands(ctx)


def test_the_group_lists_score_and_every_lazy_subcommand():
    assert set(_names()) == {"score", *_LAZY_COMMANDS}


@pytest.mark.parametrize("name", _names())
def test_every_command_and_subcommand_shows_its_help(name):
    ctx = click.Context(main, info_name="seqlift")
    command = main.get_command(ctx, name)
    assert isinstance(command, click.Command)
    paths = [[name]]
    if isinstance(command, click.Group):
        subnames = command.list_commands(ctx)
        assert subnames, f"seqlift {name} is a group without subcommands"
        paths += [[name, sub] for sub in subnames]
    for path in paths:
        r = CliRunner().invoke(main, [*path, "--help"], prog_name="seqlift")
        assert r.exit_code == 0, r.output
        assert r.output.startswith(f"Usage: seqlift {' '.join(path)} "), r.output


def test_evaluate_is_a_group_of_perturb_and_sites():
    ctx = click.Context(main, info_name="seqlift")
    command = main.get_command(ctx, "evaluate")
    assert isinstance(command, click.Group) and set(command.list_commands(ctx)) == {"perturb", "sites"}


def test_group_help_lists_every_command_with_its_help():
    r = CliRunner().invoke(main, ["--help"])
    assert r.exit_code == 0
    for name, (_, short) in _LAZY_COMMANDS.items():
        assert f"{name}  " in r.output and short[:30] in r.output.replace("\n", " ")


@pytest.mark.parametrize(
    "path",
    [
        "seqlift.cli.no_such_module:bogus",
        "no_such_package.commands:bogus",
        "seqlift.cli.logo:no_such_command",
        "seqlift.cli.helpers:readable_scores",
        "seqlift.cli.logo",
    ],
)
def test_a_lazy_entry_that_names_no_command_fails_clearly(monkeypatch, path):
    monkeypatch.setitem(_LAZY_COMMANDS, "bogus", (path, "A command that is not there."))
    r = CliRunner().invoke(main, ["bogus", "--help"])
    assert r.exit_code == 1
    assert isinstance(r.exception, RuntimeError)
    message = str(r.exception)
    assert message.startswith("seqlift bogus: ") and repr(path) in message and "names no click command" in message
    assert "bogus" not in main.commands


def test_a_missing_dependency_of_a_lazy_command_is_raised_as_it_is(monkeypatch, tmp_path):
    (tmp_path / "seqlift_test_broken_command.py").write_text("import seqlift_test_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(_LAZY_COMMANDS, "broken", ("seqlift_test_broken_command:broken", "Broken."))
    r = CliRunner().invoke(main, ["broken", "--help"])
    assert isinstance(r.exception, ModuleNotFoundError)
    assert r.exception.name == "seqlift_test_no_such_dependency"


def test_the_mutations_of_evaluate_perturb_are_the_library_s():
    assert cli_evaluate.MUTATIONS == seqlift.evaluate.MUTATIONS
