"""References that use no seed: all zeros, uniform, and references read from an HDF5 file.

``zeros`` and ``uniform`` have the signature of every strategy,
``f(X, n, seeds) -> refs`` (see :mod:`seqlift.references`); their references
are the same for every draw, so one per sequence is enough.
"""

from __future__ import annotations

import os

import h5py
import numpy as np

from seqlift.errors import ReferencesError

from .checks import _check_count, _onehot_mask


def zeros(X: np.ndarray, n: int = 1, seeds: np.ndarray | None = None) -> np.ndarray:
    """All-zero references (``seeds`` is ignored).

    Parameters
    ----------
    X : np.ndarray, shape=(N, 4, L)
        One-hot sequences, channels A, C, G, T.
    n : int
        Number of references per sequence.
    seeds : np.ndarray, shape=(N,), optional
        Ignored; accepted so that every strategy has one signature.

    Returns
    -------
    refs : np.ndarray, shape=(N, n, 4, L), float32
    """
    hot = _onehot_mask(X)
    _check_count("n", "number of references per sequence", n, 1)
    return np.zeros((hot.shape[0], n, 4, hot.shape[2]), np.float32)


def uniform(X: np.ndarray, n: int = 1, seeds: np.ndarray | None = None) -> np.ndarray:
    """References of 0.25 in every channel of every non-N column (``seeds`` is ignored).

    Parameters
    ----------
    X : np.ndarray, shape=(N, 4, L)
        One-hot sequences, channels A, C, G, T; all-zero (N) columns stay zero.
    n : int
        Number of references per sequence.
    seeds : np.ndarray, shape=(N,), optional
        Ignored; accepted so that every strategy has one signature.

    Returns
    -------
    refs : np.ndarray, shape=(N, n, 4, L), float32
    """
    hot = _onehot_mask(X)
    _check_count("n", "number of references per sequence", n, 1)
    column = np.where(hot.any(axis=1), np.float32(0.25), np.float32(0))
    return np.repeat(np.repeat(column[:, None, None, :], 4, axis=2), n, axis=1)


def read_references(path: str | os.PathLike[str], n_regions: int | None, length: int) -> np.ndarray:
    """References from dataset ``references`` of the HDF5 file ``path``.

    Parameters
    ----------
    path : str
        The HDF5 file.
    n_regions : int
        Regions in the BED (scored or skipped), one per row of the dataset.
    length : int
        L, the input length of the model.

    Returns
    -------
    np.ndarray, shape=(n_regions, K, 4, L) or (1, K, 4, L), float32
        One set of K references per region, or one set shared by all (the
        file's (K, 4, L) dataset).
    """
    try:
        with h5py.File(path, "r") as h5:
            data = h5["references"][:].astype(np.float32)
    except (OSError, KeyError) as exc:
        raise ReferencesError(f"cannot read dataset 'references' from {path}: {exc}") from exc
    if data.ndim == 3:
        data = data[None]
    if data.ndim != 4 or data.shape[2:] != (4, length) or data.shape[0] not in (1, n_regions):
        raise ReferencesError(
            f"references in {path} have shape {data.shape}; expected ({n_regions}, K, 4, {length}) for the "
            f"{n_regions} regions, or (K, 4, {length}) shared by all"
        )
    return data
