"""The DeepLIFT engine: summation-to-delta on every supported layer, worked examples, oracles."""

import copy
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.export import Dim

from conftest import random_one_hot
from seqlift.attribution import deeplift, prepare
from seqlift.attribution.deeplift import Engine
from seqlift.errors import ModelError, UnsupportedOpError, UsageError

L = 60

pytestmark = pytest.mark.usefixtures("one_thread")

one_hot = partial(random_one_hot, length=L)


class Seq(nn.Module):
    """conv -> body -> flatten -> linear, in float64."""

    def __init__(self, body, out_len, channels=6, n_out=2):
        super().__init__()
        self.conv = nn.Conv1d(4, channels, 5, padding=2)
        self.body = body
        self.head = nn.Linear(channels * out_len, n_out)

    def forward(self, x):
        return self.head(self.body(self.conv(x)).flatten(1))


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(6, 6, 3, padding=2, dilation=2)
        self.c2 = nn.Conv1d(6, 6, 3, padding=1)
        self.act = nn.ReLU()  # reused three times

    def forward(self, x):
        h = self.act(x)
        h = h + self.act(self.c1(h))
        return self.act(self.c2(h)) + h


class Functional(nn.Module):
    def forward(self, x):
        return F.relu(x) * 0.5 + torch.sigmoid(x) - x.relu() + torch.tanh(x).exp()


class GlobalMax(nn.Module):
    def forward(self, x):
        return torch.cat([x.amax(dim=-1), torch.max(F.relu(x), dim=-1).values, x.mean(dim=-1)], dim=1)


class Pool2d(nn.Module):
    def forward(self, x):
        h = F.relu(x).unsqueeze(1)  # (N, 1, C, L)
        return F.max_pool2d(h, (2, 3), stride=(2, 2), padding=(1, 1)).flatten(2).sum(1, keepdim=True).expand(-1, 6, -1)


def elementwise(act):
    return lambda: Seq(nn.Sequential(nn.BatchNorm1d(6), act), L)


