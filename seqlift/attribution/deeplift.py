"""DeepLIFT over a captured ATen graph.

Inputs and their references run through the model in one batch laid out as
``[x_1 .. x_n, r_11 .. r_1k, r_21 .. r_nk]``, so each input's activations are
computed once, not once per reference. Linear ops run as they are; each
nonlinearity's backward is replaced by the rule's multiplier, computed between
reference row ``r_ij`` and its input row ``x_i``. Back-propagating the target
from the reference rows then gives, at the input, the multipliers ``m_ij`` of
every (input, reference) pair, and the contributions ``m_ij * (x_i - r_ij)``
sum to ``f(x_i) - f(r_ij)`` (summation-to-delta).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
import torch

from ..errors import ModelError, UnsupportedOpError
from .graph import CapturedModel, active_nodes, capture, op_name, where
from .rules import OpRule, lookup


def _pairs(t: torch.Tensor, n: int):
    """Input rows (n, 1, ...) and reference rows (n, k, ...) of a paired batch."""
    return t[:n].unsqueeze(1), t[n:].reshape((n, -1) + tuple(t.shape[1:]))


def _paired_grad(a: torch.Tensor, n: int):
    """Gradient buffer for the whole batch: zero input rows, and a (n, k, ...) view of the reference rows."""
    out = a.new_empty(a.shape)
    out[:n] = 0
    return out, out[n:].view((n, -1) + tuple(a.shape[1:]))


#: Exact derivatives for the Rescale fallback; other ops use autograd.
_DERIVATIVES = {
    torch.ops.aten.relu.default: lambda t: (t > 0).to(t.dtype),
    torch.ops.aten.abs.default: torch.sign,
}


def _derivative(fn, target, t):
    known = _DERIVATIVES.get(target)
    if known is not None:
        return known(t)
    with torch.enable_grad():
        t = t.detach().requires_grad_(True)
        (d,) = torch.autograd.grad(fn(t).sum(), t)
    return d


class _PairedRescale(torch.autograd.Function):
    """Elementwise ``fn`` whose backward is the Rescale multiplier ``dy/dx``.

    ``a`` holds ``n`` input rows followed by ``n * k`` reference rows. The
    multiplier of reference row ``(i, j)`` is ``(fn(x_i) - fn(r_ij)) / (x_i - r_ij)``,
    falling back to the derivative at the midpoint where ``|x_i - r_ij| < eps``.
    Input rows get no gradient (only the pairs' multipliers are wanted).
    """

    @staticmethod
    def forward(ctx, a, fn, target, n, eps):
        y = fn(a)
        ctx.fn, ctx.target, ctx.n, ctx.eps = fn, target, n, eps
        ctx.save_for_backward(a, y)
        return y

    @staticmethod
    def backward(ctx, grad):
        a, y = ctx.saved_tensors
        ax, ar = _pairs(a, ctx.n)
        yx, yr = _pairs(y, ctx.n)
        dx = ax - ar
        small = dx.abs() < ctx.eps
        m = torch.sub(yx, yr).div_(dx.masked_fill_(small, 1.0))
        if small.any():
            mid = (ax.expand_as(ar)[small] + ar[small]) * 0.5
            m[small] = _derivative(ctx.fn, ctx.target, mid)
        out, refs = _paired_grad(a, ctx.n)
        torch.mul(grad[ctx.n :].view(m.shape), m, out=refs)
        return out, None, None, None, None


class _PairedMax(torch.autograd.Function):
    """Max of ``a`` at ``index`` whose backward splits each window's delta exactly.

    ``a`` has shape (B, ..., S) and ``index`` (B, ..., O): for every output, the
    position in the last dim where that row peaks. For reference row ``(i, j)``,
    with ``p`` where input ``i`` peaks and ``q`` where the reference peaks,
    ``max = max(v[p], v[q])`` for both rows, and ``max(u, v) = (u + v)/2 + |u - v|/2``
    with the Rescale multiplier on ``|.|`` gives multipliers for ``p`` and ``q``.
    """

    @staticmethod
    def forward(ctx, a, index, n, eps):
        ctx.n, ctx.eps = n, eps
        ctx.save_for_backward(a, index)
        return a.gather(-1, index)

    @staticmethod
    def backward(ctx, grad):
        a, index = ctx.saved_tensors
        ax, ar = _pairs(a, ctx.n)
        ix, ir = _pairs(index, ctx.n)
        ix = ix.expand_as(ir)
        ax = ax.expand((-1, ir.shape[1]) + tuple(ax.shape[2:]))
        dx = ax.gather(-1, ix) - ax.gather(-1, ir)  # >= 0: input's peak minus its value at the reference's peak
        dr = ar.gather(-1, ix) - ar.gather(-1, ir)  # <= 0
        den = dx - dr
        small = den.abs() < ctx.eps
        m_abs = torch.where(small, torch.sign(dx + dr), (dx.abs() - dr.abs()) / den.masked_fill(small, 1.0))
        g = grad[ctx.n :].reshape(ir.shape) * 0.5
        out, refs = _paired_grad(a, ctx.n)
        refs.zero_()
        refs.scatter_add_(-1, ix, g * (1 + m_abs))
        refs.scatter_add_(-1, ir, g * (1 - m_abs))
        return out, None, None, None


class Rescale:
    """The Rescale rule for a paired batch of ``n`` inputs followed by their references."""

    def __init__(self, n: int, eps: float):
        self.n, self.eps = n, eps

    def elementwise(self, fn, a, target=None):
        """``fn(a)`` elementwise, with the Rescale multiplier as its backward."""
        return _PairedRescale.apply(a, fn, target, self.n, self.eps)

    def max(self, a, index):
        """Max of ``a`` (B, ..., S) at ``index`` (B, ..., O), exact under Rescale."""
        return _PairedMax.apply(a, index, self.n, self.eps)


#: Rules by name: ``cls(n_inputs, eps)`` with ``elementwise`` and ``max``.
RULE_NAMES = {"rescale": Rescale}


class Attributions(NamedTuple):
    """Result of :func:`deeplift` for ``N`` inputs of shape ``(C, L)`` and ``K`` references each.

    Attributes
    ----------
    hypothetical : np.ndarray, shape=(N, C, L)
        Hypothetical contributions ``m[c] - sum_c' m[c'] r[c']``, averaged over
        references: what each base would contribute if it stood at that position.
    contributions : np.ndarray, shape=(N, C, L)
        DeepLIFT contributions ``m * (x - r)``, averaged over references.
    predictions : np.ndarray, shape=(N,)
        Target value for each input.
    reference_predictions : np.ndarray, shape=(N, K)
        Target value for each reference.
    delta_error : np.ndarray, shape=(N,)
        Largest absolute summation-to-delta error over the references:
        ``max_j |sum(m_ij * (x_i - r_ij)) - (f(x_i) - f(r_ij))|``.
    relative_error : np.ndarray, shape=(N,)
        ``delta_error`` divided by ``max_j |f(x_i) - f(r_ij)|`` (0 where that is 0).
    """

    hypothetical: np.ndarray
    contributions: np.ndarray
    predictions: np.ndarray
    reference_predictions: np.ndarray
    delta_error: np.ndarray
    relative_error: np.ndarray


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

    @property
    def input_length(self) -> int | None:
        return self.captured.input_length

    def forward(self, x: torch.Tensor, rule=None):
        """Run the graph on ``x``; with a ``rule`` object, nonlinearities follow it."""
        return _Interpreter(self.captured.module, self.plan, rule).run(x)

    def run(self, X, references, target: int | Callable = 0, output_index: int | None = None) -> Attributions:
        """DeepLIFT for one batch.

        Parameters
        ----------
        X : array-like, shape=(N, C, L)
        references : array-like, shape=(N, K, C, L)
        target, output_index
            See :func:`select_target`.
        """
        X, R = self._tensor(X), self._tensor(references)
        n, k = R.shape[:2]
        batch = torch.cat([X, R.reshape((n * k,) + tuple(R.shape[2:]))]).requires_grad_(True)
        with torch.enable_grad():
            out = self.forward(batch, RULE_NAMES[self.rule](n, self.eps))
            y = select_target(out, target, output_index)
            (m,) = torch.autograd.grad(y[n:].sum(), batch)
        with torch.no_grad():
            y = y.detach()
            m = m[n:].reshape(R.shape)
            diff = X.unsqueeze(1) - R
            contrib = m * diff
            hyp = m - (m * R).sum(dim=2, keepdim=True)
            pred, ref_pred = y[:n], y[n:].reshape(n, k)
            delta = pred.unsqueeze(1) - ref_pred
            err = (contrib.sum(dim=tuple(range(2, contrib.dim()))) - delta).abs().amax(dim=1)
            scale = delta.abs().amax(dim=1)
            rel = torch.where(scale > 0, err / torch.where(scale > 0, scale, torch.ones_like(scale)), torch.zeros_like(err))
        return Attributions(
            hypothetical=hyp.mean(dim=1).cpu().numpy(),
            contributions=contrib.mean(dim=1).cpu().numpy(),
            predictions=pred.cpu().numpy(),
            reference_predictions=ref_pred.cpu().numpy(),
            delta_error=err.cpu().numpy(),
            relative_error=rel.cpu().numpy(),
        )

    def _tensor(self, a) -> torch.Tensor:
        a = torch.as_tensor(a if torch.is_tensor(a) else np.asarray(a))
        dtype = self.dtype or (a.dtype if a.is_floating_point() else torch.float32)
        return a.to(self.device, dtype)

    def predict(self, X, target: int | Callable = 0, output_index: int | None = None) -> np.ndarray:
        """Target values for ``X`` of shape (N, C, L): a plain forward pass."""
        X = self._tensor(X)
        with torch.no_grad():
            return select_target(self.forward(X), target, output_index).cpu().numpy()


class _Interpreter(torch.fx.Interpreter):
    def __init__(self, module, plan, rule):
        super().__init__(module, garbage_collect_values=True)
        self.plan = plan
        self.rule = rule

    def run_node(self, node):
        op_rule: OpRule | None = self.plan.get(node)
        if self.rule is None or op_rule is None or op_rule.kind == "linear":
            return super().run_node(node)
        args, kwargs = self.fetch_args_kwargs_from_env(node)
        if op_rule.kind == "elementwise":
            rest = args[1:]
            return self.rule.elementwise(lambda t: node.target(t, *rest, **kwargs), args[0], node.target)
        return op_rule.apply(self.rule, node.target, args, kwargs)


def select_target(output, target: int | Callable = 0, output_index: int | None = None) -> torch.Tensor:
    """The scalar per example that is explained.

    Parameters
    ----------
    output : torch.Tensor or tuple of torch.Tensor
        The model's output; a tensor of shape (B,) or (B, T).
    target : int or callable
        Column ``T`` to explain, or ``target(output) -> (B,)``.
    output_index : int, optional
        Which element of a tuple/list output to use.

    Returns
    -------
    torch.Tensor, shape=(B,)
    """
    if isinstance(output, (tuple, list)):
        if output_index is None:
            raise ModelError(f"the model returns {len(output)} outputs; choose one with --output-index")
        if not 0 <= output_index < len(output):
            raise ModelError(f"--output-index {output_index} is out of range: the model returns {len(output)} outputs")
        output = output[output_index]
    elif output_index not in (None, 0):
        raise ModelError(f"--output-index {output_index} given but the model returns a single tensor")
    if callable(target):
        return target(output)
    if output.dim() == 1:
        if target not in (0, None):
            raise ModelError(f"--target {target} is out of range: the model output has shape {tuple(output.shape)}")
        return output
    if output.dim() != 2:
        raise ModelError(
            f"the model output has shape {tuple(output.shape)}; seqlift explains outputs of shape (N,) or (N, T)"
        )
    if not 0 <= target < output.shape[1]:
        raise ModelError(f"--target {target} is out of range: the model has {output.shape[1]} outputs (0..{output.shape[1] - 1})")
    return output[:, target]


def prepare(
    model,
    length: int | None = None,
    rule: str = "rescale",
    allow_unsupported: bool = False,
    eps: float = 1e-6,
    device: str | torch.device = "cpu",
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

    Returns
    -------
    Engine
    """
    if rule not in RULE_NAMES:
        raise ModelError(f"unknown rule {rule!r}; choose one of {', '.join(RULE_NAMES)}")
    captured = model if isinstance(model, CapturedModel) else capture(model, length)
    device = torch.device(device)
    captured.module.to(device)
    active = active_nodes(captured)
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
    if unsupported:
        if not allow_unsupported:
            raise UnsupportedOpError(
                f"{unsupported[0]}; the model has {len(unsupported)} op(s) without a rule; "
                "use --allow-unsupported to treat them as linear (gradient) with a warning"
            )
        warnings.warn(
            "treated as linear (gradient), so summation-to-delta may fail: " + "; ".join(unsupported),
            stacklevel=2,
        )
    params = list(captured.module.parameters()) + list(captured.module.buffers())
    dtype = next((p.dtype for p in params if p.is_floating_point()), None)
    return Engine(captured=captured, plan=plan, rule=rule, eps=eps, device=device, dtype=dtype)


def deeplift(
    model,
    X,
    references,
    target: int | Callable = 0,
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
    engine = model if isinstance(model, Engine) else prepare(
        model, X.shape[-1], rule=rule, allow_unsupported=allow_unsupported, device=device
    )
    parts = [engine.run(X[i : i + batch_size], R[i : i + batch_size], target, output_index) for i in range(0, len(X), batch_size)]
    return Attributions(*(np.concatenate(field) for field in zip(*parts)))


__all__ = ["Attributions", "Engine", "deeplift", "prepare", "select_target", "op_name"]
