"""What is explained: heads of tuple outputs, as BPNet-style packages lay them out."""

import numpy as np
import pytest
import torch

import seqlift
from seqlift.errors import UsageError
from seqlift.targets import parse_targets

pytestmark = pytest.mark.usefixtures("one_thread")


class TwoHeads(torch.nn.Module):
    """chrombpnet's layout: profile logits (N, L') and log-counts (N, 1); ``order`` swaps them."""

    def __init__(self, order="profile-first", profile_dims=2):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv1d(4, 3, 5)
        self.counts = torch.nn.Linear(3, 1)
        self.order, self.profile_dims = order, profile_dims

    def forward(self, x):
        h = torch.relu(self.conv(x))  # (N, 3, 46)
        profile = h.sum(dim=1) if self.profile_dims == 2 else h[:, :1]  # (N, 46) or (N, 1, 46)
        counts = self.counts(h.mean(dim=2))
        return (profile, counts) if self.order == "profile-first" else (counts, profile)


def data(n=2, k=3, length=50):
    rng = np.random.default_rng(0)
    X = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (n, length))].transpose(0, 2, 1).copy()
    refs = np.stack([np.roll(X, s + 1, axis=2) for s in range(k)], axis=1)
    return X, refs


@pytest.mark.parametrize("order", ["profile-first", "counts-first"])
@pytest.mark.parametrize("profile_dims", [2, 3])
def test_counts_and_profile_heads_are_found_in_either_layout(order, profile_dims):
    model = TwoHeads(order, profile_dims).eval()
    X, refs = data()
    counts_at = 1 if order == "profile-first" else 0
    for target in ("counts", "profile"):
        index = counts_at if target == "counts" else 1 - counts_at
        found = seqlift.deeplift(model, X, refs, target=parse_targets(target, None)[0])
        named = seqlift.deeplift(model, X, refs, target=parse_targets(target, index)[0])
        np.testing.assert_allclose(found.hypothetical, named.hypothetical, rtol=1e-6, atol=1e-7)


def test_a_tuple_output_without_a_head_names_the_shapes_and_the_targets():
    model = TwoHeads().eval()
    X, refs = data()
    with pytest.raises(
        UsageError, match=r"returns 2 outputs \(\(N, 46\), \(N, 1\)\).*--target counts or --target profile"
    ):
        seqlift.deeplift(model, X, refs, target=0)
