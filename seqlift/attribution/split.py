"""DeepLIFT with positive and negative deltas kept apart (RevealCancel, and Rescale per layer).

Every value that depends on the input is carried as a :class:`Split`: the
activations of the batch (``n`` inputs, then their ``n * k`` references) and
the positive and negative parts of each row's delta from its reference
(zero on input rows). Linear layers split their coefficients by sign, the
linear rule of the DeepLIFT paper::

    dz+ = W+ dx+ + W- dx-        dz- = W- dx+ + W+ dx-

so ``dz+`` collects the positive terms ``w * dx`` and ``dz-`` the negative ones.
A nonlinearity ``y = f(x)`` at reference value ``r`` then assigns, under
RevealCancel::

    dy+ = 1/2 [f(r + dx+) - f(r)] + 1/2 [f(r + dx- + dx+) - f(r + dx-)]
    dy- = 1/2 [f(r + dx-) - f(r)] + 1/2 [f(r + dx+ + dx-) - f(r + dx+)]

with multipliers ``dy+/dx+`` and ``dy-/dx-``; under Rescale, both parts get
``m = dy/dx``. ``dy+ + dy- = f(x) - f(r)`` either way, so summation-to-delta
holds. Max pooling splits its delta with the same max rule as the paired
engine (:data:`MAX_RULES`); under ``pair`` the layer's rule is applied to ``|a - b|``.
"""

from __future__ import annotations

import torch

from ..errors import ModelError
from .derivatives import derivative

aten = torch.ops.aten


class Split:
    """Activations and the positive/negative parts of their deltas, all of the same shape.

    A plain class rather than a dataclass: torch's pytree flattens dataclasses,
    and the graph's input must receive the whole value.
    """

    __slots__ = ("act", "pos", "neg")

    def __init__(self, act, pos, neg):
        self.act, self.pos, self.neg = act, pos, neg

    def map(self, fn) -> "Split":
        return Split(fn(self.act), fn(self.pos), fn(self.neg))

    # the few tensor methods the max rules call on their input and output
    def flatten(self, *a):
        return self.map(lambda t: t.flatten(*a))

    def movedim(self, *a):
        return self.map(lambda t: t.movedim(*a))

    def unflatten(self, *a):
        return self.map(lambda t: t.unflatten(*a))

    def reshape(self, *a):
        return self.map(lambda t: t.reshape(*a))

    def squeeze(self, *a):
        return self.map(lambda t: t.squeeze(*a))

    def unsqueeze(self, *a):
        return self.map(lambda t: t.unsqueeze(*a))

    def dim(self):
        return self.act.dim()

    @property
    def shape(self):
        return self.act.shape

    @property
    def device(self):
        return self.act.device


def batch_first(t, dim: int, rows: int):
    """``t`` (a tensor or :class:`Split`) with its batch dimension ``dim`` moved first and unfolded to
    ``(rows, -1, ...)``.

    ``rows`` is the batch size of the model's input; a dimension into which other
    dimensions were folded (attention heads: ``rows * heads``, batch outermost)
    is unfolded so that row ``i`` of the result is row ``i`` of the input batch.
    """
    return t.movedim(dim, 0).unflatten(0, (rows, -1))


def batch_back(t, dim: int):
    """Inverse of :func:`batch_first`."""
    return t.flatten(0, 1).movedim(0, dim)


def batch_first_dim(d: int, dim: int) -> int:
    """Where dimension ``d`` (not the batch, ``dim``, and counted from 0) lies after :func:`batch_first`."""
    return 2 + d if d < dim else 1 + d


def activations(x):
    """The activation stream of ``x`` (``x`` itself when it is a plain tensor)."""
    return x.act if isinstance(x, Split) else x


def stream(x, which: str):
    """One stream (``act``, ``pos`` or ``neg``) of ``x``, through tuples and lists; a value that is not a
    :class:`Split` is all activation (its deltas are zeros)."""
    if isinstance(x, Split):
        return getattr(x, which)
    if isinstance(x, (tuple, list)):
        return type(x)(stream(o, which) for o in x)
    return x if which == "act" else torch.zeros_like(x)


# ---------------------------------------------------------------- nonlinearities


