"""Checks shared by every kind of reference: one-hot inputs, counts, and references equal to their input."""

from __future__ import annotations

import numpy as np

from seqlift.errors import ReferencesError


def _onehot_mask(X):
    """Check that ``X`` is a one-hot batch and return its non-zero entries.

    Parameters
    ----------
    X : array_like, shape=(N, 4, L)
        One-hot sequences (A, C, G, T); an all-zero column is N.

    Returns
    -------
    hot : np.ndarray, shape=(N, 4, L), bool
    """
    X = np.asarray(X)
    if X.ndim != 3 or X.shape[1] != 4:
        raise ReferencesError(
            f"X has shape {X.shape}, not (N, 4, L); pass one-hot sequences with channels A, C, G, T on axis 1."
        )
    hot = X != 0
    bad = (hot & (X != 1)).any(axis=1) | (hot.sum(axis=1) > 1)
    if bad.any():
        i, p = np.argwhere(bad)[0]
        raise ReferencesError(
            f"X[{i}, :, {p}] = {X[i, :, p].tolist()} is not one-hot; encode each position as a single 1 "
            "in channel A, C, G or T, or as all zeros for N."
        )
    return hot


def _check_count(name, meaning, value, lowest, highest=None):
    """Raise unless ``value`` is an integer in [lowest, highest]."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not ok or value < lowest or (highest is not None and value > highest):
        limits = f"an integer >= {lowest}" if highest is None else f"an integer from {lowest} to {highest}"
        raise ReferencesError(f"{name}={value!r} is not a valid {meaning}; pass {limits}.")


def identical_to_input(X: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """Which sequences have every reference equal to themselves.

    A dinucleotide shuffle of a low-complexity window such as 'AAAA...' or
    'ACACAC...' can only return the window itself; such a reference explains
    nothing, so these windows are worth reporting.

    Parameters
    ----------
    X : np.ndarray, shape=(N, 4, L)
        One-hot sequences.
    refs : np.ndarray, shape=(N, n, 4, L)
        Their references.

    Returns
    -------
    np.ndarray, shape=(N,), bool
        True where all n references of row i equal X[i].
    """
    X, refs = np.asarray(X), np.asarray(refs)
    if refs.ndim != 4 or refs.shape[0] != X.shape[0] or refs.shape[2:] != X.shape[1:]:
        raise ReferencesError(
            f"refs has shape {refs.shape}, which does not fit X of shape {X.shape}; "
            "pass refs of shape (N, n, 4, L) for X of shape (N, 4, L)."
        )
    if refs.shape[1] == 0:
        return np.ones(len(X), bool)
    # a shuffle mostly differs from its input, so the first reference settles most rows at a twentieth of the work
    same = (refs[:, 0] == X).all(axis=(1, 2))
    if same.any():
        same[same] = (refs[same] == X[same][:, None]).all(axis=(1, 2, 3))
    return same
