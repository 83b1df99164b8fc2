"""User-facing errors.

Every error a user can cause (bad input, bad options, an output that already
exists) is a :class:`SeqliftError`. The command line prints its message on one
line and exits non-zero, without a traceback. Each class also subclasses the
builtin exception that fits, so Python callers can catch ``ValueError`` or
``FileNotFoundError`` as usual. Messages say what went wrong, where (file and
line when there is one), the value, and the fix.
"""


class SeqliftError(Exception):
    """Base class of all errors caused by the user's input or options."""


class UsageError(SeqliftError, ValueError):
    """An option value or combination that cannot be used (a bad choice, a value out of range, options that conflict)."""


class ConfigError(SeqliftError, ValueError):
    """A ``--config`` file that cannot be read, or an option value in it of the wrong type or range."""


class RegionError(SeqliftError, ValueError):
    """A BED line that is malformed or cannot be scored."""


class GenomeError(SeqliftError, ValueError):
    """A FASTA that cannot be read, indexed or fetched from."""


class ModelError(SeqliftError, ValueError):
    """A model file that cannot be loaded safely, or does not fit the data."""


class ReferencesError(SeqliftError, ValueError):
    """References that cannot be built for a region."""


class ScoresError(SeqliftError, ValueError):
    """A scores file that cannot be used: not HDF5, missing datasets, or nothing found in it."""


class UnsupportedOpError(SeqliftError, NotImplementedError):
    """An operation in the model that has no attribution rule."""


class OutputError(SeqliftError, FileExistsError):
    """An output that exists already, or a partial output that does not match the run."""


class ConvergenceError(SeqliftError, ArithmeticError):
    """Summation-to-delta failed beyond tolerance under ``--strict``."""


class NonFiniteError(SeqliftError, ArithmeticError):
    """A prediction or score that is NaN or infinite (a broken model, weights or references)."""
