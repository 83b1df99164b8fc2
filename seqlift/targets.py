"""Targets: the scalar per example that DeepLIFT explains.

A target is a *linear* read-out of the model's output, bound to the batch's
activations. Linearity keeps summation-to-delta exact, and lets the same
read-out be applied to the positive and negative parts of deltas.

- An integer ``t`` picks column ``t`` of an output of shape (N, T) (or the
  output itself when it has shape (N,)).
- ``counts``: the sum over tasks of a BPNet-style log-counts head (N, T) or (N,).
- ``profile``: the profile logits (N, T, L), mean-normalised over all T*L
  positions and weighted by their softmax, the weights held fixed (not
  differentiated), as chrombpnet and bpnet-lite define the profile target. The
  weights come from the *input's* profile and are used for the input and for
  each of its references, so the target stays linear in the logits and its
  delta is exactly explained.

From Python, a target may also be a callable ``f(output) -> (B,)``, which must
be linear for summation-to-delta to hold (:func:`as_target`).

When the model ends in a sigmoid or softmax, the engine explains the logits
instead (see :func:`seqlift.attribution.graph.strip_output_activation`); for
softmax, target ``t`` becomes the mean-normalised logit ``z_t - mean(z)``, the
adjustment of the DeepLIFT paper. :func:`output_activation` says which
activation was stripped from the output a target reads, and
:func:`target_space` what the target therefore reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Union

import torch

from .errors import UsageError

#: A model's output on a batch: one tensor, or a tuple (or list) of them.
ModelOutput = Union[torch.Tensor, tuple[torch.Tensor, ...], list[torch.Tensor]]
#: A linear read-out of a batch's output: ``f(output) -> (B,)``.
ReadOut = Callable[[ModelOutput], torch.Tensor]


@dataclass(frozen=True)
class Target:
    """One target.

    Attributes
    ----------
    kind : str
        ``index``, ``counts`` or ``profile``.
    index : int
        The column for ``index`` targets.
    output_index : int or None
        Element of a tuple output to read.
    """

    kind: str = "index"
    index: int = 0
    output_index: int | None = None

    @property
    def name(self) -> str:
        """Short name for file names and provenance: ``0``, ``counts``, ``profile``."""
        return str(self.index) if self.kind == "index" else self.kind

    def bind(self, output: ModelOutput, n: int, activation: str | None = None) -> ReadOut:
        """A linear read-out ``f(stream_output) -> (B,)`` for this batch.

        Parameters
        ----------
        output
            The model's output on the batch (activations): a tensor or tuple.
        n : int
            Input rows at the head of the batch; the remaining ``n * k`` rows are
            their references, ``k`` per input in input order.
        activation : str, optional
            ``softmax`` when the graph's softmax was stripped from this output.
        """
        head = _pick(output, self._output_index(output))
        if self.kind == "index":
            return self._index(head, output, activation)
        if self.kind == "counts":
            return lambda out: _flat(_pick(out, self._output_index(out))).sum(dim=1)
        weights = _profile_weights(head, n)
        return lambda out: (_centred(_flat(_pick(out, self._output_index(out)))) * weights).sum(dim=1)

    def _index(self, head, output, activation):
        if head.dim() == 1:
            if self.index != 0:
                raise UsageError(
                    f"--target {self.index} is out of range: the model gives one value per example (output shape "
                    "(N,)); use --target 0"
                )
            return lambda out: _pick(out, self._output_index(out))
        if head.dim() != 2:
            raise UsageError(
                f"the model output has shape (N, {', '.join(str(d) for d in head.shape[1:])}), so "
                f"{tuple(head.shape[1:])} per example; "
                "--target takes a column of an (N, T) output, or 'counts' / 'profile' for profile models"
            )
        if not 0 <= self.index < head.shape[1]:
            raise UsageError(
                f"--target {self.index} is out of range: the model has {head.shape[1]} outputs (0..{head.shape[1] - 1})"
            )
        t = self.index
        if activation == "softmax":
            return lambda out: (lambda z: z[:, t] - z.mean(dim=1))(_pick(out, self._output_index(out)))
        return lambda out: _pick(out, self._output_index(out))[:, t]

    def _output_index(self, output):
        if self.kind in ("counts", "profile") and self.output_index is None and isinstance(output, (tuple, list)):
            # BPNet (bpnet-lite, chrombpnet): profile (N, T, L) or (N, L) logits, and counts (N, T) or (N, 1):
            # the counts head is the output with the fewest values per example, the profile the one with most
            sizes = [o[0].numel() if o.dim() > 0 and len(o) else 0 for o in output]
            pick = min(sizes) if self.kind == "counts" else max(sizes)
            candidates = [i for i, size in enumerate(sizes) if size == pick]
            if len(candidates) != 1 or len(set(sizes)) == 1:
                raise UsageError(
                    f"cannot tell which output is the {self.kind} head: the model returns {_shapes(output)}; "
                    "name it with --output-index"
                )
            return candidates[0]
        return self.output_index


#: What :func:`as_target` takes: a column, a :class:`Target`, or a read-out ``f(output) -> (B,)``.
TargetLike = Union[int, Target, ReadOut]


class _Callable(Target):
    """A user function of the output as a target; it must be linear for summation-to-delta to hold."""

    def __init__(self, fn):
        super().__init__("callable")
        object.__setattr__(self, "fn", fn)

    def bind(self, output, n, activation=None):
        return self.fn


def as_target(target: TargetLike, output_index: int | None = None) -> Target:
    """A :class:`Target` from an int, a Target or a callable ``f(output) -> (B,)``."""
    if isinstance(target, Target):
        return target
    if callable(target):
        return _Callable(target)
    return Target("index", int(target), output_index)


def select_target(output: ModelOutput, target: TargetLike = 0, output_index: int | None = None) -> torch.Tensor:
    """The target (B,) of a plain forward pass's ``output`` (every row is an input)."""
    t = as_target(target, output_index)
    rows = (output[0] if isinstance(output, (tuple, list)) else output).shape[0]
    return t.bind(output, rows)(output)


