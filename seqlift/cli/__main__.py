"""``python -m seqlift.cli``: the ``seqlift`` command."""

from . import main

main()
