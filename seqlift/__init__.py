"""seqlift: per-base DeepLIFT contribution scores for DNA-sequence models."""

__version__ = "0.1.0"
