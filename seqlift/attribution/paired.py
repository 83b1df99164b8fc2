"""The paired engine's rules: Rescale's backward on a batch of inputs followed by their references.

A paired batch holds ``n`` input rows, then ``k`` reference rows per input,
``[x_1 .. x_n, r_11 .. r_1k, r_21 .. r_nk]``. Each op here runs forward on the
whole batch as it is, and its backward gives reference row ``r_ij`` the
multiplier taken between it and its input row ``x_i`` (Rescale for
nonlinearities, the max rule for maxima, the midpoints for products); input
rows get no gradient. :class:`Rescale` is the rule object the interpreter
(:mod:`.interpreter`) hands these ops to.
"""

from __future__ import annotations

import torch

from .derivatives import derivative
from .split import DEFAULT_MAX_RULE, batch_back, batch_first, batch_first_dim, max_multipliers, rescale_multiplier

aten = torch.ops.aten


def pairs(t: torch.Tensor, n: int, dim: int = 0):
    """Input rows (shape ``n, 1`` in ``dim``) and reference rows (``n, k``) of a paired batch whose rows lie
    along ``dim``; both are views of ``t``."""
    dim = dim % t.dim()
    return t.narrow(dim, 0, n).unsqueeze(dim + 1), t.narrow(dim, n, t.shape[dim] - n).unflatten(dim, (n, -1))


def _paired_buffer(t: torch.Tensor, n: int, inputs=0):
    """A new tensor of ``t``'s shape whose ``n`` input rows are ``inputs`` (a value, or rows to copy), and a
    (n, k, ...) view of its reference rows for the caller to fill."""
    out = t.new_empty(t.shape)
    out[:n] = inputs
    return out, out[n:].view((n, -1) + tuple(t.shape[1:]))


def midpoints(x: torch.Tensor, r: torch.Tensor, out=None) -> torch.Tensor:
    """``(x + r) / 2`` of input rows ``x`` (n, 1, ...) and their reference rows ``r`` (n, k, ...), shape of ``r``."""
    return torch.lerp(r, x.expand_as(r), 0.5, out=out)


#: Whether CPU tensors take the compiled loops of :mod:`.kernels` (the LSTM layer; the backwards of softmax,
#: ReLU and the max rule) rather than the tensor ops that CUDA takes; the tests turn it off to check that the
#: two agree.
COMPILED = True


def compiled(t: torch.Tensor) -> bool:
    """Whether ``t``'s op runs as a compiled loop (:data:`COMPILED`, on the CPU)."""
    return COMPILED and t.device.type == "cpu"


def _add_max_rule(refs, a, index, g, n: int, eps: float, max_rule: str) -> None:
    """Add to ``refs`` (n, k, ..., S) the max rule's share of ``g`` (n, k, ..., O), the multipliers of the
    maxima of ``a`` over windows of the last dim, at the input's and each reference's peak (``index``
    (rows, ..., O), paired like ``a``)."""
    if compiled(refs) and refs.is_contiguous():  # one pass (numba)
        from .kernels import add_max_rule

        add_max_rule(refs.flatten(0, 1), a, index, g.flatten(0, 1), n, eps, max_rule)
        return
    ax, ar = pairs(a, n)
    ix, ir = pairs(index, n)
    ix = ix.expand_as(ir)
    ax = ax.expand((-1, ir.shape[1]) + tuple(ax.shape[2:]))
    m_p, m_q = max_multipliers(
        max_rule, ax.gather(-1, ix), ar.gather(-1, ix), ax.gather(-1, ir), ar.gather(-1, ir), eps
    )
    refs.scatter_add_(-1, ix, g * m_p)
    refs.scatter_add_(-1, ir, g * m_q)


def _relu_rescale_grad(ax, ar, yx, yr, grad, eps: float):
    """Gradient of reference rows through ReLU under Rescale, in one expression (fusable)."""
    dx = ax - ar
    small = dx.abs() < eps
    m = torch.where(small, ((ax + ar) > 0).to(ar.dtype), (yx - yr) / torch.where(small, torch.ones_like(dx), dx))
    return grad * m


_COMPILED: dict = {}


def _fused_relu_rescale_grad():
    """``_relu_rescale_grad`` compiled into one kernel (torch.compile), built on first use."""
    if "relu" not in _COMPILED:
        _COMPILED["relu"] = torch.compile(_relu_rescale_grad, dynamic=True)
    return _COMPILED["relu"]


