"""Shared fixtures: a small genome with edge cases, a BED, tiny models in each supported format, demo scores."""

import os
import shutil
import textwrap

import h5py
import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch.export import Dim

import seqlift
from seqlift.demo import demo_paths

LENGTH = 50


TINY_SOURCE = textwrap.dedent("""
    import torch
    import torch.nn as nn


    class TinyCNN(nn.Module):
        input_length = 50

        def __init__(self, n_filters=4):
            super().__init__()
            self.conv = nn.Conv1d(4, n_filters, 5, padding=2)
            self.pool = nn.MaxPool1d(2)
            self.head = nn.Linear(n_filters * 25, 2)

        def forward(self, x):
            return self.head(self.pool(torch.relu(self.conv(x))).flatten(1))
""")


_namespace = {}
exec(TINY_SOURCE, _namespace)
#: conv -> ReLU -> max pool -> dense, 2 outputs for inputs (N, 4, 50); also written to a file for class loading.
TinyCNN = _namespace["TinyCNN"]


@pytest.fixture(autouse=True, scope="session")
def _own_cache_dir(tmp_path_factory):
    """The tests keep seqlift's per-user cache (FASTA digests) in a folder of their own."""
    before = os.environ.get("SEQLIFT_CACHE_DIR")
    os.environ["SEQLIFT_CACHE_DIR"] = str(tmp_path_factory.mktemp("seqlift-cache"))
    yield
    if before is None:
        os.environ.pop("SEQLIFT_CACHE_DIR", None)
    else:
        os.environ["SEQLIFT_CACHE_DIR"] = before


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread (no thread start-up per op on a busy machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def compiled_and_tensor_ops(monkeypatch):
    """``run(engine, X, R, **kwargs)``: the engine's results on the CPU with the compiled loops of
    :mod:`seqlift.attribution.kernels`, and with the tensor ops that CUDA takes instead."""
    from seqlift.attribution import paired

    def run(engine, X, R, **kwargs):
        results = []
        for compiled in (True, False):
            monkeypatch.setattr(paired, "COMPILED", compiled)
            results.append(engine.run(X, R, **kwargs))
        return results

    return run


def write_fasta(path, seqs, width=60, description=""):
    """Write ``seqs`` (name -> sequence) as FASTA, ``width`` bases a line."""
    with open(path, "w") as fh:
        for name, seq in seqs.items():
            fh.write(f">{name}{' ' + description if description else ''}\n")
            for i in range(0, len(seq), width):
                fh.write(seq[i : i + width] + "\n")
    return path


def random_one_hot(rng, *shape, length):
    """Random one-hot DNA of shape (*shape, 4, length) as float64."""
    idx = rng.integers(0, 4, size=shape + (length,))
    return np.moveaxis(np.eye(4)[idx], -1, -2)


@pytest.fixture(scope="session")
def genome_seqs():
    rng = np.random.default_rng(7)
    chr1 = "".join(rng.choice(list("ACGT"), 600))
    chr2 = list("".join(rng.choice(list("ACGT"), 400)))
    chr2[100:110] = "N" * 10  # an N run inside a scored window
    chr2[300:330] = [c.lower() for c in chr2[300:330]]  # soft-masked
    chr3 = "A" * 120  # low complexity: its shuffles equal itself
    return {"chr1": chr1, "chr2": "".join(chr2), "chr3": chr3}


@pytest.fixture
def data(tmp_path, genome_seqs):
    """A FASTA, a BED of 6 regions (1-based lines 2..7 after a header), a .pt2 and a class model."""
    fasta = write_fasta(tmp_path / "genome.fa", genome_seqs)
    bed = tmp_path / "peaks.bed"
    bed.write_text(
        "track name=test\n"
        "chr1\t100\t150\tr1\t0\t+\n"
        "chr1\t300\t360\tr2\t0\t-\n"
        "chr2\t80\t130\tr3_with_N\t0\t+\n"
        "chr1\t500\t560\tr4\t0\t+\t1\t1\t1\t20\n"
        "chr2\t290\t340\tr5_softmasked\t0\t+\n"
        "chr1\t0\t50\tr6\t0\t+\n"
    )
    torch.manual_seed(0)
    model = TinyCNN().eval()
    pt2 = tmp_path / "tiny.pt2"
    program = torch.export.export(model, (torch.zeros(2, 4, LENGTH),), dynamic_shapes=({0: Dim.AUTO},))
    torch.export.save(program, str(pt2))
    source = tmp_path / "tinymodel.py"
    source.write_text(TINY_SOURCE)
    weights = tmp_path / "tiny.safetensors"
    save_file(model.state_dict(), str(weights))
    return {
        "fasta": str(fasta),
        "bed": str(bed),
        "pt2": str(pt2),
        "model": model,
        "class": f"{source}:TinyCNN",
        "weights": str(weights),
        "dir": tmp_path,
    }


#: Demo regions scored by :func:`demo_scores_60`.
N_DEMO_REGIONS = 60


@pytest.fixture(scope="session")
def demo_scores_60(tmp_path_factory):
    """DeepLIFT scores of the demo model's GATA task (target 0) on the first 60 demo regions."""
    demo = demo_paths()
    folder = tmp_path_factory.mktemp("evaluate")
    bed = folder / "regions.bed"
    with open(demo["regions"]) as fh:
        bed.write_text("".join(fh.readlines()[:N_DEMO_REGIONS]))
    [scores] = seqlift.score(str(bed), demo["fasta"], demo["model_pt2"], folder / "scores.h5", n_refs=5, progress=False)
    return scores


def copy_scores(src, dst, **datasets):
    """A copy of a scores file with some datasets overwritten (same shape); ``a__b`` names dataset ``a/b``."""
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as h5:
        for name, value in datasets.items():
            h5[name.replace("__", "/")][...] = value
    return dst
