"""DeepLIFT over a captured ATen graph.

Inputs and their references run through the model in one batch laid out as
``[x_1 .. x_n, r_11 .. r_1k, r_21 .. r_nk]``, so each input's activations are
computed once, not once per reference. Linear ops run as they are; each
nonlinearity's backward is replaced by the rule's multiplier, computed between
reference row ``r_ij`` and its input row ``x_i``. Back-propagating the target
from the reference rows then gives, at the input, the multipliers ``m_ij`` of
every (input, reference) pair, and the contributions ``m_ij * (x_i - r_ij)``
sum to ``f(x_i) - f(r_ij)`` (summation-to-delta).

This module holds :func:`prepare` (capture, a rule for every op, the checks),
:class:`Engine` (a batch's forward and backward passes) and :func:`deeplift`.
The parts it uses: :mod:`.rules` (each op's rule), :mod:`.layer_rules`
(Rescale or RevealCancel per nonlinearity), :mod:`.paired` (Rescale's backward
on the paired batch), :mod:`.split` (deltas kept as positive and negative
parts, for the split rules), :mod:`.interpreter` (running the graph under
either) and :mod:`.result` (multipliers to :class:`~.result.Attributions`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import overload

import numpy as np
import torch

from ..errors import ModelError, UnsupportedOpError, UsageError
from ..targets import ModelOutput, TargetLike, as_target, output_activation, select_target
from ..targets import target_space as space_of
from .graph import ArrayOrTensor, CapturedModel, ModelLike, active_nodes, batch_dims, capture, lower, op_name
from .graph import normalize_input_weights as normalize_weights
from .graph import strip_output_activation, where
from .interpreter import PairedInterpreter, SplitInterpreter, softmax_groups
from .layer_rules import LAYER_RULES, RULE_PRESETS, rule_for, rule_spec
from .paired import Rescale
from .result import Attributions, from_multipliers
from . import chunking
from .chunking import CPU_TENSOR_BUDGET
from .rules import lookup
from .split import DEFAULT_MAX_RULE, MAX_RULES, Split, SplitRule, stream

aten = torch.ops.aten


@dataclass
class Engine:
    """A model prepared for DeepLIFT: captured graph plus a rule for every op.

    Build one with :func:`prepare` and call :meth:`run` per batch.
    """

    captured: CapturedModel
    plan: dict
    rule: str
    eps: float
    device: torch.device
    dtype: torch.dtype | None  # of the parameters; None: keep the input's floating dtype
    layer_rules: dict | None = None  # node -> "rescale" | "revealcancel"; None: Rescale everywhere (paired engine)
    compile: bool = False  # fuse the ReLU Rescale backward with torch.compile
    dims: dict | None = None  # node -> its batch dimension, where that is not 0 (graph.batch_dims)
    max_rule: str = DEFAULT_MAX_RULE  # how max pooling and max reductions split their delta (split.MAX_RULES)
    tensor_budget: int | None = CPU_TENSOR_BUDGET  # bytes: a CPU batch is split so no buffer outgrows it (chunking)
    row_bytes: int | None = None  # bytes per batch row of the largest buffer a call makes (chunking.row_bytes)
    softmax: dict | None = None  # lowered softmaxes run as one op under Rescale (interpreter.softmax_groups)

    def rows_per_call(self) -> int | None:
        """Paired rows per call on a CPU under :attr:`tensor_budget`; None: the whole batch in one call."""
        if self.tensor_budget is None or not self.row_bytes or self.device.type != "cpu":
            return None
        return max(2, self.tensor_budget // self.row_bytes)

    @property
    def input_length(self) -> int | None:
        return self.captured.input_length

    def forward(self, x: torch.Tensor, rule: Rescale | None = None) -> ModelOutput:
        """Run the graph on ``x``; with a ``rule`` object, nonlinearities follow it."""
        return PairedInterpreter(
            self.captured.module, self.plan, rule, self.captured.held, self.dims or {}, softmax=self.softmax
        ).run(x)

    def check_split_signs(self, split_signs: bool) -> None:
        """Raise :class:`~seqlift.errors.UsageError` when ``split_signs`` is asked of a rule that does not split."""
        if split_signs and self.layer_rules is None:
            raise UsageError(
                "--split-signs needs a rule that keeps signs apart: --rule revealcancel or genomics-default"
            )

    @overload
    def run(
        self,
        X: ArrayOrTensor,
        references: ArrayOrTensor,
        target: list[TargetLike],
        output_index: int | None = None,
        split_signs: bool = False,
    ) -> list[Attributions]: ...

    @overload
    def run(
        self,
        X: ArrayOrTensor,
        references: ArrayOrTensor,
        target: TargetLike = 0,
        output_index: int | None = None,
        split_signs: bool = False,
    ) -> Attributions: ...

    def run(
        self,
        X: ArrayOrTensor,
        references: ArrayOrTensor,
        target: TargetLike | list[TargetLike] = 0,
        output_index: int | None = None,
        split_signs: bool = False,
    ) -> Attributions | list[Attributions]:
        """DeepLIFT for one batch.

        Parameters
        ----------
        X : array-like, shape=(N, C, L)
        references : array-like, shape=(N, K, C, L)
        target : int, Target or list of them
            What to explain (see :mod:`seqlift.targets`). A list is explained
            from one forward pass, one backward pass per target.
        output_index : int, optional
            Element of a tuple output, for integer targets.
        split_signs : bool
            Also return the contributions to the positive and negative parts of
            the target's delta (needs a split rule: any rule but plain ``rescale``).

        Returns
        -------
        Attributions, or a list of them when ``target`` is a list.
        """
        targets = [as_target(t, output_index) for t in (target if isinstance(target, list) else [target])]
        self.check_split_signs(split_signs)
        X, R = self._tensor(X), self._tensor(references)
        n, k = R.shape[:2]
        calls, rows = [], self.rows_per_call()
        if rows is not None:
            chunking.keep_freed_memory()
        for inputs, refs in chunking.plan(n, k, rows):
            x, r = X[inputs], R[inputs, refs]
            a, b = r.shape[:2]
            flat = r.reshape((a * b,) + tuple(r.shape[2:]))
            if self.layer_rules is None:
                calls.append(((inputs, refs), self._paired(x, flat, a, targets)))
            else:
                calls.append(((inputs, refs), self._split(x, flat, a, b, targets, split_signs)))
        passes = chunking.join(calls, n, k)
        results = [self._attributions(X, R, n, k, *p) for p in passes]
        return results if isinstance(target, list) else results[0]

    def _attributions(self, X, R, n, k, y, m_pos, m_neg, halves) -> Attributions:
        m_neg = None if m_neg is None or m_neg is m_pos else m_neg.reshape(R.shape)
        m_pos = m_pos.reshape(R.shape)
        return from_multipliers(X, R, m_pos, y[:n], y[n:].reshape(n, k), m_neg, halves)

    def _read_outs(self, out, n, targets):
        return [t.bind(out, n, output_activation(t, self.captured.output_activations)) for t in targets]

    def target_space(self, target: TargetLike = 0, output_index: int | None = None) -> str:
        """What a target reads: ``output``, ``logits`` (sigmoid removed) or ``mean-normalised logits``."""
        return space_of(as_target(target, output_index), self.captured.output_activations)

    def _paired(self, X, flat, n, targets):
        batch = torch.cat([X, flat]).requires_grad_(True)
        passes = []
        with torch.enable_grad():
            out = self.forward(batch, Rescale(n, self.eps, self.compile, rows=batch.shape[0], max_rule=self.max_rule))
            ys = [read(out) for read in self._read_outs(stream(out, "act"), n, targets)]
            for i, y in enumerate(ys):
                (m,) = torch.autograd.grad(y[n:].sum(), batch, retain_graph=i < len(ys) - 1)
                refs = m[n:]  # one multiplier for both signs of x - r: m_neg is m_pos itself
                passes.append((y.detach(), refs, refs, []))
        return passes

    def _split(self, X, flat, n, k, targets, split_signs):
        act = torch.cat([X, flat])
        diff = torch.cat([torch.zeros_like(X), X.repeat_interleave(k, dim=0) - flat])
        pos, neg = diff.clamp(min=0).requires_grad_(True), diff.clamp(max=0).requires_grad_(True)
        rules = {name: SplitRule(n, name == "revealcancel", self.eps, self.max_rule) for name in LAYER_RULES}
        by_node = {node: rules[name] for node, name in self.layer_rules.items()}
        passes = []
        with torch.enable_grad():
            out = SplitInterpreter(
                self.captured.module, self.plan, by_node, n, self.captured.held, self.dims or {}
            ).run(Split(act, pos, neg))
            reads = self._read_outs(stream(out, "act"), n, targets)
            for i, read in enumerate(reads):
                y, t_pos, t_neg = (read(stream(out, s)) for s in ("act", "pos", "neg"))
                last = i == len(reads) - 1

                def grads(t, keep):
                    g = torch.autograd.grad(
                        t[n:].sum(), [pos, neg], retain_graph=keep, allow_unused=True, materialize_grads=True
                    )
                    return g[0][n:], g[1][n:]

                m_pos, m_neg = grads(t_pos + t_neg, split_signs or not last)
                halves = [grads(t_pos, True), grads(t_neg, not last)] if split_signs else []
                passes.append((y.detach(), m_pos, m_neg, halves))
        return passes

    def _tensor(self, a) -> torch.Tensor:
        if not torch.is_tensor(a):
            a = np.asarray(a)
            a = torch.as_tensor(a if a.flags.writeable else a.copy())  # read-only views (broadcasts, memory maps)
        dtype = self.dtype or (a.dtype if a.is_floating_point() else torch.float32)
        return a.to(self.device, dtype)

    def predict(self, X: ArrayOrTensor, target: TargetLike = 0, output_index: int | None = None) -> np.ndarray:
        """Target values for ``X`` of shape (N, C, L): a plain forward pass."""
        X = self._tensor(X)
        with torch.no_grad():
            return select_target(self.forward(X), target, output_index).cpu().numpy()


def prepare(
    model: ModelLike,
    length: int | None = None,
    rule: str = "rescale",
    allow_unsupported: bool = False,
    eps: float = 1e-6,
    device: str | torch.device = "cpu",
    normalize_input_weights: bool = False,
    compile: bool = False,
    max_rule: str = DEFAULT_MAX_RULE,
    fuse: bool = True,
    tensor_budget: int | None = CPU_TENSOR_BUDGET,
) -> Engine:
    """Capture ``model`` and give every op that depends on the input its rule.

    Parameters
    ----------
    model : torch.nn.Module, torch.export.ExportedProgram or CapturedModel
    length : int, optional
        Input length; needed for an ``nn.Module``.
    rule : str
        Rule for nonlinearities: ``rescale``.
    allow_unsupported : bool
        Treat ops with no rule as linear (their gradient) and warn, instead of
        raising :class:`UnsupportedOpError`.
    eps : float
        ``|x - r|`` below which the Rescale multiplier falls back to the gradient.
    device : str or torch.device
    normalize_input_weights : bool
        Mean-normalise first-layer convolution weights across A, C, G, T (see
        :func:`~seqlift.attribution.graph.normalize_input_weights`).
    compile : bool
        Fuse the Rescale multiplier of ReLUs into one kernel with ``torch.compile``
        (paired engine): faster on large models and on GPUs, after a one-time
        compilation (cached on disk by PyTorch). Needs a C++ compiler on CPU.
    max_rule : str
        How max pooling and max reductions split each window's delta between the
        element where the input peaks and the one where the reference peaks:
        ``sign`` (default; tangermeme's rule), ``pair`` or ``shapley``; see
        :data:`~seqlift.attribution.split.MAX_RULES`. All are exact.
    fuse : bool
        Under Rescale everywhere, keep LSTM and GRU layers whole, with the
        multipliers of their unrolled cells, and run each softmax inside the
        network as one op, with the multipliers of its lowered ops (the same
        scores, faster). False unrolls both, as the split rules do.
    tensor_budget : int or None
        On a CPU, split each batch into calls whose largest buffer (a tensor,
        or a convolution's copy, :func:`~seqlift.attribution.chunking.row_bytes`)
        stays under this many bytes, so that the C allocator reuses
        memory instead of faulting in fresh pages (see
        :mod:`~seqlift.attribution.chunking`); the same scores. None: one call.

    Returns
    -------
    Engine
    """
    spec = rule_spec(rule)
    if max_rule not in MAX_RULES:
        raise UsageError(f"unknown max rule {max_rule!r}; choose one of {', '.join(MAX_RULES)}")
    # Under Rescale everywhere, LSTM and GRU layers stay whole (their fused rule); split rules unroll them.
    rescale_only = fuse and all(name == "rescale" for name in spec.values())
    if not isinstance(model, CapturedModel):
        model = capture(model, length, unroll_recurrent=not rescale_only)
    captured = strip_output_activation(model)
    if normalize_input_weights:
        captured = normalize_weights(captured)
    captured = lower(captured)
    device = torch.device(device)
    captured.module.to(device)
    active = active_nodes(captured)
    dims = batch_dims(captured)
    plan, unsupported = {}, []
    for node in captured.module.graph.nodes:
        if node not in active or node.op == "placeholder":
            continue
        if node.op != "call_function":
            unsupported.append(f"{node.op} {node.target} in {where(node)}")
            continue
        try:
            plan[node] = lookup(node, active)
        except UnsupportedOpError as exc:
            unsupported.append(str(exc))
            continue
        if plan[node].kind == "max" and dims.get(node.args[0], 0) and node.target != aten.amax.default:
            del plan[node]
            unsupported.append(
                f"{op_name(node.target)} in {where(node)} has no DeepLIFT rule: it takes the max "
                "of a tensor whose batch is not in its first dimension"
            )
    if unsupported:
        if not allow_unsupported:
            listed = "; ".join(unsupported)
            raise UnsupportedOpError(
                f"{len(unsupported)} op(s) without a DeepLIFT rule: {listed}; "
                "use --allow-unsupported to treat them as linear (gradient) with a warning"
            )
        warnings.warn(
            "treated as linear (gradient), so summation-to-delta may fail: " + "; ".join(unsupported),
            stacklevel=2,
        )
    params = list(captured.module.parameters()) + list(captured.module.buffers())
    dtype = next((p.dtype for p in params if p.is_floating_point()), None)
    layer_rules = {node: rule_for(node, spec) for node, r in plan.items() if r.kind in ("elementwise", "max")}
    if all(name == "rescale" for name in layer_rules.values()):
        layer_rules = None  # the paired engine: one multiplier, no split streams
    elif any(r.kind == "fused" for r in plan.values()):
        raise ModelError(
            "the split rules need recurrent layers unrolled: capture the model with "
            "capture(model, length, unroll_recurrent=True)"
        )
    return Engine(
        captured=captured,
        plan=plan,
        rule=rule if isinstance(rule, str) else "custom",
        eps=eps,
        device=device,
        dtype=dtype,
        layer_rules=layer_rules,
        compile=compile,
        dims=dims,
        max_rule=max_rule,
        tensor_budget=tensor_budget,
        row_bytes=chunking.row_bytes(captured.module.graph, captured.input_node),
        softmax=softmax_groups(captured.module.graph, captured.held) if fuse else None,
    )


def deeplift(
    model: ModelLike | Engine,
    X: ArrayOrTensor,
    references: ArrayOrTensor,
    target: TargetLike = 0,
    output_index: int | None = None,
    rule: str = "rescale",
    batch_size: int = 64,
    allow_unsupported: bool = False,
    device: str | torch.device = "cpu",
) -> Attributions:
    """DeepLIFT contribution scores of ``X`` against ``references``.

    Parameters
    ----------
    model : torch.nn.Module, torch.export.ExportedProgram or Engine
        A model taking one tensor of shape (N, C, L).
    X : array-like, shape=(N, C, L)
        Inputs, e.g. one-hot DNA (channels A, C, G, T).
    references : array-like, shape=(N, K, C, L) or (N, C, L)
        ``K`` references per input; a 3-d array is one reference per input.
    target : int or callable
        Output column to explain, or a function of the output giving shape (N,).
    output_index : int, optional
        Element of a tuple output.
    rule : str
        ``rescale``.
    batch_size : int
        Inputs per model call (each with its ``K`` references).
    allow_unsupported : bool
        Treat ops with no rule as linear, with a warning.
    device : str or torch.device

    Returns
    -------
    Attributions
        ``hypothetical`` and ``contributions`` of shape (N, C, L), predictions,
        reference predictions and summation-to-delta errors.

    Examples
    --------
    >>> scores = deeplift(model, X, dinucleotide_shuffle(X, n=20), target=0)
    >>> scores.contributions.sum(axis=(1, 2))  # == f(X) - mean f(references)
    """
    X = np.asarray(X.detach().cpu() if torch.is_tensor(X) else X)
    R = np.asarray(references.detach().cpu() if torch.is_tensor(references) else references)
    if R.ndim == X.ndim:
        R = R[:, None]
    if R.shape[0] != X.shape[0] or R.shape[2:] != X.shape[1:]:
        raise ValueError(f"references of shape {R.shape} do not fit inputs of shape {X.shape}; expected (N, K, C, L)")
    engine = (
        model
        if isinstance(model, Engine)
        else prepare(model, X.shape[-1], rule=rule, allow_unsupported=allow_unsupported, device=device)
    )
    parts = [
        engine.run(X[i : i + batch_size], R[i : i + batch_size], target, output_index)
        for i in range(0, len(X), batch_size)
    ]
    return Attributions(*(None if field[0] is None else np.concatenate(field) for field in zip(*parts)))


__all__ = ["Attributions", "Engine", "RULE_PRESETS", "deeplift", "prepare", "select_target", "op_name"]
