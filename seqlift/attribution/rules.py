"""The rule table: how DeepLIFT treats each ATen operation.

This module is the one place where operations get their attribution rule, so a
rule cannot be present in one code path and missing in another. Every op that
depends on the input falls in one of three kinds:

``linear``
    Affine in the input (convolution, dense, eval-mode batch norm, residual
    add, reshapes, average pooling, eval-mode dropout, ...). The gradient is the
    exact multiplier, so the op runs as it is.
``elementwise``
    A nonlinearity applied elementwise (ReLU, sigmoid, GELU, ...). Its backward
    is replaced by the active rule's multiplier (Rescale: ``dy/dx``).
``max``
    Max pooling and max reductions. Within a window, let ``a`` be the element
    where the input peaks and ``b`` the one where the reference peaks; then
    ``max(window) = max(a, b)`` holds for both, and the active rule splits
    ``max(a, b) = (a + b)/2 + |a - b|/2`` between ``a`` and ``b``.
    Summation-to-delta holds exactly for any reference, also when the two
    argmaxes differ (where routing the gradient to the input's argmax, as
    captum and shap do, does not); where they agree, the result is gradient
    routing. The forward pass is PyTorch's own max pooling.

Ops outside the table have no rule and stop the run by name (or, with
``allow_unsupported``, are treated as linear with a warning).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, replace
from typing import Callable

import torch

from ..errors import UnsupportedOpError
from .split import SPLITS, activations

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
        ``apply(rule, op, args, kwargs) -> value`` for ``max`` ops, where
        ``rule.max(a, index)`` takes the max of ``a`` (shape (B, ..., S)) at the
        positions ``index`` (shape (B, ..., O)) that the input rows peak at.
    split : callable, optional
        For ``linear`` ops with coefficients of either sign or a constant term:
        ``split(op, args, kwargs) -> (pos, neg)``, how the positive and negative
        parts of deltas pass the op (RevealCancel). None: each part passes
        through the op as it is.
    """

    kind: str
    check: Callable | None = None
    apply: Callable | None = None
    split: Callable | None = None


# ---------------------------------------------------------------- checks


def _n_active(node, active, positions=None) -> int:
    args = node.args if positions is None else [node.args[i] for i in positions if i < len(node.args)]
    return sum(1 for a in args if isinstance(a, torch.fx.Node) and a in active)


def _one_active_operand(node, active):
    if _n_active(node, active) > 1:
        return "it multiplies two values that both depend on the input (a gating product)"
    return None


def _active_numerator_only(node, active):
    if _n_active(node, active, positions=range(1, len(node.args))) > 0:
        return "it divides by a value that depends on the input"
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
        if dims is None:
            return "it reduces over the batch dimension"
        dims = [dims] if isinstance(dims, int) else list(dims)
        ndim = len(node.args[0].meta["val"].shape) if "val" in node.args[0].meta else None
        if any(d == 0 or (ndim is not None and d == -ndim) for d in dims):
            return "it reduces over the batch dimension"
        return None

    return check


# ---------------------------------------------------------------- max pooling and max reductions


def _as_list(v, n):
    if isinstance(v, int):
        return [v] * n
    v = list(v)
    return v * n if len(v) == 1 else v


def _max_pool(nd):
    """``max_pool{nd}d`` through ``rule.max`` on the flattened spatial dims."""

    def apply(rule, op, args, kwargs):
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


def _reduced_dims(op, args, kwargs, x):
    dims = args[1] if len(args) > 1 else kwargs.get("dim", ())
    keepdim = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
    return sorted(d % x.dim() for d in ([dims] if isinstance(dims, int) else dims)), keepdim


def _max_reduce(rule, op, args, kwargs):
    """``amax`` and ``max.dim``: the reduced dims moved last and flattened, then ``rule.max``."""
    x = args[0]
    dims, keepdim = _reduced_dims(op, args, kwargs, x)
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
    aten.conv1d, aten.conv2d, aten.convolution, aten._convolution, aten.conv_transpose1d, aten.linear,
    aten.addmm, aten.t,
    # sums, means, average pooling
    aten.add, aten.sub, aten.neg, aten.rsub,
    aten.avg_pool1d, aten.avg_pool2d, aten.adaptive_avg_pool1d, aten.adaptive_avg_pool2d,
    aten._adaptive_avg_pool2d,
    # shape and layout
    aten.view, aten.reshape, aten._unsafe_view, aten.flatten, aten.unflatten, aten.squeeze, aten.unsqueeze,
    aten.permute, aten.transpose, aten.expand, aten.contiguous, aten.clone, aten.alias, aten.detach,
    aten.slice, aten.select, aten.narrow, aten.index_select, aten.split, aten.split_with_sizes, aten.chunk,
    aten.unbind, aten.cat, aten.stack, aten.flip, aten.roll, aten.repeat, aten.movedim,
    aten.constant_pad_nd, aten.pad, aten._to_copy, aten.to, aten.type_as, aten.lift_fresh_copy,
    aten.upsample_nearest1d,
]

_ELEMENTWISE = [
    aten.relu, aten.leaky_relu, aten.elu, aten.selu, aten.celu, aten.gelu, aten.silu, aten.mish,
    aten.softplus, aten.sigmoid, aten.tanh, aten.exp, aten.hardtanh, aten.relu6, aten.hardsigmoid,
    aten.hardswish, aten.log_sigmoid, aten.abs, aten.clamp, aten.square, aten.log, aten.log1p, aten.sqrt,
]

RULES: dict = {}
for _op in _LINEAR:
    RULES[_op] = OpRule("linear")
for _op in _ELEMENTWISE:
    RULES[_op] = OpRule("elementwise")
RULES.update({
    aten.mul: OpRule("linear", check=_one_active_operand),
    aten.mm: OpRule("linear", check=_one_active_operand),
    aten.bmm: OpRule("linear", check=_one_active_operand),
    aten.matmul: OpRule("linear", check=_one_active_operand),
    aten.div: OpRule("linear", check=_active_numerator_only),
    aten.sum: OpRule("linear", check=_keeps_batch(1)),
    aten.mean: OpRule("linear", check=_keeps_batch(1)),
    aten.batch_norm: OpRule("linear", check=_eval_mode_arg(5, "batch norm")),
    aten._native_batch_norm_legit_no_training: OpRule("linear"),
    aten.dropout: OpRule("linear", check=_eval_mode_arg(2, "dropout")),
    aten.feature_dropout: OpRule("linear", check=_eval_mode_arg(2, "dropout")),
    aten.max_pool1d: OpRule("max", apply=_max_pool(1)),
    aten.max_pool2d: OpRule("max", apply=_max_pool(2)),
    aten.max_pool1d_with_indices: OpRule("max", apply=_max_pool(1)),
    aten.max_pool2d_with_indices: OpRule("max", apply=_max_pool(2)),
    aten.amax: OpRule("max", check=_keeps_batch(1), apply=_max_reduce),
    aten.max: OpRule("max", check=_keeps_batch(1), apply=_max_reduce),
})

for _op, _split in SPLITS.items():
    RULES[_op] = replace(RULES[_op], split=_split)

#: Python-level callables that appear in exported graphs (tuple access, shape arithmetic).
PASSTHROUGH = {operator.getitem}


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
    return rule
