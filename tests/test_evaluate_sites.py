"""``seqlift evaluate sites``: DeepLIFT scores of the demo single out its planted GATA sites; noise does not."""

import h5py
import numpy as np
import pytest

from cli_helpers import read_tsv, run
from conftest import N_DEMO_REGIONS, copy_scores
from seqlift.demo import demo_paths
from seqlift.errors import OutputError, RegionError
from seqlift.evaluate.sites import SITE_COLUMNS, evaluate_sites, read_sites, site_labels, site_recovery

DEMO = demo_paths()


def test_deeplift_scores_find_gata_sites_and_noise_does_not(demo_scores_60, tmp_path):
    rng = np.random.default_rng(3)
    with h5py.File(demo_scores_60, "r") as h5:
        raw = h5["raw/seq"][:]
    noise = rng.normal(size=raw.shape).astype(np.float32)
    noisy = copy_scores(demo_scores_60, tmp_path / "noise.h5", shap__seq=noise, projected_shap__seq=noise * raw)
    deeplift, random = site_recovery([demo_scores_60, noisy], DEMO["sites"], ["GATA"])
    assert deeplift["auroc_abs"] > 0.8 and deeplift["auroc_signed"] > 0.8
    assert 0.4 < random["auroc_abs"] < 0.6 and 0.4 < random["auroc_signed"] < 0.6
    site_fraction = deeplift["n_site_positions"] / deeplift["n_positions"]
    assert deeplift["auprc_abs"] > 5 * site_fraction and random["auprc_abs"] < 2 * site_fraction
    assert deeplift["n_positions"] == N_DEMO_REGIONS * 200 and deeplift["target"] == "0"


def test_minus_strand_windows_are_mapped_back(demo_scores_60, tmp_path):
    with h5py.File(demo_scores_60, "r") as h5:
        raw, projected = h5["raw/seq"][:], h5["projected_shap/seq"][:]
    minus = copy_scores(
        demo_scores_60, tmp_path / "minus.h5", raw__seq=raw[:, ::-1, ::-1], projected_shap__seq=projected[:, ::-1, ::-1]
    )
    with h5py.File(minus, "r+") as h5:
        h5["meta/strand"][...] = np.array(["-"] * N_DEMO_REGIONS, dtype=object)
    plus, flipped = site_recovery([demo_scores_60, minus], DEMO["sites"], ["GATA"])
    for column in ("n_site_positions", "auroc_abs", "auprc_abs", "auroc_signed", "auprc_signed"):
        assert plus[column] == pytest.approx(flipped[column], abs=1e-12)


def test_site_labels_in_genome_coordinates(tmp_path):
    bed = tmp_path / "sites.bed"
    bed.write_text("chr1\t8\t12\tGATA\t0\t+\nchr1\t11\t14\tGATA\t0\t-\nchr1\t30\t32\tTAL1\t0\t+\nchr2\t0\t3\tGATA\n")
    sites = read_sites(bed, ["GATA"])
    np.testing.assert_array_equal(sites["chr1"], [[8, 14]])  # overlapping sites merged; TAL1 left out
    labels = site_labels(["chr1", "chr1", "chr2", "chr3"], np.array([5, 12, 2, 0]), np.array([15, 22, 12, 10]), sites)
    np.testing.assert_array_equal(np.flatnonzero(labels[0]), [3, 4, 5, 6, 7, 8])
    np.testing.assert_array_equal(np.flatnonzero(labels[1]), [0, 1])
    np.testing.assert_array_equal(np.flatnonzero(labels[2]), [0])
    assert not labels[3].any()


def test_sites_cli(demo_scores_60, tmp_path):
    out = tmp_path / "sites.tsv"
    result = run(
        "evaluate",
        "sites",
        demo_scores_60,
        demo_scores_60,
        "--sites",
        DEMO["sites"],
        "--motif",
        "GATA",
        "-o",
        out,
        "-q",
    )
    assert result.exit_code == 0, result.output
    notes, header, rows = read_tsv(out)
    assert tuple(header) == SITE_COLUMNS and len(rows) == 2
    assert rows[0] == rows[1] and float(rows[0]["auroc_abs"]) > 0.8 and rows[0]["method"] == "deeplift"
    assert any("GATA" in n for n in notes)


def test_sites_errors(demo_scores_60, tmp_path):
    far = tmp_path / "far.bed"
    far.write_text("chr9\t100\t108\tGATA\t0\t+\n")
    with pytest.raises(
        RegionError,
        match=r"no GATA site of .*far\.bed overlaps a scored position of .*"
        r"\(60 windows on chr1\); check that both files use the same genome",
    ):
        site_recovery(demo_scores_60, far, ["GATA"])
    with pytest.raises(RegionError, match=r"--motif CTCF names no site in .*; its names are GATA, TAL1"):
        site_recovery(demo_scores_60, DEMO["sites"], ["CTCF"])
    bad = tmp_path / "bad.bed"
    bad.write_text("chr1\t100\t90\tGATA\n")
    with pytest.raises(RegionError, match=r"bad\.bed line 1: end \(90\) is not greater than start"):
        site_recovery(demo_scores_60, bad)
    with pytest.raises(OutputError, match=r"output .*far\.bed exists"):
        evaluate_sites(demo_scores_60, DEMO["sites"], far)
    result = run("evaluate", "sites", demo_scores_60, "--sites", far, "-o", tmp_path / "t.tsv")
    assert result.exit_code == 1 and "no site of" in result.output and not (tmp_path / "t.tsv").exists()
