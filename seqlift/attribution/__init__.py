"""The attribution engine: DeepLIFT rules over a captured ATen graph."""

from .deeplift import Attributions, Engine, deeplift, prepare, select_target

__all__ = ["Attributions", "Engine", "deeplift", "prepare", "select_target"]
