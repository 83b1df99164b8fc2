"""In-silico saturation mutagenesis: exact values, the incremental first layer, tangermeme as an oracle."""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.export import Dim

from seqlift.attribution.gradients import as_captured, model_inputs
from seqlift.attribution.ism import _Incremental, ism

L = 30


pytestmark = pytest.mark.usefixtures("one_thread")


def one_hot(rng, n):  # not conftest.random_one_hot: the N run in sequence 1 is what the N-column checks read
    """Random one-hot DNA of shape (n, 4, L) with an N run in the second sequence."""
    X = np.moveaxis(np.eye(4)[rng.integers(0, 4, size=(n, L))], -1, -2)
    X[1, :, 4:7] = 0
    return X


class Net(nn.Module):
    """``first`` conv -> ReLU -> conv -> ReLU -> dense with 2 outputs, sized by a dry run."""

    def __init__(self, first, dtype=torch.float64):
        super().__init__()
        torch.manual_seed(0)
        self.first = first
        self.c2 = nn.Conv1d(first.out_channels, 3, 3, padding=1)
        width = self.c2(first(torch.zeros(1, 4, L))).shape[-1]
        self.head = nn.Linear(3 * width, 2)
        self.to(dtype).eval()

    def forward(self, x):
        h = torch.relu(self.c2(torch.relu(self.first(x))))
        return self.head(h.reshape(x.shape[0], -1))  # x.shape[0]: a shape query on the input


class Linear(nn.Module):
    """f(x) = sum(w * x), one output."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(torch.as_tensor(w))

    def forward(self, x):
        return (x * self.w).sum(dim=(1, 2))


class InputReused(nn.Module):
    """The input feeds a conv and a skip path, so the first layer cannot be split off."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv1d(4, 4, 5, padding=2, dtype=torch.float64)

    def forward(self, x):
        return (torch.tanh(self.conv(x)) * x).sum(dim=(1, 2))


def full_tensors_at(captured, X):
    """Names of the nodes where incremental ISM rebuilt full mutant tensors, for mutants near both ends."""
    run = _Incremental(captured, X, 1000)
    run(torch.tensor([0, 0, 2]), torch.tensor([1, 2, 3]), torch.tensor([0, 17, L - 1]))
    return [node.name for node in run.full_at]


@pytest.fixture(scope="module")
def X():
    return one_hot(np.random.default_rng(3), 3)


def brute_force(model, X, target):
    """Reference ISM: every base at every position, one sequence at a time."""

    def f(x):
        with torch.no_grad():
            out = model(torch.as_tensor(x)).numpy()
        return out[:, target] if out.ndim > 1 else out

    base = f(X)
    hyp = np.zeros(X.shape)
    for b in range(4):
        for pos in range(L):
            mutant = X.copy()
            mutant[:, :, pos] = np.eye(4)[b]
            hyp[:, b, pos] = f(mutant) - base
    return hyp - hyp.mean(axis=1, keepdims=True), base


def test_linear_model_exact(X):
    w = np.random.default_rng(4).normal(size=(4, L))
    res = ism(Linear(w), X, batch_size=7)
    centred = w - w.mean(axis=0)  # f(x with b at l) - f(x) = w[b, l] - w[old, l], then centred over b
    np.testing.assert_allclose(res.hypothetical, np.broadcast_to(centred, X.shape), atol=1e-12)
    np.testing.assert_allclose(res.contributions, centred * X, atol=1e-12)
    assert not res.contributions[1, :, 4:7].any()  # N columns: scores for each base, nothing actual
    np.testing.assert_allclose(res.predictions, (w * X).sum(axis=(1, 2)), atol=1e-12)
    assert res.reference_predictions.shape == (3, 0) and not res.delta_error.any()


FIRST_LAYERS = {
    "padded": lambda: nn.Conv1d(4, 5, 5, padding=2),
    "same-even-kernel": lambda: nn.Conv1d(4, 5, 4, padding="same"),
    "same-dilated": lambda: nn.Conv1d(4, 5, 3, padding="same", dilation=3),
    "strided-dilated": lambda: nn.Conv1d(4, 5, 5, stride=3, padding=4, dilation=2),
    "valid-no-bias": lambda: nn.Conv1d(4, 5, 6, stride=2, bias=False),
}


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("name", FIRST_LAYERS)
def test_fast_path_equals_plain_and_brute_force(X, name):
    m = Net(FIRST_LAYERS[name]())
    captured, Xt = model_inputs(m, X)
    assert full_tensors_at(captured, Xt) in (
        ["reshape"],
        ["view"],
    )  # windows through both convolutions, up to the dense head
    fast = ism(captured, X, target=1, batch_size=50)
    plain = ism(captured, X, target=1, batch_size=50, fast=False)
    np.testing.assert_allclose(fast.hypothetical, plain.hypothetical, atol=1e-12)
    hyp, base = brute_force(m, X, 1)
    np.testing.assert_allclose(fast.hypothetical, hyp, atol=1e-12)
    np.testing.assert_allclose(fast.predictions, base, atol=1e-12)


