"""Compiled CPU loops (numba) of fused ops whose tensor-op versions are bound by op launches and passes
over memory: the LSTM layer (:mod:`.recurrent`), and the backwards of softmax, ReLU and the max rule
(:mod:`.paired`).

LSTM. :class:`.recurrent._LSTMLayer` writes its backward as tensor ops: the
multipliers of every gate for all positions at once, then a loop over the
positions of a few small ops each. On a CPU with short rows (a region's
references, a few dozen hidden units) both halves are bound by the cost of
launching ops and of passes over memory, not by arithmetic: a 250-position
BiLSTM with 24 units spent 7 ms computing multipliers and 6 ms in the loop per
region of 20 references, where PyTorch's fused LSTM backward (the gradient
pass) takes about 5 ms in all. Here the same backward takes about 4 ms.

Each position's multipliers are computed where they are used, row by row in a
loop the compiler vectorises, so nothing of shape (positions, rows, gates) is
written but the gate gradients themselves; the products with ``W_hh`` (and
``W_hr``) run in BLAS, one per position and direction. A row where some delta
is below eps (or NaN) is redone with the derivative fallback. The arithmetic is
that of the tensor version term by term (Rescale quotient; the derivative at
``(x + r) / 2`` where ``|Δz| < eps``; elsewhere midpoints ``x - (x - r) / 2``, as
``lerp`` has them), so the scores agree to rounding; the tests compare the two
in float64.

Softmax. :class:`.paired._PairedSoftmax`'s backward in tensor ops makes about
a dozen passes over the (rows, ..., S) scores, 21 MB each for one region of 20
references in the demo's attention model; here each row of S is read once
(gradient, reference's ``exp`` and scores) and its multipliers written once.

ReLU. The Rescale multiplier in tensor ops (:func:`.split.rescale_multiplier`)
takes six passes over the activations (differences, quotient, the eps test and
its count, the fallback, the product with the gradient); here one.

Max rule. Splitting each window's delta between the input's and the
reference's peak (:func:`.split.max_multipliers`) takes four gathers, a dozen
passes over the windows and two scatters in tensor ops; here one pass.

CUDA tensors keep the tensor versions."""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit


@njit(cache=True, nogil=True, inline="always")
def _mid(x, r):
    return x - (x - r) * 0.5


@njit(cache=True, nogil=True, inline="always")
def _slope(zx, zr, yx, yr, eps, tanh):
    """Rescale multiplier of sigmoid (or tanh), with the derivative at the midpoint where ``|Δz| < eps``."""
    dz = zx - zr
    if abs(dz) >= eps:
        return (yx - yr) / dz
    if tanh:
        t = math.tanh((zx + zr) * 0.5)
        return 1.0 - t * t
    s = 1.0 / (1.0 + math.exp(-(zx + zr) * 0.5))
    return s * (1.0 - s)


@njit(cache=True, nogil=True, error_model="numpy")
def _cell_row(z, a, c, t, p, x, r, dc, dhh, eps, hidden, out):
    """One reference row ``r`` (its input row ``x``) at one position: the gate gradients ``out`` (4H) from
    ``dc`` and ``dhh``, the gradients arriving at the cell and the hidden state; ``dc`` is overwritten with
    the cell gradient passed to the previous position.

    ``z``, ``a`` (rows, 4H) are the gates' pre-activations and activations, ``c``, ``t`` (rows, H) the
    cell and its tanh, ``p`` the previous cell. Rescale quotients only, in a loop
    the compiler vectorises (it does not when ``dc`` is written to another array or ``hidden`` is read
    from a shape); returns how many deltas were below eps (or NaN, an infinity minus itself), where the
    quotients do not hold and :func:`_cell_row_exact` must redo the row.
    """
    bad = 0
    for h in range(hidden):
        i, f, g, o = h, hidden + h, 2 * hidden + h, 3 * hidden + h
        dz = c[x, h] - c[r, h]
        bad += not (abs(dz) >= eps)
        dch = dc[h] + dhh[h] * _mid(a[x, o], a[r, o]) * ((t[x, h] - t[r, h]) / dz)
        dz = z[x, o] - z[r, o]
        bad += not (abs(dz) >= eps)
        out[o] = dhh[h] * _mid(t[x, h], t[r, h]) * ((a[x, o] - a[r, o]) / dz)
        dz = z[x, i] - z[r, i]
        bad += not (abs(dz) >= eps)
        out[i] = dch * _mid(a[x, g], a[r, g]) * ((a[x, i] - a[r, i]) / dz)
        dz = z[x, f] - z[r, f]
        bad += not (abs(dz) >= eps)
        out[f] = dch * _mid(p[x, h], p[r, h]) * ((a[x, f] - a[r, f]) / dz)
        dz = z[x, g] - z[r, g]
        bad += not (abs(dz) >= eps)
        out[g] = dch * _mid(a[x, i], a[r, i]) * ((a[x, g] - a[r, g]) / dz)
        dc[h] = dch * _mid(a[x, f], a[r, f])
    return bad


