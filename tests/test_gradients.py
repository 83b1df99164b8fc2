"""Saliency, gradient x input and integrated gradients: exact values, completeness, captum as an oracle."""

from functools import partial

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.export import Dim

from conftest import random_one_hot
from seqlift.attribution.gradients import as_captured, gradient_x_input, integrated_gradients, saliency
from seqlift.errors import ModelError, ReferencesError, UsageError

L = 40


pytestmark = pytest.mark.usefixtures("one_thread")

one_hot = partial(random_one_hot, length=L)


class ConvNet(nn.Module):
    """conv -> act -> conv -> act -> dense with 3 outputs; ``sin`` has no DeepLIFT rule."""

    def __init__(self, act):
        super().__init__()
        self.c1 = nn.Conv1d(4, 6, 5, padding=2)
        self.c2 = nn.Conv1d(6, 4, 3, dilation=2)
        self.act = act
        self.head = nn.Linear(4 * (L - 4), 3)

    def forward(self, x):
        return self.head(torch.sin(self.act(self.c2(self.act(self.c1(x))))).flatten(1))


class Linear(nn.Module):
    """f(x) = sum(w * x) + 1, one output."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(torch.as_tensor(w))

    def forward(self, x):
        return (x * self.w).sum(dim=(1, 2)) + 1


def model(act, dtype):
    torch.manual_seed(0)
    return ConvNet(act).to(dtype).eval()


@pytest.fixture(scope="module")
def relu32():
    m = model(nn.ReLU(), torch.float32)
    return m, as_captured(m, L)


@pytest.fixture(scope="module")
def smooth64():
    m = model(nn.Softplus(), torch.float64)
    return m, as_captured(m, L)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    X = one_hot(rng, 4)
    X[2, :, 5:9] = 0  # an N run
    return X, rng.dirichlet(np.ones(4), size=(4, 3, L)).transpose(0, 1, 3, 2)  # references (4, 3, 4, L)


def test_linear_model_exact(data):
    X, R = data
    w = np.random.default_rng(2).normal(size=(4, L))
    m = as_captured(Linear(w), L)
    for method in (saliency, gradient_x_input):
        s = method(m, X)
        np.testing.assert_allclose(s.hypothetical, np.broadcast_to(w, X.shape), atol=1e-12)
        np.testing.assert_allclose(s.contributions, w * X, atol=1e-12)
        np.testing.assert_allclose(s.predictions, (w * X).sum(axis=(1, 2)) + 1, atol=1e-12)
        assert s.reference_predictions.shape == (4, 0)
        assert not s.delta_error.any() and not s.relative_error.any()
    ig = integrated_gradients(m, X, R, steps=3)
    np.testing.assert_allclose(ig.contributions, (w * (X[:, None] - R)).mean(axis=1), atol=1e-12)
    np.testing.assert_allclose(ig.hypothetical, (w - (w * R).sum(axis=2, keepdims=True)).mean(axis=1), atol=1e-12)
    np.testing.assert_allclose(ig.reference_predictions, (w * R).sum(axis=(2, 3)) + 1, atol=1e-12)
    assert ig.delta_error.max() < 1e-12


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_captum_saliency_and_input_x_gradient(data, relu32, dtype, tol):
    captum = pytest.importorskip("captum.attr")
    m, captured = relu32 if dtype == torch.float32 else (model(nn.ReLU(), dtype),) * 2
    x = torch.as_tensor(data[0], dtype=dtype).requires_grad_(True)
    s = saliency(captured, data[0], target=2, batch_size=3)
    gi = gradient_x_input(captured, data[0], target=2)
    expected = captum.Saliency(m).attribute(x, target=2, abs=False).detach().numpy()
    np.testing.assert_allclose(s.hypothetical, expected, atol=tol)
    expected = captum.InputXGradient(m).attribute(x, target=2).detach().numpy()
    np.testing.assert_allclose(gi.contributions, expected, atol=tol)
    np.testing.assert_allclose(s.hypothetical, gi.hypothetical, atol=tol)
    np.testing.assert_allclose(s.predictions, m(x)[:, 2].detach().numpy(), atol=tol)


@pytest.mark.parametrize("fixture, tol", [("relu32", 1e-5), ("smooth64", 1e-10)])
def test_captum_integrated_gradients(request, data, fixture, tol):
    captum = pytest.importorskip("captum.attr")
    m, captured = request.getfixturevalue(fixture)
    dtype = next(m.parameters()).dtype
    X, R = (torch.as_tensor(a, dtype=dtype) for a in data)
    ig = integrated_gradients(captured, X, R, target=1, steps=20, batch_size=17)
    expected = torch.stack(
        [
            captum.IntegratedGradients(m).attribute(X, R[:, j], target=1, n_steps=20, method="gausslegendre")
            for j in range(3)
        ]
    ).mean(0)
    np.testing.assert_allclose(ig.contributions, expected.detach().numpy(), atol=tol)
    # the hypothetical scores give the actual ones at the input's bases (all but N columns)
    per_base = ig.contributions.sum(axis=1)
    called = data[0].sum(axis=1) == 1
    np.testing.assert_allclose((ig.hypothetical * data[0]).sum(axis=1)[called], per_base[called], atol=tol)


def test_completeness_on_smooth_model(data, smooth64):
    X, R = data
    captured = smooth64[1]
    for method, steps in (("gausslegendre", (2, 3, 4)), ("riemann_trapezoid", (3, 12, 50))):
        errors = [integrated_gradients(captured, X, R, steps=s, method=method).relative_error.max() for s in steps]
        assert errors[0] > 10 * errors[1] > 100 * errors[2], method  # each falls by more than 10x
        assert integrated_gradients(captured, X, R, steps=50, method=method).relative_error.max() < 1e-2
    ig = integrated_gradients(captured, X, R, steps=50)
    assert ig.relative_error.max() < 1e-10  # Gauss-Legendre is exact to rounding on this smooth path
    delta = ig.predictions[:, None] - ig.reference_predictions
    np.testing.assert_allclose(ig.relative_error, ig.delta_error / np.abs(delta).max(axis=1))
    np.testing.assert_allclose(ig.contributions.sum(axis=(1, 2)), delta.mean(axis=1), atol=1e-10)


def test_model_forms_and_batching_agree(data, smooth64):
    X, R = data
    m, captured = smooth64
    program = torch.export.export(m, (torch.zeros(2, 4, L, dtype=torch.float64),), dynamic_shapes=({0: Dim.AUTO},))
    a = integrated_gradients(captured, X, R, steps=6, batch_size=1000)
    for form, batch_size in ((m, 5), (program, 1), (captured, 13)):
        b = integrated_gradients(form, X, R, steps=6, batch_size=batch_size)
        for field, x, y in zip(a._fields[:6], a, b):
            np.testing.assert_allclose(x, y, atol=1e-12, err_msg=field)
    one = integrated_gradients(captured, X, R[:, 0], steps=6)
    assert one.reference_predictions.shape == (4, 1)
    np.testing.assert_allclose(one.contributions, integrated_gradients(captured, X, R[:, :1], steps=6).contributions)


def test_errors(data, relu32):
    X, R = data
    captured = relu32[1]
    with pytest.raises(
        ReferencesError, match=r"references of shape \(4, 3, 4, 39\) do not fit inputs of shape \(4, 4, 40\);"
    ):
        integrated_gradients(captured, X, R[..., :-1])
    with pytest.raises(ReferencesError, match=r"references of shape \(3, 3, 4, 40\)"):
        integrated_gradients(captured, X, R[:3])
    with pytest.raises(
        UsageError, match="unknown integration method 'simpson'; choose one of gausslegendre, riemann_trapezoid"
    ):
        integrated_gradients(captured, X, R, method="simpson")
    with pytest.raises(UsageError, match="--steps 1 is too small for riemann_trapezoid"):
        integrated_gradients(captured, X, R, steps=1, method="riemann_trapezoid")
    with pytest.raises(ModelError, match=r"inputs have length 39 but the model takes length 40; use --window 40"):
        saliency(captured, X[..., :-1])
    with pytest.raises(
        UsageError, match=r"inputs have shape \(4, 40\); expected one-hot sequences of shape \(N, 4, L\)"
    ):
        saliency(captured, X[0])
    with pytest.raises(UsageError, match="--target 3 is out of range"):
        saliency(captured, X, target=3)
