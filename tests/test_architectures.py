"""A zoo of architectures, exported to .pt2 as the README says: exact DeepLIFT under every rule.

Each model is exported with a dynamic batch dimension, saved and loaded again,
then scored with Rescale, RevealCancel and genomics-default. Contributions must
sum to f(x) - f(r) for every (input, reference) pair: within 1e-8 (relative) in
float64 and 1e-4 in float32. Gradient methods and ISM must run on each of them.
"""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.export import Dim

from seqlift.attribution import deeplift, prepare
from seqlift.attribution.gradients import integrated_gradients, saliency
from seqlift.attribution.ism import ism
from seqlift.errors import UnsupportedOpError

#: Each model is exported and scored under every rule: minutes in all (make test runs them; make quick-test does not).
pytestmark = pytest.mark.slow

L = 16


class ConvHead(nn.Module):
    """conv -> body (N, L, C) or (N, C, L) -> dense head with 2 outputs."""

    def __init__(self, body, channels=6, out_features=None, transpose=False):
        super().__init__()
        self.conv = nn.Conv1d(4, channels, 3, padding=1)
        self.body = body
        self.transpose = transpose
        self.head = nn.Linear(out_features or channels * L, 2)

    def forward(self, x):
        h = self.conv(x)
        h = self.body(h.transpose(1, 2) if self.transpose else h)
        return self.head(h.flatten(1))


class InPlace(nn.Module):
    """ReLU(inplace=True), clip_, add_ and a residual, as most published models write them."""

    def __init__(self):
        super().__init__()
        self.act = nn.ReLU(inplace=True)
        self.conv = nn.Conv1d(6, 6, 3, padding=1)

    def forward(self, x):
        h = self.act(x.clone())
        y = self.conv(h)
        y.clip_(-0.5, 0.8)
        y.add_(h)
        return F.relu_(y)


class NoRuleNeeded(nn.Module):
    """zeros_like, constant-index strand flip, clip, a dtype assertion."""

    def forward(self, x):
        z = torch.zeros_like(x)
        flipped = x[:, torch.tensor([5, 4, 3, 2, 1, 0])].flip(-1)
        return (x.clip(-1, 1) + z + 0.5 * flipped).to(x.dtype)


class StrandMax(nn.Module):
    """torch.max(a, b), torch.maximum and torch.minimum of two tensors (strand-max wrappers)."""

    def forward(self, x):
        fwd, rev = torch.tanh(x), torch.sigmoid(x.flip(1, 2))
        return torch.max(fwd, rev) - 0.5 * torch.minimum(fwd, rev) + torch.maximum(x, rev)


class Gating(nn.Module):
    """GLU, Enformer's GELU x * sigmoid(1.702 x), x * x, a division by an active value, erf and pow."""

    def __init__(self):
        super().__init__()
        self.glu = nn.GLU(dim=1)
        self.proj = nn.Conv1d(6, 12, 1)

    def forward(self, x):
        g = self.glu(self.proj(x))
        return g + x * torch.sigmoid(1.702 * x) - x * x / (1 + x.abs()) + torch.erf(x) - 0.1 * x.pow(3)


class Attention(nn.Module):
    """softmax(Q Kᵀ) V with einsum and matmul; layer norm inside the network. Input (N, L, C)."""

    def __init__(self, d=6):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.norm = nn.LayerNorm(d)

    def forward(self, h):
        q, k, v = self.q(h), self.k(h), self.v(h)
        w = torch.softmax(torch.einsum("bld,bmd->blm", q, k) / 2.0, dim=-1)
        return self.norm(h + torch.matmul(w, v))


