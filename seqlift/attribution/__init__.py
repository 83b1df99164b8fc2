"""The attribution engine: DeepLIFT rules over a captured ATen graph."""

from .deeplift import Engine, deeplift, prepare, select_target
from .result import Attributions

__all__ = ["Attributions", "Engine", "deeplift", "prepare", "select_target"]
