"""Subcommands of ``seqlift`` beyond ``score``: thin click wrappers over the library modules.

Each module defines one click command; :mod:`seqlift.cli` registers them on the group.
"""
