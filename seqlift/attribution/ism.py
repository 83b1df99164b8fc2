"""In-silico saturation mutagenesis (ISM) over a captured ATen graph.

Every single-base substitution of every input is scored by the model. The
mutants are batched across positions and inputs. When the graph's first op on
the input is a 1-d convolution, its output is computed once per input and each
mutant's first-layer output is that plus the weight difference at the few
output positions the substitution reaches; only the rest of the graph runs on
the mutants (as fastISM does for the first layer).
"""

from __future__ import annotations

import operator

import numpy as np
import torch
from torch.fx.node import map_arg

from .deeplift import Attributions, select_target
from .gradients import model_inputs, predict
from .graph import CapturedModel

_CONV_1D = (torch.ops.aten.conv1d.default, torch.ops.aten.conv1d.padding, torch.ops.aten.convolution.default)
_SHAPE_OPS = (torch.ops.aten.sym_size.int,)


def ism(
    model,
    X,
    target=0,
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
        function of the output giving shape (N,); see :func:`~.deeplift.select_target`.
    output_index : int, optional
        Element of a tuple output.
    batch_size : int
        Mutants per model call.
    device : str or torch.device
    fast : bool
        Compute a first 1-d convolution on the input once per input and only
        the rest of the graph per mutant, when the graph allows it; the scores
        equal those of ``fast=False`` up to rounding.

    Returns
    -------
    Attributions
        ``hypothetical`` (N, C, L) as above; ``contributions``: ``hypothetical``
        x ``X`` (0 at N columns); ``predictions``: ``f(x)``, shape (N,);
        ``reference_predictions`` of shape (N, 0); ``delta_error`` and
        ``relative_error`` all zero (the method has no completeness property).
    """
    captured, X = model_inputs(model, X, device)
    run = _split_first_conv(captured, X, batch_size) if fast else None
    run = run or (lambda i, b, l: captured.module(_mutants(X, i, b, l)))
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


def _split_first_conv(captured: CapturedModel, X: torch.Tensor, batch_size: int):
    """A function ``(i, b, l) -> output`` for mutants that runs a first 1-d convolution incrementally.

    Returns None unless the input's only use (besides shape queries) is as the
    input of an ungrouped 1-d convolution whose weight and bias are
    parameters. The graph is split at that node: its value for the mutants is
    given, and a :class:`torch.fx.Interpreter` runs the nodes after it.
    """
    graph_module = captured.module
    x_node = captured.input_node
    users = [u for u in x_node.users if u.target not in _SHAPE_OPS]
    if len(users) != 1 or users[0].target not in _CONV_1D:
        return None
    conv = users[0]
    args = conv.normalized_arguments(graph_module, normalize_to_only_use_kwargs=True).kwargs
    if (
        conv.args[0] is not x_node
        or args.get("transposed", False)
        or args["groups"] != 1
        or any(isinstance(a, torch.fx.Node) and a.op != "get_attr" for a in (args["weight"], args["bias"]))
    ):
        return None
    nodes = [n for n in (args["weight"], args["bias"]) if isinstance(n, torch.fx.Node)]
    params = {n: operator.attrgetter(n.target)(graph_module) for n in nodes}
    weight = params[args["weight"]]
    if weight.dim() != 3:
        return None
    conv_args, conv_kwargs = map_arg((conv.args, conv.kwargs), params.get)  # the input becomes None
    width, stride, dilation = weight.shape[2], args["stride"][0], args["dilation"][0]
    padding = args["padding"]
    left = {"valid": 0, "same": dilation * (width - 1) // 2}[padding] if isinstance(padding, str) else padding[0]
    # Input position l meets tap k of the output at stride * position = l + left - k * dilation.
    taps = left - dilation * torch.arange(width, device=X.device)
    change_per_base = weight.permute(1, 2, 0).reshape(weight.shape[1], -1)  # (C, K * O)
    rest = torch.fx.Interpreter(graph_module)
    # Each input has at least (C - 1) * L mutants, so a batch spans at most this many inputs.
    span = min(len(X), batch_size // max(1, (X.shape[1] - 1) * X.shape[2]) + 2)
    start, first = 0, X[:0]

    def run(i, b, l):
        nonlocal start, first
        if int(i[-1]) >= start + len(first):  # first-layer outputs of the inputs from this batch's first on
            start = int(i[0])
            first = conv.target(X[start : start + span], *conv_args[1:], **conv_kwargs)
        h = first[i - start]
        delta = torch.nn.functional.one_hot(b, X.shape[1]).to(X.dtype) - X[i, :, l]  # (M, C)
        j = l[:, None] + taps  # (M, K)
        ok = (j >= 0) & (j % stride == 0) & (j // stride < h.shape[2])
        change = (delta @ change_per_base).view(len(i), width, -1)  # (M, K, O)
        m = torch.arange(len(i), device=X.device)[:, None].expand_as(j)
        h.transpose(1, 2).index_put_((m[ok], j[ok] // stride), change[ok], accumulate=True)
        stand_in = X.new_zeros(()).expand((len(i),) + tuple(X.shape[1:]))  # only its shape is read
        return rest.run(stand_in, initial_env={conv: h})

    return run