MODELS = {
    "conv-relu-linear": lambda: Seq(nn.ReLU(), L),
    "conv-relu-maxpool": lambda: Seq(nn.Sequential(nn.ReLU(), nn.MaxPool1d(4)), L // 4),
    "overlapping-maxpool": lambda: Seq(nn.Sequential(nn.ReLU(), nn.MaxPool1d(5, stride=2, padding=2)), 30),
    "maxpool-ceil": lambda: Seq(nn.Sequential(nn.ELU(), nn.MaxPool1d(7, stride=3, ceil_mode=True)), 19),
    "maxpool-dilated": lambda: Seq(nn.Sequential(nn.ReLU(), nn.MaxPool1d(3, stride=2, dilation=2)), 28),
    "maxpool-2d": lambda: Seq(Pool2d(), 4 * 30),
    "global-max": lambda: Seq(GlobalMax(), 3),
    "residual-reused-relu": lambda: Seq(Residual(), L),
    "functional": lambda: Seq(Functional(), L),
    "avgpool-dropout": lambda: Seq(nn.Sequential(nn.Softplus(), nn.AvgPool1d(3), nn.Dropout(0.3)), 20),
    "adaptive-avgpool": lambda: Seq(nn.Sequential(nn.GELU(), nn.AdaptiveAvgPool1d(7)), 7),
    "batchnorm-relu": elementwise(nn.ReLU()),
    "leaky-relu": elementwise(nn.LeakyReLU(0.1)),
    "elu": elementwise(nn.ELU()),
    "gelu": elementwise(nn.GELU()),
    "silu": elementwise(nn.SiLU()),
    "softplus": elementwise(nn.Softplus()),
    "sigmoid": elementwise(nn.Sigmoid()),
    "tanh": elementwise(nn.Tanh()),
    "exp": lambda: Seq(nn.Sequential(nn.Tanh(), _Exp()), L),
    "dense-stack": lambda: Seq(
        nn.Sequential(nn.ReLU(), nn.Flatten(), nn.Linear(6 * L, 6 * L), nn.ReLU(), nn.Unflatten(1, (6, L))), L
    ),
}


class _Exp(nn.Module):
    def forward(self, x):
        return torch.exp(x)


def _randomise(model, seed):
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            nn.init.normal_(m.weight, 1.0, 0.3)
            nn.init.normal_(m.bias, 0.0, 0.3)
    return model.double().eval()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_summation_to_delta(name):
    """sum(contributions) == f(x) - f(r) for every (input, reference) pair, on every layer kind."""
    torch.manual_seed(0)
    model = _randomise(MODELS[name](), 1)
    rng = np.random.default_rng(0)
    X, R = one_hot(rng, 5), one_hot(rng, 5, 7)
    for target in (0, 1):
        a = deeplift(model, X, R, target=target, batch_size=2)
        assert a.delta_error.max() < 1e-10, name
        with torch.no_grad():
            fx = model(torch.as_tensor(X))[:, target].numpy()
            fr = model(torch.as_tensor(R.reshape(35, 4, L)))[:, target].numpy().reshape(5, 7)
        np.testing.assert_allclose(a.predictions, fx, atol=1e-12)
        np.testing.assert_allclose(a.reference_predictions, fr, atol=1e-12)
        np.testing.assert_allclose(a.contributions.sum(axis=(1, 2)), fx - fr.mean(1), atol=1e-10)
        # projected hypothetical contributions of one-hot input are the actual contributions
        np.testing.assert_allclose((a.hypothetical * X).sum(1), a.contributions.sum(1), atol=1e-10)


def test_summation_to_delta_float32_exported_program():
    model = MODELS["overlapping-maxpool"]().eval()
    program = torch.export.export(model, (torch.zeros(2, 4, L),), dynamic_shapes=({0: Dim.AUTO},))
    rng = np.random.default_rng(1)
    X, R = one_hot(rng, 8).astype(np.float32), one_hot(rng, 8, 10).astype(np.float32)
    a = deeplift(program, X, R, target=1)
    assert a.relative_error.max() < 1e-4


def test_maxpool_where_argmax_moves_sums_exactly():
    """Input and reference peak in different positions of the same pool window."""
    model = nn.Sequential(nn.ReLU(), nn.MaxPool1d(2), nn.Flatten()).double().eval()
    x = torch.tensor([[[3.0, 0.0]]], dtype=torch.float64)
    r = torch.tensor([[[[0.0, 2.0]]]], dtype=torch.float64)
    engine = prepare(model, 2, max_rule="pair")
    a = engine.run(x, r)
    np.testing.assert_allclose(a.contributions.sum(), 3.0 - 2.0)
    # The pair rule: |a - b| goes from 2 to 3 while a - b goes from -2 to 3: multiplier 1/5, so
    # a gets 3 * (1/2 + 1/10) and b gets -2 * (1/2 - 1/10). Routing the gradient
    # to the input's argmax instead would give (3, 0), summing to 3, not 1.
    np.testing.assert_allclose(a.contributions[0, 0], [1.8, -0.8])
    assert a.contributions.dtype == np.float64


def test_maxpool_equals_gradient_routing_when_argmax_agrees():
    model = nn.Sequential(nn.MaxPool1d(4), nn.Flatten()).double().eval()
    x = torch.tensor([[[1.0, 5.0, 2.0, 3.0]]], dtype=torch.float64)
    r = torch.tensor([[[[0.5, 4.0, 3.5, 1.0]]]], dtype=torch.float64)
    a = prepare(model, 4).run(x, r)
    np.testing.assert_allclose(a.contributions[0, 0], [0.0, 1.0, 0.0, 0.0], atol=1e-12)


class _Threshold(nn.Module):
    """y = max(0, x - 10)."""

    def forward(self, x):
        return F.relu(x.sum(dim=(1, 2)) - 10.0)


class _Saturating(nn.Module):
    """y = min(1, i1 + i2), written two ways."""

    def __init__(self, clamp):
        super().__init__()
        self.clamp = clamp

    def forward(self, x):
        s = x.sum(dim=(1, 2))
        return torch.clamp(s, max=1.0) if self.clamp else 1.0 - F.relu(1.0 - s)


def test_thresholding_example():
    engine = prepare(_Threshold().double(), 1, eps=1e-9)
    x = torch.tensor([[[12.0]], [[8.0]]], dtype=torch.float64)
    a = engine.run(x, torch.zeros(2, 1, 1, 1, dtype=torch.float64))
    np.testing.assert_allclose(a.contributions.ravel(), [2.0, 0.0])  # gradient x input gives 12 and 0


@pytest.mark.parametrize("clamp", [True, False])
def test_saturating_example(clamp):
    """Reference 0, i1 = i2 = 1: each input gets 0.5 where the gradient gives 0."""
    model = _Saturating(clamp).double()
    x = torch.ones(1, 2, 1, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(model(x).sum(), x)
    assert grad.abs().max() == 0
    a = prepare(model, 1).run(x.detach(), torch.zeros(1, 1, 2, 1, dtype=torch.float64))
    np.testing.assert_allclose(a.contributions.ravel(), [0.5, 0.5])


def test_each_input_runs_once(monkeypatch):
    """Inputs and references run in one batch of N + N*K rows, not 2*N*K."""
    seen = []
    original = Engine.forward

    def spy(self, x, rule=None):
        seen.append(x.shape[0])
        return original(self, x, rule)

    monkeypatch.setattr(Engine, "forward", spy)
    rng = np.random.default_rng(0)
    deeplift(_randomise(MODELS["conv-relu-maxpool"](), 0), one_hot(rng, 4), one_hot(rng, 4, 5), batch_size=4)
    assert seen == [4 + 4 * 5]


class _Unsupported(nn.Module):
    """Two ops without a rule in two places: a rounding and a sort."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 3, 3, padding=1)
        self.inner = _Sorted()

    def forward(self, x):
        h = torch.floor(self.conv(x) * 3)
        return self.inner(h).sum(dim=(1, 2)).unsqueeze(1)


class _Sorted(nn.Module):
    def forward(self, x):
        return torch.sort(x, dim=-1).values


def test_unsupported_ops_are_all_named_in_one_error():
    with pytest.raises(
        UnsupportedOpError,
        match=r"^2 op\(s\) without a DeepLIFT rule: aten\.floor\.default in model "
        r"\(_Unsupported\) has no DeepLIFT rule; aten\.sort\.\w+ in inner \(_Sorted\) has no DeepLIFT rule; "
        r"use --allow-unsupported",
    ):
        prepare(_Unsupported().double(), L)


def test_allow_unsupported_warns_and_runs():
    rng = np.random.default_rng(0)
    with pytest.warns(UserWarning, match=r"treated as linear \(gradient\).*aten\.floor\.default.*aten\.sort"):
        a = deeplift(_Unsupported().double(), one_hot(rng, 2), one_hot(rng, 2, 3), allow_unsupported=True)
    assert a.hypothetical.shape == (2, 4, L)


def test_training_mode_batchnorm_program_is_refused():
    model = nn.Sequential(nn.Conv1d(4, 3, 3), nn.BatchNorm1d(3), nn.Flatten(), nn.Linear(3 * (L - 2), 1)).train()
    program = torch.export.export(model, (torch.zeros(2, 4, L),), dynamic_shapes=({0: Dim.AUTO},))
    with pytest.raises(UnsupportedOpError, match="batch norm runs in training mode; call model.eval"):
        prepare(program)


def test_fixed_batch_program_is_refused():
    model = nn.Sequential(nn.Conv1d(4, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * (L - 2), 1)).eval()
    program = torch.export.export(model, (torch.zeros(1, 4, L),))
    with pytest.raises(ModelError, match="fixed batch size of 1; re-export it with a dynamic batch"):
        prepare(program)


def test_target_out_of_range():
    rng = np.random.default_rng(0)
    with pytest.raises(UsageError, match=r"--target 5 is out of range: the model has 2 outputs \(0\.\.1\)"):
        deeplift(_randomise(MODELS["conv-relu-linear"](), 0), one_hot(rng, 1), one_hot(rng, 1, 2), target=5)


class _TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = Seq(nn.ReLU(), L)

    def forward(self, x):
        y = self.body(x)
        return y, F.softplus(y).sum(dim=1, keepdim=True)


def test_tuple_output_needs_output_index():
    rng = np.random.default_rng(0)
    model = _randomise(_TwoHeads(), 0)
    X, R = one_hot(rng, 2), one_hot(rng, 2, 3)
    with pytest.raises(
        UsageError, match=r"returns 2 outputs \(.*\); choose one with --output-index, or .*--target counts"
    ):
        deeplift(model, X, R)
    a = deeplift(model, X, R, output_index=1, target=0)
    assert a.delta_error.max() < 1e-10


# ---------------------------------------------------------------- peers as oracles, where their rules are right


def _peer_model():
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv1d(4, 8, 7, padding=3),
        nn.ReLU(),
        nn.Conv1d(8, 8, 5, padding=2),
        nn.ReLU(),
        nn.AvgPool1d(2),
        nn.Flatten(),
        nn.Linear(8 * L // 2, 16),
        nn.ReLU(),
        nn.Linear(16, 3),
    ).eval()


def test_matches_captum_deeplift():
    captum_attr = pytest.importorskip("captum.attr")
    model = _peer_model()
    rng = np.random.default_rng(4)
    X, R = one_hot(rng, 6).astype(np.float32), one_hot(rng, 6).astype(np.float32)
    ours = deeplift(model, X, R[:, None], target=2)
    theirs = captum_attr.DeepLift(model).attribute(torch.tensor(X), baselines=torch.tensor(R), target=2)
    np.testing.assert_allclose(ours.contributions, theirs.detach().numpy(), atol=1e-5)


def test_matches_captum_deeplift_shap():
    captum_attr = pytest.importorskip("captum.attr")
    model = _peer_model()
    rng = np.random.default_rng(5)
    X, shared = one_hot(rng, 4).astype(np.float32), one_hot(rng, 6).astype(np.float32)
    ours = deeplift(model, X, np.broadcast_to(shared, (4,) + shared.shape), target=1)
    theirs = captum_attr.DeepLiftShap(model).attribute(torch.tensor(X), baselines=torch.tensor(shared), target=1)
    np.testing.assert_allclose(ours.contributions, theirs.detach().numpy(), atol=1e-5)


def test_matches_tangermeme_hypothetical():
    dls = pytest.importorskip("tangermeme.deep_lift_shap")
    model = _peer_model()
    rng = np.random.default_rng(6)
    X, R = one_hot(rng, 5).astype(np.float32), one_hot(rng, 5, 8).astype(np.float32)
    ours = deeplift(model, X, R, target=0)
    theirs = dls.deep_lift_shap(
        model,
        torch.tensor(X),
        target=0,
        references=torch.tensor(R),
        hypothetical=True,
        device="cpu",
        batch_size=8,
    )
    np.testing.assert_allclose(ours.hypothetical, theirs.numpy(), atol=1e-5)


# ---------------------------------------------------------------- RevealCancel and the +/- split


class _MinAnd(nn.Module):
    """The DeepLIFT slides' 'min (AND)' network: y = i1 - max(0, i1 - i2)."""

    def forward(self, x):
        i1, i2 = x[:, 0, 0], x[:, 1, 0]
        return (i1 - F.relu(i1 - i2)).unsqueeze(1)


@pytest.mark.parametrize("rule, expected", [("rescale", [0.0, 1.0]), ("revealcancel", [0.5, 0.5])])
def test_min_and_golden_values(rule, expected):
    engine = prepare(_MinAnd().double(), 1, rule=rule)
    x = torch.tensor([[[2.0], [1.0]]], dtype=torch.float64)
    a = engine.run(x, torch.zeros(1, 1, 2, 1, dtype=torch.float64))
    np.testing.assert_allclose(a.contributions[0, :, 0], expected, atol=1e-12)


@pytest.mark.parametrize("rule", ["revealcancel", "genomics-default"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_summation_to_delta_split_rules(name, rule):
    model = _randomise(MODELS[name](), 2)
    rng = np.random.default_rng(1)
    X, R = one_hot(rng, 4), one_hot(rng, 4, 5)
    a = deeplift(model, X, R, target=1, rule=rule, batch_size=3)
    assert a.delta_error.max() < 1e-10, (name, rule)
    np.testing.assert_allclose((a.hypothetical * X).sum(1), a.contributions.sum(1), atol=1e-10)


def test_split_engine_with_rescale_equals_paired_engine():
    import dataclasses

    model = _randomise(MODELS["residual-reused-relu"](), 3)
    rng = np.random.default_rng(2)
    X, R = one_hot(rng, 3), one_hot(rng, 3, 4)
    paired = prepare(model, L)
    assert paired.layer_rules is None
    split = dataclasses.replace(
        paired, layer_rules={n: "rescale" for n, r in paired.plan.items() if r.kind in ("elementwise", "max")}
    )
    a, b = paired.run(X, R), split.run(X, R)
    np.testing.assert_allclose(a.hypothetical, b.hypothetical, atol=1e-12)
    np.testing.assert_allclose(a.contributions, b.contributions, atol=1e-12)


def test_split_signs_add_up():
    model = _randomise(MODELS["dense-stack"](), 4)
    rng = np.random.default_rng(3)
    X, R = one_hot(rng, 3), one_hot(rng, 3, 4)
    engine = prepare(model, L, rule="revealcancel")
    a = engine.run(X, R, target=0, split_signs=True)
    np.testing.assert_allclose(a.hypothetical_positive + a.hypothetical_negative, a.hypothetical, atol=1e-12)
    assert (a.hypothetical_positive * X).sum() > 0 > (a.hypothetical_negative * X).sum()
    with pytest.raises(UsageError, match="--split-signs needs a rule that keeps signs apart"):
        prepare(model, L).run(X, R, split_signs=True)


def test_genomics_default_assigns_rules_by_layer():
    model = _randomise(MODELS["dense-stack"](), 5)  # conv -> ReLU -> dense -> ReLU -> dense
    engine = prepare(model, L, rule="genomics-default")
    rules = [engine.layer_rules[n] for n in engine.captured.module.graph.nodes if n in engine.layer_rules]
    assert rules == ["rescale", "revealcancel"]
    by_path = prepare(model, L, rule={"default": "rescale", "body.3": "revealcancel"})
    assert [by_path.layer_rules[n] for n in by_path.captured.module.graph.nodes if n in by_path.layer_rules] == [
        "rescale",
        "revealcancel",
    ]
    with pytest.raises(UsageError, match="unknown rule 'deepshap'"):
        prepare(model, L, rule="deepshap")
    with pytest.raises(UsageError, match="rule 'gradient' for 'dense' is not one of rescale, revealcancel"):
        prepare(model, L, rule={"dense": "gradient"})


class _ViewBySize(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 3, 5)
        self.head = nn.Linear(3 * (L - 4), 2)

    def forward(self, x):
        h = F.relu(self.conv(x))
        return self.head(h.view(h.size(0), -1))


@pytest.mark.parametrize("rule", ["rescale", "revealcancel"])
def test_shape_queries_are_not_ops(rule):
    """x.view(x.size(0), -1) reads the input's shape; that is no op to attribute."""
    rng = np.random.default_rng(0)
    a = deeplift(_ViewBySize().double().eval(), one_hot(rng, 3), one_hot(rng, 3, 2), rule=rule)
    assert a.delta_error.max() < 1e-10


# ---------------------------------------------------------------- targets


class _Classifier(nn.Module):
    def __init__(self, final):
        super().__init__()
        self.body = Seq(nn.ReLU(), L, n_out=3)
        self.final = final

    def forward(self, x):
        return self.final(self.body(x))


@pytest.mark.parametrize(
    "final, space", [(nn.Sigmoid(), "logits"), (nn.Softmax(dim=1), "mean-normalised logits"), (nn.Identity(), "output")]
)
def test_output_activation_is_explained_on_logits(final, space):
    model = _randomise(_Classifier(final), 6)
    rng = np.random.default_rng(4)
    X, R = one_hot(rng, 3), one_hot(rng, 3, 4)
    engine = prepare(model, L)
    assert engine.target_space(2) == space
    a = engine.run(X, R, target=2)
    assert a.delta_error.max() < 1e-10
    with torch.no_grad():
        z = model.body(torch.as_tensor(X))
    expected = {"logits": z[:, 2], "output": z[:, 2], "mean-normalised logits": z[:, 2] - z.mean(1)}[space]
    np.testing.assert_allclose(a.predictions, expected.numpy(), atol=1e-12)


class _Profile(nn.Module):
    """BPNet shape: (profile logits (N, 2, L), log-counts (N, 2))."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 8, 9, padding=4)
        self.profile = nn.Conv1d(8, 2, 5, padding=2)
        self.counts = nn.Linear(8, 2)

    def forward(self, x):
        h = F.relu(self.conv(x))
        return self.profile(h), self.counts(h.mean(dim=2))


@pytest.mark.parametrize("rule", ["rescale", "revealcancel"])
def test_profile_and_counts_targets(rule):
    from seqlift.targets import parse_targets

    torch.manual_seed(7)
    model = _Profile().double().eval()
    rng = np.random.default_rng(5)
    X, R = one_hot(rng, 3), one_hot(rng, 3, 4)
    engine = prepare(model, L, rule=rule)
    counts, profile = engine.run(X, R, target=parse_targets("counts,profile"))
    for a in (counts, profile):
        assert a.delta_error.max() < 1e-10
    with torch.no_grad():
        prof, logc = model(torch.as_tensor(X))
        z = prof.reshape(3, -1)
        z = z - z.mean(1, keepdim=True)
    np.testing.assert_allclose(counts.predictions, logc.sum(1).numpy(), atol=1e-12)
    np.testing.assert_allclose(profile.predictions, (torch.softmax(z, 1) * z).sum(1).numpy(), atol=1e-12)
    # the same as explaining each target on its own
    alone = engine.run(X, R, target=parse_targets("profile")[0])
    np.testing.assert_allclose(alone.hypothetical, profile.hypothetical, atol=1e-12)


def test_several_targets_one_forward_pass(monkeypatch):
    calls = []
    original = Engine.forward
    monkeypatch.setattr(Engine, "forward", lambda self, x, rule=None: calls.append(1) or original(self, x, rule))
    model = _randomise(MODELS["conv-relu-maxpool"](), 8)
    rng = np.random.default_rng(6)
    X, R = one_hot(rng, 2), one_hot(rng, 2, 3)
    engine = prepare(model, L)
    both = engine.run(X, R, target=[0, 1])
    assert len(calls) == 1
    for t, a in enumerate(both):
        np.testing.assert_allclose(a.hypothetical, engine.run(X, R, target=t).hypothetical, atol=1e-12)


def test_parse_targets_errors():
    from seqlift.targets import parse_targets

    assert [t.name for t in parse_targets("0, 3,7")] == ["0", "3", "7"]
    assert [t.name for t in parse_targets("all", n_outputs=3)] == ["0", "1", "2"]
    with pytest.raises(UsageError, match="--target 'x' is not an output column, 'all', 'counts' or 'profile'"):
        parse_targets("0,x")
    with pytest.raises(UsageError, match="lists a target twice"):
        parse_targets("1,1")


@pytest.mark.parametrize("rule", ["rescale", "revealcancel"])
def test_normalize_input_weights(rule):
    """A filter offset shared by A, C, G, T changes no prediction on one-hot input; with the
    first layer mean-normalised it changes no score either, even against an all-zero reference."""
    torch.manual_seed(9)
    a = nn.Sequential(nn.Conv1d(4, 5, 7), nn.ReLU(), nn.Flatten(), nn.Linear(5 * (L - 6), 2)).double().eval()
    b = copy.deepcopy(a)
    with torch.no_grad():
        offset = torch.randn(5, 1, 7, dtype=torch.float64)
        b[0].weight += offset
        b[0].bias -= offset.sum(dim=(1, 2))
    rng = np.random.default_rng(7)
    X, zeros = one_hot(rng, 4), np.zeros((4, 1, 4, L))
    with torch.no_grad():
        np.testing.assert_allclose(a(torch.as_tensor(X)), b(torch.as_tensor(X)), atol=1e-10)
    plain = [deeplift(m, X, zeros).hypothetical for m in (a, b)]
    assert np.abs(plain[0] - plain[1]).max() > 1e-3  # the offset leaks into plain DeepLIFT scores
    engines = [prepare(m, L, normalize_input_weights=True, rule=rule) for m in (a, b)]
    normed = [e.run(X, zeros) for e in engines]
    np.testing.assert_allclose(normed[0].hypothetical, normed[1].hypothetical, atol=1e-10)
    for e, m in zip(engines, (a, b)):  # the model computes the same function
        np.testing.assert_allclose(e.predict(X, 1), m(torch.as_tensor(X))[:, 1].detach().numpy(), atol=1e-10)
        np.testing.assert_allclose(
            e.predict(X[:, :, ::-1] * 0.3, 0),
            m(torch.as_tensor(X[:, :, ::-1] * 0.3))[:, 0].detach().numpy(),
            atol=1e-10,
        )
    assert normed[0].delta_error.max() < 1e-10


@pytest.mark.slow  # torch.compile: seconds, tens of seconds with a cold inductor cache
def test_compiled_relu_rescale_matches_eager():
    """The fused ReLU multiplier (torch.compile) gives the eager engine's scores."""
    pytest.importorskip("torch._inductor")
    model = _randomise(MODELS["residual-reused-relu"](), 11)
    rng = np.random.default_rng(8)
    X, R = one_hot(rng, 3), one_hot(rng, 3, 4)
    R[:, 0] = X  # identical pairs exercise the |x - r| < eps branch
    eager = prepare(model, L).run(X, R)
    fused = prepare(model, L, compile=True).run(X, R)
    np.testing.assert_allclose(fused.hypothetical, eager.hypothetical, atol=1e-12)
    assert fused.delta_error.max() < 1e-10


def test_relu_kernel_matches_the_tensor_ops(compiled_and_tensor_ops):
    """On the CPU ReLU's Rescale backward is one compiled pass (kernels.relu_backward); CUDA keeps the tensor
    ops (split.rescale_multiplier). Both give the same scores, identical pairs (the fallback) included."""

    model = _randomise(MODELS["residual-reused-relu"](), 11)
    rng = np.random.default_rng(8)
    X, R = one_hot(rng, 3), one_hot(rng, 3, 4)
    R[:, 0] = X
    engine = prepare(model, L)
    fast, tensor_ops = compiled_and_tensor_ops(engine, X, R)
    np.testing.assert_allclose(fast.hypothetical, tensor_ops.hypothetical, rtol=1e-13, atol=1e-13)
    assert fast.delta_error.max() < 1e-10


class _ConstantEinsum(nn.Module):
    """A dense layer over channels written as an einsum with constant operands (as Enformer's relative
    positions are), or as a matmul (``equation=None``), between a tanh and a ReLU."""

    def __init__(self, equation):
        super().__init__()
        torch.manual_seed(5)
        self.conv = nn.Conv1d(4, 6, 5, padding=2)
        self.w1, self.w2 = nn.Parameter(torch.randn(6, 6)), nn.Parameter(torch.randn(6, 6))
        self.equation = equation

    def forward(self, x):
        h = torch.tanh(self.conv(x))
        if self.equation is None:
            y = torch.matmul(self.w2 @ self.w1, h)
        elif self.equation.count(",") == 2:
            y = torch.einsum(self.equation, h, self.w1, self.w2)
        elif self.equation.startswith("dc"):
            y = torch.einsum(self.equation, self.w2 @ self.w1, h)
        else:
            y = torch.einsum(self.equation, h, self.w2 @ self.w1)
        return F.relu(y - 0.3).sum(-1)[:, :2]


def test_einsum_with_constant_operands_splits_them_by_sign():
    """Under the split rules the constant operands of an einsum are coefficients, split by sign like a matmul's
    (they used to be zeroed, which lost the einsum's whole delta)."""
    rng = np.random.default_rng(4)
    X, R = one_hot(rng, 2), one_hot(rng, 2, 3)
    expected = deeplift(_ConstantEinsum(None).double(), X, R, target=1, rule="revealcancel")
    for equation in ("bcl,dc->bdl", "dc,bcl->bdl", "bcl,dc,ed->bel", "bcl,dc,ed"):
        model = _ConstantEinsum(equation).double()
        a = deeplift(model, X, R, target=1, rule="revealcancel")
        assert a.relative_error.max() < 1e-10, (equation, a.relative_error)
        np.testing.assert_allclose(a.hypothetical, expected.hypothetical, atol=1e-12, err_msg=equation)
        # genomics-default takes an einsum for a convolution (Rescale after it), a matmul for a dense layer
        assert deeplift(model, X, R, target=1, rule="genomics-default").relative_error.max() < 1e-10


# ---------------------------------------------------------------- max rules: pair, sign, shapley

MAX_MODELS = ["conv-relu-maxpool", "overlapping-maxpool", "maxpool-ceil", "maxpool-dilated", "maxpool-2d", "global-max"]


@pytest.mark.parametrize("rule", ["rescale", "revealcancel", "genomics-default"])
@pytest.mark.parametrize("max_rule", ["sign", "pair", "shapley"])
@pytest.mark.parametrize("name", MAX_MODELS)
def test_max_rules_sum_to_delta(name, max_rule, rule):
    """Every max rule is exact under every rule, on plain, overlapping, ceil-mode, dilated, 2-d and global max."""
    model = _randomise(MODELS[name](), 6)
    rng = np.random.default_rng(7)
    X, R = one_hot(rng, 4), one_hot(rng, 4, 6)
    engine = prepare(model, L, rule=rule, max_rule=max_rule)
    assert engine.max_rule == max_rule
    for target in (0, 1):
        a = engine.run(X, R, target=target)
        assert a.relative_error.max() < 1e-8, (name, max_rule, rule)
        np.testing.assert_allclose((a.hypothetical * X).sum(1), a.contributions.sum(1), atol=1e-10)


@pytest.mark.parametrize("max_rule", ["sign", "pair", "shapley"])
@pytest.mark.parametrize("name", MAX_MODELS)
def test_max_rule_kernel_matches_the_tensor_ops(name, max_rule, compiled_and_tensor_ops):
    """On the CPU the max rule's backward is one compiled pass (kernels.add_max_rule); CUDA keeps the tensor
    ops (split.max_multipliers, gathers and scatters). Same scores, identical pairs (the limits) included."""

    model = _randomise(MODELS[name](), 6)
    rng = np.random.default_rng(7)
    X, R = one_hot(rng, 4), one_hot(rng, 4, 6)
    R[:, 0] = X
    engine = prepare(model, L, max_rule=max_rule)
    fast, tensor_ops = compiled_and_tensor_ops(engine, X, R, target=1)
    np.testing.assert_allclose(fast.hypothetical, tensor_ops.hypothetical, rtol=1e-13, atol=1e-13)
    assert fast.relative_error.max() < 1e-8


@pytest.mark.parametrize("rule", ["rescale", "revealcancel"])
@pytest.mark.parametrize("max_rule, expected", [("pair", [1.8, -0.8]), ("sign", [1.0, 0.0]), ("shapley", [2.0, -1.0])])
def test_max_rules_worked_example(max_rule, expected, rule):
    """One window, input (3, 0), reference (0, 2): the max rises from 2 to 3.

    sign: the rise of 1 goes to the input's peak. shapley: a = 3 adds 1 when b is at its reference (2)
    and 3 when b is at its input (0), so φ_a = 2 and φ_b = 1 - 2 = -1.
    """
    model = nn.Sequential(nn.ReLU(), nn.MaxPool1d(2), nn.Flatten()).double().eval()
    x = torch.tensor([[[3.0, 0.0]]], dtype=torch.float64)
    r = torch.tensor([[[[0.0, 2.0]]]], dtype=torch.float64)
    a = prepare(model, 2, rule=rule, max_rule=max_rule).run(x, r)
    np.testing.assert_allclose(a.contributions[0, 0], expected, atol=1e-12)


@pytest.mark.parametrize("max_rule", ["pair", "sign", "shapley"])
def test_max_rules_equal_gradient_routing_when_argmax_agrees(max_rule):
    model = nn.Sequential(nn.MaxPool1d(4), nn.Flatten()).double().eval()
    x = torch.tensor([[[1.0, 5.0, 2.0, 3.0]]], dtype=torch.float64)
    r = torch.tensor([[[[0.5, 4.0, 3.5, 1.0]]]], dtype=torch.float64)
    a = prepare(model, 4, max_rule=max_rule).run(x, r)
    np.testing.assert_allclose(a.contributions[0, 0], [0.0, 1.0, 0.0, 0.0], atol=1e-12)


class _PairMaxes(nn.Module):
    """A weighted sum of maxes of two elements: overlapping windows of width 2 along the sequence, or the max
    over a dim of 2 (channels A/C and G/T)."""

    def __init__(self, kind, length):
        super().__init__()
        self.kind = kind
        self.head = nn.Linear(4 * (length - 1) if kind == "overlapping" else 2 * length, 2)

    def forward(self, x):
        if self.kind == "overlapping":
            h = F.max_pool1d(x, 2, stride=1)
        else:
            h = x.unflatten(1, (2, 2)).amax(dim=2)
        return self.head(h.flatten(1))


def _brute_force_shapley(f, x, r):
    """Exact Shapley values of the elements of ``x`` for ``f`` (players take their value in ``x`` or ``r``),
    by enumerating all coalitions: ``f`` maps a batch shaped (B, *x.shape) to (B,)."""
    from math import factorial

    n = x.numel()
    masks = torch.tensor(np.array(np.unravel_index(np.arange(2**n), (2,) * n)).T, dtype=torch.bool)
    values = f(torch.where(masks, x.flatten(), r.flatten()).reshape((-1,) + tuple(x.shape))).detach().numpy()
    size = masks.sum(1).numpy()
    phi = np.zeros(n)
    for i in range(n):
        has = masks[:, i].numpy()
        s = size[has]
        weight = np.array([factorial(k - 1) * factorial(n - k) / factorial(n) for k in s])
        phi[i] = (weight * (values[has] - values[np.flatnonzero(has) - 2 ** (n - 1 - i)])).sum()
    return phi.reshape(tuple(x.shape))


@pytest.mark.parametrize("rule", ["rescale", "revealcancel"])
@pytest.mark.parametrize("kind", ["overlapping", "dim"])
def test_shapley_max_rule_matches_brute_force(kind, rule):
    """A sum of maxes of two inputs each is a sum of two-player games, so the inputs' exact Shapley values
    are the sums of the per-window two-player values: what ``max_rule="shapley"`` gives.

    The split is between the element where the input peaks and the one where the reference peaks, so the
    inputs rise along the sequence and from C to A, T to G, and the references fall: in every window the
    two peak at different elements (where they peak at the same one, that element takes the whole delta).
    """
    length = 3
    torch.manual_seed(8)
    model = _PairMaxes(kind, length).double().eval()
    rng = np.random.default_rng(9)
    trend = 2.0 * np.arange(length) + 5.0 * (np.arange(4) % 2 == 0)[:, None]
    X = rng.uniform(0, 0.5, size=(3, 4, length)) + trend
    R = rng.uniform(0, 0.5, size=(3, 2, 4, length)) - trend
    engine = prepare(model, length, rule=rule, max_rule="shapley")
    for target in (0, 1):
        a = engine.run(X, R, target=target)
        for i in range(3):
            expected = np.mean(
                [
                    _brute_force_shapley(
                        lambda t, target=target: model(t)[:, target], torch.tensor(X[i]), torch.tensor(R[i, j])
                    )
                    for j in range(2)
                ],
                axis=0,
            )
            np.testing.assert_allclose(a.contributions[i], expected, atol=1e-12)


def test_sign_max_rule_matches_tangermeme():
    """``max_rule="sign"`` is tangermeme's (and captum's) max-pool rule: same scores on a CNN with max pools."""
    dls = pytest.importorskip("tangermeme.deep_lift_shap")
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv1d(4, 8, 7, padding=3),
        nn.ReLU(),
        nn.MaxPool1d(4),
        nn.Conv1d(8, 8, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool1d(3),
        nn.Flatten(),
        nn.Linear(8 * 5, 16),
        nn.ReLU(),
        nn.Linear(16, 3),
    ).eval()
    rng = np.random.default_rng(6)
    X, R = one_hot(rng, 5).astype(np.float32), one_hot(rng, 5, 8).astype(np.float32)
    theirs = dls.deep_lift_shap(
        model, torch.tensor(X), target=0, references=torch.tensor(R), hypothetical=True, device="cpu", batch_size=8
    ).numpy()
    scale = np.abs(theirs).max()
    ours = {m: deeplift(prepare(model, L, max_rule=m), X, R, target=0).hypothetical for m in ("sign", "pair")}
    np.testing.assert_allclose(ours["sign"], theirs, atol=1e-5 * scale)
    assert np.abs(ours["pair"] - theirs).max() > 0.1 * scale  # the pair rule is another split


def test_default_and_unknown_max_rule():
    model = _randomise(MODELS["conv-relu-maxpool"](), 0)
    assert prepare(model, L).max_rule == "sign"
    with pytest.raises(UsageError, match="unknown max rule 'half'; choose one of sign, pair, shapley"):
        prepare(model, L, max_rule="half")


@pytest.mark.parametrize("fraction", [0.001, 0.5])
def test_rescale_fallback_at_a_few_places_equals_the_fallback_everywhere(fraction):
    """The derivative taken only where |x - r| < eps (few places) or over the whole tensor (many) gives the same
    multipliers, bit for bit."""
    from seqlift.attribution.split import rescale_multiplier

    g = torch.Generator().manual_seed(0)
    ax = torch.randn(3, 1, 50, 40, generator=g, dtype=torch.float64)
    ar = torch.randn(3, 5, 50, 40, generator=g, dtype=torch.float64)
    same = torch.rand(ar.shape, generator=g) < fraction
    ar = torch.where(same, ax.expand_as(ar), ar)
    assert same.any()
    m = [rescale_multiplier(ax, ar, ax.exp(), ar.exp(), 1e-6, torch.exp, elementwise=e) for e in (False, True)]
    assert torch.equal(m[0], m[1])
    assert torch.equal(m[1][same], ax.expand_as(ar)[same].exp())


def test_rescale_hypothetical_contributions_take_the_one_multiplier_formula(monkeypatch):
    """Under Rescale one multiplier serves both signs of x - r: the hypothetical contributions are
    m[b] - sum_c m[c] r[c], not the split rules' (N, K, B, C, L) sum, which costs four times as much."""
    from seqlift.attribution import result

    seen = []
    original = result._hypothetical
    monkeypatch.setattr(
        result, "_hypothetical", lambda m_pos, m_neg, R: seen.append(m_neg) or original(m_pos, m_neg, R)
    )
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(4, 3, 5, padding=2), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 20, 1)).eval()
    g = np.random.default_rng(0)
    X = np.eye(4, dtype=np.float32)[g.integers(0, 4, (2, 20))].transpose(0, 2, 1)
    R = np.eye(4, dtype=np.float32)[g.integers(0, 4, (2, 3, 20))].transpose(0, 1, 3, 2)
    for budget in (None, 2 * 3 * 20 * 4):  # one call, and calls of 2 rows joined
        seen.clear()
        prepare(model, 20, tensor_budget=budget).run(X, R, target=0)
        assert seen == [None]
