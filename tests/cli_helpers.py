"""Helpers for tests that run the command line: invoking it, and checking a one-line user error."""

from click.testing import CliRunner

from seqlift.cli import main


def run(*args):
    """``seqlift ARGS`` in-process; arguments are turned into strings."""
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, *fragments):
    """Exit status 1, no traceback, and one line ``Error: ...`` that holds every fragment."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.strip().splitlines() if not line.startswith("seqlift: warning:")]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