class SDPA(nn.Module):
    """F.scaled_dot_product_attention with two heads, causal, and RMS norm. Input (N, L, C)."""

    def __init__(self, d=6):
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d)
        self.norm = nn.RMSNorm(d)

    def forward(self, h):
        n, length, d = h.shape
        q, k, v = self.qkv(h).reshape(n, length, 3, 2, d // 2).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.norm(a.transpose(1, 2).reshape(n, length, d))


class MHA(nn.Module):
    """nn.MultiheadAttention, sequence-first (the default) and batch-first. Input (N, L, C)."""

    def __init__(self, d=6):
        super().__init__()
        self.seq_first = nn.MultiheadAttention(d, 2)
        self.batch_first = nn.MultiheadAttention(d, 3, batch_first=True)

    def forward(self, h):
        s = h.transpose(0, 1)
        a, _ = self.seq_first(s, s, s)
        b, _ = self.batch_first(h, h, h, need_weights=False)
        return F.relu(a.transpose(0, 1)) + b


class SeqFirst(nn.Module):
    """A sequence-first module (input (L, N, C)) applied to (N, L, C)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, h):
        return self.inner(h.transpose(0, 1)).transpose(0, 1)


def _encoder(**kw):
    return nn.TransformerEncoderLayer(6, 2, 12, dropout=0.1, **kw)


class Recurrent(nn.Module):
    """A recurrent layer over positions; input (N, L, C), output (N, L, H)."""

    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, h):
        if not self.rnn.batch_first:
            return self.rnn(h.transpose(0, 1))[0].transpose(0, 1)
        return self.rnn(h)[0]


def _seq(body):
    return lambda: ConvHead(body)


def _tokens(body, out_features=6 * L):
    return lambda: ConvHead(body, out_features=out_features, transpose=True)


ZOO = {
    "in-place": _seq(InPlace()),
    "no-rule-needed": _seq(NoRuleNeeded()),
    "strand-max": _seq(StrandMax()),
    "gating": _seq(Gating()),
    "adaptive-max-pool": lambda: ConvHead(nn.AdaptiveMaxPool1d(5), out_features=6 * 5),
    "attention-einsum-layernorm": _tokens(Attention()),
    "sdpa-rmsnorm": _tokens(SDPA()),
    "multihead-attention": _tokens(MHA()),
    "transformer-encoder": _tokens(_encoder(batch_first=True)),
    "transformer-encoder-norm-first-gelu": _tokens(
        nn.TransformerEncoder(
            _encoder(batch_first=True, norm_first=True, activation="gelu"), 2, enable_nested_tensor=False
        )
    ),
    "transformer-encoder-seq-first": _tokens(SeqFirst(_encoder())),
    "lstm": _tokens(Recurrent(nn.LSTM(6, 5, batch_first=True)), 5 * L),
    "bilstm-2-layers-seq-first": _tokens(Recurrent(nn.LSTM(6, 4, num_layers=2, bidirectional=True)), 8 * L),
    "gru": _tokens(Recurrent(nn.GRU(6, 5, batch_first=True)), 5 * L),
    "rnn-tanh": _tokens(Recurrent(nn.RNN(6, 4, batch_first=True)), 4 * L),
    "bigru-2-layers": _tokens(Recurrent(nn.GRU(6, 3, num_layers=2, bidirectional=True, batch_first=True)), 6 * L),
}


def _randomised(name, dtype):
    torch.manual_seed(sum(map(ord, name)))
    model = ZOO[name]().to(dtype).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)  # larger weights: gates and softmaxes away from their linear regime
    return model


def _exported(model, dtype, tmp_path):
    """The README's export, saved to .pt2 and loaded back."""
    program = torch.export.export(model.eval(), (torch.zeros(2, 4, L, dtype=dtype),), dynamic_shapes=({0: Dim.AUTO},))
    path = tmp_path / "model.pt2"
    torch.export.save(program, path)
    return torch.export.load(path)


def _data(seed, n=3, k=4):
    rng = np.random.default_rng(seed)
    X = np.eye(4)[rng.integers(0, 4, (n, L))].transpose(0, 2, 1)
    R = np.eye(4)[rng.integers(0, 4, (n, k, L))].transpose(0, 1, 3, 2)
    return X, R


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_sums_to_delta_float64(name, tmp_path):
    _check_float64(name, tmp_path)


@pytest.mark.parametrize("max_rule", ["sign", "shapley"])
@pytest.mark.parametrize("name", ["attention-einsum-layernorm", "transformer-encoder-seq-first"])
def test_zoo_max_rules_sum_to_delta_float64(name, max_rule, tmp_path):
    """The other max rules on softmax's row max, with the batch first and (sequence-first) in dimension 1."""
    _check_float64(name, tmp_path, max_rule=max_rule, rules=("rescale", "revealcancel"))


def _check_float64(name, tmp_path, max_rule="pair", rules=("rescale", "revealcancel", "genomics-default")):
    model = _randomised(name, torch.float64)
    program = _exported(model, torch.float64, tmp_path)
    X, R = _data(0)
    with torch.no_grad():
        fx = model(torch.as_tensor(X))
        fr = model(torch.as_tensor(R.reshape(-1, 4, L))).reshape(3, 4, 2)
    for rule in rules:
        engine = prepare(program, rule=rule, max_rule=max_rule)
        for target in (0, 1):
            a = engine.run(X, R, target=target)
            np.testing.assert_allclose(a.predictions, fx[:, target].numpy(), rtol=1e-10, atol=1e-10)
            np.testing.assert_allclose(a.reference_predictions, fr[..., target].numpy(), rtol=1e-10, atol=1e-10)
            delta = np.abs(fx[:, target, None].numpy() - fr[..., target].numpy()).max(1)
            assert (delta > 1e-3).all(), (name, "the model barely moves; the check would be weak")
            assert (a.delta_error / delta).max() < 1e-8, (name, rule, target, a.delta_error / delta)
            np.testing.assert_allclose((a.hypothetical * X).sum(1), a.contributions.sum(1), atol=1e-10)


@pytest.mark.parametrize(
    "name", ["attention-einsum-layernorm", "sdpa-rmsnorm", "transformer-encoder-seq-first", "multihead-attention"]
)
def test_softmax_as_one_op_equals_its_six_rules(name, tmp_path, monkeypatch):
    """Under Rescale a lowered softmax (amax, sub, exp, sum, reciprocal, mul) runs as one op; its scores equal
    those of the six rules run one by one (fuse=False), under every max rule, also where a reference equals
    its input."""
    from seqlift.attribution import paired
    from seqlift.attribution.interpreter import softmax_groups

    calls = []
    one_op = paired._PairedSoftmax.apply
    monkeypatch.setattr(paired._PairedSoftmax, "apply", lambda *a: calls.append(1) or one_op(*a))
    program = _exported(_randomised(name, torch.float64), torch.float64, tmp_path)
    X, R = _data(0)
    R[0, 0] = X[0]
    for max_rule in ("pair", "sign", "shapley"):
        fused, apart = prepare(program, max_rule=max_rule), prepare(program, max_rule=max_rule, fuse=False)
        groups = len(softmax_groups(fused.captured.module.graph))
        assert groups == (2 if name == "multihead-attention" else 1)
        for target in (0, 1):
            calls.clear()
            a = fused.run(X, R, target=target)
            assert len(calls) == groups, "each softmax ran as one op"
            b = apart.run(X, R, target=target)
            assert len(calls) == groups, "fuse=False runs the six ops"
            scale = np.abs(b.hypothetical).max()
            np.testing.assert_allclose(a.hypothetical, b.hypothetical, rtol=0, atol=1e-13 * scale)
            assert a.relative_error.max() < 1e-12
            assert np.isfinite(a.contributions).all()


@pytest.mark.parametrize("name", ["sdpa-rmsnorm", "multihead-attention", "transformer-encoder-seq-first"])
def test_attention_weights_take_no_midpoint_tensor(name, tmp_path, monkeypatch):
    """softmax(QKᵀ) V under Rescale: V's gradient at the weights' midpoints is taken as the mean of two
    products (paired._bmm_big_first) instead of forming the midpoints; the scores equal those of the
    midpoint tensor formed as the rule defines it."""
    from seqlift.attribution import paired
    from seqlift.attribution.split import batch_back, batch_first

    engine = prepare(_exported(_randomised(name, torch.float64), torch.float64, tmp_path))
    X, R = _data(0)
    R[0, 0] = X[0]
    fast, calls = paired._bmm_big_first, []

    def counted(*args):
        calls.append(1)
        return fast(*args)

    def formed(grad, a, b_mid, n, rows):
        x, r = paired.pairs(batch_first(a, 0, rows), n)
        a_mid = torch.cat([x.squeeze(1), paired.midpoints(x, r).flatten(0, 1)])
        return grad @ b_mid.mT, batch_back(a_mid, 0).mT @ grad

    runs = {}
    for how, fn in (("fast", counted), ("formed", formed)):
        monkeypatch.setattr(paired, "_bmm_big_first", fn)
        runs[how] = engine.run(X, R, target=1)
    assert calls, "the weights' product took the path"
    scale = np.abs(runs["formed"].hypothetical).max()
    np.testing.assert_allclose(runs["fast"].hypothetical, runs["formed"].hypothetical, rtol=0, atol=1e-13 * scale)
    assert runs["fast"].relative_error.max() < 1e-12


@pytest.mark.parametrize("name", ["sdpa-rmsnorm", "multihead-attention"])
def test_softmax_compiled_backward_equals_the_tensor_ops(name, tmp_path, compiled_and_tensor_ops):
    """On the CPU the one-op softmax's backward is a compiled loop (kernels.softmax_backward); CUDA keeps
    the tensor ops. Both give the same scores, with -inf masks and a reference equal to its input."""

    engine = prepare(_exported(_randomised(name, torch.float64), torch.float64, tmp_path))
    X, R = _data(0)
    R[0, 0] = X[0]
    fast, tensor_ops = compiled_and_tensor_ops(engine, X, R, target=1)
    scale = np.abs(tensor_ops.hypothetical).max()
    np.testing.assert_allclose(fast.hypothetical, tensor_ops.hypothetical, rtol=0, atol=1e-13 * scale)
    assert fast.relative_error.max() < 1e-12


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_sums_to_delta_float32(name, tmp_path):
    program = _exported(_randomised(name, torch.float32), torch.float32, tmp_path)
    X, R = _data(1)
    # The split rules carry positive and negative parts that cancel. Through two pre-norm transformer layers
    # (layer norm's products of large parts) float32 rounding keeps up to about 5e-3 of the delta there;
    # in float64 the same model sums to within 1e-13 (test above).
    # Elsewhere the split rule's float32 error depends on rounding that varies between processes (MKL's code
    # paths follow the tensors' alignment): on the sequence-first transformer 2e-6 to 1.6e-5 in 16 processes
    # running this case alone, but 1.4e-4 and 1.2e-3 in two full-suite runs. The split rule is held to 5e-3
    # (float64: 1e-8, above), Rescale to 1e-4.
    split = () if name == "transformer-encoder-norm-first-gelu" else ("genomics-default",)
    for rule in ("rescale",) + split:
        a = deeplift(program, X.astype(np.float32), R.astype(np.float32), target=1, rule=rule)
        bound = 1e-4 if rule == "rescale" else 5e-3
        assert a.relative_error.max() < bound, (name, rule, a.relative_error)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_gradient_methods_and_ism_run(name, tmp_path):
    model = _randomised(name, torch.float32)
    program = _exported(model, torch.float32, tmp_path)
    X, R = _data(2, n=2, k=2)
    with torch.no_grad():
        fx = model(torch.as_tensor(X, dtype=torch.float32))[:, 0].numpy()
    s = saliency(program, X, target=0)
    assert np.isfinite(s.hypothetical).all()
    # float32 through the graph and through the module may round differently, and the threads' summation order
    # varies: on the two pre-norm layers (outputs near 500) runs differed by up to 1.9e-5 relative.
    np.testing.assert_allclose(s.predictions, fx, rtol=1e-4, atol=1e-5)
    ig = integrated_gradients(program, X, R, target=0, steps=8)
    assert np.isfinite(ig.hypothetical).all()
    m = ism(program, X, target=0)
    np.testing.assert_allclose(m.predictions, fx, rtol=1e-4, atol=1e-5)
    assert np.isfinite(m.hypothetical).all()


bpnet = pytest.importorskip("bpnetlite.bpnet")
chrombpnet = pytest.importorskip("bpnetlite.chrombpnet")


def _bpnet(filters, layers):
    return bpnet.BPNet(n_filters=filters, n_layers=layers, n_outputs=2, n_control_tracks=0, trimming=100, verbose=False)


@pytest.mark.parametrize("dtype, bound", [(torch.float64, 1e-8), (torch.float32, 1e-4)])
@pytest.mark.parametrize("name", ["BPNet", "ChromBPNet"])
def test_bpnet_lite_programs_sum_to_delta(name, dtype, bound, tmp_path):
    """bpnet-lite's models exported to .pt2 (dynamic batch), loaded, scored on counts and profile."""
    from seqlift.targets import parse_targets

    length = 300
    torch.manual_seed(0)
    model = _bpnet(8, 3) if name == "BPNet" else chrombpnet.ChromBPNet(_bpnet(4, 2), _bpnet(8, 3))
    model = model.to(dtype).eval()
    program = torch.export.export(model, (torch.zeros(2, 4, length, dtype=dtype),), dynamic_shapes=({0: Dim.AUTO},))
    torch.export.save(program, tmp_path / "bpnet.pt2")
    program = torch.export.load(tmp_path / "bpnet.pt2")
    rng = np.random.default_rng(0)
    X = np.eye(4)[rng.integers(0, 4, (2, length))].transpose(0, 2, 1)
    R = np.eye(4)[rng.integers(0, 4, (2, 3, length))].transpose(0, 1, 3, 2)
    # In float32, RevealCancel on ChromBPNet's count head (log of a sum of exps, fed by a dense layer) evaluates
    # exp at r + Δx⁺ and r + Δx⁻, whose large parts cancel: about 1e-2 of the delta is lost to rounding.
    rules = ("rescale",) if name == "ChromBPNet" and dtype == torch.float32 else ("rescale", "genomics-default")
    for rule in rules:
        counts, profile = prepare(program, rule=rule).run(
            X.astype(np.float32 if dtype == torch.float32 else float), R, parse_targets("counts,profile")
        )
        for a in (counts, profile):
            assert a.relative_error.max() < bound, (name, rule, a.relative_error)


class ThreeWay(nn.Module):
    def forward(self, x):
        return torch.einsum("bcl,bcl,bcl->b", x, torch.tanh(x), torch.sigmoid(x)).unsqueeze(1)


class InputIndex(nn.Module):
    def forward(self, x):
        return torch.gather(x, 2, x.argmax(dim=2, keepdim=True)).flatten(1)


class PoolSeqFirst(nn.Module):
    def forward(self, x):
        return torch.max(F.relu(x).permute(2, 0, 1), dim=2).values.sum(0)  # (L, N, C): max over C


@pytest.mark.parametrize(
    "model, match",
    [
        (ThreeWay(), r"aten\.einsum\.default in model \(ThreeWay\) has no DeepLIFT rule: it multiplies 3 values"),
        (
            InputIndex(),
            r"aten\.argmax\.default in model \(InputIndex\) has no DeepLIFT rule; aten\.gather\.default in "
            r"model \(InputIndex\) has no DeepLIFT rule: its index depends on the input",
        ),
        (
            PoolSeqFirst(),
            r"aten\.max\.dim in model \(PoolSeqFirst\) has no DeepLIFT rule: it takes the max of a tensor "
            r"whose batch is not in its first dimension",
        ),
    ],
)
def test_refusals_say_why(model, match):
    with pytest.raises(UnsupportedOpError, match=r"^\d op\(s\) without a DeepLIFT rule: " + match):
        prepare(model.double(), L)
