"""The rule table: how DeepLIFT treats each ATen operation.

This module is the one place where operations get their attribution rule, so a
rule cannot be present in one code path and missing in another. Every op that
depends on the input falls in one of these kinds:

``linear``
    Affine in the input (convolution, dense, eval-mode batch norm, residual
    add, reshapes, average pooling, eval-mode dropout, ...). The gradient is the
    exact multiplier, so the op runs as it is.
``elementwise``
    A nonlinearity applied elementwise (ReLU, sigmoid, GELU, ...). Its backward
    is replaced by the active rule's multiplier (Rescale: ``dy/dx``).
``product``
    A product of two values that both depend on the input: ``mul``, ``bmm``,
    ``matmul``, ``einsum`` and the like, any op ``B(a, b)`` that is linear in
    each operand (gating, attention, RNN gates; division by an input-dependent
    value is lowered to a product with its reciprocal). With ``a̅`` and ``b̅``
    the midpoints of input and reference (``(a_x + a_r) / 2``)::

        B(a_x, b_x) - B(a_r, b_r) = B(a̅, Δb) + B(Δa, b̅)

    exactly, for every bilinear ``B``, so summation-to-delta holds. Each
    operand's share is its term of the two-player Shapley value of the product
    (``½[B(a_x, b_r) - B(a_r, b_r)] + ½[B(a_x, b_x) - B(a_r, b_x)] = B(Δa, b̅)``),
    the only split that is symmetric in the operands and gives nothing to an
    operand that does not change. It is the DeepLIFT multiplier: ``b̅`` for
    ``a`` and ``a̅`` for ``b``. Where ``a`` and ``b`` are linear in the inputs,
    the contributions equal the exact Shapley values of the inputs (tested by
    enumeration). Under the split rules the coefficients ``a̅`` and ``b̅`` are
    split by sign like a linear layer's weights.
``fused``
    An LSTM or GRU layer kept whole under Rescale, with the multipliers of its
    unrolled cells (:mod:`.recurrent`): the same scores, far fewer ops. The
    split rules see it unrolled.
``max``
    Max pooling and max reductions. Within a window, let ``a`` be the element
    where the input peaks and ``b`` the one where the reference peaks; then
    ``max(window) = max(a, b)`` holds for both, and the max rule
    (:data:`~.split.MAX_RULES`: ``sign``, ``pair`` or ``shapley``) splits the
    window's delta between ``a`` and ``b``. Summation-to-delta holds exactly
    for any reference, also when the two argmaxes differ (where routing the
    gradient to the input's argmax, as captum and shap do, does not); where they agree,
    the result is gradient routing. The forward pass is PyTorch's own max pooling.

Ops outside the table have no rule and stop the run by name (or, with
``allow_unsupported``, are treated as linear with a warning).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, replace
from typing import Callable

import torch

from ..errors import UnsupportedOpError
from .recurrent import gru_rule, lstm_rule
from .split import SPLITS, activations, batch_back, batch_first, batch_first_dim

aten = torch.ops.aten


@dataclass(frozen=True)
class OpRule:
    """How one ATen op is attributed.

    Attributes
    ----------
    kind : str
        ``linear``, ``elementwise`` or ``max``.
    check : callable, optional
        ``check(node, active) -> str | None``: a reason why this particular call
        has no rule (e.g. a product of two activations), checked before running.
    apply : callable, optional
        ``apply(rule, op, args, kwargs, dim, rows) -> value`` for ``max`` ops
        (``dim``: the batch dimension of the input; ``rows``: the batch size), where
        ``rule.max(a, index)`` takes the max of ``a`` (shape (B, ..., S)) at the
        positions ``index`` (shape (B, ..., O)) that the input rows peak at.
    split : callable, optional
        For ``linear`` ops with coefficients of either sign or a constant term:
        ``split(op, args, kwargs) -> (pos, neg)``, how the positive and negative
        parts of deltas pass the op (RevealCancel). None: each part passes
        through the op as it is.
    bilinear : bool
        Linear in each operand: with two operands that depend on the input,
        :func:`lookup` gives the node the ``product`` rule.
    operands : tuple of int, optional
        For a ``product`` node: the positions, among the leaves of
        ``(args, kwargs)`` flattened by ``torch.utils._pytree``, of its two
        input-dependent operands.
    """

    kind: str
    check: Callable | None = None
    apply: Callable | None = None
    split: Callable | None = None
    bilinear: bool = False
    operands: tuple | None = None


# ---------------------------------------------------------------- checks


def _n_active(node, active, positions=None) -> int:
    args = node.args if positions is None else [node.args[i] for i in positions if i < len(node.args)]
    return sum(1 for a in args if isinstance(a, torch.fx.Node) and a in active)


def _active_numerator_only(node, active):
    if _n_active(node, active, positions=range(1, len(node.args))) > 0:
        return "it divides by a value that depends on the input"
    if node.kwargs.get("rounding_mode") is not None:
        return f"it rounds the quotient ({node.kwargs['rounding_mode']})"
    return None


def _constant_arguments(*positions, what="index"):
    """Selections (``index``, ``gather``, ``masked_fill``, ``where``) whose index or mask is a constant."""

    def check(node, active):
        args = [node.args[i] for i in positions if i < len(node.args)]
        leaves = torch.utils._pytree.tree_leaves(args)
        if any(isinstance(a, torch.fx.Node) and a in active for a in leaves):
            return f"its {what} depends on the input"
        return None

    return check


def _elementwise_input_only(node, active):
    """Elementwise ops with extra tensor arguments (``pow``, ``clamp``): only the first may be active."""
    if _n_active(node, active, positions=range(1, len(node.args))) > 0 or any(
        isinstance(v, torch.fx.Node) and v in active for v in node.kwargs.values()
    ):
        return "an argument other than its input depends on the input"
    return None


def _eval_mode_arg(index, what):
    def check(node, active):
        training = node.args[index] if len(node.args) > index else node.kwargs.get("training", node.kwargs.get("train"))
        if training:
            return f"{what} runs in training mode; call model.eval() before exporting"
        return None

    return check


def _keeps_batch(dims_index):
    """Reductions that include dim 0 mix examples (and references) together."""

    def check(node, active):
        dims = node.args[dims_index] if len(node.args) > dims_index else node.kwargs.get("dim")
        if isinstance(dims, torch.fx.Node):
            return "it takes a tensor where a dimension was expected (the maximum of two tensors is lowered first)"
        if dims is None:
            return "it reduces over the batch dimension"
        dims = [dims] if isinstance(dims, int) else list(dims)
        ndim = len(node.args[0].meta["val"].shape) if "val" in node.args[0].meta else None
        if any(d == 0 or (ndim is not None and d == -ndim) for d in dims):
            return "it reduces over the batch dimension"
        return None

    return check


def _padded_sequences(node, active):
    """A fused recurrent layer (kept whole only under Rescale) over a padded, not a packed, sequence."""
    if node.target._overloadname != "input":
        return "it runs over a packed sequence"
    return None


# ---------------------------------------------------------------- max pooling and max reductions


def _as_list(v, n):
    if isinstance(v, int):
        return [v] * n
    v = list(v)
    return v * n if len(v) == 1 else v


def _max_pool(nd):
    """``max_pool{nd}d`` through ``rule.max`` on the flattened spatial dims."""

    def apply(rule, op, args, kwargs, dim=0, rows=None):  # the batch is first (prepare checks)
        names = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode")
        params = {**dict(zip(names, args)), **kwargs}
        x = params.pop("input")
        params["stride"] = params.get("stride") or params["kernel_size"]
        pool = torch.nn.functional.max_pool1d if nd == 1 else torch.nn.functional.max_pool2d
        with torch.no_grad():
            values, indices = pool(activations(x), return_indices=True, **params)
        out = rule.max(x.flatten(-nd), indices.flatten(-nd)).reshape(values.shape)
        return (out, indices) if op._opname.endswith("with_indices") else out

    return apply


def _adaptive_max_pool(nd):
    """``adaptive_max_pool{nd}d`` (windows of any overlap, e.g. global max pooling) through ``rule.max``."""

    def apply(rule, op, args, kwargs, dim=0, rows=None):  # the batch is first (prepare checks)
        x, size = args[0], args[1] if len(args) > 1 else kwargs["output_size"]
        pool = torch.nn.functional.adaptive_max_pool1d if nd == 1 else torch.nn.functional.adaptive_max_pool2d
        with torch.no_grad():
            values, indices = pool(activations(x), size, return_indices=True)
        return rule.max(x.flatten(-nd), indices.flatten(-nd)).reshape(values.shape), indices

    return apply


def _reduced_dims(op, args, kwargs, x):
    dims = args[1] if len(args) > 1 else kwargs.get("dim", ())
    keepdim = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
    return sorted(d % x.dim() for d in ([dims] if isinstance(dims, int) else dims)), keepdim


def _max_reduce(rule, op, args, kwargs, dim=0, rows=None):
    """``amax`` and ``max.dim``: the reduced dims moved last and flattened, then ``rule.max``.

    ``dim`` is the batch dimension of the input and ``rows`` the model's batch
    size; an ``amax`` whose input has its batch elsewhere, or folded with other
    dimensions (attention heads), runs on :func:`~.split.batch_first` of it.
    """
    x = args[0]
    dims, keepdim = _reduced_dims(op, args, kwargs, x)
    if dim or (rows is not None and x.shape[0] != rows):
        moved = [batch_first_dim(d, dim) for d in dims]
        out = batch_back(_max_reduce(rule, aten.amax.default, (batch_first(x, dim, rows), moved, True), {}), dim)
        return out if keepdim else out.squeeze(tuple(dims))
    flat = x.movedim(dims, list(range(x.dim() - len(dims), x.dim()))).flatten(-len(dims))
    with torch.no_grad():
        index = activations(flat).argmax(dim=-1, keepdim=True)
    values = rule.max(flat, index).squeeze(-1)
    if keepdim:
        for d in dims:
            values = values.unsqueeze(d)
    if op._opname == "max":  # max.dim returns (values, indices)
        with torch.no_grad():
            _, indices = op(activations(x), *args[1:], **kwargs)
        return values, indices
    return values


# ---------------------------------------------------------------- the table

_LINEAR = [
    # dense and convolution layers
    aten.conv1d,
    aten.conv2d,
    aten.convolution,
    aten._convolution,
    aten.conv_transpose1d,
    aten.linear,
    aten.addmm,
    aten.t,
    # sums, means, average pooling
    aten.add,
    aten.sub,
    aten.neg,
    aten.rsub,
    aten.avg_pool1d,
    aten.avg_pool2d,
    aten.adaptive_avg_pool1d,
    aten.adaptive_avg_pool2d,
    aten._adaptive_avg_pool2d,
    # shape and layout
    aten.view,
    aten.reshape,
    aten._unsafe_view,
    aten.flatten,
    aten.unflatten,
    aten.squeeze,
    aten.unsqueeze,
    aten.permute,
    aten.transpose,
    aten.expand,
    aten.contiguous,
    aten.clone,
    aten.alias,
    aten.detach,
    aten.slice,
    aten.select,
    aten.narrow,
    aten.index_select,
    aten.split,
    aten.split_with_sizes,
    aten.chunk,
    aten.unbind,
    aten.cat,
    aten.stack,
    aten.flip,
    aten.roll,
    aten.repeat,
    aten.movedim,
    aten.constant_pad_nd,
    aten.pad,
    aten._to_copy,
    aten.to,
    aten.type_as,
    aten.lift_fresh_copy,
    aten.upsample_nearest1d,
    aten.swapaxes,
    aten.swapdims,
    aten.concat,
    aten.concatenate,
    aten.negative,
    aten.subtract,
    aten.tile,
    aten.expand_as,
    aten.view_as,
    aten.reshape_as,
    aten.as_strided,
    aten.squeeze_copy,
    aten.unsqueeze_copy,
    aten.view_copy,
    aten.permute_copy,
    aten.transpose_copy,
    aten.slice_copy,
    aten.select_copy,
    aten.expand_copy,
    aten.alias_copy,
    aten.repeat_interleave,
    aten.diagonal,
    aten.tril,
    aten.triu,
]

_ELEMENTWISE = [
    aten.relu,
    aten.leaky_relu,
    aten.elu,
    aten.selu,
    aten.celu,
    aten.gelu,
    aten.silu,
    aten.mish,
    aten.softplus,
    aten.sigmoid,
    aten.tanh,
    aten.exp,
    aten.hardtanh,
    aten.relu6,
    aten.hardsigmoid,
    aten.hardswish,
    aten.log_sigmoid,
    aten.abs,
    aten.clamp,
    aten.clip,
    aten.square,
    aten.log,
    aten.log1p,
    aten.sqrt,
    aten.rsqrt,
    aten.reciprocal,
    aten.erf,
    aten.sin,
    aten.cos,
    aten.expm1,
    aten.threshold,
    aten.absolute,
]

RULES: dict = {}
for _op in _LINEAR:
    RULES[_op] = OpRule("linear")
for _op in _ELEMENTWISE:
    RULES[_op] = OpRule("elementwise")
RULES.update(
    {
        aten.mul: OpRule("linear", bilinear=True),
        aten.multiply: OpRule("linear", bilinear=True),
        aten.mm: OpRule("linear", bilinear=True),
        aten.bmm: OpRule("linear", bilinear=True),
        aten.matmul: OpRule("linear", bilinear=True),
        aten.einsum: OpRule("linear", bilinear=True),
        aten.div: OpRule("linear", check=_active_numerator_only),
        aten.true_divide: OpRule("linear", check=_active_numerator_only),
        aten.divide: OpRule("linear", check=_active_numerator_only),
        aten.pow: OpRule("elementwise", check=_elementwise_input_only),
        aten.index: OpRule("linear", check=_constant_arguments(1)),
        aten.gather: OpRule("linear", check=_constant_arguments(2)),
        aten.take_along_dim: OpRule("linear", check=_constant_arguments(1)),
        aten.masked_fill: OpRule("linear", check=_constant_arguments(1, 2, what="mask or fill value")),
        aten.where: OpRule("linear", check=_constant_arguments(0, what="condition")),
        aten.sum: OpRule("linear", check=_keeps_batch(1)),
        aten.mean: OpRule("linear", check=_keeps_batch(1)),
        aten.batch_norm: OpRule("linear", check=_eval_mode_arg(5, "batch norm")),
        aten._native_batch_norm_legit_no_training: OpRule("linear"),
        aten._native_batch_norm_legit_functional: OpRule("linear", check=_eval_mode_arg(5, "batch norm")),
        aten._native_batch_norm_legit: OpRule("linear", check=_eval_mode_arg(5, "batch norm")),
        aten.dropout: OpRule("linear", check=_eval_mode_arg(2, "dropout")),
        aten.feature_dropout: OpRule("linear", check=_eval_mode_arg(2, "dropout")),
        aten.max_pool1d: OpRule("max", apply=_max_pool(1)),
        aten.max_pool2d: OpRule("max", apply=_max_pool(2)),
        aten.max_pool1d_with_indices: OpRule("max", apply=_max_pool(1)),
        aten.max_pool2d_with_indices: OpRule("max", apply=_max_pool(2)),
        aten.adaptive_max_pool1d: OpRule("max", apply=_adaptive_max_pool(1)),
        aten.adaptive_max_pool2d: OpRule("max", apply=_adaptive_max_pool(2)),
        aten.amax: OpRule("max", check=_keeps_batch(1), apply=_max_reduce),
        aten.lstm: OpRule("fused", check=_padded_sequences, apply=lstm_rule),
        aten.gru: OpRule("fused", check=_padded_sequences, apply=gru_rule),
        aten.max: OpRule("max", check=_keeps_batch(1), apply=_max_reduce),
    }
)

for _op, _split in SPLITS.items():
    RULES[_op] = replace(RULES[_op], split=_split)

#: Python-level callables that appear in exported graphs (tuple access, shape arithmetic).
PASSTHROUGH = {operator.getitem}

#: Ops whose value depends on the input's shape, dtype and device only (a constant for attribution).
SHAPE_ONLY = {
    aten.zeros_like,
    aten.ones_like,
    aten.full_like,
    aten.empty_like,
    aten.new_zeros,
    aten.new_ones,
    aten.new_full,
    aten.new_empty,
    aten.sym_size,
    aten.sym_numel,
    aten.sym_stride,
    aten.size,
    aten.scalar_tensor,
    aten.zeros,
    aten.ones,
    aten.full,
    aten.arange,
    aten.empty,
}


def product_operands(node: torch.fx.Node, active: set) -> tuple:
    """Positions of ``node``'s input-dependent tensors among the leaves of ``(args, kwargs)``."""
    leaves = torch.utils._pytree.tree_leaves((node.args, node.kwargs))
    return tuple(i for i, a in enumerate(leaves) if isinstance(a, torch.fx.Node) and a in active)


def lookup(node: torch.fx.Node, active: set) -> OpRule:
    """The rule for ``node``, or :class:`UnsupportedOpError` explaining why there is none.

    Parameters
    ----------
    node : torch.fx.Node
        A ``call_function`` node that depends on the input.
    active : set of torch.fx.Node
        Nodes that depend on the input.
    """
    from .graph import op_name, where

    target = node.target
    if target in PASSTHROUGH:
        return OpRule("linear")
    packet = target.overloadpacket if isinstance(target, torch._ops.OpOverload) else None
    rule = RULES.get(packet)
    if rule is None:
        raise UnsupportedOpError(f"{op_name(target)} in {where(node)} has no DeepLIFT rule")
    if rule.check is not None:
        reason = rule.check(node, active)
        if reason:
            raise UnsupportedOpError(f"{op_name(target)} in {where(node)} has no DeepLIFT rule: {reason}")
    if rule.bilinear:
        operands = product_operands(node, active)
        if len(operands) > 2:
            raise UnsupportedOpError(
                f"{op_name(target)} in {where(node)} has no DeepLIFT rule: it multiplies "
                f"{len(operands)} values that depend on the input (the rule covers two)"
            )
        if len(operands) == 2:
            return OpRule("product", operands=operands)
    return rule
