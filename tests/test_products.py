"""The product rule against exact Shapley values, computed by enumerating coalitions of 2-3 players.

For ``y = B(a, b)`` with ``B`` linear in each operand, DeepLIFT gives ``a`` the
multiplier ``b̅`` and ``b`` the multiplier ``a̅`` (midpoints of input and
reference). That is the two-player Shapley split of the product; where ``a``
and ``b`` are each a function of its own input, or both linear in the inputs,
the contributions are the inputs' exact Shapley values.
"""

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from seqlift.attribution import prepare

pytestmark = pytest.mark.usefixtures("one_thread")

RULES = ["rescale", "revealcancel", "genomics-default"]


def shapley(f, x, r):
    """Exact Shapley values of the players ``x[i]`` (baseline ``r[i]``) for the game ``f``, by enumeration."""
    n = len(x)
    phi = np.zeros(n)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        for size in range(n):
            for s in itertools.combinations(others, size):
                weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
                with_i = [x[j] if j in s or j == i else r[j] for j in range(n)]
                without = [x[j] if j in s else r[j] for j in range(n)]
                phi[i] += weight * (f(np.array(with_i)) - f(np.array(without)))
    return phi


class Players(nn.Module):
    """``y = fn(x[:, 0, :])`` on inputs of shape (N, 1, P): each position is a player."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x[:, 0, :]).unsqueeze(1)


W1 = torch.tensor([[0.7, -1.2, 0.4], [0.3, 0.9, -0.8]], dtype=torch.float64)
W2 = torch.tensor([[-0.5, 0.6, 1.1], [1.3, -0.2, 0.5]], dtype=torch.float64)

GAMES = {
    # two players, each in one operand: the product of two functions of one input each
    "x1 * x2": (lambda p: p[:, 0] * p[:, 1], [1.5, -2.0], [0.5, 1.0]),
    "x1 / x2": (lambda p: p[:, 0] / p[:, 1], [1.5, 2.5], [-0.5, 0.8]),
    "sigmoid(x1) * tanh(x2)": (lambda p: torch.sigmoid(p[:, 0]) * torch.tanh(p[:, 1]), [2.0, -1.0], [-1.0, 0.5]),
    "x1 * x1 * x2 (x1 squared as a product)": (lambda p: (p[:, 0] * p[:, 0]) * p[:, 1], [1.5, -2.0], [0.5, 1.0]),
    # three players, operands linear in the inputs
    "(x1 + x2)(x2 - x3)": (lambda p: (p[:, 0] + p[:, 1]) * (p[:, 1] - p[:, 2]), [1.0, 2.0, -1.5], [0.2, -0.4, 0.3]),
    "einsum(W1 x, W2 x)": (lambda p: torch.einsum("bi,bi->b", p @ W1.T, p @ W2.T), [1.0, 2.0, -1.5], [0.2, -0.4, 0.3]),
    "bmm(W1 x, W2 x)": (
        lambda p: torch.bmm((p @ W1.T).unsqueeze(1), (p @ W2.T).unsqueeze(2)).flatten(),
        [1.0, -2.0, 0.5],
        [0.0, 0.0, 0.0],
    ),
}


def _nested_product(p):
    """matmul(outer(x, W1 x), W2 x): a product of a product, cubic in the inputs."""
    return torch.matmul(p.unsqueeze(2) * (p @ W1.T).unsqueeze(1), (p @ W2.T).unsqueeze(2)).sum((1, 2))


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("name", list(GAMES))
def test_product_rule_equals_exact_shapley(name, rule):
    fn, x, r = GAMES[name]
    model = Players(fn).double().eval()
    x, r = np.array(x), np.array(r)

    def game(p):
        with torch.no_grad():
            return model(torch.as_tensor(p[None, None, :]))[0, 0].item()

    a = prepare(model, len(x), rule=rule).run(x[None, None, :], r[None, None, None, :])
    np.testing.assert_allclose(a.contributions[0, 0], shapley(game, x, r), rtol=1e-12, atol=1e-12)
    assert a.delta_error.max() < 1e-12


def test_two_player_golden_values():
    """y = x1 * x2 from (0.5, 1) to (1.5, -2): x1 gets 1 * (1 - 2)/2 = -0.5, x2 gets -3 * (0.5 + 1.5)/2 = -3."""
    model = Players(GAMES["x1 * x2"][0]).double()
    a = prepare(model, 2).run(np.array([[[1.5, -2.0]]]), np.array([[[[0.5, 1.0]]]]))
    np.testing.assert_allclose(a.contributions[0, 0], [-0.5, -3.0], atol=1e-15)


@pytest.mark.parametrize("rule", RULES)
def test_product_of_three_active_values_sums_to_delta(rule):
    """A product of a product: the rule applies twice, and summation holds for every pair."""
    rng = np.random.default_rng(0)
    X, R = rng.normal(size=(4, 1, 3)), rng.normal(size=(4, 5, 1, 3))
    a = prepare(Players(_nested_product).double(), 3, rule=rule).run(X, R)
    assert a.relative_error.max() < 1e-12


class Gate(nn.Module):
    """A conv gated by a sigmoid of another conv, on one-hot DNA (batch of inputs and references)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv1d(4, 3, 5, padding=2), nn.Conv1d(4, 3, 5, padding=2)

    def forward(self, x):
        return (self.a(x) * torch.sigmoid(self.b(x))).sum(dim=(1, 2)).unsqueeze(1)


