"""Splitting a DeepLIFT batch so that no intermediate tensor outgrows the allocator's reuse.

On a CPU, PyTorch takes every tensor from the C allocator. glibc's malloc
serves blocks above its mmap threshold (at most 32 MiB on 64-bit Linux) with
fresh pages from the kernel, each faulted in and zeroed when first written,
and returns them when the tensor is freed. A paired batch whose largest
activation is above that size pays those page faults on every such tensor of
every call: attention scores (rows x heads x L x L) at 84 rows of a 250-token
model are 84 MB each, and a call made 460,000 page faults (1 s of kernel time,
more than its gradient pass took). Below the threshold, freed blocks are
reused and a call makes almost none.

:func:`plan` splits ``n`` inputs with ``k`` references each into calls of at
most ``rows`` paired rows (``n_i + n_i * k_j``), first by inputs, then by
references, and :func:`join` puts the calls' outputs back in the order of one
call. Each input's activations are then computed once per call that holds it
(a small cost: one row in ``k_j + 1``). The scores equal one call's up to
float rounding: every (input, reference) pair is computed by the same ops.
"""

from __future__ import annotations

import ctypes
import functools
import math
import platform

import torch

#: Largest intermediate tensor a CPU call may hold, in bytes: glibc's largest mmap threshold.
CPU_TENSOR_BUDGET = 32 << 20

#: Free memory at the top of glibc's heap that it keeps for reuse instead of returning to the kernel, in bytes.
KEEP_FREED = 1 << 30

#: Channel block of the CPU convolution's own layout (oneDNN's: 8 or 16 by the CPU's vector width, the larger taken).
CONV_CHANNEL_BLOCK = 16

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)


@functools.cache
def keep_freed_memory() -> bool:
    """Have glibc serve blocks up to :data:`CPU_TENSOR_BUDGET` from its heap and keep freed ones; True if set.

    Splitting a call keeps every tensor under the mmap threshold, but glibc
    still returns freed heap memory to the kernel once more than twice that
    threshold lies free at the heap's top (``M_TRIM_THRESHOLD``), and the next
    call faults the pages in again: 290,000 page faults per call of the
    attention demo at 4 regions, 170,000 on the BPNet-like model. Fixing the
    mmap threshold at the budget and the trim threshold at :data:`KEEP_FREED`
    brings that to a few thousand or none. The setting is process-wide and
    made once, on the first split CPU call; the process then keeps up to that
    much freed memory (its peak resident memory is unchanged). Elsewhere than
    glibc (musl, macOS) nothing is changed and False is returned.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, CPU_TENSOR_BUDGET) and mallopt(_M_TRIM_THRESHOLD, KEEP_FREED))


def row_bytes(graph: torch.fx.Graph, input_node: torch.fx.Node) -> int | None:
    """Bytes per batch row of the largest buffer a call makes, from the shapes export recorded; None if unknown.

    Export records each value's shape with the batch size as a symbol and its
    example value as a hint; the size per row is the size at the hint divided
    by the hinted batch size. A convolution's input and output count with
    their channels rounded up to :data:`CONV_CHANNEL_BLOCK`: the CPU's
    convolution (oneDNN) copies both into that layout, outside PyTorch's
    tensors, and with 4 or 8 channels those copies are 2 to 4 times the
    tensors' size.
    """
    val = input_node.meta.get("val")
    if val is None or not len(val.shape) or not isinstance(val.shape[0], torch.SymInt):
        return None
    batch = _hint(val.shape[0])
    if not batch:
        return None
    largest = 0
    for node in graph.nodes:
        values = [node.meta.get("val")]
        conv = node.op == "call_function" and "conv" in getattr(node.target, "__name__", "")
        if conv and isinstance(node.args[0], torch.fx.Node):
            values.append(node.args[0].meta.get("val"))
        for v in values:
            if not isinstance(v, torch.Tensor):
                continue
            sizes = [_hint(d) for d in v.shape]
            if any(s is None for s in sizes):
                continue
            if conv and len(sizes) > 1:
                sizes[1] = -(-sizes[1] // CONV_CHANNEL_BLOCK) * CONV_CHANNEL_BLOCK
            largest = max(largest, math.prod(sizes) * v.element_size())
    return max(1, largest // batch) if largest else None


def _hint(d) -> int | None:
    if isinstance(d, int):
        return d
    node = getattr(d, "node", None)
    return int(node.hint) if node is not None and node.has_hint() else None


def plan(n: int, k: int, rows: int | None) -> list[tuple[slice, slice]]:
    """(inputs, references) slices of calls covering ``n`` inputs x ``k`` references, each of at most ``rows`` rows.

    A call of ``a`` inputs and ``b`` references per input has ``a * (b + 1)``
    rows. Inputs are grouped with all their references while one of them fits;
    otherwise each input's references are split into equal parts. A call never
    has fewer than one input and one reference.
    """
    if rows is None or n * (k + 1) <= rows:
        return [(slice(0, n), slice(0, k))]
    if k + 1 <= rows:
        per = rows // (k + 1)
        return [(slice(i, min(i + per, n)), slice(0, k)) for i in range(0, n, per)]
    parts = math.ceil(k / max(1, rows - 1))
    bounds = [round(j * k / parts) for j in range(parts + 1)]
    return [(slice(i, i + 1), slice(bounds[j], bounds[j + 1])) for i in range(n) for j in range(parts)]


def join(calls, n: int, k: int):
    """One call's passes from the passes of the calls of :func:`plan`.

    ``calls`` is a list of ``((inputs, refs), passes)``; each pass is
    ``(y, m_pos, m_neg, halves)`` as the engine's paired and split runs return
    them: ``y`` (a + a * b,) outputs of the call's inputs then of its pairs,
    multipliers (a * b, ...) of its pairs, ``m_neg`` either ``m_pos`` itself or
    its own tensor, ``halves`` a list of (m_pos, m_neg) pairs.
    """
    if len(calls) == 1:
        return calls[0][1]
    n_targets = len(calls[0][1])
    joined = []
    for t in range(n_targets):
        inputs, pairs = {}, {}
        same = calls[0][1][t][2] is calls[0][1][t][1]
        for (rs, ks), passes in calls:
            y, m_pos, m_neg, halves = passes[t]
            a, b = rs.stop - rs.start, ks.stop - ks.start
            inputs.setdefault(rs.start, y[:a])  # the same in every call holding these inputs
            tensors = [y[a:], m_pos] + ([] if same else [m_neg]) + [m for half in halves for m in half]
            pairs.setdefault(rs.start, []).append([v.reshape((a, b) + tuple(v.shape[1:])) for v in tensors])
        starts = sorted(pairs)
        per_start = [[torch.cat(c, dim=1) for c in zip(*pairs[s])] for s in starts]  # references joined
        columns = [torch.cat(c, dim=0) for c in zip(*per_start)]  # then inputs
        flat = [c.reshape((n * k,) + tuple(c.shape[2:])) for c in columns]
        y = torch.cat([torch.cat([inputs[s] for s in starts]), flat[0]])
        m_pos = flat[1]
        m_neg = m_pos if same else flat[2]
        rest = flat[2 if same else 3 :]
        halves = [(rest[i], rest[i + 1]) for i in range(0, len(rest), 2)]
        joined.append((y, m_pos, m_neg, halves))
    return joined
