"""Ranking metrics for labelled positions: AUROC and AUPRC (average precision), in numpy alone.

Both take labels and scores of the same length and need both classes; they
match scikit-learn's ``roc_auc_score`` and ``average_precision_score``,
ties included.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def auroc(y_true: npt.ArrayLike, y_score: npt.ArrayLike) -> float:
    """Area under the ROC curve, from ranks (the Mann-Whitney U statistic); tied scores count one half.

    Parameters
    ----------
    y_true : array_like, shape=(n,)
        Labels (bool or 0/1); both classes must be present.
    y_score : array_like, shape=(n,)
        Scores, higher meaning more likely positive.

    Returns
    -------
    float
    """
    y, s = _labels_scores(y_true, y_score)
    order = np.argsort(s, kind="stable")
    ordered = s[order]
    first = np.r_[True, ordered[1:] != ordered[:-1]]
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], len(s)]
    ranks = np.empty(len(s))
    ranks[order] = ((starts + ends + 1) / 2.0)[np.cumsum(first) - 1]  # mean 1-based rank of each tie group
    n_pos = y.sum()
    n_neg = len(y) - n_pos
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def auprc(y_true: npt.ArrayLike, y_score: npt.ArrayLike) -> float:
    """Average precision: ``sum_t (R_t - R_{t-1}) P_t`` over the distinct score thresholds, highest first.

    Parameters
    ----------
    y_true, y_score : array_like, shape=(n,)
        As for :func:`auroc`: labels with both classes present, and scores.

    Returns
    -------
    float
    """
    y, s = _labels_scores(y_true, y_score)
    order = np.argsort(-s, kind="stable")
    ordered = s[order]
    last = np.flatnonzero(np.r_[ordered[1:] != ordered[:-1], True])  # end of each tie group
    tp = np.cumsum(y[order])[last]
    precision = tp / (last + 1.0)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _labels_scores(y_true, y_score):
    y = np.asarray(y_true).astype(bool).ravel()
    s = np.asarray(y_score, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels of shape {y.shape} and scores of shape {s.shape} differ; give one score per label")
    if y.all() or not y.any():
        raise ValueError("the labels hold one class only; AUROC and AUPRC need positives and negatives")
    return y, s
