"""Gradient methods: saliency, gradient x input and integrated gradients.

They run the same captured ATen graph as DeepLIFT (:func:`.graph.capture`), as
a plain forward with autograd, so any op the graph holds is allowed, and they
return the same :class:`~.result.Attributions` so results are stored alike.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ModelError, ReferencesError, UsageError
from ..targets import TargetLike, select_target
from .graph import ArrayOrTensor, CapturedModel, ModelLike, capture
from .result import Attributions, from_multipliers


def _gauss_legendre(steps: int):
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    return 0.5 * (1 + nodes), 0.5 * weights


def _trapezoid(steps: int):
    return np.linspace(0.0, 1.0, steps), np.r_[0.5, np.ones(steps - 2), 0.5] / (steps - 1)


#: Integration rules for :func:`integrated_gradients`: ``steps -> (points, weights)`` on [0, 1].
QUADRATURES = {"gausslegendre": _gauss_legendre, "riemann_trapezoid": _trapezoid}


def as_captured(model: ModelLike, length: int | None = None, device: str | torch.device = "cpu") -> CapturedModel:
    """The captured graph of ``model``, on ``device``, so a pipeline can capture once.

    Parameters
    ----------
    model : torch.nn.Module, torch.export.ExportedProgram or CapturedModel
        A model taking one tensor of shape (N, 4, L); a captured model is used
        as it is (its forward is the model's, including any final activation).
    length : int, optional
        Input length ``L``; needed to capture an ``nn.Module``, and checked
        against the length a program was captured with.
    device : str or torch.device

    Returns
    -------
    CapturedModel
    """
    captured = model if isinstance(model, CapturedModel) else capture(model, length)
    if length is not None and captured.input_length not in (None, length):
        raise ModelError(
            f"inputs have length {length} but the model takes length {captured.input_length}; "
            f"use --window {captured.input_length}"
        )
    captured.module.to(torch.device(device))
    return captured


def model_inputs(
    model: ModelLike, X: ArrayOrTensor, device: str | torch.device = "cpu"
) -> tuple[CapturedModel, torch.Tensor]:
    """The captured model (see :func:`as_captured`) and ``X`` on its device, in its parameters' dtype.

    Parameters
    ----------
    model : torch.nn.Module, torch.export.ExportedProgram or CapturedModel
    X : array-like, shape=(N, C, L)
    device : str or torch.device

    Returns
    -------
    captured : CapturedModel
    X : torch.Tensor, shape=(N, C, L)
    """
    X = torch.as_tensor(X)
    if X.dim() != 3:
        raise UsageError(f"inputs have shape {tuple(X.shape)}; expected one-hot sequences of shape (N, 4, L)")
    captured = as_captured(model, X.shape[-1], device)
    params = [p for p in list(captured.module.parameters()) + list(captured.module.buffers()) if p.is_floating_point()]
    dtype = params[0].dtype if params else X.dtype if X.is_floating_point() else torch.float32
    return captured, X.to(torch.device(device), dtype)


def predict(
    captured: CapturedModel,
    X: torch.Tensor,
    target: TargetLike = 0,
    output_index: int | None = None,
    batch_size: int = 256,
) -> torch.Tensor:
    """Target values of a plain forward pass.

    Parameters
    ----------
    captured : CapturedModel
    X : torch.Tensor, shape=(N, C, L)
        On the model's device, in its dtype (see :func:`model_inputs`).
    target, output_index
        See :func:`seqlift.targets.select_target`.
    batch_size : int
        Rows per model call.

    Returns
    -------
    torch.Tensor, shape=(N,)
    """
    with torch.no_grad():
        parts = [captured.module(X[i : i + batch_size]) for i in range(0, len(X), batch_size)]
        return torch.cat([select_target(out, target, output_index) for out in parts])


def _gradient(captured: CapturedModel, x: torch.Tensor, target, output_index):
    """Target values of the rows of ``x`` and the gradient of each w.r.t. its row."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        y = select_target(captured.module(x), target, output_index)
        (g,) = torch.autograd.grad(y.sum(), x)
    return y.detach(), g


def saliency(
    model: ModelLike,
    X: ArrayOrTensor,
    target: TargetLike = 0,
    output_index: int | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> Attributions:
    """Gradient of the target with respect to the input (signed, not its absolute value).

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
        Inputs per model call.
    device : str or torch.device

    Returns
    -------
    Attributions
        ``hypothetical``: the gradient, shape (N, C, L); ``contributions``:
        gradient x ``X``; ``predictions`` (N,); ``reference_predictions`` of
        shape (N, 0); ``delta_error`` and ``relative_error`` all zero (the
        method has no completeness property).
    """
    captured, X = model_inputs(model, X, device)
    parts = [_gradient(captured, X[i : i + batch_size], target, output_index) for i in range(0, len(X), batch_size)]
    pred, grad = (torch.cat(t) for t in zip(*parts))
    pred = pred.cpu().numpy()
    return Attributions(
        hypothetical=grad.cpu().numpy(),
        contributions=(grad * X).cpu().numpy(),
        predictions=pred,
        reference_predictions=np.zeros((len(pred), 0), pred.dtype),
        delta_error=np.zeros_like(pred),
        relative_error=np.zeros_like(pred),
    )


def gradient_x_input(
    model: ModelLike,
    X: ArrayOrTensor,
    target: TargetLike = 0,
    output_index: int | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> Attributions:
    """Gradient x input: the gradient of the target times the one-hot input.

    The scores are those of :func:`saliency` (``hypothetical`` is the gradient,
    ``contributions`` the gradient x ``X``); this is the entry point for the
    method of that name. Parameters and return value as in :func:`saliency`.
    """
    return saliency(model, X, target, output_index, batch_size, device)


def integrated_gradients(
    model: ModelLike,
    X: ArrayOrTensor,
    references: ArrayOrTensor,
    target: TargetLike = 0,
    steps: int = 50,
    method: str = "gausslegendre",
    output_index: int | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> Attributions:
    """Integrated gradients from each reference to the input, averaged over references.

    For input ``x`` and reference ``r`` the path-averaged gradient is
    ``g = sum_s w_s * grad f(r + a_s (x - r))`` over the quadrature's points
    ``a_s`` and weights ``w_s``; the contributions ``(x - r) * g`` sum to
    about ``f(x) - f(r)`` (completeness).

    Parameters
    ----------
    model : torch.nn.Module, torch.export.ExportedProgram or CapturedModel
        A model taking one tensor of shape (N, C, L).
    X : array-like, shape=(N, C, L)
        One-hot DNA, channels A, C, G, T.
    references : array-like, shape=(N, K, C, L) or (N, C, L)
        ``K`` baselines per input; a 3-d array is one baseline per input.
    target : int, seqlift.targets.Target or callable
        Output column to explain, a :class:`~seqlift.targets.Target`, or a
        function of the output giving shape (N,); see :func:`seqlift.targets.select_target`.
    steps : int
        Number of points on each path.
    method : str
        ``gausslegendre`` (Gauss-Legendre nodes on [0, 1], as captum's default)
        or ``riemann_trapezoid`` (the trapezoid rule on ``steps`` evenly spaced
        points including both ends).
    output_index : int, optional
        Element of a tuple output.
    batch_size : int
        Path points (model rows) per model call.
    device : str or torch.device

    Returns
    -------
    Attributions
        ``contributions``: ``(x - r) * g`` averaged over references, shape
        (N, C, L); ``hypothetical``: ``g - sum_c g[c] r[c]`` at each position,
        averaged over references, shape (N, C, L); ``predictions`` (N,);
        ``reference_predictions`` (N, K); ``delta_error``: the largest
        completeness error over references,
        ``max_j |sum((x - r_j) * g_j) - (f(x) - f(r_j))|``; ``relative_error``:
        that divided by ``max_j |f(x) - f(r_j)|`` (0 where that is 0).
    """
    if method not in QUADRATURES:
        raise UsageError(f"unknown integration method {method!r}; choose one of {', '.join(QUADRATURES)}")
    if steps < (2 if method == "riemann_trapezoid" else 1):
        raise UsageError(f"--steps {steps} is too small for {method}; use at least 2 (50 is usual)")
    captured, X = model_inputs(model, X, device)
    R = torch.as_tensor(references).to(X.device, X.dtype)
    R = R.unsqueeze(1) if R.dim() == 3 else R
    if R.dim() != 4 or len(R) != len(X) or R.shape[1] == 0 or R.shape[2:] != X.shape[1:]:
        raise ReferencesError(
            f"references of shape {tuple(R.shape)} do not fit inputs of shape {tuple(X.shape)}; "
            "expected (N, K, C, L) or (N, C, L)"
        )
    n, k = R.shape[:2]
    R = R.reshape((n * k,) + tuple(X.shape[1:]))
    alphas, weights = (torch.as_tensor(a, dtype=X.dtype, device=X.device) for a in QUADRATURES[method](steps))
    m = torch.zeros_like(R)
    total = len(R) * steps
    for start in range(0, total, batch_size):
        row = torch.arange(start, min(start + batch_size, total), device=X.device)
        pair, step = row // steps, row % steps
        r, a = R[pair], alphas[step].view(-1, 1, 1)
        _, g = _gradient(captured, r + a * (X[pair // k] - r), target, output_index)
        m.index_add_(0, pair, g * weights[step].view(-1, 1, 1))
    pred = predict(captured, X, target, output_index, batch_size)
    ref_pred = predict(captured, R, target, output_index, batch_size).reshape(n, k)
    pairs = (n, k) + tuple(X.shape[1:])
    return path_attributions(X, R.reshape(pairs), m.reshape(pairs), pred, ref_pred)


def path_attributions(
    X: torch.Tensor, R: torch.Tensor, m: torch.Tensor, pred: torch.Tensor, ref_pred: torch.Tensor
) -> Attributions:
    """Attributions from path-averaged gradients ``m`` (N, K, C, L) used as multipliers."""
    return from_multipliers(X, R, m, pred, ref_pred)
