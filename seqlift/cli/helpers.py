"""What the commands share when they run: the command line for provenance, and damaged scores files as user errors."""

from __future__ import annotations

import shlex
import sys
from contextlib import contextmanager

import click

from ..errors import ScoresError, SeqliftError


def command_line() -> str:
    """The ``seqlift ...`` command line being run, quoted for a shell, to record in the outputs."""
    argv = click.get_current_context().meta.get("seqlift.argv", sys.argv[1:])
    return "seqlift " + " ".join(shlex.quote(str(a)) for a in argv)


@contextmanager
def readable_scores(paths):
    """Report a scores file whose data cannot be read as a :class:`~seqlift.errors.ScoresError`.

    A file whose header is intact opens, and a damaged chunk fails only when it
    is read, anywhere in a command, with an ``OSError`` from HDF5 (which, unlike
    an operating-system error of a file being written, has no ``errno``).

    Parameters
    ----------
    paths : str, Path or sequence of them
        The scores files read inside the block, named in the message.
    """
    try:
        yield
    except OSError as exc:
        if exc.errno is not None or isinstance(exc, SeqliftError):
            raise
        paths = [paths] if isinstance(paths, str) or not hasattr(paths, "__iter__") else list(paths)
        which = str(paths[0]) if len(paths) == 1 else "one of " + ", ".join(str(p) for p in paths)
        detail = " ".join(str(exc).split())
        raise ScoresError(
            f"cannot read the data of {which} ({detail}): the file is damaged, e.g. truncated or overwritten; "
            "score the regions again with seqlift score"
        ) from None
