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


def capture(model, length: int | None = None, channels: int = 4) -> CapturedModel:
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
    val = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == user_inputs[0].arg.name).meta.get("val")
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
    module = program.module()
    _drop_guards(module)
    return CapturedModel(module=module, input_length=input_length)


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
    convs = [u for u in x.users if getattr(u.target, "overloadpacket", None) in (torch.ops.aten.conv1d,
                                                                              torch.ops.aten.convolution)]
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
    return CapturedModel(module=module, input_length=captured.input_length,
                         output_activations=captured.output_activations, held=held)


def _drop_guards(module: torch.fx.GraphModule) -> None:
    """Remove the shape-guard call that ``ExportedProgram.module()`` inserts.

    The engine checks the input shape itself and feeds inputs and references in
    one batch, so the guard (which would reject nothing useful) is not run.
    """
    graph = module.graph
    for node in list(graph.nodes):
        if node.op == "call_module" and node.target == "_guards_fn" and not node.users:
            graph.erase_node(node)
    module.recompile()


def active_nodes(captured: CapturedModel) -> set[torch.fx.Node]:
    """Nodes whose value depends on the sequence input.

    Only these need a rule: everything else (parameters, shapes, constants)
    is computed as it is.
    """
    active = {captured.input_node}
    for node in captured.module.graph.nodes:
        if (
            node.op in ("call_function", "call_method", "call_module")
            and any(a in active for a in node.all_input_nodes)
            and _holds_tensor(node.meta.get("val"))
        ):
            active.add(node)
    return active


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
