"""What the attribution methods return: :class:`Attributions`, and how DeepLIFT's multipliers become them.

DeepLIFT, the gradient methods and ISM all return :class:`Attributions`, so
their results are stored alike. :func:`from_multipliers` turns the
multipliers of every (input, reference) pair into contributions,
hypothetical contributions and summation-to-delta errors.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch


class Attributions(NamedTuple):
    """Scores of ``N`` inputs of shape ``(C, L)``, against ``K`` references each (none for ISM and saliency).

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
        ``delta_error`` divided by ``max(max_j |f(x_i) - f(r_ij)|, floor)``, with
        ``floor = DELTA_FLOOR * max(1, |f(x_i)|)``: where the output barely moves,
        float32 rounding is measured against the floor, not against a tiny delta.
    hypothetical_positive, hypothetical_negative : np.ndarray, shape=(N, C, L), or None
        With ``split_signs``: the hypothetical contributions to the positive and
        to the negative part of the target's delta (they add up to ``hypothetical``).
    """

    hypothetical: np.ndarray
    contributions: np.ndarray
    predictions: np.ndarray
    reference_predictions: np.ndarray
    delta_error: np.ndarray
    relative_error: np.ndarray
    hypothetical_positive: np.ndarray | None = None
    hypothetical_negative: np.ndarray | None = None


#: Relative summation-to-delta errors are taken against ``max(|Δf|, DELTA_FLOOR * max(1, |f(x)|))``.
DELTA_FLOOR = 1e-3


def from_multipliers(X, R, m_pos, pred, ref_pred, m_neg=None, halves=()) -> Attributions:
    """Attributions from the multipliers of each (input, reference) pair.

    Parameters
    ----------
    X : torch.Tensor, shape=(N, C, L)
    R : torch.Tensor, shape=(N, K, C, L)
    m_pos : torch.Tensor, shape=(N, K, C, L)
        Multipliers of positive differences ``x - r`` (of all differences when
        ``m_neg`` is None): contributions are ``m * (x - r)``.
    pred : torch.Tensor, shape=(N,)
    ref_pred : torch.Tensor, shape=(N, K)
    m_neg : torch.Tensor, shape=(N, K, C, L), optional
        Multipliers of negative differences (split rules).
    halves : sequence of (m_pos, m_neg), optional
        Multipliers of the positive and of the negative part of the target's delta.

    Returns
    -------
    Attributions
        Hypothetical contributions and contributions averaged over references,
        and the summation-to-delta errors.
    """
    with torch.no_grad():
        diff = X.unsqueeze(1) - R
        if m_neg is None:
            contrib = m_pos * diff
        else:
            contrib = m_pos * diff.clamp(min=0) + m_neg * diff.clamp(max=0)
        hyp = _hypothetical(m_pos, m_neg, R)
        delta = pred.unsqueeze(1) - ref_pred
        err = (contrib.sum(dim=tuple(range(2, contrib.dim()))) - delta).abs().amax(dim=1)
        floor = DELTA_FLOOR * pred.abs().clamp(min=1)
        scale = torch.maximum(delta.abs().amax(dim=1), floor)
        rel = err / scale
        halves = [
            _hypothetical(mp.reshape(R.shape), mn.reshape(R.shape), R).mean(dim=1).cpu().numpy() for mp, mn in halves
        ]
    return Attributions(
        hypothetical=hyp.mean(dim=1).cpu().numpy(),
        contributions=contrib.mean(dim=1).cpu().numpy(),
        predictions=pred.cpu().numpy(),
        reference_predictions=ref_pred.cpu().numpy(),
        delta_error=err.cpu().numpy(),
        relative_error=rel.cpu().numpy(),
        hypothetical_positive=halves[0] if halves else None,
        hypothetical_negative=halves[1] if halves else None,
    )


def _hypothetical(m_pos, m_neg, R):
    """Hypothetical contributions (N, K, C, L): for each base b, the contributions of the
    one-hot column e_b against the reference, ``sum_c m(e_b[c] - r[c])`` with ``m_pos`` for
    positive and ``m_neg`` for negative differences."""
    if m_neg is None:  # one multiplier: m[b] - sum_c m[c] r[c]
        return m_pos - (m_pos * R).sum(dim=2, keepdim=True)
    eye = torch.eye(R.shape[2], dtype=R.dtype, device=R.device).reshape(
        (1, 1, R.shape[2], R.shape[2]) + (1,) * (R.dim() - 3)
    )
    h = eye - R.unsqueeze(2)  # (N, K, B, C, L)
    return (m_pos.unsqueeze(2) * h.clamp(min=0) + m_neg.unsqueeze(2) * h.clamp(max=0)).sum(dim=3)