@njit(cache=True, nogil=True, error_model="numpy")
def _cell_row_exact(z, a, c, t, p, x, r, dc, dhh, eps, hidden, out):
    """:func:`_cell_row` with the derivative fallback of every multiplier."""
    for h in range(hidden):
        i, f, g, o = h, hidden + h, 2 * hidden + h, 3 * hidden + h
        dch = dc[h] + dhh[h] * _mid(a[x, o], a[r, o]) * _slope(c[x, h], c[r, h], t[x, h], t[r, h], eps, True)
        out[o] = dhh[h] * _mid(t[x, h], t[r, h]) * _slope(z[x, o], z[r, o], a[x, o], a[r, o], eps, False)
        out[i] = dch * _mid(a[x, g], a[r, g]) * _slope(z[x, i], z[r, i], a[x, i], a[r, i], eps, False)
        out[f] = dch * _mid(p[x, h], p[r, h]) * _slope(z[x, f], z[r, f], a[x, f], a[r, f], eps, False)
        out[g] = dch * _mid(a[x, i], a[r, i]) * _slope(z[x, g], z[r, g], a[x, g], a[r, g], eps, True)
        dc[h] = dch * _mid(a[x, f], a[r, f])


@njit(cache=True, nogil=True, error_model="numpy")
def _lstm_backward(z, gates, cells, tanh_c, c0, g_hs, g_c, w_hh, w_hr, n, eps, grad_z, dh_out, dc_out):
    """Fill ``grad_z`` (D, T, rows, 4H; input rows zero) and the reference rows' gradients of the initial
    states, ``dh_out`` (D, R, Hout) and ``dc_out`` (D, R, H); see :func:`lstm_backward`. The products
    with the weights run in BLAS (numba's ``np.dot``), one per position and direction for all rows."""
    directions, steps, rows, gate_cols = z.shape
    hidden = gate_cols // 4
    refs = rows - n
    k = refs // n
    project = w_hr.shape[1] > 0
    dhh = np.empty((refs, hidden), z.dtype)
    dc_saved = np.empty(hidden, z.dtype)
    grad_z[:, :, :n, :] = 0.0
    for d in range(directions):
        dh, dc, w = dh_out[d], dc_out[d], w_hh[d]
        dh[:, :] = g_hs[d, steps - 1, n:, :]
        dc[:, :] = g_c[d, n:, :]
        for s in range(steps - 1, -1, -1):
            zs, a_s, cs, ts, out = z[d, s], gates[d, s], cells[d, s], tanh_c[d, s], grad_z[d, s]
            prev = cells[d, s - 1] if s else c0[d]
            if project:  # h = W_hr h': the gradient of h' is dh W_hr
                np.dot(dh, w_hr[d], dhh)
            else:
                dhh[:, :] = dh
            for j in range(refs):
                r, x = n + j, j // k
                dc_j, out_r, dhh_j = dc[j], out[r], dhh[j]
                dc_saved[:] = dc_j
                if _cell_row(zs, a_s, cs, ts, prev, x, r, dc_j, dhh_j, eps, hidden, out_r):
                    dc_j[:] = dc_saved
                    _cell_row_exact(zs, a_s, cs, ts, prev, x, r, dc_j, dhh_j, eps, hidden, out_r)
            # the gradient of the previous hidden state: its own output's plus what the gates pass back
            np.dot(out[n:], w, dh)
            if s:
                dh += g_hs[d, s - 1, n:]


def lstm_backward(z, gates, cells, tanh_c, c0, g_hs, g_c, w_hh, w_hr, n: int, eps: float):
    """DeepLIFT (Rescale) backward of one LSTM layer on CPU tensors, each direction in running order.

    ``z``, ``gates`` (D, T, rows, 4H): pre-activations and activations of the
    gates ``i, f, g, o``; ``cells``, ``tanh_c`` (D, T, rows, H); ``c0`` (D, rows, H);
    ``g_hs`` (D, T, rows, Hout) and ``g_c`` (D, rows, H) or None: the gradients
    arriving at the outputs; ``w_hh`` (D, 4H, Hout); ``w_hr`` (D, Hout, H) or None.
    The first ``n`` rows are inputs, the rest their references, ``k`` per input
    in order. Returns the gradient of ``z`` and the reference rows' gradients of
    ``h0`` (D, R, Hout) and ``c0`` (D, R, H).
    """
    directions, rows, hidden = c0.shape
    refs = rows - n
    arrays = [t.detach().contiguous() for t in (z, gates, cells, tanh_c, c0, g_hs, w_hh)]
    g_c = torch.zeros_like(c0) if g_c is None else g_c.detach().contiguous()
    w_hr = z.new_empty((directions, 0, 0)) if w_hr is None else w_hr.detach().contiguous()
    grad_z = torch.empty_like(arrays[0])
    dh = z.new_empty((directions, refs, w_hh.shape[-1]))
    dc = z.new_empty((directions, refs, hidden))
    _lstm_backward(
        *(t.numpy() for t in arrays[:6]),
        g_c.numpy(),
        arrays[6].numpy(),
        w_hr.numpy(),
        n,
        eps,
        grad_z.numpy(),
        dh.numpy(),
        dc.numpy(),
    )
    return grad_z, dh, dc


