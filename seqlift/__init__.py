"""seqlift: per-base DeepLIFT contribution scores for DNA-sequence models.

>>> import seqlift
>>> seqlift.score("peaks.bed", "genome.fa", "model.pt2", "scores.h5", target=0)
>>> seqlift.deeplift(model, X, seqlift.dinucleotide_shuffle(X, n=20), target=0)
"""

__version__ = "0.1.0"

from .attribution import Attributions, deeplift, prepare  # noqa: E402
from .pipeline import score  # noqa: E402
from .references import dinucleotide_shuffle  # noqa: E402

__all__ = ["Attributions", "deeplift", "dinucleotide_shuffle", "prepare", "score", "__version__"]
