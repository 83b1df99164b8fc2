"""The ``seqlift`` command line: a thin layer over the Python API.

:func:`main` is the command group (:mod:`seqlift.cli.group`); ``--config``
defaults are read by :mod:`seqlift.cli.config`; the options that several
commands share are in :mod:`seqlift.cli.options`; each subcommand is a module
of its own, imported when it is used, so that ``seqlift --version``,
``--help`` and ``seqlift CMD --help`` answer without importing torch.
"""

from .group import main

__all__ = ["main"]
