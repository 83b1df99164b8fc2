"""The attribution engine: DeepLIFT rules over a captured ATen graph."""

from ..targets import select_target
from .deeplift import Engine, deeplift, prepare
from .result import Attributions

__all__ = ["Attributions", "Engine", "deeplift", "prepare", "select_target"]