@njit(cache=True, nogil=True)
def _lstm_cells(gates, c0, cells):
    directions, steps, rows, gate_cols = gates.shape
    hidden = gate_cols // 4
    for d in range(directions):
        for s in range(steps):
            prev = cells[d, s - 1] if s else c0[d]
            a, out = gates[d, s], cells[d, s]
            for r in range(rows):
                for h in range(hidden):
                    out[r, h] = a[r, h] * a[r, 2 * hidden + h] + a[r, hidden + h] * prev[r, h]


def lstm_cells(gates, c0):
    """Cell states (D, T, rows, H) of an LSTM layer from its gates ``i, f, g, o`` (D, T, rows, 4H) and the
    initial cell ``c0`` (D, rows, H), on the CPU: ``c' = i * g + f * c`` position by position."""
    cells = gates.new_empty(gates.shape[:-1] + (c0.shape[-1],))
    _lstm_cells(gates.detach().contiguous().numpy(), c0.detach().contiguous().numpy(), cells.numpy())
    return cells


@njit(cache=True, nogil=True)
def _first_peaks(x, peak, index):
    """``index[r, m]``: the first place of ``peak[r, m]`` (the row's max) in ``x[r, m]`` (rows, M, S), as
    ``argmax`` has it; a row without one (NaN) gets 0."""
    rows, middle, width = x.shape
    for r in range(rows):
        for m in range(middle):
            row, target = x[r, m], peak[r, m]
            index[r, m] = 0
            for s in range(width):
                if row[s] == target:
                    index[r, m] = s
                    break


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc"})
def _softmax_backward(g, x, peak, e, u, m_u, n, eps, out, sums):
    """Rescale backward of ``w = e * u``, ``e = exp(x - peak)``, ``u = 1 / Σe`` for each reference row
    ``(j, m)``: ``out`` (R, M, S) gets the multipliers of ``x`` but the max's share, ``sums`` (R, M) minus
    their sum, the multiplier of the max. ``g`` (R, M, S): the gradient of ``w``; ``x``, ``e`` (rows, M, S),
    ``peak`` and ``u`` (rows, M); ``m_u`` (R, M): the Rescale multipliers of ``u``. Only the sums over
    ``S`` are reassociated (vectorised)."""
    refs, middle, width = g.shape
    k = refs // n
    for j in range(refs):
        r, x_row = n + j, j // k
        for m in range(middle):
            gj, ex, er, xx, xr = g[j, m], e[x_row, m], e[r, m], x[x_row, m], x[r, m]
            peak_x, peak_r = peak[x_row, m], peak[r, m]
            into_u = 0.0
            for s in range(width):
                into_u += gj[s] * _mid(ex[s], er[s])
            into_u *= m_u[j, m]
            u_mid = _mid(u[x_row, m], u[r, m])
            o = out[j, m]
            bad = 0
            for s in range(width):
                dz = (xx[s] - peak_x) - (xr[s] - peak_r)
                bad += not (abs(dz) >= eps)
                o[s] = (into_u + gj[s] * u_mid) * ((ex[s] - er[s]) / dz)
            if bad:  # exp's derivative at the midpoint where the shifted scores' delta is below eps
                for s in range(width):
                    yx, yr = xx[s] - peak_x, xr[s] - peak_r
                    if not (abs(yx - yr) >= eps):
                        o[s] = (into_u + gj[s] * u_mid) * math.exp((yx + yr) * 0.5)
            total = 0.0
            for s in range(width):
                total += o[s]
            sums[j, m] = -total