class _PairedRescale(torch.autograd.Function):
    """Elementwise ``fn`` whose backward is the Rescale multiplier ``dy/dx``.

    ``a`` holds ``n`` input rows followed by ``n * k`` reference rows. The
    multiplier of reference row ``(i, j)`` is ``(fn(x_i) - fn(r_ij)) / (x_i - r_ij)``,
    falling back to the derivative at the midpoint where ``|x_i - r_ij| < eps``.
    Input rows get no gradient (only the pairs' multipliers are wanted).
    """

    @staticmethod
    def forward(ctx, a, fn, target, n, eps, fused):
        y = fn(a)
        ctx.fn, ctx.target, ctx.n, ctx.eps, ctx.fused = fn, target, n, eps, fused
        ctx.save_for_backward(a, y)
        return y

    @staticmethod
    def backward(ctx, grad):
        a, y = ctx.saved_tensors
        if ctx.target == torch.ops.aten.relu.default and compiled(a) and not ctx.fused:  # one pass (numba)
            from .kernels import relu_backward

            out = _paired_buffer(a, ctx.n)[0]
            relu_backward(a, y, grad[ctx.n :], ctx.n, ctx.eps, out[ctx.n :])
            return out, None, None, None, None, None
        ax, ar = pairs(a, ctx.n)
        yx, yr = pairs(y, ctx.n)
        if ctx.fused and ctx.target == torch.ops.aten.relu.default:  # prepare(compile=True): torch.compile's kernel
            out, refs = _paired_buffer(a, ctx.n)
            refs.copy_(_fused_relu_rescale_grad()(ax, ar, yx, yr, grad[ctx.n :].view(refs.shape), ctx.eps))
            return out, None, None, None, None, None
        m = rescale_multiplier(ax, ar, yx, yr, ctx.eps, lambda t: derivative(ctx.fn, t, ctx.target), True)
        out, refs = _paired_buffer(a, ctx.n)
        torch.mul(grad[ctx.n :].view(m.shape), m, out=refs)
        return out, None, None, None, None, None


class _PairedMax(torch.autograd.Function):
    """Max of ``a`` at ``index`` whose backward splits each window's delta exactly.

    ``a`` has shape (B, ..., S) and ``index`` (B, ..., O): for every output, the
    position in the last dim where that row peaks. For reference row ``(i, j)``,
    with ``p`` where input ``i`` peaks and ``q`` where the reference peaks,
    ``max = max(v[p], v[q])`` for both rows, and the max rule (see
    :func:`~.split.max_multipliers`) gives ``p`` and ``q`` their multipliers.
    """

    @staticmethod
    def forward(ctx, a, index, n, eps, max_rule):
        ctx.n, ctx.eps, ctx.max_rule = n, eps, max_rule
        ctx.save_for_backward(a, index)
        return a.gather(-1, index)

    @staticmethod
    def backward(ctx, grad):
        a, index = ctx.saved_tensors
        out, refs = _paired_buffer(a, ctx.n)
        refs.zero_()
        g = grad[ctx.n :].reshape(pairs(index, ctx.n)[1].shape)
        _add_max_rule(refs, a, index, g, ctx.n, ctx.eps, ctx.max_rule)
        return out, None, None, None, None


class _PairedSoftmax(torch.autograd.Function):
    """Softmax over the last dim, ``w = e / Σe`` with ``e = exp(x - max x)``, as six rules in one op.

    The backward gives each reference row the multipliers that the max rule
    (the shift), Rescale (``exp``, ``reciprocal``), the sum and the midpoint
    rule (``e * (1 / Σe)``) give it in turn, as the lowered graph has them
    (:func:`~.graph.lower`). Written as one op, it skips the passes over the
    (rows, ..., S) tensor that the six separate backwards spend on
    intermediate gradients: the max's zero-filled buffer, the shift's negated
    copy, and adding up the two paths into ``exp`` and into ``x``.
    """

    @staticmethod
    def forward(ctx, x, n, eps, max_rule):
        peak = x.amax(dim=-1, keepdim=True)  # amax: a fifth of argmax's time; the backward finds the place
        e = torch.sub(x, peak).exp_()
        total = e.sum(dim=-1, keepdim=True)
        u = torch.reciprocal(total)
        ctx.n, ctx.eps, ctx.max_rule = n, eps, max_rule
        ctx.save_for_backward(x, peak, e, total, u)
        return e * u

    @staticmethod
    def backward(ctx, grad):
        x, peak, e, total, u = ctx.saved_tensors
        n, eps = ctx.n, ctx.eps
        out, refs = _paired_buffer(x, n)
        g = grad[n:].reshape(refs.shape)
        ux, ur = pairs(u, n)
        # w = e * u: e takes u's midpoint, u takes Σ g ē; u = 1 / Σe and e = exp(y) take Rescale.
        m_u = rescale_multiplier(*pairs(total, n), ux, ur, eps, _reciprocal_derivative, True)
        if compiled(x):  # the same, each row read once (numba)
            from .kernels import softmax_backward

            sums, index = softmax_backward(g.flatten(0, 1), x, peak, e, u, m_u.flatten(0, 1), n, eps, out[n:])
            sums = sums.view(refs.shape[:-1] + (1,))
        else:
            index = x.argmax(dim=-1, keepdim=True)
            ex, er = pairs(e, n)
            into_u = (g * midpoints(ex, er)).sum(dim=-1, keepdim=True).mul_(m_u)
            torch.addcmul(into_u, g, midpoints(ux, ur), out=refs)
            refs.mul_(rescale_multiplier(*pairs(x - peak, n), ex, er, eps, torch.exp, True))
            sums = refs.sum(dim=-1, keepdim=True).neg_()
        # y = x - c: x takes the multiplier as it is, c = max x minus its sum, split by the max rule.
        _add_max_rule(refs, x, index, sums, n, eps, ctx.max_rule)
        return out, None, None, None


