"""In-silico saturation mutagenesis (ISM) over a captured ATen graph.

Every single-base substitution of every input is scored by the model. The
mutants are batched across positions and inputs.

Incremental evaluation (``fast=True``, fastISM's idea, over any graph): the
graph runs once on the unmutated inputs, keeping every node's value. A mutant
differs from its input only in a window of positions along the last (length)
axis, so each node's value for a batch of mutants is held as that window
(a :class:`_Span`: per-mutant start, fixed width, the window's values) over
the unmutated value. Convolutions and poolings compute only the outputs whose
receptive field meets the window, reading the unchanged neighbours from the
unmutated value; ops that act position by position (activations, batch norm,
bias, residual sums of two windows) act on the window; a sum or mean over the
length adds the window's change to the unmutated total. Any other op (a
flatten before a dense layer, an LSTM, attention) receives the full mutant
tensors, rebuilt from the unmutated value and the window, and the rest of the
graph runs on them as usual. The scores equal ``fast=False``'s up to rounding.
"""

from __future__ import annotations

import operator

import numpy as np
import torch
import torch.nn.functional as F
from torch.fx.node import map_arg

from ..targets import TargetLike, select_target
from .gradients import model_inputs, predict
from .graph import ArrayOrTensor, CapturedModel, ModelLike
from .result import Attributions

aten = torch.ops.aten


def ism(
    model: ModelLike,
    X: ArrayOrTensor,
    target: TargetLike = 0,
    output_index: int | None = None,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    fast: bool = True,
) -> Attributions:
    """Saturation mutagenesis: the change of the target under every single-base substitution.

    ``hypothetical[b, l]`` is ``f(x with base b at l) - f(x)`` (0 for the base
    already there), minus its mean over the four bases at ``l``. An all-zero
    (N) column is mutated to each of the four bases, so all four of its scores
    are substitutions; a column that is not one-hot is treated the same way.

    Parameters
    ----------
    model : torch.nn.Module, torch.export.ExportedProgram or CapturedModel
        A model taking one tensor of shape (N, C, L).
    X : array-like, shape=(N, C, L)
        One-hot DNA, channels A, C, G, T.
    target : int, seqlift.targets.Target or callable
        Output column to explain, a :class:`~seqlift.targets.Target`, or a
        function of the output giving shape (N,); see :func:`seqlift.targets.select_target`.
    output_index : int, optional
        Element of a tuple output.
    batch_size : int
        Mutants per model call.
    device : str or torch.device
    fast : bool
        Evaluate each mutant incrementally (see the module docstring): only
        the positions a substitution reaches, layer by layer; the scores equal
        those of ``fast=False`` up to rounding.

    Returns
    -------
    Attributions
        ``hypothetical`` (N, C, L) as above; ``contributions``: ``hypothetical``
        x ``X`` (0 at N columns); ``predictions``: ``f(x)``, shape (N,);
        ``reference_predictions`` of shape (N, 0); ``delta_error`` and
        ``relative_error`` all zero (the method has no completeness property).
    """
    captured, X = model_inputs(model, X, device)
    run = _Incremental(captured, X, batch_size) if fast else (lambda i, b, l: captured.module(_mutants(X, i, b, l)))
    with torch.no_grad():
        pred = predict(captured, X, target, output_index, batch_size)
        onehot = (X == 1) & (X.sum(dim=1, keepdim=True) == 1)
        seq, base, pos = torch.nonzero(~onehot, as_tuple=True)
        scores = pred[:, None, None].expand(X.shape).clone()
        for s in range(0, len(seq), batch_size):
            i, b, l = seq[s : s + batch_size], base[s : s + batch_size], pos[s : s + batch_size]
            scores[i, b, l] = select_target(run(i, b, l), target, output_index)
        hyp = scores - pred[:, None, None]
        hyp -= hyp.mean(dim=1, keepdim=True)
    pred = pred.cpu().numpy()
    return Attributions(
        hypothetical=hyp.cpu().numpy(),
        contributions=(hyp * X).cpu().numpy(),
        predictions=pred,
        reference_predictions=np.zeros((len(pred), 0), pred.dtype),
        delta_error=np.zeros_like(pred),
        relative_error=np.zeros_like(pred),
    )