def softmax_backward(g, x, peak, e, u, m_u, n: int, eps: float, out):
    """Write into ``out`` (R, ..., S; contiguous) the multipliers of a softmax's input for the reference
    rows, on CPU tensors, all but the max rule's share; return the multiplier of the max (R, ..., 1) and
    where each row's max lies (rows, ..., 1). ``g`` (R, ..., S), ``x`` and ``e`` (rows, ..., S), ``peak``
    (each row's max) and ``u`` (rows, ..., 1), ``m_u`` (R, ..., 1); see :func:`_softmax_backward`."""
    g_, x_, e_ = (t.detach().reshape(t.shape[0], -1, t.shape[-1]).contiguous().numpy() for t in (g, x, e))
    peak_, u_, m_u_ = (t.detach().reshape(t.shape[0], -1).contiguous().numpy() for t in (peak, u, m_u))
    index = torch.empty(peak.shape, dtype=torch.int64)
    _first_peaks(x_, peak_, index.view(peak_.shape).numpy())
    sums = out.new_empty(out.shape[:-1] + (1,))
    _softmax_backward(g_, x_, peak_, e_, u_, m_u_, n, eps, out.view(g_.shape).numpy(), sums.view(g_.shape[:2]).numpy())
    return sums, index


@njit(cache=True, nogil=True, error_model="numpy")
def _relu_backward(a, y, g, n, eps, out):
    refs, width = g.shape
    k = refs // n
    for j in range(refs):
        r, x = n + j, j // k
        ax, ar, yx, yr, gj, o = a[x], a[r], y[x], y[r], g[j], out[j]
        for s in range(width):
            dz = ax[s] - ar[s]
            quotient = (yx[s] - yr[s]) / dz
            limit = 1.0 if (ax[s] + ar[s]) * 0.5 > 0 else 0.0
            o[s] = gj[s] * (quotient if abs(dz) >= eps else limit)


def relu_backward(a, y, g, n: int, eps: float, out):
    """Write into ``out`` (R, ...; contiguous) the gradient ``g`` (R, ...) of ReLU's reference rows times their
    Rescale multipliers, ``(y_x - y_r) / (a_x - a_r)``, or ReLU's derivative at the midpoint where
    ``|a_x - a_r| < eps``; ``a`` and ``y`` (rows, ...) are ReLU's input and output, on the CPU."""
    a_, y_ = (t.detach().reshape(t.shape[0], -1).contiguous().numpy() for t in (a, y))
    g_ = g.detach().reshape(g.shape[0], -1).contiguous().numpy()
    _relu_backward(a_, y_, g_, n, eps, out.view(g_.shape).numpy())


@njit(cache=True, nogil=True, inline="always")
def _max_split(rule, ax, ar, bx, br, eps):
    """:func:`.split.max_multipliers` for one window (``rule``: 0 sign, 1 pair, 2 shapley)."""
    if rule == 1:
        dx, dr = ax - bx, ar - br
        den = dx - dr
        if abs(den) < eps:
            total = dx + dr
            m_abs = 1.0 if total > 0 else (-1.0 if total < 0 else 0.0)
        else:
            m_abs = (abs(dx) - abs(dr)) / den
        return 0.5 * (1 + m_abs), 0.5 * (1 - m_abs)
    delta, da, db = ax - br, ax - ar, bx - br
    if rule == 0:
        phi_a, limit = max(delta, 0.0), 1.0
    else:
        phi_a, limit = 0.5 * ((max(ax, br) - br) + (ax - max(ar, bx))), 0.5
    m_a = limit if abs(da) < eps else phi_a / da
    m_b = 1.0 - limit if abs(db) < eps else (delta - m_a * da) / db
    return m_a, m_b


@njit(cache=True, nogil=True, error_model="numpy")
def _add_max_rule(out, a, index, g, n, eps, rule):
    refs, middle, windows = g.shape
    k = refs // n
    for j in range(refs):
        r, x = n + j, j // k
        for m in range(middle):
            ax_row, ar_row, o = a[x, m], a[r, m], out[j, m]
            for w in range(windows):
                p, q = index[x, m, w], index[r, m, w]
                m_a, m_b = _max_split(rule, ax_row[p], ar_row[p], ax_row[q], ar_row[q], eps)
                o[p] += g[j, m, w] * m_a
                o[q] += g[j, m, w] * m_b


#: The max rules (:data:`.split.MAX_RULES`) as :func:`_max_split` numbers them.
_RULE_CODES = {"sign": 0, "pair": 1, "shapley": 2}


def add_max_rule(out, a, index, g, n: int, eps: float, rule: str):
    """Add to ``out`` (R, ..., S; contiguous) the max rule ``rule``'s share of ``g`` (R, ..., O): for each
    window, the multipliers of the input's and the reference's peak (``index``, (rows, ..., O)) in ``a``
    (rows, ..., S), on the CPU; see :func:`.paired._add_max_rule`."""
    a_, index_ = (t.detach().reshape(t.shape[0], -1, t.shape[-1]).contiguous().numpy() for t in (a, index))
    g_ = g.detach().reshape(g.shape[0], -1, g.shape[-1]).contiguous().numpy()
    _add_max_rule(out.view(out.shape[0], -1, out.shape[-1]).numpy(), a_, index_, g_, n, eps, _RULE_CODES[rule])