def _reciprocal_derivative(t):
    return derivative(torch.reciprocal, t, aten.reciprocal.default)


class _PairedProduct(torch.autograd.Function):
    """``f(a, b)`` for ``f`` linear in each operand, whose backward uses the midpoints.

    For reference row ``(i, j)``, ``f(a_x, b_x) - f(a_r, b_r) = f(a̅, Δb) + f(Δa, b̅)``
    with ``a̅ = (a_x + a_r) / 2`` (see :mod:`.rules`), so the gradient of ``a``
    is taken at ``(a, b̅)`` and that of ``b`` at ``(a̅, b)``. ``midpoint(t, i)``
    gives operand ``i``'s midpoints over the whole batch. ``n`` and ``rows``
    (None when the batch is not in dim 0 of both) let a ``bmm`` skip the
    midpoints of the larger operand (:func:`_bmm_big_first`).
    """

    @staticmethod
    def forward(ctx, a, b, f, midpoint, n, rows):
        ctx.f, ctx.midpoint, ctx.n, ctx.rows = f, midpoint, n, rows
        ctx.save_for_backward(a, b)
        if getattr(f, "op", None) in _MATMULS and a.dim() > 1 and b.dim() > 1:
            return _matmul(a, b)
        return f(a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        op = getattr(ctx.f, "op", None)
        batched = a.dim() == b.dim() > 2 and a.shape[:-2] == b.shape[:-2]  # no broadcasting
        if op in _MATMULS and batched and ctx.rows is not None and a.shape[0] % ctx.rows == 0:
            if a.numel() > b.numel():
                return (*_bmm_big_first(grad, a, ctx.midpoint(b, 1), ctx.n, ctx.rows), None, None, None, None)
            if b.numel() > a.numel():  # bmm(a, b)ᵀ = bmm(bᵀ, aᵀ)
                g_b, g_a = _bmm_big_first(grad.mT, b.mT, ctx.midpoint(a, 0).mT, ctx.n, ctx.rows)
                return g_a.mT, g_b.mT, None, None, None, None
        am, bm = ctx.midpoint(a, 0), ctx.midpoint(b, 1)
        vjp = _PRODUCT_VJPS.get(op)
        grads = None if vjp is None else vjp(grad, am, bm)
        if grads is not None:
            return (*grads, None, None, None, None)
        with torch.enable_grad():
            am, bm = am.requires_grad_(True), bm.requires_grad_(True)
            ga, gb = torch.autograd.grad(ctx.f(am, bm), (am, bm), grad)
        return ga, gb, None, None, None, None


def _bmm_big_first(grad, a, b_mid, n: int, rows: int):
    """Gradients of ``a @ b`` (batched alike, rows outermost: (rows x heads, L, K) or (rows, heads, L, K))
    at ``(a, b̅)`` and ``(a̅, b)`` without forming ``a̅`` (attention's weights): ``a̅ᵀ g = (aᵀ g + a_inᵀ g)
    / 2``, ``a_in`` being each row's input row, whose product with the gradients of all its rows is one
    ``matmul`` per input. Saves writing ``a̅`` and reading ``a`` twice for it."""
    grad_a = _matmul(grad, b_mid.mT)
    a_rows = a.reshape((rows, -1) + a.shape[-2:])  # (rows, h, L, K)
    g_rows = grad.reshape((rows, -1) + grad.shape[-2:])  # (rows, h, L, N)
    k = (rows - n) // n
    own = torch.cat([g_rows[:n].unsqueeze(1), g_rows[n:].unflatten(0, (n, k))], dim=1)  # (n, k + 1, h, L, N)
    cols = own.permute(0, 2, 3, 1, 4).flatten(-2)  # (n, h, L, (k + 1) N)
    inputs = torch.matmul(a_rows[:n].mT, cols).unflatten(-1, (k + 1, -1)).permute(0, 3, 1, 2, 4)
    grad_b = _matmul(a.mT, grad)
    halves = grad_b.view((rows, -1) + grad_b.shape[-2:])
    halves[:n] += inputs[:, 0]
    halves[n:] += inputs[:, 1:].flatten(0, 1)
    return grad_a, grad_b.mul_(0.5)


def _mul_vjp(grad, a, b):
    return (grad * b).sum_to_size(a.shape), (grad * a).sum_to_size(b.shape)


def _matmul(a, b):
    """``a @ b`` (matrices); on the CPU a narrow product (``b`` of few columns, ``a`` of many rows, as
    attention's ``softmax(QKᵀ) V``) as ``(bᵀ aᵀ)ᵀ``, which MKL runs 40% faster (3.4 against 5.7 ms for
    84 products of 250 x 250 by 250 x 8 here)."""
    if a.device.type == "cpu" and b.shape[-1] < 16 <= a.shape[-2]:
        return torch.matmul(b.mT, a.mT).mT.contiguous()
    return torch.matmul(a, b)


def _matmul_vjp(grad, a, b):
    if a.dim() < 2 or b.dim() < 2:  # vector operands: let autograd handle the squeezed dims
        return None
    return _matmul(grad, b.mT).sum_to_size(a.shape), _matmul(a.mT, grad).sum_to_size(b.shape)


#: Backward of the commonest products written out, so the product is not run again to differentiate it.
_PRODUCT_VJPS = {aten.mul.Tensor: _mul_vjp, aten.bmm.default: _matmul_vjp, aten.matmul.default: _matmul_vjp}
_MATMULS = (aten.bmm.default, aten.matmul.default)


class Rescale:
    """The Rescale rule for a paired batch of ``n`` inputs followed by their references.

    ``rows`` is the size of that batch (``n + n * k``); values whose batch is
    not in dimension 0 alone (see :func:`~.graph.batch_dims`) are paired through
    :func:`batch_first`.
    """

    def __init__(
        self, n: int, eps: float, fused: bool = False, rows: int | None = None, max_rule: str = DEFAULT_MAX_RULE
    ):
        self.n, self.eps, self.fused, self.rows, self.max_rule = n, eps, fused, rows, max_rule

    def _paired(self, t, dim):
        return dim == 0 and (self.rows is None or t.shape[0] == self.rows)

    def elementwise(self, fn, a, target=None, dim=0):
        """``fn(a)`` elementwise, with the Rescale multiplier as its backward."""
        if self._paired(a, dim):
            return _PairedRescale.apply(a, fn, target, self.n, self.eps, self.fused)
        out = _PairedRescale.apply(batch_first(a, dim, self.rows), fn, target, self.n, self.eps, False)
        return batch_back(out, dim)

    def max(self, a, index):
        """Max of ``a`` (B, ..., S) at ``index`` (B, ..., O), split exactly by the max rule."""
        return _PairedMax.apply(a, index, self.n, self.eps, self.max_rule)

    def softmax(self, x, dim, batch_dim=0):
        """Softmax of ``x`` over ``dim`` (the lowered graph's six ops), with their multipliers as one backward."""
        if not self._paired(x, batch_dim):
            moved = batch_first_dim(dim % x.dim(), batch_dim)
            return batch_back(self.softmax(batch_first(x, batch_dim, self.rows), moved), batch_dim)
        w = _PairedSoftmax.apply(x.movedim(dim, -1), self.n, self.eps, self.max_rule)
        return w.movedim(-1, dim)

    def hold(self, t, dim=0):
        """Reference rows take their input's value: no delta, no gradient."""
        return hold_inputs(t, self.n, dim, self.rows)

    def product(self, f, a, b, dims=(0, 0)):
        """``f(a, b)``, linear in each of ``a`` and ``b``, with the midpoint multipliers as its backward."""

        def midpoint(t, i):
            t, paired = t.detach(), self._paired(t, dims[i])
            u = t if paired else batch_first(t, dims[i], self.rows)
            x, r = pairs(u, self.n)
            mid, refs = _paired_buffer(u, self.n, u[: self.n])
            midpoints(x, r, out=refs)
            return mid if paired else batch_back(mid, dims[i])

        paired = dims == (0, 0) and self.rows is not None
        return _PairedProduct.apply(a, b, f, midpoint, self.n, self.rows if paired else None)


def hold_inputs(t: torch.Tensor, n: int, dim: int = 0, rows: int | None = None) -> torch.Tensor:
    """``t`` with every reference row replaced by its input row's value (detached)."""
    t = t.detach()
    if dim or (rows is not None and t.shape[0] != rows):
        return batch_back(hold_inputs(batch_first(t, dim, rows), n), dim)
    out, refs = _paired_buffer(t, n, t[:n])
    refs.copy_(t[:n].unsqueeze(1).expand_as(refs))
    return out
