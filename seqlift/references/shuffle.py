"""k-mer-preserving shuffles (numba), their splitmix64 random numbers, and per-region seeds.

:func:`dinucleotide_shuffle` is a strategy (see :mod:`seqlift.references`):
row i of its result depends only on ``X[i]``, ``seeds[i]``, the shuffle's index
and k, and :func:`region_seed` gives each region a seed of its own, so the
shuffles do not change with the batch size or the sharding. The random number
helpers :func:`_mix` and :func:`_below` also draw the GC-matched windows of
:mod:`seqlift.references.gc`.
"""

from __future__ import annotations

import hashlib

import numpy as np
from numba import njit

from seqlift.errors import ReferencesError

from .checks import _check_count, _onehot_mask

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S27, _S30, _S31, _S32 = np.uint64(27), np.uint64(30), np.uint64(31), np.uint64(32)
_LOW32 = np.uint64(0xFFFFFFFF)
_TWO32 = np.uint64(1 << 32)
_MAX_K = 32  # a (k-1)-mer is packed into one int64, two bits a letter


@njit(cache=True, nogil=True)
def _mix(z):
    """The splitmix64 output function of the uint64 ``z``."""
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@njit(cache=True, nogil=True)
def _below(state, bound):
    """Advance the splitmix64 ``state`` and draw an integer uniformly in [0, bound).

    Lemire's multiply-and-reject on 32 random bits, so the draw is exactly
    uniform for any ``bound`` below 2**32. Returns ``(state, value)``.
    """
    b = np.uint64(bound)
    while True:
        state = state + _GOLDEN
        product = (_mix(state) >> _S32) * b
        low = product & _LOW32
        if low >= b or low >= (_TWO32 - b) % b:
            return state, np.int64(product >> _S32)


@njit(cache=True, nogil=True)
def _de_bruijn(letters, k):
    """The de Bruijn multigraph of the (k-1)-mers of one sequence, k >= 2.

    Parameters
    ----------
    letters : np.ndarray, shape=(m,), uint8
        The sequence as letters 0-3, m >= k.
    k : int
        Length of the k-mers (the edges).

    Returns
    -------
    vid : np.ndarray, shape=(m - k + 2,)
        Compact id of the (k-1)-mer starting at each letter; edge t goes from
        vertex ``vid[t]`` to ``vid[t + 1]`` and adds letter ``t + k - 1``.
    eptr, elist : np.ndarray, shape=(V + 1,) and (m - k + 1,)
        The out-edges of vertex v are ``elist[eptr[v]:eptr[v + 1]]``.
    """
    n_edges = len(letters) - k + 1
    order = np.arange(n_edges + 1)
    spare = np.empty_like(order)
    for q in range(k - 2, -1, -1):  # LSD radix sort of the (k-1)-mers
        start = np.zeros(5, np.int64)
        for t in order:
            start[letters[t + q] + 1] += 1
        start = np.cumsum(start)
        for t in order:
            spare[start[letters[t + q]]] = t
            start[letters[t + q]] += 1
        order, spare = spare, order
    code = np.zeros(n_edges + 1, np.int64)  # the (k-1)-mers, two bits a letter
    for q in range(k - 1):
        code[0] = code[0] * 4 + letters[q]
    for t in range(n_edges):
        code[t + 1] = (code[t] * 4 + letters[t + k - 1]) & ((1 << 2 * (k - 1)) - 1)
    vid = np.empty(n_edges + 1, np.int64)
    vertex = 0
    for r in range(n_edges + 1):
        if r > 0 and code[order[r]] != code[order[r - 1]]:
            vertex += 1
        vid[order[r]] = vertex
    eptr = np.zeros(vertex + 2, np.int64)
    for t in range(n_edges):
        eptr[vid[t] + 1] += 1
    eptr = np.cumsum(eptr)
    fill = eptr[:-1].copy()
    elist = np.empty(n_edges, np.int64)
    for t in range(n_edges):
        elist[fill[vid[t]]] = t
        fill[vid[t]] += 1
    return vid, eptr, elist


@njit(cache=True, nogil=True)
def _order_out_edges(order, lo, hi, last, is_root, state):
    """Put vertex's out-edges ``order[lo:hi]`` in a uniformly random order, its last exit edge (at ``last``,
    none for the root) at the end; returns the advanced splitmix64 ``state``."""
    if not is_root:
        hi -= 1
        order[last], order[hi] = order[hi], order[last]
    for a in range(hi - 1, lo, -1):
        state, r = _below(state, a - lo + 1)
        order[a], order[lo + r] = order[lo + r], order[a]
    return state