#: What a target reads when an activation was stripped from its output: the logits behind it.
TARGET_SPACES = {"sigmoid": "logits", "softmax": "mean-normalised logits"}


def output_activation(target: Target, activations: tuple) -> str | None:
    """The activation stripped from the output ``target`` reads (``sigmoid``, ``softmax``), or None.

    ``activations`` is the captured model's ``output_activations``, one entry per flat output.
    """
    i = getattr(target, "output_index", None) or 0
    return activations[i] if i < len(activations) else None


def target_space(target: Target, activations: tuple) -> str:
    """What ``target`` reads: ``output``, ``logits`` (sigmoid removed) or ``mean-normalised logits``."""
    return TARGET_SPACES.get(output_activation(target, activations), "output")


def _pick(output, output_index):
    if isinstance(output, (tuple, list)):
        if output_index is None:
            raise UsageError(
                f"the model returns {len(output)} outputs ({_shapes(output)}); choose one with --output-index, or "
                "for a BPNet/ChromBPNet-style model explain --target counts or --target profile"
            )
        if not 0 <= output_index < len(output):
            raise UsageError(f"--output-index {output_index} is out of range: the model returns {len(output)} outputs")
        return output[output_index]
    if output_index not in (None, 0):
        raise UsageError(f"--output-index {output_index} given but the model returns a single tensor")
    return output


def _shapes(output) -> str:
    """``(N, 1000), (N, 1)``: the shapes of a tuple output, batch dimension as N."""
    return ", ".join("(" + ", ".join(["N", *map(str, o.shape[1:])]) + ")" for o in output)


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1)


def _centred(z: torch.Tensor) -> torch.Tensor:
    return z - z.mean(dim=1, keepdim=True)


def _profile_weights(head: torch.Tensor, n: int) -> torch.Tensor:
    """Softmax of the inputs' mean-normalised profile logits, repeated for their references (no gradient)."""
    with torch.no_grad():
        z = _flat(head.detach())
        w = torch.softmax(_centred(z[:n]), dim=1)
        k = (z.shape[0] - n) // n if n else 0
        return torch.cat([w, w.repeat_interleave(k, dim=0)])


def parse_targets(
    spec: int | str | list[int | str] | tuple[int | str, ...],
    output_index: int | None = None,
    n_outputs: int | None = None,
) -> list[Target]:
    """Targets from the command line's ``--target``.

    Parameters
    ----------
    spec : int, str or list
        ``0``, ``"0,3,7"``, ``"all"`` (every column; needs ``n_outputs``),
        ``"counts"`` or ``"profile"`` (also in a comma list).
    output_index : int, optional
    n_outputs : int, optional
        Number of output columns, for ``all``.
    """
    if isinstance(spec, int):
        return [Target("index", spec, output_index)]
    items = list(spec) if isinstance(spec, (list, tuple)) else [p.strip() for p in str(spec).split(",") if p.strip()]
    targets = []
    for item in items:
        if item == "all":
            if n_outputs is None:
                raise UsageError("--target all needs a model whose output has shape (N, T)")
            targets += [Target("index", t, output_index) for t in range(n_outputs)]
        elif item in ("counts", "profile"):
            targets.append(Target(item, 0, output_index))
        else:
            try:
                targets.append(Target("index", int(item), output_index))
            except ValueError:
                raise UsageError(f"--target {item!r} is not an output column, 'all', 'counts' or 'profile'") from None
    if not targets:
        raise UsageError("--target is empty; give a column such as 0, a list such as 0,3, or all")
    names = [t.name for t in targets]
    if len(set(names)) != len(names):
        raise UsageError(f"--target lists a target twice: {spec}")
    return targets
