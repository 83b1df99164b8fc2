"""Published conv-transformer and conv-RNN models, built from their own packages at small size.

enformer-pytorch's ``Enformer`` (convolutional stem and tower with attention pooling, a transformer with
relative positional encodings, Enformer's GELU and softplus heads), gReLU's ``ConvGRUModel``
(convolutional tower with max pooling, a bidirectional GRU, layer norm and a feed-forward block) and gReLU's
``ConvTransformerModel`` (the same tower, a transformer layer with relative positional features) are
random-initialised with a fixed seed, wrapped to take (N, 4, L) and return (N, T) as seqlift expects,
exported to ``.pt2`` as the README says (dynamic batch dimension), saved, loaded, and scored.
Contributions must sum to f(x) - f(r) for every (input, reference) pair under Rescale, RevealCancel and
genomics-default: relative error below 1e-8 in float64 and 1e-4 in float32 (Rescale only, for two of them:
see below). Gradient methods, ISM and ``seqlift score`` must run on them.

The packages are test-only dependencies (``make install-test``); each model's tests skip when its package
is missing.
"""

import math

import h5py
import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.export import Dim

from seqlift.attribution import prepare
from seqlift.attribution.gradients import integrated_gradients, saliency
from seqlift.attribution.graph import capture
from seqlift.attribution.ism import ism

from cli_helpers import run

#: Each model is exported and scored under every rule: minutes in all (make test runs them; make quick-test does not).
pytestmark = pytest.mark.slow

RULES = ("rescale", "revealcancel", "genomics-default")


class Tracks(nn.Module):
    """(N, 4, L) in, (N, T) out: a published model's track output flattened, as a user would wrap it."""

    def __init__(self, model, channels_last=False, **kwargs):
        super().__init__()
        self.model = model
        self.channels_last = channels_last
        self.kwargs = kwargs

    def forward(self, x):
        y = self.model(x.transpose(1, 2) if self.channels_last else x, **self.kwargs)
        return y.flatten(1)


def _enformer():
    """enformer-pytorch's Enformer: dim 24, 3 downsamplings (L/8 bins), one transformer layer with 2 heads."""
    enformer = pytest.importorskip("enformer_pytorch")
    model = enformer.Enformer.from_hparams(
        dim=24,
        depth=1,
        heads=2,
        attn_dim_key=4,
        num_downsamples=3,
        dim_divisible_by=4,
        target_length=-1,
        output_heads={"human": 2},
        dropout_rate=0.0,
        attn_dropout=0.0,
        pos_dropout=0.0,
    )
    return Tracks(model, channels_last=True, head="human")  # Enformer takes (N, L, 4) and returns a dict


def _grelu_conv_gru():
    """gReLU's ConvGRUModel: stem, one conv block with max pooling by 4, a bidirectional GRU over L/4 positions."""
    models = pytest.importorskip("grelu.model.models")
    return Tracks(
        models.ConvGRUModel(
            n_tasks=2,
            stem_channels=6,
            stem_kernel_size=5,
            n_conv=2,
            channel_init=6,
            kernel_size=3,
            pool_func="max",
            pool_size=4,
            n_gru=1,
        )
    )


def _grelu_conv_transformer():
    """gReLU's ConvTransformerModel: a conv tower with max pooling, one transformer layer with 2 heads and
    relative positional features, output per position (no final pooling)."""
    models = pytest.importorskip("grelu.model.models")
    return Tracks(
        models.ConvTransformerModel(
            n_tasks=2,
            stem_channels=8,
            stem_kernel_size=5,
            n_conv=2,
            channel_init=8,
            kernel_size=3,
            pool_func="max",
            pool_size=2,
            n_heads=2,
            key_len=4,
            value_len=4,
            n_pos_features=4,
            final_pool_func=None,
        )
    )


# name -> (builder, input length, target column); the target is an output bin of track 1 that moves with the input
MODELS = {
    "enformer-pytorch Enformer": (_enformer, 64, 9),
    "gReLU ConvGRUModel": (_grelu_conv_gru, 16, 1),
    "gReLU ConvTransformerModel": (_grelu_conv_transformer, 32, 3),
}
#: float32 under the split rules too (see test_sums_to_delta_float32)
FLOAT32_SPLIT = {"gReLU ConvGRUModel"}


def _randomised(name, dtype):
    """The model with every weight and batch-norm statistic drawn from a seeded normal distribution.

    Published models zero-initialise some layers (Enformer's attention output, biases) so that they start as
    identities; random values make every branch carry a change.
    """
    builder, _, _ = MODELS[name]
    model = builder()
    gen = torch.Generator().manual_seed(sum(map(ord, name)))
    with torch.no_grad():
        for key, p in list(model.named_parameters()) + list(model.named_buffers()):
            if not p.is_floating_point() or p.numel() == 0:
                continue
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            if key.endswith("running_var"):
                value = 0.5 + noise.abs()
            elif p.dim() >= 2:
                value = noise * (1.5 / math.sqrt(p[0].numel()))
            elif key.endswith("weight"):
                value = 1.0 + 0.3 * noise
            else:
                value = 0.3 * noise
            p.copy_(value.to(p.dtype))
    return model.to(dtype).eval()


