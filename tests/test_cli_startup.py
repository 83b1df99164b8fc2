"""Startup of the command line: --version, --help and every CMD --help answer without torch."""

import subprocess
import sys

import pytest

import seqlift


def _run_python(code):
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("args", [["--version"], ["--help"]])
def test_version_and_help_import_neither_torch_nor_numpy_nor_h5py(args):
    code = (
        "import sys; from seqlift.cli import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print(sorted(m for m in ('torch', 'numpy', 'h5py') if m in sys.modules))"
    )
    assert _run_python(code) == "[]"


def test_no_command_help_imports_torch_or_the_plotting_stack():
    """``seqlift CMD --help`` and ``seqlift CMD SUB --help`` for every command, in one process: the first to
    import torch, numpy, h5py or matplotlib is named."""
    code = """
import sys
import click
from seqlift.cli import main

def paths(group, prefix):
    ctx = click.Context(group, info_name="seqlift")
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        yield [*prefix, name]
        if isinstance(command, click.Group):
            yield from paths(command, [*prefix, name])

for path in paths(main, []):
    try:
        main([*path, "--help"])
    except SystemExit as e:
        assert not e.code, (path, e.code)
    if any(m in sys.modules for m in ("torch", "numpy", "h5py", "matplotlib")):
        print(" ".join(path))
        break
else:
    print("none")
"""
    assert _run_python(code) == "none"


def test_python_m_seqlift_cli_runs_the_command():
    out = subprocess.run(
        [sys.executable, "-m", "seqlift.cli", "--version"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"seqlift, version {seqlift.__version__}"