def rescale_multiplier(ax, ar, yx, yr, eps: float, derivative, elementwise: bool = False, out=None):
    """Rescale multipliers ``(y_x - y_r) / (x - r)`` of inputs ``ax`` and references ``ar`` (broadcast).

    Where ``|x - r| < eps`` (also where both are the same infinity, e.g. a -inf
    attention mask), ``derivative`` at the midpoint. The fallback is taken over
    the whole tensor and selected with ``where``, unless ``derivative`` is
    elementwise (it may then be given a flat tensor) and at most
    :data:`SPARSE_FALLBACK` of the places need it: then it is evaluated there
    alone (e.g. where an attention row's input and reference both peak, shifted
    to 0 before ``exp``), saving three passes over the tensor. ``out``, when
    given, receives the multipliers (a view is fine) and is returned.
    """
    dx = ax - ar
    # Places where |dx| < eps get their quotient replaced below, so dx needs no guard against 0.
    m = torch.sub(yx, yr, out=out).div_(dx)
    small = ~(dx.abs_() >= eps)
    count = int(small.count_nonzero())
    if not count:
        return m
    if not elementwise or count > SPARSE_FALLBACK * m.numel():
        return torch.where(small, derivative((ax + ar) * 0.5), m, out=m)
    where = small.nonzero(as_tuple=True)
    m[where] = derivative((ax.expand_as(m)[where] + ar.expand_as(m)[where]) * 0.5)
    return m


#: Largest fraction of a tensor's places at which :func:`rescale_multiplier` evaluates the derivative alone.
SPARSE_FALLBACK = 1 / 16


def _safe_ratio(num, den, fallback, eps):
    """``num / den``, with ``fallback()`` (a tensor) where ``|den| < eps``."""
    small = den.abs() < eps
    ratio = num / den.masked_fill(small, 1.0)
    if small.any():
        ratio = torch.where(small, fallback(), ratio)
    return ratio


class _SplitNonlinear(torch.autograd.Function):
    """``(dx+, dx-) -> (dy+, dy-)`` at reference activations ``r``; backward uses the multipliers."""

    @staticmethod
    def forward(ctx, r, pos, neg, fn, reveal, eps):
        f_r = fn(r)
        if reveal:
            f_p, f_n, f_pn = fn(r + pos), fn(r + neg), fn(r + pos + neg)
            dy_pos = 0.5 * ((f_p - f_r) + (f_pn - f_n))
            dy_neg = 0.5 * ((f_n - f_r) + (f_pn - f_p))
            # limits as dx+ -> 0 (resp. dx- -> 0) of dy+/dx+ (resp. dy-/dx-)
            m_pos = _safe_ratio(dy_pos, pos, lambda: 0.5 * (derivative(fn, r) + derivative(fn, r + neg)), eps)
            m_neg = _safe_ratio(dy_neg, neg, lambda: 0.5 * (derivative(fn, r) + derivative(fn, r + pos)), eps)
        else:
            d = pos + neg
            m_pos = m_neg = _safe_ratio(fn(r + d) - f_r, d, lambda: derivative(fn, r + 0.5 * d), eps)
            dy_pos, dy_neg = m_pos * pos, m_neg * neg
        ctx.save_for_backward(m_pos, m_neg)
        return dy_pos, dy_neg

    @staticmethod
    def backward(ctx, g_pos, g_neg):
        m_pos, m_neg = ctx.saved_tensors
        return None, g_pos * m_pos, g_neg * m_neg, None, None, None


#: How a max splits its delta between ``a``, the element where the input peaks, and ``b``, the element
#: where the reference peaks (``max = max(a, b)`` for both; ``Δmax = a_x - b_r``, and ``Δb <= Δmax <= Δa``):
#:
#: ``sign`` (the default)
#:     ``a`` gets ``max(Δmax, 0)`` and ``b`` gets ``min(Δmax, 0)``: a rise goes to the input's peak, a fall
#:     to the reference's (tangermeme's ``deep_lift_shap`` max-pool rule).
#: ``pair``
#:     ``max(a, b) = (a + b)/2 + |a - b|/2``, with the Rescale (or RevealCancel) multiplier on ``|a - b|``.
#: ``shapley``
#:     the two-player Shapley value of ``max(a, b)``:
#:     ``φ_a = ½[max(a_x, b_r) - max(a_r, b_r)] + ½[max(a_x, b_x) - max(a_r, b_x)]``, ``φ_b = Δmax - φ_a``.
#:
#: Each gives ``a`` and ``b`` multipliers in [0, 1] that sum the two deltas to ``Δmax`` exactly; where input
#: and reference peak at the same element, each is gradient routing.
MAX_RULES = ("sign", "pair", "shapley")

#: The default max rule: it found the demo's planted motif sites best (benchmarks/maxpool_rules.py).
DEFAULT_MAX_RULE = "sign"


