"""Derivatives of elementwise ops, for the Rescale and RevealCancel multipliers' limits.

Where an input and its reference are closer than ``eps``, a multiplier
``Δy / Δx`` falls back to the derivative at their midpoint. :data:`DERIVATIVES`
writes out the derivatives of the commonest ops; :func:`derivative` takes the
others (or all, when no op is named) by autograd.
"""

from __future__ import annotations

import torch

aten = torch.ops.aten

#: Exact derivatives of elementwise ATen ops, by overload.
DERIVATIVES = {
    aten.relu.default: lambda t: (t > 0).to(t.dtype),
    aten.abs.default: torch.sign,
    aten.exp.default: torch.exp,
    aten.sigmoid.default: lambda t: torch.sigmoid(t) * torch.sigmoid(-t),
    aten.tanh.default: lambda t: 1 - torch.tanh(t) ** 2,
    aten.reciprocal.default: lambda t: -torch.reciprocal(t * t),
    aten.rsqrt.default: lambda t: -0.5 * torch.rsqrt(t) / t,
}


def derivative(fn, t: torch.Tensor, target=None) -> torch.Tensor:
    """Derivative of the elementwise ``fn`` at ``t``: from :data:`DERIVATIVES` when ``target``, the ATen op
    ``fn`` applies, is there; otherwise by autograd."""
    known = DERIVATIVES.get(target)
    if known is not None:
        return known(t)
    with torch.enable_grad():
        t = t.detach().requires_grad_(True)
        (d,) = torch.autograd.grad(fn(t).sum(), t)
    return d
