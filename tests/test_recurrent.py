"""LSTM and GRU layers kept whole under Rescale (attribution/recurrent.py).

The fused rule must give the multipliers of the unrolled cells (every sigmoid
and tanh under Rescale, every product under the midpoint rule), so its scores
equal those of the unrolled graph to float64 rounding, and sum to the delta.
"""

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.export import Dim

from seqlift.attribution import prepare
from seqlift.attribution.graph import capture
from seqlift.errors import ModelError

#: Each model is exported and scored under every rule: minutes in all (make test runs them; make quick-test does not).
pytestmark = pytest.mark.slow

L = 12


class Head(nn.Module):
    """conv -> recurrent layer -> dense head reading the outputs and (optionally) the final states."""

    def __init__(self, rnn, final_states=False):
        super().__init__()
        self.conv = nn.Conv1d(4, 6, 3, padding=1)
        self.rnn, self.final_states = rnn, final_states
        with torch.no_grad():
            h = self._features(torch.zeros(1, 4, L))
        self.fc = nn.Linear(h.shape[1], 2)

    def _features(self, x):
        h = torch.relu(self.conv(x)).transpose(1, 2)
        if not self.rnn.batch_first:
            h = h.transpose(0, 1)
        out, state = self.rnn(h)
        if not self.rnn.batch_first:
            out = out.transpose(0, 1)
        parts = [out.flatten(1)]
        if self.final_states:
            states = state if isinstance(state, tuple) else (state,)
            parts += [s.transpose(0, 1).flatten(1) for s in states]
        return torch.cat(parts, 1)

    def forward(self, x):
        return self.fc(self._features(x))


MODELS = {
    "lstm": lambda: Head(nn.LSTM(6, 5, batch_first=True)),
    "bilstm-2-layers-seq-first": lambda: Head(nn.LSTM(6, 4, num_layers=2, bidirectional=True)),
    "bilstm-final-states": lambda: Head(nn.LSTM(6, 4, num_layers=2, bidirectional=True, batch_first=True), True),
    "lstm-projection-no-bias": lambda: Head(
        nn.LSTM(6, 5, proj_size=3, bias=False, bidirectional=True, batch_first=True), True
    ),
    "gru": lambda: Head(nn.GRU(6, 5, batch_first=True)),
    "bigru-2-layers-final-state": lambda: Head(nn.GRU(6, 3, num_layers=2, bidirectional=True), True),
}


def _model(name, dtype=torch.float64):
    torch.manual_seed(sum(map(ord, name)))
    model = MODELS[name]().to(dtype).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)  # gates away from their linear regime
    return model


def _program(model, dtype=torch.float64):
    return torch.export.export(model, (torch.zeros(2, 4, L, dtype=dtype),), dynamic_shapes=({0: Dim.AUTO},))


def _data(seed=0, n=3, k=4, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = np.eye(4, dtype=dtype)[rng.integers(0, 4, (n, L))].transpose(0, 2, 1)
    R = np.eye(4, dtype=dtype)[rng.integers(0, 4, (n, k, L))].transpose(0, 1, 3, 2)
    R[0, 0] = X[0]  # a reference equal to its input: every delta is zero (the derivative fallback)
    R[1, 1, :, : L // 2] = X[1, :, : L // 2]  # equal in the first half: zero deltas at the start
    return X, R


@pytest.mark.parametrize("name", sorted(MODELS))
def test_fused_layer_equals_unrolled_cells(name):
    program = _program(_model(name))
    fused = prepare(program, rule="rescale")
    unrolled = prepare(capture(program, unroll_recurrent=True), rule="rescale")
    assert any(r.kind == "fused" for r in fused.plan.values())
    assert not any(r.kind == "fused" for r in unrolled.plan.values())
    X, R = _data()
    for target in (0, 1):
        a, b = fused.run(X, R, target=target), unrolled.run(X, R, target=target)
        np.testing.assert_allclose(a.predictions, b.predictions, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(a.hypothetical, b.hypothetical, rtol=1e-9, atol=1e-12)
        assert a.relative_error.max() < 1e-8, a.relative_error
        assert np.all(a.contributions[0] == a.contributions[0]), "finite where the reference equals the input"


@pytest.mark.parametrize("name", ["bilstm-final-states", "bigru-2-layers-final-state"])
def test_fused_layer_float32_sums_to_delta(name):
    model = _model(name, torch.float32)
    X, R = _data(1, dtype=np.float32)
    a = prepare(_program(model, torch.float32), rule="rescale").run(X, R, target=1)
    with torch.no_grad():
        fx = model(torch.as_tensor(X))[:, 1].numpy()
    np.testing.assert_allclose(a.predictions, fx, rtol=1e-5, atol=1e-6)
    assert a.relative_error.max() < 1e-4


def test_split_rules_unroll_the_layer():
    program = _program(_model("bilstm-final-states"))
    engine = prepare(program, rule="genomics-default")
    assert not any(r.kind == "fused" for r in engine.plan.values())
    X, R = _data()
    assert engine.run(X, R, target=0).relative_error.max() < 1e-8


def test_split_rules_refuse_a_graph_with_the_layer_whole():
    captured = capture(_program(_model("gru")), unroll_recurrent=False)
    with pytest.raises(ModelError, match="unroll_recurrent=True"):
        prepare(captured, rule="revealcancel")


@pytest.mark.parametrize("name", [m for m in sorted(MODELS) if "lstm" in m])
def test_lstm_compiled_loops_equal_the_tensor_ops(name, compiled_and_tensor_ops):
    """On the CPU an LSTM layer's loops over positions (the cell states, the backward) run compiled; CUDA
    keeps the tensor ops. Both must give the same scores, references equal to their input (the
    derivative fallback) included."""

    engine = prepare(_program(_model(name)), rule="rescale")
    X, R = _data()
    fast, tensor_ops = compiled_and_tensor_ops(engine, X, R, target=1)
    np.testing.assert_allclose(fast.hypothetical, tensor_ops.hypothetical, rtol=1e-12, atol=1e-14)
    assert fast.relative_error.max() < 1e-8
