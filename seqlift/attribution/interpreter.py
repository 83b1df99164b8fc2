"""Running a captured graph under DeepLIFT's rules: the two :class:`torch.fx.Interpreter` s.

:class:`PairedInterpreter` runs the graph on a paired batch of tensors,
handing each nonlinearity, max and product to a :class:`~.paired.Rescale`
(Rescale everywhere). :class:`SplitInterpreter` runs it on
:class:`~.split.Split` values, the activations with the positive and negative
parts of their deltas, each nonlinearity under its own layer's rule. Which rule
an op follows is :mod:`.rules`' table (the engine's ``plan``).
"""

from __future__ import annotations

import torch

from .paired import hold_inputs
from .rules import PASSTHROUGH, OpRule
from .split import Split, product, stream, streamwise

aten = torch.ops.aten


def _bilinear(node, op_rule: OpRule, args, kwargs):
    """``(f, a, b)``: the node's op as a function ``f(a, b)`` of its two input-dependent operands."""
    leaves, spec = torch.utils._pytree.tree_flatten((args, kwargs))
    i, j = op_rule.operands

    def f(a, b):
        filled = list(leaves)
        filled[i], filled[j] = a, b
        fa, fk = torch.utils._pytree.tree_unflatten(filled, spec)
        return node.target(*fa, **fk)

    if (i, j) == (0, 1) and len(leaves) == 2:
        f.op = node.target  # f(a, b) is the op itself: its backward may be written out (paired._PRODUCT_VJPS)
    return f, leaves[i], leaves[j]


_SOFTMAX_CHAIN = (
    aten.reciprocal.default,
    aten.sum.dim_IntList,
    aten.exp.default,
    aten.sub.Tensor,
    aten.amax.default,
)


def softmax_groups(graph: torch.fx.Graph, held=frozenset()) -> dict:
    """``{output: (amax, ops)}`` for each softmax that :func:`~.graph.lower` wrote as
    ``amax, sub, exp, sum, reciprocal, mul`` and whose inner ops feed nothing else.

    The Rescale engine runs such a group as one op (:meth:`~.paired.Rescale.softmax`)
    with the same multipliers as the six rules in turn, in fewer passes over the tensor.
    """
    groups = {}
    for out in graph.nodes:
        if "seqlift_softmax" not in out.meta or out.target != aten.mul.Tensor:
            continue
        ops, node = [out], out.args[1]
        for target in _SOFTMAX_CHAIN:
            if not isinstance(node, torch.fx.Node) or node.target != target:
                break
            ops.append(node)
            node = node.args[1] if target == aten.sub.Tensor else node.args[0]
        else:
            _, reciprocal, total, exp, sub, amax = ops
            users_ok = (
                out.args[0] is exp
                and set(exp.users) == {total, out}
                and all(len(n.users) == 1 for n in (reciprocal, total, sub, amax))
                and sub.args[0] is amax.args[0]
            )
            if users_ok and not held.intersection(ops):
                groups[out] = (amax, frozenset(ops))
    return groups


class PairedInterpreter(torch.fx.Interpreter):
    """Runs the graph on a paired batch; with a ``rule`` (:class:`~.paired.Rescale`), nonlinearities, maxima and
    products follow it, and without one (None) the graph runs as it is."""

    def __init__(self, module, plan, rule, held=frozenset(), dims=None, softmax=None):
        super().__init__(module, garbage_collect_values=True)
        self.plan = plan
        self.rule = rule
        self.held = held
        self.dims = dims or {}
        groups = (softmax or {}) if rule is not None else {}  # softmax_groups of the graph: each run as one op
        self.softmax_starts = {amax: out for out, (amax, _) in groups.items()}
        self.softmax_ops = frozenset().union(*(ops for _, ops in groups.values()))
        self.softmax_done = {}

    def run_node(self, node):
        op_rule: OpRule | None = self.plan.get(node)
        if node in self.softmax_ops:  # one op for the group, computed at its first node
            out = self.softmax_starts.get(node)
            if out is not None:
                x = self.env[node.args[0]]
                self.softmax_done[out] = self.rule.softmax(
                    x, out.meta["seqlift_softmax"], self.dims.get(node.args[0], 0)
                )
            return self.softmax_done.pop(node, None)
        if self.rule is not None and node in self.held:
            return self.rule.hold(super().run_node(node), self.dims.get(node, 0))
        if self.rule is None or op_rule is None or op_rule.kind == "linear":
            return super().run_node(node)
        args, kwargs = self.fetch_args_kwargs_from_env(node)
        if op_rule.kind == "elementwise":
            rest = args[1:]
            return self.rule.elementwise(
                lambda t: node.target(t, *rest, **kwargs), args[0], node.target, self.dims.get(node.args[0], 0)
            )
        if op_rule.kind == "product":
            f, a, b = _bilinear(node, op_rule, args, kwargs)
            leaves = torch.utils._pytree.tree_leaves((node.args, node.kwargs))
            dims = tuple(self.dims.get(leaves[i], 0) for i in op_rule.operands)
            return self.rule.product(f, a, b, dims)
        return op_rule.apply(self.rule, node.target, args, kwargs, self.dims.get(node.args[0], 0), self.rule.rows)


class SplitInterpreter(torch.fx.Interpreter):
    """Runs the graph on :class:`Split` values: activations and the +/- parts of deltas."""

    def __init__(self, module, plan, rules, n, held=frozenset(), dims=None):
        super().__init__(module, garbage_collect_values=True)
        self.plan, self.rules, self.n, self.held, self.dims = plan, rules, n, held, dims or {}

    def run(self, x):
        self.rows = x.act.shape[0]
        return super().run(x)

    def run_node(self, node):
        op_rule: OpRule | None = self.plan.get(node)
        if node.op not in ("call_function", "call_method", "call_module"):
            return super().run_node(node)
        args, kwargs = self.fetch_args_kwargs_from_env(node)
        if node in self.held:
            act = node.target(*stream(args, "act"), **stream(kwargs, "act"))
            act = hold_inputs(act, self.n, self.dims.get(node, 0), self.rows)
            return Split(act, torch.zeros_like(act), torch.zeros_like(act))
        if op_rule is None:  # does not depend on the input, or only on its shape
            return getattr(self, node.op)(node.target, stream(args, "act"), stream(kwargs, "act"))
        op = node.target
        if op_rule.kind == "product":
            f, a, b = _bilinear(node, op_rule, args, kwargs)
            return product(f, a, b)
        if op_rule.kind == "elementwise":
            rest = args[1:]
            return self.rules[node].elementwise(lambda t: op(t, *rest, **kwargs), args[0], op)
        if op_rule.kind == "max":
            return op_rule.apply(self.rules[node], op, args, kwargs, self.dims.get(node.args[0], 0), self.rows)
        if op in PASSTHROUGH:
            return op(*args, **kwargs)
        act = op(*stream(args, "act"), **stream(kwargs, "act"))
        pos, neg = (op_rule.split or streamwise)(op, args, kwargs)
        if isinstance(act, (tuple, list)):
            return [a if p is None else Split(a, p, q) for a, p, q in zip(act, pos, neg)]
        if pos.shape != act.shape:  # an input-dependent value broadcast against a constant
            pos, neg = pos.expand_as(act), neg.expand_as(act)
        return Split(act, pos, neg)