@njit(cache=True, nogil=True)
def _euler_shuffle(letters, k, vid, eptr, elist, state, buf):
    """Write into ``buf`` a uniformly random sequence with the k-mer counts and first (k-1)-mer of ``letters``.

    A uniformly random Eulerian path of the graph from :func:`_de_bruijn`,
    from the first to the last (k-1)-mer: a uniformly random arborescence of
    last exit edges rooted at the last vertex (Wilson's loop-erased random
    walks, each step taking an out-edge uniformly), a uniformly random order of
    every vertex's other out-edges, then the walk. ``state`` seeds the
    splitmix64 stream.
    """
    n_edges = len(elist)
    n_vertices = len(eptr) - 1
    root = vid[n_edges]
    order = elist.copy()
    last = np.empty(n_vertices, np.int64)
    in_tree = np.zeros(n_vertices, np.bool_)
    in_tree[root] = True
    for u in range(n_vertices):
        v = u
        while not in_tree[v]:
            state, r = _below(state, eptr[v + 1] - eptr[v])
            last[v] = eptr[v] + r
            v = vid[order[last[v]] + 1]
        v = u
        while not in_tree[v]:
            in_tree[v] = True
            v = vid[order[last[v]] + 1]
    for v in range(n_vertices):
        state = _order_out_edges(order, eptr[v], eptr[v + 1], last[v], v == root, state)
    cursor = eptr[:-1].copy()
    buf[: k - 1] = letters[: k - 1]
    v = vid[0]
    for t in range(n_edges):
        e = order[cursor[v]]
        cursor[v] += 1
        buf[k - 1 + t] = letters[e + k - 1]
        v = vid[e + 1]


@njit(cache=True, nogil=True)
def _successors(letters):
    """The dinucleotide (k = 2) graph of one sequence, in letter space, for :func:`_euler_shuffle2`.

    Vertex c is letter c; its out-edges are the letters that follow each of
    its occurrences, kept in ``succ[eptr[c]:eptr[c + 1]]`` in sequence order
    (the order in which :func:`_de_bruijn` lists them). ``present[c]``: the
    letter occurs, so that it is a vertex.
    """
    present = np.zeros(4, np.bool_)
    eptr = np.zeros(5, np.int64)
    for t in range(len(letters)):
        present[letters[t]] = True
        if t + 1 < len(letters):
            eptr[letters[t] + 1] += 1
    for c in range(4):
        eptr[c + 1] += eptr[c]
    fill = eptr[:4].copy()
    succ = np.empty(len(letters) - 1, np.uint8)
    for t in range(len(letters) - 1):
        succ[fill[letters[t]]] = letters[t + 1]
        fill[letters[t]] += 1
    return present, eptr, succ


@njit(cache=True, nogil=True)
def _euler_shuffle2(letters, present, eptr, succ, state, buf):
    """:func:`_euler_shuffle` for k = 2, on the graph of :func:`_successors`.

    The same random draws in the same order, so the same shuffle, but the
    edges are their successor letters instead of positions in ``letters``:
    the final walk follows one array, not three.
    """
    order = succ.copy()
    last = np.empty(4, np.int64)
    root = letters[len(letters) - 1]
    in_tree = np.zeros(4, np.bool_)
    in_tree[root] = True
    for u in range(4):  # the vertices in the order of their compact ids in _de_bruijn
        if not present[u]:
            continue
        v = u
        while not in_tree[v]:
            state, r = _below(state, eptr[v + 1] - eptr[v])
            last[v] = eptr[v] + r
            v = order[last[v]]
        v = u
        while not in_tree[v]:
            in_tree[v] = True
            v = order[last[v]]
    for v in range(4):
        if not present[v]:
            continue
        state = _order_out_edges(order, eptr[v], eptr[v + 1], last[v], v == root, state)
    cursor = eptr[:4].copy()
    v = letters[0]
    buf[0] = v
    for t in range(len(order)):
        c = order[cursor[v]]
        cursor[v] += 1
        buf[t + 1] = c
        v = c


