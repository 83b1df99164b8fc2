"""The options of a ``seqlift score`` run, checked together in one place.

:class:`ScoreOptions` is what the command line builds from its flags and
what :func:`seqlift.pipeline.run_score` runs; ``seqlift.score(**kwargs)``
builds one from its keyword arguments. Every check of an option on its own
or against the others is in :meth:`ScoreOptions.validate`; checks that need
the files or the model (an output overwriting an input, the model's input
length, a rule that keeps signs apart) are made when the run starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

from .attribution.split import DEFAULT_MAX_RULE
from .errors import UsageError
from .methods import METHODS, Method, get_method
from .references import check_kind
from .shards import parse_shard
from .writers import COMPRESSIONS, DEFAULT_COMPRESSION

PathLike = Union[str, Path]


@dataclass(frozen=True)
class ScoreOptions:
    """Everything a ``seqlift score`` run is given; checked when made (:meth:`validate`).

    Every option of the command is a field here, under the option's name with
    ``_`` for ``-``; the defaults are the command's.

    Attributes
    ----------
    regions : str or Path
        BED file (BED3+, BED6 strand, narrowPeak summit). Coordinates 0-based half-open.
    fasta : str or Path
        Genome FASTA (indexed on first use).
    model : str or list of str
        ``model.pt2`` or ``file.py:ClassName`` / ``package.module:ClassName`` (with ``weights``).
        Several models (e.g. the folds of a cross-validation) are scored with
        the same references and their scores averaged.
    output : str or Path
        HDF5 file to write; see :mod:`seqlift.writers` for the layout.
    weights, model_kwargs
        State dict and constructor arguments of a class model (the same for every
        class model given).
    trust_model : bool
        Allow a pickled full module (loading it runs code from the file).
    target : int or str
        What to explain: an output column (``0``), several (``"0,3,7"`` or
        ``"all"``), or for BPNet-style profile models ``"counts"`` / ``"profile"``
        (see :mod:`seqlift.targets`). Several targets are explained from one
        forward pass and written one file per target, ``<stem>.<target>.h5``.
        A final sigmoid or softmax is removed: scores explain the logits (for
        softmax, mean-normalised), as the attribute ``target_space`` says.
        ``output_index`` picks one output of a tuple.
    window : int, optional
        Window length; must equal the model's input length when that is known.
    method : str
        ``deeplift``, or for comparison ``gradient`` (saliency),
        ``gradient-x-input``, ``integrated-gradients`` (``steps`` points along
        the path from each reference) or ``ism`` (in-silico saturation
        mutagenesis). All write the same layout. The methods, and what each
        takes, are the table :data:`seqlift.methods.METHODS`.
    steps : int
        Integration points of ``integrated-gradients``.
    rule : str or dict
        ``rescale``, ``revealcancel``, ``genomics-default`` (RevealCancel after
        dense layers, Rescale after convolutions), or a mapping of layer kind
        (``conv``, ``dense``, ``default``) or module path to ``rescale`` /
        ``revealcancel``.
    max_rule : str
        How max pooling and max reductions split each window's delta between the
        element where the input peaks and the one where the reference peaks:
        ``sign`` (default: a rise to the input's peak, a fall to the reference's,
        tangermeme's rule), ``pair`` or ``shapley`` (the two-player Shapley value
        of ``max(a, b)``); see the README.
    split_signs : bool
        Also write the contributions to the positive and the negative part of
        the target's delta (needs a rule other than plain ``rescale``).
    normalize_input_weights : bool
        Mean-normalise the first convolution's weights across A, C, G, T, so
        that scores do not depend on an offset shared by the four bases (the
        model's predictions are unchanged).
    compile : bool
        Fuse the ReLU Rescale backward with ``torch.compile`` (for GPUs; on the
        CPU it already runs as one compiled loop, :mod:`seqlift.attribution.kernels`).
    reference : str
        ``shuffle`` (k-mer preserving, ``n_refs`` per region, order ``shuffle_k``),
        ``zeros``, ``uniform``, ``gc-matched`` (``n_refs`` real windows of the
        genome whose GC is within ``gc_tolerance`` of the region's, with no N,
        overlapping no scored region nor the ``exclude`` BED), or ``file:refs.h5`` (dataset ``references`` of
        shape (R, K, 4, L), one row per BED region in file order, or (K, 4, L)
        shared by all regions).
    gc_tolerance : float
        GC-fraction tolerance of ``gc-matched`` references.
    exclude : str, optional
        BED of regions never to draw ``gc-matched`` references from (a blacklist).
    rc_average : bool
        Average the scores of each window and of its reverse complement (mapped
        back), for models trained with reverse-complement augmentation.
    seed : int
        Seed of the shuffles; each region's references depend only on the seed
        and its coordinates, not on batch size or sharding.
    batch_size : int, optional
        Regions per model call (each with its ``n_refs`` references). None:
        chosen by a probe of a few sizes on the first regions (the fastest on
        the CPU, the largest that fits on a GPU; see :mod:`seqlift.batching`),
        or with ``resume``, the size of the run resumed.
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (the N-th GPU; see :mod:`seqlift.devices`).
    skip_invalid : bool
        Skip regions with an unknown chromosome or a window off the chromosome
        end, listing them in ``<output>.skipped.bed``, instead of failing.
    allow_unsupported : bool
        Treat ops with no DeepLIFT rule as linear, with a warning.
    strict : bool
        Fail when a region's summation-to-delta error exceeds ``tolerance``.
    tolerance : float
        Relative summation-to-delta error above which a region is reported.
    allow_nonfinite : bool
        Write regions whose prediction or scores are NaN or infinite, flagged
        in ``meta/finite``, instead of stopping the run with an error.
    force, resume : bool
        Overwrite an existing output; continue an interrupted run.
    npz_prefix : str, optional
        Also write ``<prefix>.ohe.npz`` and ``<prefix>.shap.npz`` for modisco-lite.
    compression : str
        Compression of the (N, 4, L) datasets: ``gzip-1`` (default) to
        ``gzip-9``, ``lzf`` or ``none`` (see :mod:`seqlift.writers`).
    shard : str, optional
        ``"k-of-n"``: score only the k-th (1-based) of n contiguous blocks of
        the windows (see :mod:`seqlift.shards`), with the references of an
        unsharded run; join the shards with ``seqlift merge``.
    progress : bool
        Show a progress bar on stderr.
    command : str, optional
        The command line, stored with the results.

    Raises
    ------
    UsageError
        From :meth:`validate`, when an option is out of range or does not go
        with the others.
    """

    regions: PathLike
    fasta: PathLike
    model: PathLike | Sequence[PathLike]
    output: PathLike
    weights: PathLike | None = None
    model_kwargs: dict | None = None
    trust_model: bool = False
    target: int | str = 0
    output_index: int | None = None
    window: int | None = None
    method: str = "deeplift"
    steps: int = 50
    rule: str | dict = "rescale"
    max_rule: str = DEFAULT_MAX_RULE
    split_signs: bool = False
    normalize_input_weights: bool = False
    compile: bool = False
    reference: str = "shuffle"
    rc_average: bool = False
    gc_tolerance: float = 0.02
    exclude: PathLike | None = None
    n_refs: int = 20
    shuffle_k: int = 2
    seed: int = 0
    batch_size: int | None = None
    device: str = "auto"
    skip_invalid: bool = False
    allow_unsupported: bool = False
    strict: bool = False
    tolerance: float = 1e-3
    allow_nonfinite: bool = False
    force: bool = False
    resume: bool = False
    npz_prefix: PathLike | None = None
    compression: str = DEFAULT_COMPRESSION
    shard: str | None = None
    progress: bool = True
    command: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`UsageError` for the first option that is out of range or does not go with the others."""
        reference, compression, tolerance = self.reference, self.compression, self.tolerance
        check_kind(reference)
        if self.n_refs < 1 or (self.batch_size is not None and self.batch_size < 1):
            raise UsageError("--n-refs and --batch-size must be at least 1")
        if compression not in COMPRESSIONS:
            raise UsageError(f"unknown compression {compression!r}; choose one of {', '.join(COMPRESSIONS)}")
        if not tolerance >= 0:
            raise UsageError(f"--tolerance {tolerance} must be a number >= 0 (a relative error)")
        if self.shard is not None:
            parse_shard(self.shard)  # raises for a --shard not of the form k-of-n
        if not self.model_specs:
            raise UsageError("no model given; use --model")
        rule, max_rule, split_signs, normalize_input_weights = (
            self.rule,
            self.max_rule,
            self.split_signs,
            self.normalize_input_weights,
        )
        if not get_method(self.method).layer_rules and (
            rule != "rescale" or max_rule != DEFAULT_MAX_RULE or split_signs or normalize_input_weights
        ):
            raise UsageError(
                "--rule, --max-rule, --split-signs and --normalize-input-weights go with --method deeplift"
            )
        for name, value, low in (
            ("steps", self.steps, 1),
            ("shuffle-k", self.shuffle_k, 1),
            ("window", self.window, 1),
            ("output-index", self.output_index, 0),
        ):
            if value is not None and not value >= low:
                raise UsageError(f"--{name} {value} must be at least {low}")
        if not 0 <= self.gc_tolerance <= 1:
            raise UsageError(f"--gc-tolerance {self.gc_tolerance} must be a GC fraction from 0 to 1")

    @property
    def model_specs(self) -> list[PathLike]:
        """The models given, as a list (one for a single ``model``)."""
        return [self.model] if isinstance(self.model, (str, Path)) else list(self.model)

    @property
    def k_of_n(self) -> tuple[int, int] | None:
        """``--shard`` as ``(k, n)``; None when the run is not sharded."""
        return parse_shard(self.shard) if self.shard is not None else None

    @property
    def scoring_method(self) -> Method:
        """The record of ``method`` in :data:`seqlift.methods.METHODS`."""
        return METHODS[self.method]