@pytest.mark.parametrize("rule", RULES)
def test_gating_sums_to_delta_on_dna(rule):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    X = np.eye(4)[rng.integers(0, 4, (3, 20))].transpose(0, 2, 1)
    R = np.eye(4)[rng.integers(0, 4, (3, 6, 20))].transpose(0, 1, 3, 2)
    a = prepare(Gate().double().eval(), 20, rule=rule).run(X, R)
    assert a.relative_error.max() < 1e-12


@pytest.mark.parametrize("max_rule", ["sign", "pair", "shapley"])
def test_maximum_of_two_tensors_is_the_pair_rule(max_rule):
    """torch.max(a, b) elementwise is lowered to (a + b)/2 + |a - b|/2 whatever the max rule (which applies to
    max pooling and max reductions), exact, with the golden values of max pooling's pair rule."""
    model = Players(lambda p: torch.max(F.relu(p[:, 0]), F.relu(p[:, 1])))
    a = prepare(model.double(), 2, max_rule=max_rule).run(np.array([[[3.0, 0.0]]]), np.array([[[[0.0, 2.0]]]]))
    np.testing.assert_allclose(a.contributions[0, 0], [1.8, -0.8], atol=1e-12)


@pytest.mark.parametrize("shapes", [((2, 7, 5), (2, 5, 3)), ((2, 3, 5), (2, 5, 7))], ids=["a-larger", "b-larger"])
def test_batched_matmul_skips_the_larger_midpoints_exactly(shapes):
    """A batched matmul's backward takes the larger operand's midpoints as the mean of two products
    (paired._bmm_big_first, either side): the gradients equal those at the midpoint tensors."""
    from seqlift.attribution.paired import Rescale, midpoints, pairs

    n, k = 2, 3
    rows = n + n * k
    gen = torch.Generator().manual_seed(0)
    a = torch.randn((rows,) + shapes[0], dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn((rows,) + shapes[1], dtype=torch.float64, generator=gen, requires_grad=True)

    def f(u, v):
        return torch.ops.aten.matmul.default(u, v)

    f.op = torch.ops.aten.matmul.default
    out = Rescale(n, 1e-9, rows=rows).product(f, a, b)
    grad = torch.randn(out.shape, dtype=torch.float64, generator=gen)
    got = torch.autograd.grad(out, (a, b), grad)

    def formed(t):
        x, r = pairs(t.detach(), n)
        return torch.cat([x.squeeze(1), midpoints(x, r).flatten(0, 1)])

    want = (grad @ formed(b).mT, formed(a).mT @ grad)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-13, atol=1e-13)
