"""seqlift: per-base DeepLIFT contribution scores for DNA-sequence models.

>>> import seqlift
>>> seqlift.score("peaks.bed", "genome.fa", "model.pt2", "scores.h5", target=0)
[PosixPath('scores.h5')]
>>> seqlift.deeplift(model, X, seqlift.dinucleotide_shuffle(X, n=20), target=0)

The names below are imported when first used, so that ``seqlift --version`` and
``--help`` answer without loading torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers; at run time the names are imported on first use (below)
    from .attribution import Attributions as Attributions
    from .attribution import deeplift as deeplift
    from .attribution import prepare as prepare
    from .pipeline import run_score as run_score
    from .pipeline import score as score
    from .references import dinucleotide_shuffle as dinucleotide_shuffle
    from .score_options import ScoreOptions as ScoreOptions

__version__ = "0.1.0"

#: Public name -> module that defines it.
_EXPORTS = {
    "Attributions": ".attribution",
    "deeplift": ".attribution",
    "prepare": ".attribution",
    "score": ".pipeline",
    "run_score": ".pipeline",
    "ScoreOptions": ".score_options",
    "dinucleotide_shuffle": ".references",
}

__all__ = [*sorted(_EXPORTS), "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'seqlift' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
