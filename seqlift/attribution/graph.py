"""Graph capture: turn a model into a graph of ATen operations.

Every model, whether given as an ``nn.Module`` or as a ``torch.export`` program
(``.pt2``), is brought to one form: an FX graph of ATen operations
(``torch.ops.aten.*``), in which ``nn.ReLU`` modules, a module used twice,
``F.relu`` and ``x.relu()`` all appear as the same ``aten.relu`` node. The
engine gives every node that depends on the input a rule from one table
(:mod:`seqlift.attribution.rules`), so no nonlinearity can slip through as
linear.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Union

import numpy.typing as npt
import torch
from torch.export import Dim, ExportedProgram

from ..errors import ModelError


@dataclass
class CapturedModel:
    """An ATen graph ready for the attribution engine.

    Attributes
    ----------
    module : torch.fx.GraphModule
        The unlifted graph module (parameters as attributes).
    input_length : int or None
        Sequence length the program was captured with, None when dynamic.
    output_activations : tuple of str or None
        For each output, the final sigmoid or softmax that
        :func:`strip_output_activation` removed (None where there was none).
    held : frozenset of torch.fx.Node
        Nodes held at the input's value for its references, so they carry no
        delta (the base count of :func:`normalize_input_weights`).
    """

    module: torch.fx.GraphModule
    input_length: int | None
    output_activations: tuple = ()  # per flat output: "sigmoid", "softmax" (stripped) or None
    held: frozenset = frozenset()  # nodes whose reference rows take their input's value (no delta)

    @property
    def input_node(self) -> torch.fx.Node:
        """The placeholder of the sequence input (the only user input)."""
        return next(n for n in self.module.graph.nodes if n.op == "placeholder")


#: A model as the attribution methods take it: an eager module (captured on use), an exported program, or a
#: graph already captured.
ModelLike = Union[torch.nn.Module, ExportedProgram, CapturedModel]
#: Inputs or references as the attribution methods take them: a numpy array (or anything array-like) or a tensor.
ArrayOrTensor = Union[npt.ArrayLike, torch.Tensor]


def capture(model, length: int | None = None, channels: int = 4, unroll_recurrent: bool = True) -> CapturedModel:
    """Capture ``model`` as an ATen graph with a dynamic batch dimension.

    Parameters
    ----------
    model : torch.nn.Module or torch.export.ExportedProgram
        An eager module is exported in eval mode with an example input of
        shape ``(2, channels, length)``; a program is used as it is.
    length : int, optional
        Input length for exporting an eager module. Required for modules.
    channels : int
        Number of input channels (4 for one-hot DNA).
    unroll_recurrent : bool
        Unroll LSTM and GRU layers into one cell per position (see :func:`functional`);
        False keeps them as one op each, for the fused Rescale rule (:mod:`.recurrent`).

    Returns
    -------
    CapturedModel
    """
    if isinstance(model, ExportedProgram):
        program = model
    elif isinstance(model, torch.nn.Module):
        if length is None:
            raise ModelError("an input length is needed to capture an nn.Module; pass --window")
        model.eval()
        example = torch.zeros(2, channels, length, dtype=_param_dtype(model), device=_param_device(model))
        try:
            program = torch.export.export(model, (example,), dynamic_shapes=({0: Dim.AUTO},))
        except Exception as exc:  # torch raises many types here; all mean the same to the user
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(
                f"could not capture {type(model).__name__} with torch.export for input (N, {channels}, {length}): "
                f"{first}; check that the model accepts one tensor of that shape"
            ) from exc
    else:
        raise ModelError(f"expected an nn.Module or a torch.export program, got {type(model).__name__}")
    user_inputs = [s for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    if len(user_inputs) != 1:
        raise ModelError(
            f"the model takes {len(user_inputs)} tensor inputs; seqlift scores models with exactly one "
            "input of shape (N, 4, L)"
        )
    val = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == user_inputs[0].arg.name).meta.get(
        "val"
    )
    input_length = None
    if val is not None and len(val.shape) == 3:
        if isinstance(val.shape[0], int) and val.shape[0] != 0:
            # A fixed batch size bakes shapes into reshape calls; the engine batches
            # inputs with references, so it needs a dynamic batch dimension.
            raise ModelError(
                f"the exported program has a fixed batch size of {val.shape[0]}; re-export it with a dynamic batch: "
                "torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim.AUTO},))"
            )
        input_length = val.shape[2] if isinstance(val.shape[2], int) else None
    module = functional(program, unroll_recurrent).module()
    _drop_guards(module)
    return CapturedModel(module=module, input_length=input_length)


def _sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    """``scaled_dot_product_attention`` as its definition: softmax(q kᵀ · scale + mask) v.

    Traced by :func:`functional` into matrix products, a softmax and additions,
    each of which has a rule. Shapes: query (..., L, E), key (..., S, E),
    value (..., S, Ev); returns (..., L, Ev).
    """
    if enable_gqa:
        key = key.repeat_interleave(query.size(-3) // key.size(-3), -3)
        value = value.repeat_interleave(query.size(-3) // value.size(-3), -3)
    scale = query.size(-1) ** -0.5 if scale is None else scale
    # Scaled before the product: (L, E) values instead of (L, S) scores, and the same attributions (linear).
    scores = torch.matmul(query * scale, key.transpose(-2, -1))
    if is_causal:
        causal = torch.ones(query.size(-2), key.size(-2), dtype=torch.bool, device=query.device).tril()
        scores = scores.masked_fill(causal.logical_not(), float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(attn_mask.logical_not(), float("-inf"))
        else:
            scores = scores + attn_mask
    weights = torch.softmax(scores, dim=-1)
    if dropout_p:
        weights = torch.nn.functional.dropout(weights, dropout_p, training=True)  # refused by its rule check
    return torch.matmul(weights, value)


def functional(program: ExportedProgram, unroll_recurrent: bool = True) -> ExportedProgram:
    """The program with in-place and alias ops made functional and recurrent layers unrolled.

    ``run_decompositions`` with a small table replaces ``relu_``, ``clip_``,
    ``add_`` and the like by their functional forms, and expands exactly the ops
    in the table: LSTM, GRU and plain RNN layers (PyTorch's own decompositions:
    one step per position, made of dense layers, sigmoid, tanh, sums and
    products), ``baddbmm``, and ``scaled_dot_product_attention`` (:func:`_sdpa`).
    Every other op stays as exported, so the graph keeps its module paths; a
    program with none of these ops is returned as it is. With
    ``unroll_recurrent=False``, LSTM and GRU layers on padded (not packed)
    sequences stay as they are.
    """
    from torch._decomp import decomposition_table

    aten = torch.ops.aten
    unrolled = [
        aten.lstm.input,
        aten.lstm.data,
        aten.gru.input,
        aten.gru.data,
        aten.rnn_tanh.input,
        aten.rnn_relu.input,
        aten.baddbmm.default,
    ]
    if not unroll_recurrent:
        unrolled = [op for op in unrolled if op not in (aten.lstm.input, aten.gru.input)]
    table = {op: decomposition_table[op] for op in unrolled}
    table[aten.scaled_dot_product_attention.default] = _sdpa
    ops = [n.target for n in program.graph.nodes if isinstance(n.target, torch._ops.OpOverload)]
    if not any(op in table or op._schema.is_mutable for op in ops):
        return program
    return program.run_decompositions(table)


_FINAL_ACTIVATIONS = {
    torch.ops.aten.sigmoid: "sigmoid",
    torch.ops.aten.softmax: "softmax",
    torch.ops.aten._softmax: "softmax",
    torch.ops.aten.log_softmax: "softmax",
    torch.ops.aten._log_softmax: "softmax",
}


def strip_output_activation(captured: CapturedModel) -> CapturedModel:
    """Explain logits: remove a sigmoid or softmax (over dim 1) that produces a model output.

    Saturating output activations hide contributions (DeepLIFT paper), so the
    engine attributes to their inputs; a softmax's logits are then read
    mean-normalised by the target (:mod:`seqlift.targets`). Returns a new
    CapturedModel; the given one is left as it is.
    """
    old = captured.module.graph
    graph = torch.fx.Graph()
    graph._codegen = old._codegen  # same inputs and output structure
    env: dict = {}
    graph.graph_copy(old, env)
    old_output = next(n for n in old.nodes if n.op == "output")
    output = graph.output(torch.fx.map_arg(old_output.args[0], lambda n: env[n]))
    module = torch.fx.GraphModule(captured.module, graph)
    flat, spec = torch.utils._pytree.tree_flatten(output.args[0])
    kinds = []
    for i, node in enumerate(flat):
        packet = getattr(getattr(node, "target", None), "overloadpacket", None)
        kind = _FINAL_ACTIVATIONS.get(packet)
        if kind == "softmax":
            dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
            ndim = len(node.meta["val"].shape) if "val" in node.meta else 2
            kind = kind if ndim == 2 and dim in (1, -1) else None
        kinds.append(kind)
        if kind is not None:
            flat[i] = node.args[0]
    output.args = (torch.utils._pytree.tree_unflatten(flat, spec),)
    module.graph.eliminate_dead_code()
    module.recompile()
    held = frozenset(env[n] for n in captured.held)
    return CapturedModel(module=module, input_length=captured.input_length, output_activations=tuple(kinds), held=held)


def normalize_input_weights(captured: CapturedModel) -> CapturedModel:
    """Mean-normalise the weights of convolutions applied to the input across its channels.

    One-hot DNA sums to 1 at every position, so a constant added to a first-layer
    filter across A, C, G, T changes nothing but an offset, yet it leaks into
    contributions against a reference that does not sum to 1 (such as all
    zeros). Each convolution ``conv(x, W, b)`` on the input becomes
    ``conv(x, W - mu, b) + conv(sum_c x, mu)`` with ``mu`` the mean of ``W``
    over input channels: the same function for every input, whose second term
    is held at the input's value for its references (the mean folded into the
    bias, as the DeepLIFT paper's weight normalisation for constrained inputs
    prescribes), so contributions flow through the mean-normalised weights.
    A plain forward pass computes exactly the model's function. Returns a new
    CapturedModel.
    """
    from ..errors import ModelError

    graph = torch.fx.Graph()
    graph._codegen = captured.module.graph._codegen
    env: dict = {}
    out = graph.graph_copy(captured.module.graph, env)
    graph.output(out)
    module = torch.fx.GraphModule(captured.module, graph)
    x = next(n for n in graph.nodes if n.op == "placeholder")
    convs = [
        u
        for u in x.users
        if getattr(u.target, "overloadpacket", None) in (torch.ops.aten.conv1d, torch.ops.aten.convolution)
    ]
    if not convs:
        raise ModelError("--normalize-input-weights needs a model whose first layer is a convolution on the input")
    counts = []
    for i, node in enumerate(convs):
        weight = module.get_parameter(node.args[1].target) if node.args[1].op == "get_attr" else None
        if weight is None:
            raise ModelError("--normalize-input-weights: the first convolution's weight is not a parameter")
        mu = weight.detach().mean(dim=1, keepdim=True)
        module.register_buffer(f"_seqlift_w{i}", weight.detach() - mu)
        module.register_buffer(f"_seqlift_mu{i}", mu)
        with graph.inserting_before(node):
            w = graph.get_attr(f"_seqlift_w{i}")
            m = graph.get_attr(f"_seqlift_mu{i}")
            count = graph.call_function(torch.ops.aten.sum.dim_IntList, (x, [1], True))
            counts.append(count)
            main = graph.call_function(node.target, (x, w) + tuple(node.args[2:]), dict(node.kwargs))
            rest = (None,) + tuple(node.args[3:])
            offset = graph.call_function(node.target, (count, m) + rest, dict(node.kwargs))
            total = graph.call_function(torch.ops.aten.add.Tensor, (main, offset))
        node.replace_all_uses_with(total)
        graph.erase_node(node)
    graph.eliminate_dead_code()
    module.recompile()
    held = frozenset(env[n] for n in captured.held) | frozenset(counts)
    return CapturedModel(
        module=module, input_length=captured.input_length, output_activations=captured.output_activations, held=held
    )


def _drop_guards(module: torch.fx.GraphModule) -> None:
    """Remove the shape-guard call that ``ExportedProgram.module()`` inserts, and metadata assertions.

    The engine checks the input shape itself and feeds inputs and references in
    one batch, so the guard (which would reject nothing useful) is not run.
    Assertions on dtypes and shapes (``aten._assert_tensor_metadata``) return
    nothing and hold for every batch the engine builds.
    """
    graph = module.graph
    for node in list(graph.nodes):
        if node.users:
            continue
        if node.op == "call_module" and node.target == "_guards_fn" or _is_assertion(node):
            graph.erase_node(node)
    module.recompile()


def _is_assertion(node: torch.fx.Node) -> bool:
    """Runtime checks on metadata or shapes (``_assert_tensor_metadata``, ``_assert_scalar``, ...)."""
    name = getattr(node.target, "__name__", "") if node.op == "call_function" else ""
    return name.startswith(("_assert", "sym_constrain_range"))


def active_nodes(captured: CapturedModel) -> set[torch.fx.Node]:
    """Nodes whose value depends on the sequence input.

    Only these need a rule: everything else (parameters, shapes, constants)
    is computed as it is.
    """
    from .rules import SHAPE_ONLY

    active = {captured.input_node}
    for node in captured.module.graph.nodes:
        if (
            node.op in ("call_function", "call_method", "call_module")
            and any(a in active for a in node.all_input_nodes)
            and _holds_tensor(node.meta.get("val"))
            and getattr(node.target, "overloadpacket", None) not in SHAPE_ONLY
        ):
            active.add(node)
    return active


def batch_dims(captured: CapturedModel) -> dict:
    """For each node holding a tensor, the dimension that carries the batch (when it is not 0).

    Read from the symbolic shapes that export records: the dimension whose size
    involves the input's batch size (``s0``, or ``8*s0`` where heads were folded
    into it, batch outermost). Nodes made by :func:`lower` carry it in
    ``meta["seqlift_bdim"]``. Nodes left out have their batch in dimension 0.
    """
    val = captured.input_node.meta.get("val")
    size = val.shape[0] if val is not None and len(val.shape) else None
    symbols = size.node.expr.free_symbols if isinstance(size, torch.SymInt) else set()
    dims = {}
    for node in captured.module.graph.nodes:
        if "seqlift_bdim" in node.meta:
            dims[node] = node.meta["seqlift_bdim"]
            continue
        v = node.meta.get("val")
        if not symbols or not isinstance(v, torch.Tensor):
            continue
        for i, d in enumerate(v.shape):
            if isinstance(d, torch.SymInt) and d.node.expr.free_symbols & symbols:
                if i:
                    dims[node] = i
                break
    return dims


# ---------------------------------------------------------------- lowering to ops with rules

aten = torch.ops.aten


def _softmax(emit, x, dim):
    """``exp(x - c)``, ``c`` and ``sum(exp(x - c))`` with ``c`` the max of ``x`` along ``dim``.

    Every row is shifted by its own max (which takes the max rule), so every
    ``exp`` lies in (0, 1] and its sum in [1, size]: the product rule then adds
    no large terms that cancel, however far the references' logits are from
    the input's. The ``exp`` takes Rescale under every rule, as RevealCancel
    would evaluate it at ``r + Δx⁺``, which overflows where the positive and
    negative parts of a logit's change cancel.
    """
    c = emit(aten.amax.default, x, [dim], True)
    e = emit(aten.exp.default, emit(aten.sub.Tensor, x, c))
    e.meta["seqlift_rule"] = "rescale"
    return e, c, emit(aten.sum.dim_IntList, e, [dim], True)


def _lower_softmax(emit, node):
    x, dim = node.args[0], node.args[1]
    e, _, s = _softmax(emit, x, dim)
    w = emit(aten.mul.Tensor, e, emit(aten.reciprocal.default, s))
    w.meta["seqlift_softmax"] = dim  # the Rescale engine runs the six ops as one (interpreter.softmax_groups)
    return w


def _lower_log_softmax(emit, node):
    x, dim = node.args[0], node.args[1]
    _, c, s = _softmax(emit, x, dim)
    return emit(aten.sub.Tensor, emit(aten.sub.Tensor, x, c), emit(aten.log.default, s))


def _normalise(emit, x, dims, eps):
    """``(x - mean) * rsqrt(var + eps)`` over ``dims``, with its mean and rsqrt (layer norm)."""
    mean = emit(aten.mean.dim, x, dims, True)
    d = emit(aten.sub.Tensor, x, mean)
    var = emit(aten.mean.dim, emit(aten.mul.Tensor, d, d), dims, True)
    rstd = emit(aten.rsqrt.default, emit(aten.add.Tensor, var, eps))
    return emit(aten.mul.Tensor, d, rstd), mean, rstd


def _affine(emit, y, weight, bias):
    if weight is not None:
        y = emit(aten.mul.Tensor, y, weight)
    if bias is not None:
        y = emit(aten.add.Tensor, y, bias)
    return y


def _lower_layer_norm(emit, node):
    """``layer_norm`` and ``native_layer_norm`` (whose outputs are read with getitem)."""
    x, shape = node.args[0], node.args[1]
    weight, bias = (list(node.args[2:4]) + [None, None])[:2]
    eps = node.args[4] if len(node.args) > 4 else node.kwargs.get("eps", 1e-5)
    dims = list(range(-len(shape), 0))
    y, mean, rstd = _normalise(emit, x, dims, eps)
    y = _affine(emit, y, weight, bias)
    return y if node.target._opname == "layer_norm" else (y, mean, rstd)


def _lower_rms_norm(emit, node):
    x, shape = node.args[0], node.args[1]
    weight = node.args[2] if len(node.args) > 2 else node.kwargs.get("weight")
    eps = node.args[3] if len(node.args) > 3 else node.kwargs.get("eps")
    if eps is None:
        eps = torch.finfo(node.meta["val"].dtype).eps if "val" in node.meta else torch.finfo(torch.float32).eps
    dims = list(range(-len(shape), 0))
    ms = emit(aten.mean.dim, emit(aten.mul.Tensor, x, x), dims, True)
    y = emit(aten.mul.Tensor, x, emit(aten.rsqrt.default, emit(aten.add.Tensor, ms, eps)))
    return _affine(emit, y, weight, None)


def _lower_extremum(sign):
    """``maximum(a, b) = (a + b)/2 + |a - b|/2`` (``minimum`` with ``-``): the max rule on ``|a - b|``."""

    def lower(emit, node):
        a, b = node.args[0], node.args[1]
        half = emit(aten.mul.Tensor, emit(aten.add.Tensor, a, b), 0.5)
        spread = emit(aten.mul.Tensor, emit(aten.abs.default, emit(aten.sub.Tensor, a, b)), 0.5 * sign)
        return emit(aten.add.Tensor, half, spread)

    return lower


def _lower_glu(emit, node):
    """``glu(x, dim) = a * sigmoid(b)`` with ``a``, ``b`` the two halves of ``x`` along ``dim``."""
    x = node.args[0]
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", -1)
    if "val" not in x.meta or not isinstance(x.meta["val"].shape[dim], int):
        return None
    half = x.meta["val"].shape[dim] // 2
    a = emit(aten.slice.Tensor, x, dim, 0, half)
    b = emit(aten.slice.Tensor, x, dim, half, 2 * half)
    return emit(aten.mul.Tensor, a, emit(aten.sigmoid.default, b))


def _lower_division(emit, node):
    """``a / b`` with ``b`` depending on the input: ``a * reciprocal(b)``."""
    if node.kwargs.get("rounding_mode") is not None:
        return None
    return emit(aten.mul.Tensor, node.args[0], emit(aten.reciprocal.default, node.args[1]))


#: Ops rewritten into ops with rules before rules are looked up: ``packet -> lower(emit, node)``.
LOWERINGS = {
    aten.softmax: _lower_softmax,
    aten._softmax: _lower_softmax,
    aten._safe_softmax: _lower_softmax,
    aten.log_softmax: _lower_log_softmax,
    aten._log_softmax: _lower_log_softmax,
    aten.layer_norm: _lower_layer_norm,
    aten.native_layer_norm: _lower_layer_norm,
    aten.rms_norm: _lower_rms_norm,
    aten.maximum: _lower_extremum(1),
    aten.fmax: _lower_extremum(1),
    aten.minimum: _lower_extremum(-1),
    aten.fmin: _lower_extremum(-1),
    aten.div: _lower_division,
    aten.true_divide: _lower_division,
    aten.divide: _lower_division,
    aten.glu: _lower_glu,
}

#: Overloads of ops that share a name with a lowered op but are something else (``max.dim`` is a reduction).
_LOWERED_OVERLOADS = {(aten.max, "other"): _lower_extremum(1), (aten.min, "other"): _lower_extremum(-1)}


def _lowering(node, active, dims):
    if node.op != "call_function" or node not in active or not isinstance(node.target, torch._ops.OpOverload):
        return None
    packet = node.target.overloadpacket
    fn = _LOWERED_OVERLOADS.get((packet, node.target._overloadname))
    if fn is not None:
        return fn
    if packet in (aten.div, aten.true_divide, aten.divide):
        return LOWERINGS[packet] if isinstance(node.args[1], torch.fx.Node) and node.args[1] in active else None
    if packet in (aten.softmax, aten._softmax, aten._safe_softmax, aten.log_softmax, aten._log_softmax):
        ndim = len(node.meta["val"].shape) if "val" in node.meta else None
        dim = node.args[1]
        if ndim is not None and dim % ndim == dims.get(node, 0):
            return None  # over the batch: refused by the rule table
    return LOWERINGS.get(packet)


def lower(captured: CapturedModel) -> CapturedModel:
    """Rewrite ops that have no rule of their own into ops that have one, computing the same function.

    Softmax and log-softmax inside the network become ``exp``, sums, a
    reciprocal (or log) and a product; layer norm and RMS norm become means,
    a product, ``rsqrt`` and the affine part; GLU becomes a half times the
    sigmoid of the other half; ``maximum``/``minimum`` of two
    tensors become ``(a + b)/2 ± |a - b|/2``; division by an input-dependent
    value becomes a product with its reciprocal; ``view`` becomes ``reshape``,
    which gives the same values whatever the memory layout that a rule leaves.
    Each new node keeps the module path of the op it replaces. Run after :func:`strip_output_activation`, so a
    final softmax is explained on its logits. Returns a new CapturedModel.
    """
    graph = torch.fx.Graph()
    graph._codegen = captured.module.graph._codegen
    env: dict = {}
    graph.output(graph.graph_copy(captured.module.graph, env))
    module = torch.fx.GraphModule(captured.module, graph)
    held = frozenset(env[n] for n in captured.held)
    result = CapturedModel(
        module=module, input_length=captured.input_length, output_activations=captured.output_activations
    )
    active, dims = active_nodes(result), batch_dims(result)
    for node in list(graph.nodes):
        if node.target in (aten.view.default, aten._unsafe_view.default):
            node.target = aten.reshape.default  # the same values; rules may leave another memory layout
        fn = _lowering(node, active, dims)
        if fn is None:
            continue
        made = []

        def emit(op, *args, node=node, made=made):
            new = graph.call_function(op, args)
            new.meta.update({k: node.meta[k] for k in ("nn_module_stack", "stack_trace") if k in node.meta})
            new.meta["seqlift_bdim"] = dims.get(node, 0)
            made.append(new)
            return new

        with graph.inserting_before(node):
            out = fn(emit, node)
        if out is None:
            continue
        active.update(made)
        if isinstance(out, tuple):
            for user in list(node.users):
                user.replace_all_uses_with(out[user.args[1]])
                graph.erase_node(user)
        else:
            node.replace_all_uses_with(out)
        graph.erase_node(node)
    graph.eliminate_dead_code()
    module.recompile()
    return CapturedModel(
        module=module, input_length=captured.input_length, output_activations=captured.output_activations, held=held
    )


def _holds_tensor(val) -> bool:
    """True for a tensor or a tuple/list holding one; shape queries (SymInt) carry no delta."""
    if val is None:  # no metadata: assume it may carry a delta
        return True
    if isinstance(val, (list, tuple)):
        return any(_holds_tensor(v) for v in val if v is not None)
    return isinstance(val, torch.Tensor)


def op_name(target) -> str:
    """Human-readable name of a graph node's target, e.g. ``aten.relu.default``."""
    if isinstance(target, torch._ops.OpOverload):
        return f"{target.namespace}.{target._opname}.{target._overloadname}"
    if target is operator.getitem:
        return "getitem"
    return getattr(target, "__name__", str(target))


def module_path(node: torch.fx.Node) -> str:
    """Dotted path of the innermost module a graph node came from ('' for the top level)."""
    stack = node.meta.get("nn_module_stack") or {}
    return list(stack.values())[-1][0] if stack else ""


def where(node: torch.fx.Node) -> str:
    """The module path a graph node came from, for error messages."""
    stack = node.meta.get("nn_module_stack") or {}
    if stack:
        path, cls = list(stack.values())[-1]
        cls_name = cls.__name__ if isinstance(cls, type) else str(cls).rsplit(".", 1)[-1]
        return f"{path or 'model'} ({cls_name})"
    return "model.forward"


def _param_dtype(model: torch.nn.Module) -> torch.dtype:
    p = next(iter(model.parameters()), None)
    return p.dtype if p is not None else torch.float32


def _param_device(model: torch.nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")
