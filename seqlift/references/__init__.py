"""Reference sequences for DeepLIFT: shuffles, fixed backgrounds and GC-matched genomic windows."""

from .gc import GCIndex, gc_fraction, gc_matched
from .shuffle import REFERENCES, dinucleotide_shuffle, identical_to_input, region_seed, uniform, zeros

__all__ = [
    "GCIndex",
    "REFERENCES",
    "dinucleotide_shuffle",
    "gc_fraction",
    "gc_matched",
    "identical_to_input",
    "region_seed",
    "uniform",
    "zeros",
]
