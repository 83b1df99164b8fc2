"""The command group: --version and --help answer without torch; every lazy subcommand loads through main."""

import subprocess
import sys

import pytest
from click.testing import CliRunner

from seqlift.cli import _LAZY_COMMANDS, main


@pytest.mark.parametrize("args", [["--version"], ["--help"]])
def test_version_and_help_do_not_import_torch(args):
    code = ("import sys; from seqlift.cli import main\n"
            f"try:\n    main({args!r})\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.parametrize("name", sorted(_LAZY_COMMANDS) + ["score"])
def test_each_subcommand_loads_and_shows_help(name):
    r = CliRunner().invoke(main, [name, "--help"])
    assert r.exit_code == 0, r.output
    assert r.output.startswith(f"Usage: main {name}") or r.output.startswith(f"Usage: seqlift {name}")


def test_group_help_lists_every_command_with_its_help():
    r = CliRunner().invoke(main, ["--help"])
    assert r.exit_code == 0
    for name, (_, short) in _LAZY_COMMANDS.items():
        assert f"{name}  " in r.output and short[:30] in r.output.replace("\n", " ")