def max_multipliers(rule: str, ax, ar, bx, br, eps: float):
    """Multipliers ``(m_a, m_b)`` with ``m_a (a_x - a_r) + m_b (b_x - b_r) = max(a_x, b_x) - max(a_r, b_r)``.

    ``a`` is the element where the input peaks (``a_x >= b_x``) and ``b`` the one where the
    reference peaks (``b_r >= a_r``); the tensors hold one window per element. Where ``|Δa| < eps``,
    ``a`` takes the limit of its multiplier (1 for ``sign``, ½ for ``shapley``: gradient routing when
    ``a`` and ``b`` are one element) and ``b`` the rest of the delta, so the split stays exact unless
    ``|Δb| < eps`` too (then ``|Δmax| < eps``).
    """
    if rule == "pair":
        dx, dr = ax - bx, ar - br  # dx >= 0 >= dr
        den = dx - dr
        small = den.abs() < eps
        m_abs = torch.where(small, torch.sign(dx + dr), (dx.abs() - dr.abs()) / den.masked_fill(small, 1.0))
        return 0.5 * (1 + m_abs), 0.5 * (1 - m_abs)
    if rule not in MAX_RULES:
        raise ValueError(f"unknown max rule {rule!r}; choose one of {', '.join(MAX_RULES)}")
    delta = ax - br
    da, db = ax - ar, bx - br
    if rule == "sign":
        phi_a, limit = delta.clamp(min=0), 1.0
    else:
        phi_a, limit = 0.5 * ((torch.maximum(ax, br) - br) + (ax - torch.maximum(ar, bx))), 0.5
    m_a = _safe_ratio(phi_a, da, lambda: torch.full_like(da, limit), eps)
    m_b = _safe_ratio(delta - m_a * da, db, lambda: torch.full_like(db, 1.0 - limit), eps)
    return m_a, m_b


#: Functions defined on part of the line: RevealCancel would evaluate them at ``r + dx-``
#: alone, which can leave their domain, so they always take Rescale (``f(x)`` and ``f(r)`` only).
RESCALE_ONLY = {aten.log, aten.log1p, aten.sqrt, aten.rsqrt, aten.reciprocal, aten.pow}


class SplitRule:
    """Rescale (``reveal=False``) or RevealCancel (``reveal=True``) on split deltas.

    Parameters
    ----------
    n : int
        Number of input rows at the head of the batch; each is followed, after
        all inputs, by its ``k`` reference rows.
    reveal : bool
    eps : float
        ``|dx|`` below which multipliers fall back to their limits (derivatives).
    max_rule : str
        How max pooling and max reductions split their delta: one of :data:`MAX_RULES`.
    """

    def __init__(self, n: int, reveal: bool, eps: float, max_rule: str = DEFAULT_MAX_RULE):
        self.n, self.reveal, self.eps, self.max_rule = n, reveal, eps, max_rule

    def elementwise(self, fn, x: Split, target=None) -> Split:
        with torch.no_grad():
            act = fn(x.act)
        reveal = self.reveal and getattr(target, "overloadpacket", None) not in RESCALE_ONLY
        pos, neg = _SplitNonlinear.apply(x.act.detach(), x.pos, x.neg, fn, reveal, self.eps)
        return Split(act, pos, neg)

    def max(self, x: Split, index: torch.Tensor) -> Split:
        """Max of ``x`` (B, ..., S) at ``index`` (B, ..., O), split between ``a``, where the input row
        peaks, and ``b``, where the row itself peaks, by the max rule (see :data:`MAX_RULES`).

        ``pair`` writes ``max(a, b) = (a + b)/2 + |a - b|/2`` and gives ``|a - b|`` this
        rule (Rescale or RevealCancel); ``sign`` and ``shapley`` scale both parts of each
        delta by the multipliers of :func:`max_multipliers` (non-negative, so a part keeps its sign).
        """
        n = self.n
        k = (index.shape[0] - n) // n
        ia = torch.cat([index[:n], index[:n].repeat_interleave(k, dim=0)])
        ib = index
        a = x.map(lambda t: t.gather(-1, ia))
        b = x.map(lambda t: t.gather(-1, ib))
        with torch.no_grad():
            act = x.act.gather(-1, ib)
        if self.max_rule == "pair":
            u = Split(a.act - b.act, a.pos - b.neg, a.neg - b.pos)
            v = self.elementwise(torch.abs, u)
            return Split(act, 0.5 * (a.pos + b.pos + v.pos), 0.5 * (a.neg + b.neg + v.neg))
        with torch.no_grad():
            m_a, m_b = max_multipliers(
                self.max_rule, a.act + a.pos + a.neg, a.act, b.act + b.pos + b.neg, b.act, self.eps
            )
        return Split(act, m_a * a.pos + m_b * b.pos, m_a * a.neg + m_b * b.neg)