def _mutants(X: torch.Tensor, i: torch.Tensor, b: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """Copies of inputs ``X[i]`` with base ``b`` set at position ``l`` (all shape (M,)); shape (M, C, L)."""
    x = X[i]
    rows = torch.arange(len(i), device=X.device)
    x[rows, :, l] = 0
    x[rows, b, l] = 1
    return x


class _Span:
    """A node's value for a batch of mutants: ``base[rows]`` except the window ``[start, start + width)``.

    ``base`` (n, ..., L) is the node's value on the unmutated inputs, ``start``
    (M,) each mutant's first position in the last axis, ``data`` (M, ..., width)
    the window's values. The window lies inside ``[0, L)``.
    """

    __slots__ = ("base", "start", "data")

    def __init__(self, base: torch.Tensor, start: torch.Tensor, data: torch.Tensor):
        self.base, self.start, self.data = base, start, data

    @property
    def width(self) -> int:
        return self.data.shape[-1]


#: Ops that act on each position of the last axis alone, given tensors that do not vary along it.
_POSITIONWISE = {
    aten.relu.default,
    aten.gelu.default,
    aten.sigmoid.default,
    aten.tanh.default,
    aten.silu.default,
    aten.elu.default,
    aten.leaky_relu.default,
    aten.softplus.default,
    aten.hardtanh.default,
    aten.abs.default,
    aten.exp.default,
    aten.log.default,
    aten.neg.default,
    aten.square.default,
    aten.sqrt.default,
    aten.clamp.default,
    aten.clamp_min.default,
    aten.clamp_max.default,
    aten.clone.default,
    aten.alias.default,
    aten.pow.Tensor_Scalar,
    aten.mul.Tensor,
    aten.mul.Scalar,
    aten.add.Tensor,
    aten.add.Scalar,
    aten.sub.Tensor,
    aten.sub.Scalar,
    aten.div.Tensor,
    aten.div.Scalar,
    aten.maximum.default,
    aten.minimum.default,
    aten.dropout.default,
    aten.contiguous.default,
}
#: Ops whose tensor arguments besides the first are per-channel (dim 1), whatever their shape.
_PER_CHANNEL = {aten.batch_norm.default, aten._native_batch_norm_legit_no_training.default}
_CONVOLUTIONS = {aten.conv1d.default, aten.conv1d.padding, aten.convolution.default}
_POOLS = {aten.max_pool1d.default, aten.avg_pool1d.default}
_REDUCTIONS = {aten.mean.dim, aten.sum.dim_IntList}
_RESHAPES = {aten.unsqueeze.default, aten.squeeze.dim}


def _ceil_div(a, b):
    return -((-a) // b)


class _Incremental:
    """``run(i, b, l) -> output`` for the mutants ``X[i]`` with base ``b`` at ``l``, evaluated incrementally.

    The unmutated values of every node that depends on the input are computed
    for a block of inputs at a time (the inputs a batch of mutants can span).
    """

    def __init__(self, captured: CapturedModel, X: torch.Tensor, batch_size: int):
        self.module, self.X = captured.module, X
        nodes = list(self.module.graph.nodes)
        x_node = captured.input_node
        active = {x_node}
        for node in nodes:
            if any(a in active for a in node.all_input_nodes):
                active.add(node)
        self.active = active
        self.nodes = [n for n in nodes if n in active or n.op == "output"]
        self.x_node = x_node
        self.constants = {}
        for node in nodes:  # parameters, buffers and what is computed from them alone
            if node.op == "get_attr":
                self.constants[node] = operator.attrgetter(node.target)(self.module)
            elif node.op == "call_function" and node not in active:
                args, kwargs = map_arg((node.args, node.kwargs), self.constants.__getitem__)
                self.constants[node] = node.target(*args, **kwargs)
        # Each input has at least (C - 1) * L mutants, so a batch spans at most this many inputs.
        self.block = min(len(X), batch_size // max(1, (X.shape[1] - 1) * X.shape[2]) + 2)
        self.first, self.base, self.padded, self.conv_arguments = 0, None, {}, {}
        #: Nodes that rebuilt full mutant tensors (in graph order), for inspection.
        self.full_at: list = []

    # ------------------------------------------------------------ unmutated values
    def _unmutated(self, first: int) -> None:
        self.first, self.padded = first, {}
        env = {self.x_node: self.X[first : first + self.block]}
        for node in self.nodes:
            if node.op == "call_function":
                args, kwargs = map_arg((node.args, node.kwargs), lambda a: env[a] if a in env else self.constants[a])
                env[node] = node.target(*args, **kwargs)
        self.base = env

    def _padded(self, node, left: int, right: int, value: float) -> torch.Tensor:
        key = (node, left, right, value)
        if key not in self.padded:
            self.padded[key] = F.pad(self.base[node], (left, right), value=value)
        return self.padded[key]

    # ------------------------------------------------------------ windows
    def _scatter(self, window: torch.Tensor, offset: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
        """``window`` with ``data`` written from ``offset`` (M,) on; positions outside it are dropped."""
        width, rows = window.shape[-1], len(offset)
        q = offset[:, None] + torch.arange(data.shape[-1], device=offset.device)  # (M, w)
        inside = (q >= 0) & (q < width)
        shape = (rows,) + (1,) * (data.dim() - 2) + (data.shape[-1],)
        if bool(inside.all()):
            return window.scatter_(-1, q.view(shape).expand_as(data), data)
        spare = torch.cat([window, window[..., :1]], dim=-1)  # column ``width`` takes what falls outside
        spare.scatter_(-1, torch.where(inside, q, width).view(shape).expand_as(data), data)
        return spare[..., :width]

    def _base_window(self, base: torch.Tensor, start: torch.Tensor, width: int) -> torch.Tensor:
        """``base[rows][..., start:start + width]`` per mutant, shape (M, ..., width)."""
        windows = base.unfold(-1, width, 1)  # (n, ..., L - width + 1, width)
        index = (self.rows,) + (slice(None),) * (base.dim() - 2) + (start,)
        return windows[index]

    def _window(self, span: _Span, start: torch.Tensor, width: int) -> torch.Tensor:
        """The mutants' values over ``[start, start + width)``, which holds the span's window."""
        return self._scatter(self._base_window(span.base, start, width), span.start - start, span.data)

    def _full(self, value):
        """Full mutant tensors for a span (and the node's values unchanged otherwise)."""
        if not isinstance(value, _Span):
            return value
        full = value.base[self.rows]
        return self._scatter(full, value.start, value.data)

    # ------------------------------------------------------------ the run
    def __call__(self, i: torch.Tensor, b: torch.Tensor, l: torch.Tensor):
        if self.base is None or int(i[0]) < self.first or int(i[-1]) >= self.first + self.block:
            self._unmutated(int(i[0]))
        self.rows = i - self.first
        column = torch.nn.functional.one_hot(b, self.X.shape[1]).to(self.X.dtype)[:, :, None]
        env = {self.x_node: _Span(self.base[self.x_node], l, column)}
        self.full_at = []
        lookup = self._lookup = lambda a: env[a] if a in env else self.constants[a]  # also read by _windowed
        for node in self.nodes:
            if node.op == "output":
                return self.module.graph.process_outputs(map_arg(node.args[0], lambda a: self._full(lookup(a))))
            if node.op != "call_function":
                continue
            args, kwargs = map_arg((node.args, node.kwargs), lookup)
            out = self._step(node, args, kwargs)
            if out is None:
                if any(isinstance(a, _Span) for a in (*args, *kwargs.values())):
                    self.full_at.append(node)
                args, kwargs = (tuple(self._full(a) for a in args), {k: self._full(v) for k, v in kwargs.items()})
                out = node.target(*args, **kwargs)
            env[node] = out
        raise AssertionError("graph without output")

    def _step(self, node, args, kwargs):
        """The node's value kept as a window, or None when it needs full tensors."""
        if not args or not isinstance(args[0], _Span) and node.target not in _POSITIONWISE:
            return None
        target, base = node.target, self.base[node]
        if target is aten.sym_size.int:
            return len(self.rows) if args[1] == 0 else args[0].base.shape[args[1]]
        if not isinstance(base, torch.Tensor):
            return None
        if target in _REDUCTIONS:
            return self._reduction(node, args, kwargs, base)
        if base.dim() < 2:
            return None
        if target in _CONVOLUTIONS or target in _POOLS:
            return self._windowed(node, args, kwargs, base)
        if target in _RESHAPES:
            dim = args[1] if len(args) > 1 else kwargs.get("dim")
            if dim % args[0].data.dim() == args[0].data.dim() - 1 or (
                target is aten.unsqueeze.default and dim % (args[0].data.dim() + 1) == args[0].data.dim()
            ):
                return None
            return _Span(base, args[0].start, target(args[0].data, *args[1:], **kwargs))
        if target in _PER_CHANNEL:
            if base.shape[-1] != args[0].base.shape[-1] or any(isinstance(a, _Span) for a in args[1:]):
                return None
            if target is aten.batch_norm.default and args[5]:
                return None  # training mode: statistics over the whole batch
            out = target(args[0].data, *args[1:], **kwargs)
            return _Span(base, args[0].start, out)
        if target in _POSITIONWISE:
            return self._positionwise(node, args, kwargs, base)
        return None

    def _positionwise(self, node, args, kwargs, base):
        if node.target is aten.dropout.default and (args[2] if len(args) > 2 else kwargs.get("train")):
            return None
        spans = [a for a in args if isinstance(a, _Span)]
        if not spans or any(isinstance(v, (_Span, torch.Tensor)) for v in kwargs.values()):
            return None
        length = base.shape[-1]
        for a in args:  # other tensors must not vary along the last axis
            if isinstance(a, torch.Tensor) and a.dim() > 0 and a.shape[-1] != 1:
                return None
            if isinstance(a, _Span) and (a.base.shape[-1] != length or a.data.dim() != base.dim()):
                return None
        if len(spans) == 1:
            span = spans[0]
            out = node.target(*(span.data if a is span else a for a in args), **kwargs)
            return _Span(base, span.start, out)
        start = torch.stack([s.start for s in spans]).amin(dim=0)
        end = torch.stack([s.start + s.width for s in spans]).amax(dim=0)
        width = int((end - start).max())
        start = start.clamp(max=length - width)
        out = node.target(*(self._window(a, start, width) if isinstance(a, _Span) else a for a in args), **kwargs)
        return _Span(base, start, out)

    def _reduction(self, node, args, kwargs, base):
        """A sum or mean over the last axis (and others but the first): the unmutated total plus the window's change."""
        span = args[0]
        dims = args[1] if len(args) > 1 else kwargs.get("dim")
        keep = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
        nd = span.data.dim()
        dims = sorted({d % nd for d in dims}) if dims else []
        if nd - 1 not in dims or 0 in dims or kwargs.get("dtype") is not None or len(args) > 3:
            return None
        change = (span.data - self._base_window(span.base, span.start, span.width)).sum(dim=dims, keepdim=keep)
        if node.target is aten.mean.dim:
            change = change / float(np.prod([span.base.shape[d] for d in dims]))
        return base[self.rows] + change

    def _windowed(self, node, args, kwargs, base):
        span = args[0]
        if node.target in _CONVOLUTIONS:
            if node not in self.conv_arguments:
                conv = node.normalized_arguments(self.module, normalize_to_only_use_kwargs=True)
                self.conv_arguments[node] = conv and conv.kwargs
            if self.conv_arguments[node] is None:
                return None
            named = map_arg(self.conv_arguments[node], self._lookup)
            weight, bias = named["weight"], named.get("bias")
            if (
                isinstance(weight, _Span)
                or isinstance(bias, _Span)
                or weight.dim() != 3
                or named.get("transposed", False)
            ):
                return None
            width, stride, dilation = weight.shape[2], _one(named["stride"]), _one(named["dilation"])
            padding = named["padding"]
            if isinstance(padding, str):
                left = {"valid": 0, "same": dilation * (width - 1) // 2}[padding]
            else:
                left = _one(padding)
            groups, fill = named["groups"], 0.0

            def apply(window):
                return F.conv1d(window, weight, bias, stride, 0, dilation, groups)
        else:
            kernel = _one(args[1])
            stride = _one(args[2]) if len(args) > 2 and args[2] else kernel
            left = _one(args[3]) if len(args) > 3 else 0
            if node.target is aten.max_pool1d.default:
                dilation = _one(args[4]) if len(args) > 4 else 1
                ceil = args[5] if len(args) > 5 else False
                fill = float("-inf")

                def apply(window):
                    return F.max_pool1d(window, kernel, stride, 0, dilation)
            else:
                dilation, ceil, fill = 1, args[4] if len(args) > 4 else False, 0.0
                if left:
                    return None  # padded averages count the padding by a flag: left to the plain path

                def apply(window):
                    return F.avg_pool1d(window, kernel, stride, 0)

            if ceil or kwargs:
                return None
            width = kernel
        reach = dilation * (width - 1)
        n_in, n_out = span.base.shape[-1], base.shape[-1]
        first = _ceil_div(span.start + left - reach, stride).clamp(min=0)
        last = ((span.start + span.width - 1 + left) // stride).clamp(max=n_out - 1)
        out_width = min(max(int((last - first).max()) + 1, 1), n_out)  # 1 where no output is reached
        first = first.clamp(max=n_out - out_width)
        in_width = (out_width - 1) * stride + reach + 1
        right = max(0, (n_out - 1) * stride - left + reach + 1 - n_in)
        padded = self._padded(node.args[0], left, right, fill)
        window = self._scatter(
            self._base_window(padded, first * stride, in_width), span.start + left - first * stride, span.data
        )
        out = apply(window)
        if out.shape[-1] != out_width:
            return None
        return _Span(base, first, out)


def _one(value) -> int:
    """The single entry of a 1-d conv/pool parameter given as an int or a one-element list."""
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise ValueError(value)
        return int(value[0])
    return int(value)
