"""LSTM and GRU layers under Rescale, as one op each instead of one op per position.

Unrolled, a recurrent layer is a chain of dense layers, sigmoids, tanhs and
products (:mod:`.rules`): exact, but thousands of small ops for a long
sequence. Here each layer keeps PyTorch's own forward (``aten.lstm`` /
``aten.gru``, one call per layer), and its backward is the DeepLIFT backward of
the unrolled cell, written out: the gate pre-activations of every position are
recomputed at once from the layer's outputs, the Rescale multipliers of every
sigmoid and tanh and the midpoints of every product are taken for all positions
at once, and only the recurrence itself (a few tensor ops per position, both
directions stacked) runs step by step. On the CPU the LSTM's backward is one
compiled loop instead (:mod:`.kernels`). The multipliers are the same
as those of the unrolled graph, so the scores are too (tested to float64
rounding).

LSTM cell, as PyTorch writes it (gates ``i, f, g, o``)::

    i, f, o = sigmoid(z_i), sigmoid(z_f), sigmoid(z_o);  g = tanh(z_g)
    c' = f * c + i * g;  h' = o * tanh(c')  [then W_hr h' with a projection]

GRU cell (gates ``r, z, n``; ``a`` = input part, ``b`` = hidden part)::

    r = sigmoid(a_r + b_r);  z = sigmoid(a_z + b_z);  n = tanh(a_n + b_n * r)
    h' = (h - n) * z + n

Under Rescale, a sigmoid or tanh passes ``Δy / Δz`` back; a product ``u * v``
passes ``v̅`` to ``u`` and ``u̅`` to ``v`` (midpoints of input and reference).
The split rules (RevealCancel, genomics-default) carry the positive and negative
parts of every delta through the cell; for those the layer is unrolled instead
(:func:`.graph.functional`).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from ..errors import ModelError
from .derivatives import DERIVATIVES
from .paired import compiled, midpoints, pairs
from .split import rescale_multiplier

aten = torch.ops.aten

#: Multiply-adds of one step's recurrent product below which the step loop runs on one thread: a small
#: ``bmm`` costs more in thread synchronisation than in arithmetic (8 us on one thread, 57 us on two, for
#: 20 rows of a 32-unit LSTM on 2 cores).
SMALL_STEP = 1 << 21


@contextmanager
def step_threads(macs: int):
    """Run the block on one intra-op thread when a step's product has fewer than :data:`SMALL_STEP`
    multiply-adds; restores the thread count after."""
    threads = torch.get_num_threads()
    if macs >= SMALL_STEP or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _layer_weights(params, has_biases: bool, num_layers: int, layer: int, directions: int):
    """Per direction of ``layer``: ``(w_ih, w_hh, b_ih, b_hh, w_hr)``, absent ones None, and the flat list."""
    stride = len(params) // (num_layers * directions)
    flat = list(params[layer * directions * stride : (layer + 1) * directions * stride])
    out = []
    for d in range(directions):
        chunk = flat[d * stride : (d + 1) * stride]
        b_ih, b_hh = (chunk[2], chunk[3]) if has_biases else (None, None)
        w_hr = chunk[-1] if stride in (3, 5) else None
        out.append((chunk[0], chunk[1], b_ih, b_hh, w_hr))
    return out, flat


def _mid(t: torch.Tensor, n: int) -> torch.Tensor:
    """Midpoints of input and reference for the reference rows, shape (..., n * k, C)."""
    x, r = pairs(t, n, dim=-2)  # (..., n, 1, C) and (..., n, k, C)
    return midpoints(x, r).flatten(-3, -2)


def _rescale(z: torch.Tensor, y: torch.Tensor, n: int, eps: float, derivative, out=None) -> torch.Tensor:
    """Rescale multipliers ``Δy / Δz`` of the reference rows, shape (..., n * k, C), of an elementwise op
    whose derivative is ``derivative``; written into ``out`` (shape (..., n, k, C)) when given."""
    zx, zr = pairs(z, n, dim=-2)
    yx, yr = pairs(y, n, dim=-2)
    return rescale_multiplier(zx, zr, yx, yr, eps, derivative, True, out).flatten(-3, -2)


_dsigmoid, _dtanh = DERIVATIVES[aten.sigmoid.default], DERIVATIVES[aten.tanh.default]


def _tanh(t: torch.Tensor) -> torch.Tensor:
    """``tanh(t)``, a new tensor; on the CPU as ``2 sigmoid(2 t) - 1``: PyTorch's CPU tanh is eight times
    slower than its sigmoid (2.7 against 0.34 ns per float32 here). Absolute error below 2e-7 in float32
    (tanh's own: 3e-8), 5e-16 in float64."""
    if t.device.type != "cpu":
        return torch.tanh(t)
    return torch.mul(t, 2.0).sigmoid_().mul_(2.0).sub_(1.0)


def _lstm_gate_rescale(z: torch.Tensor, gates: torch.Tensor, n: int, eps: float, hidden: int) -> torch.Tensor:
    """Rescale multipliers of the four LSTM gates (sigmoid, sigmoid, tanh, sigmoid), shape (..., n * k, 4H)."""
    out = z.new_empty(pairs(z, n, dim=-2)[1].shape)
    for start, stop, derivative in ((0, 2, _dsigmoid), (2, 3, _dtanh), (3, 4, _dsigmoid)):
        cols = slice(start * hidden, stop * hidden)
        _rescale(z[..., cols], gates[..., cols], n, eps, derivative, out[..., cols])
    return out.flatten(-3, -2)


def _unsteps(h: torch.Tensor) -> torch.Tensor:
    """(T, D, B, H), each direction in the order it runs, -> a layer's output (T, B, D * H)."""
    parts = [h[:, 0]] + ([h[:, 1].flip(0)] if h.shape[1] == 2 else [])
    return torch.cat(parts, dim=-1)


def _stack(ws, i):
    return None if ws[0][i] is None else torch.stack([w[i] for w in ws])


def _hidden_part(h_prev, w_hh, b_hh):
    """``W_hh h + b_hh`` for every step at once: h_prev (T, D, B, H) -> (T, D, B, G), a view of a
    (D, T, B, G) tensor: one product per direction (a matmul broadcast over T runs T small ones)."""
    steps, directions, rows, hidden = h_prev.shape
    out = torch.bmm(h_prev.transpose(0, 1).reshape(directions, steps * rows, hidden), w_hh.transpose(1, 2))
    if b_hh is not None:
        out += b_hh[:, None]
    return out.view(directions, steps, rows, -1).transpose(0, 1)


def _previous(h0, hs):
    """The state each step starts from: h0 (D, B, H), then every step's output but the last."""
    return torch.cat([h0.unsqueeze(0), hs[:-1]])


class _LSTMLayer(torch.autograd.Function):
    """One LSTM layer (every direction) on a paired batch; backward: DeepLIFT under Rescale.

    ``x`` (T, B, F): the layer's input. Returns PyTorch's output (T, B, D * Hout)
    and the last hidden and cell states of each direction, (D, B, Hout) and
    (D, B, H). Inside, tensors are (D, T, B, .), each direction in the order it
    runs (the reverse one flipped in time): the gates of every position come from
    one product per direction, ``[x, h_prev] [W_ih, W_hh]ᵀ``.
    """

    @staticmethod
    def forward(ctx, x, h0, c0, ws, flat, has_biases, n, eps):
        directions, hidden = len(ws), c0.shape[-1]
        steps, rows, features = x.shape
        w_ih, w_hh, w_hr = _stack(ws, 0), _stack(ws, 1), _stack(ws, 4)
        out, _, _ = aten.lstm.input(x, [h0, c0], flat, has_biases, 1, 0.0, False, directions == 2, False)
        h_out = h0.shape[-1]
        hs = _runs(out, directions)
        inputs = x.new_empty((directions, steps, rows, features + h_out))
        inputs[0, :, :, :features] = x
        if directions == 2:
            inputs[1, :, :, :features] = x.flip(0)
        inputs[:, 0, :, features:] = h0
        inputs[:, 1:, :, features:] = hs[:, :-1]
        weights = torch.cat([w_ih, w_hh], dim=-1).transpose(1, 2)
        flat_inputs = inputs.view(directions, steps * rows, -1)
        if has_biases:
            z = torch.baddbmm((_stack(ws, 2) + _stack(ws, 3)).unsqueeze(1), flat_inputs, weights)
        else:
            z = torch.bmm(flat_inputs, weights)
        z = z.view(directions, steps, rows, -1)
        gates = torch.sigmoid(z)
        cell = slice(2 * hidden, 3 * hidden)
        gates[..., cell] = _tanh(z[..., cell])
        if compiled(z):
            from .kernels import lstm_cells

            cells = lstm_cells(gates, c0)
        else:
            i, f, g, _ = gates.split(hidden, dim=-1)
            ig = i * g
            cells = torch.empty_like(ig)
            c = c0
            for ig_s, f_s, out_s in zip(ig.unbind(1), f.unbind(1), cells.unbind(1)):
                c = torch.addcmul(ig_s, f_s, c, out=out_s)
        ctx.save_for_backward(z, gates, cells, c0, w_ih, w_hh, w_hr)
        ctx.n, ctx.eps = n, eps
        return out, hs[:, -1].clone(), cells[:, -1].clone()

    @staticmethod
    def backward(ctx, g_out, g_h, g_c):
        z, gates, cells, c0, w_ih, w_hh, w_hr = ctx.saved_tensors
        directions, rows, _ = c0.shape
        g_hs = _runs(g_out, directions).clone(memory_format=torch.contiguous_format)
        if g_h is not None:
            g_hs[:, -1] += g_h
        args = (z, gates, cells, _tanh(cells), c0, g_hs, g_c, w_hh, w_hr, ctx.n, ctx.eps)
        if compiled(z):
            from .kernels import lstm_backward  # numba: imported when an LSTM is attributed

            grad_z, dh, dc = lstm_backward(*args)
        else:
            grad_z, dh, dc = _lstm_backward(*args)
        # z = W_ih x + ...: the gradient of x, each direction's brought back to time order
        grad_x = torch.bmm(grad_z.flatten(1, 2), w_ih).unflatten(1, z.shape[1:3])
        grad_x = grad_x[0] + grad_x[1].flip(0) if directions == 2 else grad_x[0]
        return (
            grad_x,
            _expand_rows(dh, (directions, rows, dh.shape[-1]), ctx.n, -2),
            _expand_rows(dc, c0.shape, ctx.n, -2),
            None,
            None,
            None,
            None,
            None,
        )


def _runs(out: torch.Tensor, directions: int) -> torch.Tensor:
    """A layer's output (T, B, D * H) as (D, T, B, H), each direction in the order it runs."""
    parts = out.unflatten(-1, (directions, -1)).movedim(-2, 0)
    return torch.stack([parts[0], parts[1].flip(0)]) if directions == 2 else parts


def _lstm_backward(z, gates, cells, tanh_c, c0, g_hs, g_c, w_hh, w_hr, n: int, eps: float):
    """The LSTM layer's backward in tensor ops (CUDA; see :func:`.kernels.lstm_backward`, the
    CPU's, for the arguments): the gradient of ``z`` and the reference rows' gradients of ``h0``, ``c0``."""
    z, gates, cells, tanh_c, g_hs = (t.transpose(0, 1) for t in (z, gates, cells, tanh_c, g_hs))  # (T, D, ...)
    steps, directions, rows, _ = z.shape
    hidden = cells.shape[-1]
    m_i, m_f, m_g, m_o = _lstm_gate_rescale(z, gates, n, eps, hidden).split(hidden, dim=-1)
    m_c = _rescale(cells, tanh_c, n, eps, _dtanh)
    i, f, g, o = _mid(gates, n).split(hidden, dim=-1)
    c_prev = _mid(_previous(c0, cells), n)
    # Per step (T, D, R, .), R reference rows: what dh and dc pass to the cell state and the gates.
    into_cell = (o * m_c).unbind(0)
    out_gate = (_mid(tanh_c, n) * m_o).unbind(0)
    cell_gates = torch.stack([g * m_i, c_prev * m_f, i * m_g], dim=-2).unbind(0)
    forget = f.unbind(0)
    grad_h = g_hs[:, :, n:].unbind(0)
    grad_all = z.new_empty(z.shape)  # input rows: no gradient; reference rows: filled step by step
    grad_all[:, :, :n].zero_()
    grad_z = grad_all[:, :, n:]
    out_grads = grad_z[..., 3 * hidden :].unbind(0)
    cell_grads = grad_z[..., : 3 * hidden].unflatten(-1, (3, hidden)).unbind(0)
    grad_z_steps = grad_z.unbind(0)
    dh = grad_h[-1]
    dc = g_c[:, n:] if g_c is not None else torch.zeros_like(forget[0])
    with step_threads(directions * (rows - n) * w_hh.shape[-2] * w_hh.shape[-1]):
        for s in range(steps - 1, -1, -1):
            if w_hr is not None:
                dh = torch.bmm(dh, w_hr)
            dc = torch.addcmul(dc, dh, into_cell[s])
            torch.mul(dh, out_gate[s], out=out_grads[s])
            torch.mul(dc.unsqueeze(-2), cell_gates[s], out=cell_grads[s])
            dc = dc * forget[s]
            dh = torch.baddbmm(grad_h[s - 1], grad_z_steps[s], w_hh) if s else torch.bmm(grad_z_steps[s], w_hh)
    return grad_all.transpose(0, 1), dh, dc


def _expand_rows(grad, shape, n, dim):
    """``grad`` of the reference rows into a zero gradient of the whole batch (rows in ``dim``)."""
    out = grad.new_empty(shape)
    out.narrow(dim, 0, n).zero_()
    out.narrow(dim, n, grad.shape[dim]).copy_(grad)
    return out


class _GRULayer(torch.autograd.Function):
    """One GRU layer (every direction) on a paired batch; backward: DeepLIFT under Rescale.

    ``pre`` (T, D, B, 3H): ``W_ih x + b_ih`` per direction in running order;
    returns the hidden states (T, D, B, H) in running order.
    """

    @staticmethod
    def forward(ctx, pre, h0, x, ws, flat, has_biases, n, eps):
        directions = len(ws)
        out, _ = aten.gru.input(x, h0, flat, has_biases, 1, 0.0, False, directions == 2, False)
        hs = _runs(out, directions).transpose(0, 1)
        h_prev = _previous(h0, hs)
        w_hh = _stack(ws, 1)
        ctx.save_for_backward(pre, _hidden_part(h_prev, w_hh, _stack(ws, 3)), h_prev, w_hh)
        ctx.n, ctx.eps = n, eps
        return hs

    @staticmethod
    def backward(ctx, g_hs):
        pre, b, h_prev, w_hh = ctx.saved_tensors
        n, eps = ctx.n, ctx.eps
        steps, directions, rows, hidden = h_prev.shape
        a_r, a_z, a_n = pre.split(hidden, dim=-1)
        b_r, b_z, b_n = b.split(hidden, dim=-1)
        z_r, z_z = a_r + b_r, a_z + b_z
        r, z = torch.sigmoid(z_r), torch.sigmoid(z_z)
        z_n = a_n + b_n * r
        new = _tanh(z_n)
        m_r = _rescale(z_r, r, n, eps, _dsigmoid)
        m_z = _rescale(z_z, z, n, eps, _dsigmoid)
        m_n = _rescale(z_n, new, n, eps, _dtanh)
        z_mid = _mid(z, n)
        into_new = (1 - z_mid) * m_n  # d h' / d z_n
        into_z = (_mid(h_prev, n) - _mid(new, n)) * m_z  # d h' / d z_z
        into_r = into_new * _mid(b_n, n) * m_r  # d h' / d z_r
        # Per step (T, D, R, .), R reference rows.
        to_input = torch.stack([into_r, into_z, into_new], dim=-2).unbind(0)
        to_hidden = torch.stack([into_r, into_z, into_new * _mid(r, n)], dim=-2).unbind(0)
        keep = z_mid.unbind(0)
        grad_h = g_hs[:, :, n:].unbind(0)
        grad_all = pre.new_empty(pre.shape)
        grad_all[:, :, :n].zero_()
        grad_a = grad_all[:, :, n:]
        input_grads = grad_a.unflatten(-1, (3, hidden)).unbind(0)
        dh = grad_h[-1]
        with step_threads(directions * (rows - n) * w_hh.shape[-2] * w_hh.shape[-1]):
            for s in range(steps - 1, -1, -1):
                d = dh.unsqueeze(-2)
                torch.mul(d, to_input[s], out=input_grads[s])
                grad_b = (d * to_hidden[s]).flatten(-2)
                carried = torch.addcmul(grad_h[s - 1], dh, keep[s]) if s else dh * keep[s]
                dh = torch.baddbmm(carried, grad_b, w_hh)
        return (
            grad_all,
            _expand_rows(dh, (directions, rows, hidden), n, -2),
            None,
            None,
            None,
            None,
            None,
            None,
        )


def _input_gates(x, ws):
    """``W_ih x + b_ih`` per direction, (T, D, B, G), the reverse direction flipped in time."""
    pre = []
    for d, (w_ih, _, b_ih, _, _) in enumerate(ws):
        p = torch.nn.functional.linear(x, w_ih, b_ih)
        pre.append(p.flip(0) if d == 1 else p)
    return torch.stack(pre, dim=1)


def _recurrent(kind):
    def apply(rule, op, args, kwargs, dim, rows):
        """``aten.lstm.input`` / ``aten.gru.input`` on the paired batch, with the Rescale backward."""
        names = (
            "input",
            "hx",
            "params",
            "has_biases",
            "num_layers",
            "dropout",
            "train",
            "bidirectional",
            "batch_first",
        )
        values = dict(zip(names, args), **kwargs)
        x, hx, params = values["input"], values["hx"], values["params"]
        has_biases, num_layers = values["has_biases"], values["num_layers"]
        directions, batch_first = 2 if values["bidirectional"] else 1, values["batch_first"]
        if values["train"] and values["dropout"]:
            raise ModelError(
                f"{kind.upper()} dropout is active (the model is in training mode); export it in eval mode"
            )
        if dim != (0 if batch_first else 1):
            raise ModelError(f"the {kind.upper()} runs over the batch dimension; seqlift needs the batch kept apart")
        x = x.transpose(0, 1) if batch_first else x
        h0s = hx[0] if kind == "lstm" else hx
        finals_h, finals_c = [], []
        for layer in range(num_layers):
            ws, flat = _layer_weights(params, has_biases, num_layers, layer, directions)
            layer_states = slice(layer * directions, (layer + 1) * directions)
            if kind == "lstm":
                x, h_last, c_last = _LSTMLayer.apply(
                    x, h0s[layer_states], hx[1][layer_states], ws, flat, has_biases, rule.n, rule.eps
                )
                finals_h.append(h_last)
                finals_c.append(c_last)
                continue
            pre = _input_gates(x, ws)
            hs = _GRULayer.apply(pre, h0s[layer_states], x.detach(), ws, flat, has_biases, rule.n, rule.eps)
            finals_h.append(hs[-1])
            x = _unsteps(hs)
        out = x.transpose(0, 1) if batch_first else x
        if kind == "lstm":
            return out, torch.cat(finals_h), torch.cat(finals_c)
        return out, torch.cat(finals_h)

    return apply


lstm_rule = _recurrent("lstm")
gru_rule = _recurrent("gru")
