"""The bundled demo: scores land on the planted motifs, and modisco-lite reads the output as it is."""

from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from seqlift.cli import main
from seqlift.demo import demo_paths
from seqlift.regions import read_regions

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo_scores(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo.h5"
    result = CliRunner().invoke(
        main,
        [
            "score",
            demo_paths()["regions"],
            "--config",
            str(ROOT / "configs" / "demo.yaml"),
            "-o",
            str(out),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    return out


def _site_mask(h5, sites):
    """(N, L) bool: positions of each window covered by a planted motif site (0-based half-open)."""
    chrom = [c.decode() if isinstance(c, bytes) else c for c in h5["coords_chrom"][:]]
    start, end = h5["coords_start"][:], h5["coords_end"][:]
    mask = np.zeros((len(chrom), end[0] - start[0]), bool)
    for c, s, e in sites:
        for i in np.flatnonzero((np.array(chrom) == c) & (start < e) & (end > s)):
            mask[i, max(s, start[i]) - start[i] : min(e, end[i]) - start[i]] = True
    return mask


@pytest.mark.slow  # 200 regions x 20 references; test_evaluate_sites.py checks GATA sites on 60 in the quick loop
def test_demo_scores_highlight_planted_gata_sites(demo_scores):
    sites = [(r.chrom, r.start, r.end) for r in read_regions(demo_paths()["sites"]) if "GATA" in r.name.upper()]
    with h5py.File(demo_scores, "r") as h5:
        attrs = dict(h5.attrs)
        assert attrs["n_regions"] == 200 and attrs["reference"] == "shuffle" and attrs["n_refs"] == 20
        assert h5["meta/delta_rel_error"][:].max() < 1e-3
        contrib = h5["projected_shap/seq"][:].sum(axis=1)  # (N, L) actual-base contributions
        mask = _site_mask(h5, sites)
    with_sites = mask.any(axis=1)
    assert with_sites.sum() > 50
    inside = contrib[mask].mean()
    outside = contrib[with_sites][~mask[with_sites]].mean()
    # task 0 is "contains GATA": planted GATA bases carry the positive contribution
    assert inside > 0.05 and inside > 10 * abs(outside)


@pytest.mark.slow
def test_modisco_reads_the_output(demo_scores):
    """modisco-lite's own loader (`modisco motifs -i`) takes the file as it is."""
    cli = pytest.importorskip("modiscolite.cli")
    out = demo_scores.parent / "modisco.h5"
    result = CliRunner().invoke(
        cli.cli,
        [
            "motifs",
            "-i",
            str(demo_scores),
            "-n",
            "2000",
            "-w",
            "200",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    with h5py.File(out, "r") as h5:
        patterns = list(h5.get("pos_patterns", {}).keys())
    assert patterns, "modisco found no positive pattern in the demo's scores"


def test_readme_export_example_runs(tmp_path, monkeypatch):
    """The README's export snippet, run as written (from a checkout's root), gives a model seqlift loads."""
    import re
    from pathlib import Path

    from seqlift.models import load_model

    root = Path(__file__).resolve().parents[1]
    text = (root / "README.md").read_text()
    section = text[text.index("**1. Give seqlift the model.**") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    (tmp_path / "seqlift").symlink_to(root / "seqlift")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    loaded = load_model(str(tmp_path / "model.pt2"))
    assert loaded.kind == "program" and loaded.input_length == 200
