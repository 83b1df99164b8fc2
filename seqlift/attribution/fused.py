"""A softmax inside the network under Rescale, as one op instead of four.

:func:`.graph.lower` writes ``softmax(x)`` as ``u = x - max(x)`` (the max rule)
followed by ``exp(u) * reciprocal(sum(exp(u)))``. With the split rules those
four ops run one by one. Under Rescale, this module runs them as one op whose
backward gives exactly their multipliers, in fewer passes over what is often
the largest tensor of an attention model (rows x heads x L x L):

- ``e = exp(u)``: Rescale, ``(e_x - e_r) / (u_x - u_r)``, the derivative at the
  midpoint where ``|u_x - u_r| < eps``;
- ``s = sum(e)``: linear;
- ``1 / s``: Rescale, ``(1/s_x - 1/s_r) / (s_x - s_r)``;
- ``e * (1 / s)``: the product rule, ``(1/s)̅`` for ``e`` and ``e̅`` for ``1/s``
  (midpoints of input and reference).
"""

from __future__ import annotations

import torch

from .split import rescale_multiplier


def _pairs(t: torch.Tensor, n: int):
    """Input rows (n, 1, ...) and reference rows (n, k, ...) of a paired batch."""
    return t[:n].unsqueeze(1), t[n:].unflatten(0, (n, -1))


def _reciprocal_derivative(t):
    return -torch.reciprocal(t * t)


def _exp_multiplier(ux, ur, ex, er, eps):
    """``rescale_multiplier`` for ``exp``, in fewer passes: no test for whether any ``|Δu|`` is small,
    as there nearly always is one (where input and reference peak at the same place, ``Δu = 0``)."""
    du = ux - ur
    m = torch.sub(ex, er).div_(du)
    small = ~(du.abs_() >= eps)
    return torch.where(small, torch.exp((ux + ur) * 0.5), m)


class _PairedSoftmax(torch.autograd.Function):
    """``exp(u) * reciprocal(sum(exp(u), dim))`` on a paired batch (rows first); backward: Rescale."""

    @staticmethod
    def forward(ctx, u, dim, n, eps):
        e = torch.exp(u)
        s = e.sum(dim, keepdim=True)
        ctx.save_for_backward(u, e, s)
        ctx.dim, ctx.n, ctx.eps = dim, n, eps
        return e * torch.reciprocal(s)

    @staticmethod
    def backward(ctx, grad):
        u, e, s = ctx.saved_tensors
        n, eps, dim = ctx.n, ctx.eps, ctx.dim
        dim = dim % u.dim() + 1  # in the (n, k, ...) layout of the pairs
        (ux, ur), (ex, er), (sx, sr) = _pairs(u, n), _pairs(e, n), _pairs(s, n)
        rx, rr = torch.reciprocal(sx), torch.reciprocal(sr)
        g = grad[n:].unflatten(0, (n, -1))
        # Product e * (1/s): each operand gets the other's midpoint.
        g_r = (g * torch.lerp(er, ex.expand_as(er), 0.5)).sum(dim, keepdim=True)
        g_s = g_r * rescale_multiplier(sx, sr, rx, rr, eps, _reciprocal_derivative)
        g_e = (g * torch.lerp(rr, rx.expand_as(rr), 0.5)).add_(g_s)
        g_u = g_e.mul_(_exp_multiplier(ux, ur, ex, er, eps))
        out = torch.zeros_like(u)
        out[n:] = g_u.flatten(0, 1)
        return out, None, None, None


def softmax_rule(rule, op, args, kwargs, dim, rows):
    """The fused softmax node (``aten._softmax(u, dim, half_to_float)``) on the paired batch."""
    u, softmax_dim = args[0], args[1]
    softmax_dim %= u.dim()
    if u.shape[0] == rows:
        return _PairedSoftmax.apply(u, softmax_dim, rule.n, rule.eps)
    # The batch folded with other dims (attention heads, batch outermost): unfold it first.
    folded = u.unflatten(0, (rows, -1))
    out = _PairedSoftmax.apply(folded, softmax_dim + 1, rule.n, rule.eps)  # never over the batch (lower)
    return out.flatten(0, 1)
