"""Defaults of the contribution logos, shared by :mod:`seqlift.logos` and ``seqlift logo``.

Kept apart from :mod:`seqlift.logos` so that ``seqlift logo --help`` shows them without importing
numpy, h5py, matplotlib or logomaker.
"""

#: Default figure width, inches per 100 bp.
WIDTH = 6.0
#: Default stretch drawn when no region is given, bp: a readable figure around the strongest contributions.
SPAN = 100
