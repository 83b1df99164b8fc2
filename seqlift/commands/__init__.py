"""Subcommands of ``seqlift`` beyond ``score``: thin click wrappers over the library modules.

Each module defines one click command; :mod:`seqlift.cli` registers them on the group.
"""

from __future__ import annotations

from contextlib import contextmanager

from ..errors import ScoresError, SeqliftError


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