def product(f, a: Split, b: Split) -> Split:
    """``f(a, b)`` for ``f`` linear in each operand: ``Δf = f(a̅, Δb) + f(Δa, b̅)``.

    ``a̅ = r_a + Δa / 2`` is the midpoint of each row and its input (the row
    itself on input rows). The midpoints are coefficients, split by sign like a
    linear layer's weights, and held fixed in the backward pass, so the
    multipliers are ``b̅`` for ``a`` and ``a̅`` for ``b`` (see :mod:`.rules`).
    """
    with torch.no_grad():
        act = f(a.act, b.act)
    am = (a.act + 0.5 * (a.pos + a.neg)).detach()
    bm = (b.act + 0.5 * (b.pos + b.neg)).detach()
    am_pos, am_neg, bm_pos, bm_neg = am.clamp(min=0), am.clamp(max=0), bm.clamp(min=0), bm.clamp(max=0)
    pos = f(am_pos, b.pos) + f(am_neg, b.neg) + f(a.pos, bm_pos) + f(a.neg, bm_neg)
    neg = f(am_neg, b.pos) + f(am_pos, b.neg) + f(a.pos, bm_neg) + f(a.neg, bm_pos)
    return Split(act, pos, neg)


# ---------------------------------------------------------------- linear ops with signed coefficients


def _signed(apply, x: Split, coef):
    """``apply(stream, coef)`` linear in both; coefficients split by sign."""
    c_pos, c_neg = coef.clamp(min=0), coef.clamp(max=0)
    pos = apply(x.pos, c_pos) + apply(x.neg, c_neg)
    neg = apply(x.pos, c_neg) + apply(x.neg, c_pos)
    return pos, neg


def _weighted(op, args, kwargs):
    """conv*, linear, convolution: ``op(input, weight, bias, *rest)`` with the bias dropped for deltas."""
    return _signed(lambda t, w: op(t, w, None, *args[3:], **kwargs), args[0], args[1])


def _matmul(op, args, kwargs):
    """mm / bmm / matmul / addmm: whichever operand is active is split, the other is the weight."""
    if op._opname == "addmm":  # addmm(bias, a, b, beta, alpha): bias dropped
        a, b = args[1], args[2]
        op = aten.mm.default
    else:
        a, b = args[0], args[1]
    if isinstance(a, Split):
        return _signed(lambda t, w: op(t, w), a, b)
    return _signed(lambda t, w: op(w, t), b, a)


def _einsum(op, args, kwargs):
    """einsum with one input-dependent operand: the others, folded into one tensor, are its signed coefficients.

    (With two input-dependent operands the node has the product rule and does not come here.)
    """
    equation, operands = args[0], list(args[1])
    i = next(j for j, t in enumerate(operands) if isinstance(t, Split))
    x, consts = operands[i], operands[:i] + operands[i + 1 :]
    if len(consts) == 1:
        swap = i == 1
        return _signed(lambda t, w: op(equation, [w, t] if swap else [t, w]), x, consts[0])
    lhs, arrow, rhs = equation.replace(" ", "").partition("->")
    subs = lhs.split(",")
    if "." in lhs:
        raise ModelError(
            f"einsum {equation!r}: an ellipsis with more than one constant operand is not supported "
            "under the split rules; write the constants' product as one tensor"
        )
    if not arrow:  # implicit output: the subscripts that appear once, in alphabetical order
        rhs = "".join(sorted(c for c in set(lhs) - {","} if lhs.count(c) == 1))
    const_subs = subs[:i] + subs[i + 1 :]
    keep = "".join(dict.fromkeys(c for c in "".join(const_subs) if c in subs[i] or c in rhs))
    coef = torch.einsum(",".join(const_subs) + "->" + keep, *consts)
    folded = f"{subs[i]},{keep}->{rhs}"
    return _signed(lambda t, w: op(folded, [t, w]), x, coef)


def _mul(op, args, kwargs):
    a, b = args[0], args[1]
    x, c = (a, b) if isinstance(a, Split) else (b, a)
    c = torch.as_tensor(c, dtype=x.act.dtype, device=x.act.device)
    return _signed(lambda t, w: t * w, x, c)


def _div(op, args, kwargs):
    c = torch.as_tensor(args[1], dtype=args[0].act.dtype, device=args[0].act.device)
    return _signed(lambda t, w: t * w, args[0], 1.0 / c)