def test_fast_path_float32_batches_and_decomposed_program(X):
    m = Net(nn.Conv1d(4, 5, 7, padding=3), dtype=torch.float32)
    program = torch.export.export(m, (torch.zeros(2, 4, L),), dynamic_shapes=({0: Dim.AUTO},)).run_decompositions()
    captured, Xt = model_inputs(program, X)
    assert torch.ops.aten.convolution.default in {n.target for n in captured.module.graph.nodes}
    assert full_tensors_at(captured, Xt) in (["reshape"], ["view"])
    plain = ism(captured, X, fast=False).hypothetical
    for batch_size in (1, 13, 1000):  # batches inside one sequence, across sequences, all at once
        np.testing.assert_allclose(ism(captured, X, batch_size=batch_size).hypothetical, plain, atol=1e-5)


def test_input_reused_by_a_product(X):
    m = InputReused()
    captured, Xt = model_inputs(m, X)
    assert full_tensors_at(captured, Xt) == []  # the product of two windows is a window; the sum adds its change
    hyp, _ = brute_force(m, X, 0)
    np.testing.assert_allclose(ism(captured, X).hypothetical, hyp, atol=1e-12)


def test_tangermeme_oracle(X):
    sm = pytest.importorskip("tangermeme.saturation_mutagenesis")
    m = Net(nn.Conv1d(4, 5, 5, padding=2), dtype=torch.float32)
    x = torch.as_tensor(X, dtype=torch.float32)
    expected = sm.saturation_mutagenesis(m, x, target=1, hypothetical=True, fast=False, device="cpu")
    res = ism(as_captured(m, L), X, target=1)
    np.testing.assert_allclose(res.hypothetical, expected.numpy(), atol=1e-5)
    np.testing.assert_allclose(res.contributions, (expected * torch.as_tensor(X)).numpy(), atol=1e-5)


class Residual(nn.Module):
    """conv -> ReLU -> three dilated residual blocks -> mean over the length -> dense: BPNet's counts path."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv1d(4, 6, 7, padding=3)
        self.body = nn.ModuleList(nn.Conv1d(6, 6, 3, dilation=d, padding=d) for d in (2, 4, 8))
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        for conv in self.body:
            h = h + torch.relu(conv(h))
        return self.head(h.mean(dim=-1))


class Pools(nn.Module):
    """Batch norm, max and average pools with strides, padding and leftover positions, a shape op, two sums."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.c1, self.bn, self.c2 = nn.Conv1d(4, 6, 5), nn.BatchNorm1d(6), nn.Conv1d(6, 6, 3, padding=1, stride=2)
        self.bn.running_mean.normal_()
        self.bn.running_var.uniform_(0.5, 2)

    def forward(self, x):
        h = F.max_pool1d(torch.relu(self.bn(self.c1(x))), 3)
        h = F.avg_pool1d(torch.sigmoid(self.c2(h)), 2, 3)
        h = F.max_pool1d(self.c2(F.gelu(h.repeat(1, 1, 4))), 2, 1, 1)
        return h.sum(dim=(1, 2)) + h.unsqueeze(1).squeeze(1).sum(-1)[:, 0]


class Positional(nn.Module):
    """A position-dependent addend: the window cannot carry it, so full tensors are rebuilt there."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv, self.position = nn.Conv1d(4, 5, 5, padding=2), nn.Parameter(torch.randn(5, L))

    def forward(self, x):
        return (torch.tanh(self.conv(x)) + self.position).amax(dim=-1) * 2


def _demo(name):
    from seqlift.demo.model import DemoAttention, DemoBiLSTM, DemoCNN

    return {"cnn": DemoCNN, "bilstm": DemoBiLSTM, "attention": DemoAttention}[name](input_length=L)


INCREMENTAL = {  # model, where full mutant tensors are first needed
    "residual": (Residual, []),
    "pools": (Pools, ["repeat"]),
    "positional": (Positional, ["add"]),
    "demo-cnn": (lambda: _demo("cnn"), ["flatten"]),
    "demo-bilstm": (lambda: _demo("bilstm"), ["transpose"]),
    "demo-attention": (lambda: _demo("attention"), ["transpose"]),
}


# the BiLSTM takes seconds (as tests/test_recurrent.py, all slow); the other layer kinds stay in the quick loop
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n == "demo-bilstm" else n for n in INCREMENTAL]
)
def test_incremental_equals_plain_on_every_layer_kind(X, name):
    build, full_at = INCREMENTAL[name]
    m = build().double().eval()
    captured, Xt = model_inputs(m, X)
    assert full_tensors_at(captured, Xt) == full_at
    for batch_size in (7, 1000):
        fast = ism(captured, X, batch_size=batch_size).hypothetical
        plain = ism(captured, X, batch_size=batch_size, fast=False).hypothetical
        np.testing.assert_allclose(fast, plain, rtol=0, atol=1e-12 * np.abs(plain).max())