def _data(length, seed, n=3, k=4):
    rng = np.random.default_rng(seed)
    X = np.eye(4)[rng.integers(0, 4, (n, length))].transpose(0, 2, 1)
    R = np.eye(4)[rng.integers(0, 4, (n, k, length))].transpose(0, 1, 3, 2)
    return X, R


@pytest.fixture(scope="module", params=sorted(MODELS))
def name(request):
    return request.param


@pytest.fixture(scope="module")
def exported(name, tmp_path_factory):
    """dtype -> (eager model, path of its .pt2, the loaded program captured once for all rules and methods)."""
    _, length, _ = MODELS[name]
    out = {}
    for dtype in (torch.float64, torch.float32):
        model = _randomised(name, dtype)
        program = torch.export.export(model, (torch.zeros(2, 4, length, dtype=dtype),), dynamic_shapes=({0: Dim.AUTO},))
        path = tmp_path_factory.mktemp("published") / "model.pt2"
        torch.export.save(program, path)
        out[dtype] = (model, path, capture(torch.export.load(path)))
    return out


def test_sums_to_delta_float64(name, exported):
    _, length, target = MODELS[name]
    model, _, captured = exported[torch.float64]
    X, R = _data(length, 0)
    with torch.no_grad():
        fx = model(torch.as_tensor(X))[:, target].numpy()
        fr = model(torch.as_tensor(R.reshape(-1, 4, length))).reshape(3, 4, -1)[..., target].numpy()
    delta = np.abs(fx[:, None] - fr).max(1)
    assert (delta > 1e-2).all(), (name, "the target barely moves; the check would be weak", delta)
    for rule in RULES:
        a = prepare(captured, rule=rule).run(X, R, target=target)
        np.testing.assert_allclose(a.predictions, fx, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(a.reference_predictions, fr, rtol=1e-10, atol=1e-10)
        assert (a.delta_error / delta).max() < 1e-8, (name, rule, a.delta_error / delta)
        np.testing.assert_allclose((a.hypothetical * X).sum(1), a.contributions.sum(1), atol=1e-10)


def test_sums_to_delta_float32(name, exported):
    _, length, target = MODELS[name]
    _, _, captured = exported[torch.float32]
    X, R = _data(length, 1)
    # Under the split rules, Enformer's positive and negative parts of the target's change are each about 1e5-1e6
    # times the change itself (sign-split weights compound, x3-10 a block) and cancel to 6 digits: float32 rounding
    # keeps about 0.3 of the delta there, while float64 sums to within ~1e-9 (test above). gReLU's
    # ConvTransformerModel keeps up to 2e-4 under genomics-default in float32. The ConvGRUModel's parts are ~400
    # times its change and pass in float32.
    rules = RULES if name in FLOAT32_SPLIT else ("rescale",)
    for rule in rules:
        a = prepare(captured, rule=rule).run(X.astype(np.float32), R.astype(np.float32), target=target)
        assert a.relative_error.max() < 1e-4, (name, rule, a.relative_error)


def test_gradient_methods_and_ism_run(name, exported):
    _, length, target = MODELS[name]
    model, _, captured = exported[torch.float32]
    X, R = _data(length, 2, n=2, k=2)
    with torch.no_grad():
        fx = model(torch.as_tensor(X, dtype=torch.float32))[:, target].numpy()
    s = saliency(captured, X, target=target)
    assert np.isfinite(s.hypothetical).all()
    np.testing.assert_allclose(s.predictions, fx, rtol=1e-5, atol=1e-5)
    ig = integrated_gradients(captured, X, R, target=target, steps=4)
    assert np.isfinite(ig.hypothetical).all()
    m = ism(captured, X, target=target)
    np.testing.assert_allclose(m.predictions, fx, rtol=1e-5, atol=1e-5)
    assert np.isfinite(m.hypothetical).all()


def test_cli_scores_the_exported_enformer(exported, name, data):
    """``seqlift score`` on the .pt2 file, as a user would run it: summation-to-delta is stored per region."""
    if not name.startswith("enformer"):
        pytest.skip("one CLI run: the conv-transformer (the GRU's capture takes longer)")
    _, length, target = MODELS[name]
    _, path, _ = exported[torch.float32]
    bed = data["dir"] / "published.bed"
    bed.write_text("chr1\t100\t164\ta\t0\t+\nchr1\t300\t364\tb\t0\t-\nchr2\t200\t264\tc\t0\t+\n")
    out = data["dir"] / "enformer.h5"
    result = run(
        "score",
        bed,
        "--fasta",
        data["fasta"],
        "--model",
        path,
        "--target",
        target,
        "--n-refs",
        3,
        "-o",
        out,
        "--quiet",
        "--strict",
    )
    assert result.exit_code == 0, result.output
    with h5py.File(out, "r") as h5:
        assert h5["shap/seq"].shape == (3, 4, length)
        assert h5["meta/delta_rel_error"][:].max() < 1e-4
        total = h5["projected_shap/seq"][:].sum(axis=(1, 2))
        np.testing.assert_allclose(total, h5["meta/prediction"][:] - h5["meta/reference_prediction"][:], atol=1e-4)