def _batch_norm(op, args, kwargs):
    """Eval-mode batch norm: a per-channel scale ``weight / sqrt(var + eps)``."""
    names = ["input", "weight", "bias", "running_mean", "running_var"]
    params = {**dict(zip(names, args)), **kwargs}
    eps = args[7] if op._opname == "batch_norm" else args[6]
    x = params["input"]
    scale = torch.rsqrt(params["running_var"] + eps)
    if params["weight"] is not None:
        scale = scale * params["weight"]
    shape = [1, -1] + [1] * (x.act.dim() - 2)
    pos, neg = _signed(lambda t, w: t * w, x, scale.reshape(shape))
    if op._opname != "batch_norm":  # returns (out, mean, invstd)
        return (pos, None, None), (neg, None, None)
    return pos, neg


def _add(sign):
    """add / sub / rsub: constants drop out of deltas; a negative coefficient swaps the parts."""

    def split(op, args, kwargs):
        alpha = kwargs.get("alpha", args[2] if len(args) > 2 else 1)
        a, b = (args[1], args[0]) if op._opname == "rsub" else (args[0], args[1])
        scale = sign * alpha
        pos = neg = 0
        if isinstance(a, Split):
            pos, neg = a.pos, a.neg
        if isinstance(b, Split):
            bp, bn = (b.pos, b.neg) if scale >= 0 else (b.neg, b.pos)
            pos, neg = pos + scale * bp, neg + scale * bn
        return pos, neg

    return split


def _neg(op, args, kwargs):
    return -args[0].neg, -args[0].pos


def _pad(op, args, kwargs):
    """Constant padding pads deltas with 0; other modes only move values."""
    x, pad = args[0], args[1]
    mode = args[2] if len(args) > 2 else kwargs.get("mode", "constant")
    if op._opname == "pad" and mode != "constant":
        return op(x.pos, *args[1:], **kwargs), op(x.neg, *args[1:], **kwargs)
    return torch.nn.functional.pad(x.pos, pad), torch.nn.functional.pad(x.neg, pad)


def _select(*values):
    """Selections with a constant mask (``masked_fill``, ``where``): constants and fill values become 0 in deltas."""

    def split(op, args, kwargs):
        def stream(which):
            a = list(args)
            for i in values:
                if i < len(a):
                    a[i] = (
                        getattr(a[i], which)
                        if isinstance(a[i], Split)
                        else (torch.zeros_like(a[i]) if isinstance(a[i], torch.Tensor) else 0)
                    )
            return op(*a, **kwargs)

        return stream("pos"), stream("neg")

    return split


#: Linear ops whose coefficients can be negative, or that add constants: how deltas pass them.
SPLITS = {
    aten.conv1d: _weighted,
    aten.conv2d: _weighted,
    aten.conv_transpose1d: _weighted,
    aten.linear: _weighted,
    aten.convolution: _weighted,
    aten.addmm: _matmul,
    aten.mm: _matmul,
    aten.bmm: _matmul,
    aten.matmul: _matmul,
    aten.einsum: _einsum,
    aten.mul: _mul,
    aten.multiply: _mul,
    aten.div: _div,
    aten.true_divide: _div,
    aten.divide: _div,
    aten.masked_fill: _select(0, 2),
    aten.where: _select(1, 2),
    aten.subtract: _add(-1),
    aten.negative: _neg,
    aten.batch_norm: _batch_norm,
    aten._native_batch_norm_legit_no_training: _batch_norm,
    aten.add: _add(1),
    aten.sub: _add(-1),
    aten.rsub: _add(-1),
    aten.neg: _neg,
    aten.constant_pad_nd: _pad,
    aten.pad: _pad,
}


def streamwise(op, args, kwargs):
    """Linear ops with non-negative coefficients and no constant term: apply to each stream.

    Floating-point tensors that do not depend on the input (a constant concatenated
    to an activation, say) contribute nothing to deltas, so they become zeros.
    """

    def take(which):
        def pick(v):
            if isinstance(v, Split):
                return getattr(v, which)
            if which != "act" and isinstance(v, torch.Tensor) and v.is_floating_point():
                return torch.zeros_like(v)
            if isinstance(v, (list, tuple)):
                return type(v)(pick(u) for u in v)
            return v

        return [pick(a) for a in args], {k: pick(v) for k, v in kwargs.items()}

    results = []
    for which in ("pos", "neg"):
        a, kw = take(which)
        results.append(op(*a, **kw))
    return tuple(results)
