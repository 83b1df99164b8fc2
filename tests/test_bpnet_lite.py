"""bpnet-lite's own BPNet and ChromBPNet (random-initialised): counts and profile targets, every rule."""

import numpy as np
import pytest
import torch

from seqlift.attribution import prepare
from seqlift.targets import parse_targets

bpnet = pytest.importorskip("bpnetlite.bpnet")
chrombpnet = pytest.importorskip("bpnetlite.chrombpnet")

L = 500

pytestmark = pytest.mark.usefixtures("one_thread")


def _bpnet(filters, layers):
    return bpnet.BPNet(n_filters=filters, n_layers=layers, n_outputs=2, n_control_tracks=0, trimming=100, verbose=False)


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    X = np.eye(4)[rng.integers(0, 4, (3, L))].transpose(0, 2, 1)
    R = np.eye(4)[rng.integers(0, 4, (3, 4, L))].transpose(0, 1, 3, 2)
    return X, R


@pytest.mark.parametrize("rule", ["rescale", "revealcancel", "genomics-default"])
@pytest.mark.parametrize("name", ["BPNet", "ChromBPNet"])
def test_profile_models_sum_to_delta(name, rule, inputs):
    torch.manual_seed(0)
    model = _bpnet(8, 3) if name == "BPNet" else chrombpnet.ChromBPNet(_bpnet(4, 2), _bpnet(8, 3))
    model.double().eval()  # float64: summation-to-delta is exact up to rounding (ChromBPNet's exp/log
    X, R = inputs  # of count heads loses about 1e-4 absolute in float32)
    counts, profile = prepare(model, L, rule=rule).run(X, R, parse_targets("counts,profile"))
    for a in (counts, profile):
        assert a.relative_error.max() < 1e-8
    with torch.no_grad():
        prof, logc = model(torch.as_tensor(X))
        z = prof.reshape(3, -1)
        z = z - z.mean(dim=1, keepdim=True)
    np.testing.assert_allclose(counts.predictions, logc.sum(1).numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(profile.predictions, (torch.softmax(z, 1) * z).sum(1).numpy(), rtol=1e-10, atol=1e-10)