@njit(cache=True, nogil=True)
def _shuffle(hot, k, n, seeds, out):
    """Write ``n`` k-mer-preserving shuffles of each row of ``hot`` into ``out``.

    ``hot`` (N, 4, L) bool marks the ones of a valid one-hot batch; ``out``
    (N, n, 4, L) must be all zeros, only its ones are written. Shuffle j of
    row i uses a splitmix64 stream seeded by ``(seeds[i], j)`` alone.
    """
    for i in range(hot.shape[0]):
        letters = np.empty(hot.shape[2], np.uint8)
        pos = np.empty(hot.shape[2], np.int64)
        m = 0
        for p in range(hot.shape[2]):
            for c in range(4):
                if hot[i, c, p]:
                    letters[m], pos[m] = c, p
                    m += 1
        letters = letters[:m]
        shuffleable = m >= 2 and m >= k
        if shuffleable and k == 2:
            present, eptr, succ = _successors(letters)
        elif shuffleable and k > 2:
            vid, eptr, elist = _de_bruijn(letters, k)
        buf = letters.copy()
        for j in range(n):
            state = _mix(_mix(seeds[i]) + np.uint64(j))
            if shuffleable and k == 1:
                buf[:] = letters
                for a in range(m - 1, 0, -1):
                    state, r = _below(state, a + 1)
                    buf[a], buf[r] = buf[r], buf[a]
            elif shuffleable and k == 2:
                _euler_shuffle2(letters, present, eptr, succ, state, buf)
            elif shuffleable:
                _euler_shuffle(letters, k, vid, eptr, elist, state, buf)
            for t in range(m):
                out[i, j, buf[t], pos[t]] = 1.0


def dinucleotide_shuffle(X: np.ndarray, n: int = 20, seeds: np.ndarray | None = None, k: int = 2) -> np.ndarray:
    """Uniformly random k-mer-preserving shuffles of each sequence, N-safe.

    Each shuffle is drawn uniformly from all sequences with the same k-mer
    counts and the same first k-1 letters (hence the same last k-1 letters), by
    the Altschul-Erickson Eulerian-path method on the de Bruijn graph of
    (k-1)-mers; k=1 is a uniformly random permutation. N columns (all zeros)
    stay where they are: the non-N letters, read in order as one sequence, are
    shuffled and written back into the non-N columns. A row with fewer than
    max(k, 2) non-N letters is returned unchanged, as is a row whose letters
    admit one shuffle only (e.g. 'AAAA...' or 'ACACAC...' for k=2); see
    :func:`identical_to_input`.

    Parameters
    ----------
    X : np.ndarray, shape=(N, 4, L)
        One-hot sequences (uint8, bool or float), channels A, C, G, T.
    n : int
        Number of shuffles per sequence.
    seeds : np.ndarray, shape=(N,), optional
        One integer seed per sequence (any integer dtype; taken modulo 2**64),
        e.g. from :func:`region_seed`. None seeds every row with 0. Shuffle j
        of row i depends only on X[i], seeds[i], j and k.
    k : int
        Length of the k-mers whose counts are preserved, 1 to 32.

    Returns
    -------
    refs : np.ndarray, shape=(N, n, 4, L), float32
        ``refs[i, j]`` is shuffle j of ``X[i]``.
    """
    hot = _onehot_mask(X)
    _check_count("n", "number of references per sequence", n, 1)
    _check_count("k", "k-mer length", k, 1, _MAX_K)
    n_rows = hot.shape[0]
    if seeds is None:
        seeds = np.zeros(n_rows, np.uint64)
    seeds = np.asarray(seeds)
    if seeds.shape != (n_rows,) or not np.issubdtype(seeds.dtype, np.integer):
        raise ReferencesError(
            f"seeds has shape {seeds.shape} and dtype {seeds.dtype}; pass one integer seed per sequence, "
            f"shape ({n_rows},), or None."
        )
    out = np.zeros((n_rows, n, 4, hot.shape[2]), np.float32)
    _shuffle(hot, k, n, seeds.astype(np.uint64), out)
    return out


def region_seed(seed: int, chrom: str, start: int, end: int, strand: str = "+") -> int:
    """A stable seed for one region, from the run's seed and the region.

    The same arguments give the same seed in every process and on every
    machine (a BLAKE2b digest, not Python's salted ``hash``).

    Parameters
    ----------
    seed : int
        The run's seed.
    chrom : str
        Chromosome name.
    start, end : int
        The region, 0-based half-open.
    strand : str
        '+', '-' or '.'.

    Returns
    -------
    int
        A seed in [0, 2**63), for the ``seeds`` argument of a strategy; a list
        of them makes an int64 array.
    """
    key = f"{seed}\t{chrom}\t{start}\t{end}\t{strand}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1
