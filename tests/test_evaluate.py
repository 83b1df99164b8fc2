"""``seqlift evaluate``: perturbation faithfulness and motif-site recovery on the demo, metrics against sklearn."""

import shutil

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.metrics import average_precision_score, roc_auc_score

import seqlift
from seqlift.cli.group import _Group
from seqlift.cli.evaluate import evaluate
from seqlift.demo import demo_paths
from seqlift.errors import ModelError, OutputError, RegionError, SeqliftError, UsageError
from seqlift.evaluate import (
    FLIP_NOTE, PERTURB_COLUMNS, SITE_COLUMNS, _variants, auprc, auroc, evaluate_perturbation, evaluate_sites,
    perturbation, read_sites, site_labels, site_recovery,
)

DEMO = demo_paths()
N_REGIONS = 60


@pytest.fixture(scope="module")
def demo_scores(tmp_path_factory):
    """DeepLIFT scores of the demo model's GATA task (target 0) on the first 60 demo regions."""
    folder = tmp_path_factory.mktemp("evaluate")
    bed = folder / "regions.bed"
    with open(DEMO["regions"]) as fh:
        bed.write_text("".join(fh.readlines()[:N_REGIONS]))
    [scores] = seqlift.score(str(bed), DEMO["fasta"], DEMO["model_pt2"], folder / "scores.h5", n_refs=5,
                             progress=False)
    return scores


def copy_scores(src, dst, **datasets):
    """A copy of a scores file with some datasets overwritten (same shape)."""
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as h5:
        for name, value in datasets.items():
            h5[name.replace("__", "/")][...] = value
    return dst


def read_tsv(path):
    lines = path.read_text().splitlines()
    notes = [line for line in lines if line.startswith("#")]
    body = [line.split("\t") for line in lines if not line.startswith("#")]
    return notes, body[0], [dict(zip(body[0], row)) for row in body[1:]]


def cli():
    """The evaluate group under seqlift's group, so user errors become one-line messages."""
    return _Group(commands={"evaluate": evaluate})


def run(*args):
    return CliRunner().invoke(cli(), ["evaluate", *[str(a) for a in args]])


# --- perturbation ---------------------------------------------------------------------------------------------


def test_top_k_lowers_the_target_far_more_than_random_k(demo_scores):
    table = perturbation(demo_scores, DEMO["model_pt2"], ks=[1, 5, 10], progress=False)
    assert [row["k"] for row in table] == [1, 5, 10]
    for row in table:
        assert row["n_regions"] == N_REGIONS and row["mean_n_mutated"] == row["k"]
        assert row["mean_delta_top"] < -1.0
        assert row["mean_delta_top"] < row["mean_delta_random"] - 1.0
        assert row["difference"] == pytest.approx(row["mean_delta_top"] - row["mean_delta_random"])
        assert row["difference"] < -1.0 and 0.8 < row["top_wins"] <= 1.0
        assert row["flip_frac_top"] > row["flip_frac_random"]
    deltas = [row["mean_delta_top"] for row in table]
    assert deltas == sorted(deltas, reverse=True)  # more positions mutated, larger drop


def test_reference_mutation_is_seeded(demo_scores):
    table = perturbation(demo_scores, DEMO["model_pt2"], ks="1,5", mutation="reference", progress=False)
    for row in table:
        assert row["mean_delta_top"] < row["mean_delta_random"] - 1.0
    assert perturbation(demo_scores, DEMO["model_pt2"], ks=[5, 1], mutation="reference", progress=False) == table
    other = perturbation(demo_scores, DEMO["model_pt2"], ks=[1, 5], mutation="reference", seed=1, progress=False)
    assert other[1]["mean_delta_random"] != table[1]["mean_delta_random"]


def test_variants_mutate_the_top_positive_positions_and_random_called_ones():
    rng = np.random.default_rng(0)
    X = np.zeros((2, 4, 12), np.uint8)
    X[:, rng.integers(0, 4, 12), np.arange(12)] = 1
    X[1, :, :4] = 0  # N columns
    contrib = np.array([[0.1, 5, -3, 2, 0, 0, 0, 0.5, 0, 0, 0, 0],
                        [9, 9, 9, 9, 1, -1, -2, -1, -1, -1, -1, -1]], np.float32)
    out, counts = _variants(X, contrib, [11, 12], [1, 3], "shuffle", None)
    assert out.shape == (2, 5, 4, 12)
    np.testing.assert_array_equal(out[:, 0], X)
    np.testing.assert_array_equal(counts, [[1, 3], [1, 1]])  # row 1 has one positive called position
    changed = (out != X[:, None]).any(axis=2)  # (regions, variants, L)
    assert np.flatnonzero(changed[0, 1]).tolist() == [1]
    assert np.flatnonzero(changed[0, 3]).tolist() == [1, 3, 7]
    assert np.flatnonzero(changed[1, 1]).tolist() == [4] and np.flatnonzero(changed[1, 3]).tolist() == [4]
    assert changed[0, 2].sum() == 1 and changed[0, 4].sum() == 3 and changed[1, 4].sum() == 1
    assert not changed[1, :, :4].any()  # N columns are never chosen
    assert (out.sum(axis=2) == X.sum(axis=1)[:, None]).all()  # still one-hot, N stays N
    ref = np.full((2, 12), 2)
    out, _ = _variants(X, contrib, [11, 12], [3], "reference", ref)
    np.testing.assert_array_equal(out[0, 1][:, [1, 3, 7]].argmax(axis=0), [2, 2, 2])


def test_perturb_cli_writes_table_and_plot(demo_scores, tmp_path):
    out, fig = tmp_path / "table.tsv", tmp_path / "fig.png"
    result = run("perturb", demo_scores, "--model", DEMO["model_pt2"], "--k", "1,5", "-o", out, "--plot", fig, "-q")
    assert result.exit_code == 0, result.output
    notes, header, rows = read_tsv(out)
    assert tuple(header) == PERTURB_COLUMNS
    assert f"# {FLIP_NOTE}" in notes and any("target 0" in n and "shuffle" in n for n in notes)
    assert [int(r["k"]) for r in rows] == [1, 5]
    assert all(float(r["mean_delta_top"]) < float(r["mean_delta_random"]) for r in rows)
    assert fig.read_bytes()[:4] == b"\x89PNG"
    again = run("perturb", demo_scores, "--model", DEMO["model_pt2"], "--k", "1", "-o", out, "-q")
    assert again.exit_code == 1 and "exists; use --force" in again.output
    forced = run("perturb", demo_scores, "--model", DEMO["model_pt2"], "--k", "1", "-o", out, "-q", "--force")
    assert forced.exit_code == 0 and len(read_tsv(out)[2]) == 1
    assert not list(tmp_path.glob("*.partial"))


def test_perturb_warns_when_predictions_do_not_match(demo_scores, tmp_path):
    other = copy_scores(demo_scores, tmp_path / "other.h5", meta__prediction=np.zeros(N_REGIONS, np.float32) + 50)
    with pytest.warns(UserWarning, match=r"differs from its meta/prediction by up to .*another model"):
        perturbation(other, DEMO["model_pt2"], ks=[1], progress=False)


def test_perturb_errors(demo_scores, tmp_path, data):
    model = DEMO["model_pt2"]
    with pytest.raises(ModelError, match=r"model file .*missing\.pt2 does not exist"):
        perturbation(demo_scores, str(tmp_path / "missing.pt2"), progress=False)
    with pytest.raises(UsageError, match=r"--k 500 is larger than the windows of .* \(200 bp\); give k from 1 to"):
        perturbation(demo_scores, model, ks=[1, 500], progress=False)
    with pytest.raises(UsageError, match=r"--k '1,x' is not a list of integers"):
        perturbation(demo_scores, model, ks="1,x", progress=False)
    with pytest.raises(UsageError, match=r"must list positive integers"):
        perturbation(demo_scores, model, ks=[0, 2], progress=False)
    with pytest.raises(UsageError, match=r"--mutation 'random' is unknown; choose one of shuffle, reference"):
        perturbation(demo_scores, model, mutation="random", progress=False)
    with pytest.raises(ModelError, match=r"takes inputs of length 50 but .* holds windows of 200 bp"):
        perturbation(demo_scores, data["pt2"], ks=[1], progress=False)
    with pytest.raises(SeqliftError, match=r"scores file .*nope\.h5 does not exist"):
        perturbation(tmp_path / "nope.h5", model, progress=False)
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(SeqliftError, match=r"text\.h5 is not an HDF5 scores file"):
        perturbation(tmp_path / "text.h5", model, progress=False)
    (tmp_path / "exists.tsv").write_text("")
    with pytest.raises(OutputError, match=r"output .*exists\.tsv exists; use --force to overwrite it"):
        evaluate_perturbation(demo_scores, model, tmp_path / "exists.tsv", ks=[1], progress=False)
    with pytest.raises(OutputError, match=r"cannot write .*fig\.png: folder .*absent does not exist"):
        evaluate_perturbation(demo_scores, model, tmp_path / "t.tsv", plot=tmp_path / "absent" / "fig.png")
    result = run("perturb", demo_scores, "--model", model, "--k", "300", "-o", tmp_path / "t.tsv", "-q")
    assert result.exit_code == 1 and result.output.count("\n") == 1 and "--k 300 is larger" in result.output
    assert not (tmp_path / "t.tsv").exists()


# --- motif sites ----------------------------------------------------------------------------------------------


def test_deeplift_scores_find_gata_sites_and_noise_does_not(demo_scores, tmp_path):
    rng = np.random.default_rng(3)
    with h5py.File(demo_scores, "r") as h5:
        raw = h5["raw/seq"][:]
    noise = rng.normal(size=raw.shape).astype(np.float32)
    noisy = copy_scores(demo_scores, tmp_path / "noise.h5", shap__seq=noise, projected_shap__seq=noise * raw)
    deeplift, random = site_recovery([demo_scores, noisy], DEMO["sites"], ["GATA"])
    assert deeplift["auroc_abs"] > 0.8 and deeplift["auroc_signed"] > 0.8
    assert 0.4 < random["auroc_abs"] < 0.6 and 0.4 < random["auroc_signed"] < 0.6
    site_fraction = deeplift["n_site_positions"] / deeplift["n_positions"]
    assert deeplift["auprc_abs"] > 5 * site_fraction and random["auprc_abs"] < 2 * site_fraction
    assert deeplift["n_positions"] == N_REGIONS * 200 and deeplift["target"] == "0"


def test_minus_strand_windows_are_mapped_back(demo_scores, tmp_path):
    with h5py.File(demo_scores, "r") as h5:
        raw, projected = h5["raw/seq"][:], h5["projected_shap/seq"][:]
    minus = copy_scores(demo_scores, tmp_path / "minus.h5", raw__seq=raw[:, ::-1, ::-1],
                        projected_shap__seq=projected[:, ::-1, ::-1])
    with h5py.File(minus, "r+") as h5:
        h5["meta/strand"][...] = np.array(["-"] * N_REGIONS, dtype=object)
    plus, flipped = site_recovery([demo_scores, minus], DEMO["sites"], ["GATA"])
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


def test_sites_cli(demo_scores, tmp_path):
    out = tmp_path / "sites.tsv"
    result = run("sites", demo_scores, demo_scores, "--sites", DEMO["sites"], "--motif", "GATA", "-o", out, "-q")
    assert result.exit_code == 0, result.output
    notes, header, rows = read_tsv(out)
    assert tuple(header) == SITE_COLUMNS and len(rows) == 2
    assert rows[0] == rows[1] and float(rows[0]["auroc_abs"]) > 0.8 and rows[0]["method"] == "deeplift"
    assert any("GATA" in n for n in notes)


def test_sites_errors(demo_scores, tmp_path):
    far = tmp_path / "far.bed"
    far.write_text("chr9\t100\t108\tGATA\t0\t+\n")
    with pytest.raises(RegionError, match=r"no GATA site of .*far\.bed overlaps a scored position of .*"
                                          r"\(60 windows on chr1\); check that both files use the same genome"):
        site_recovery(demo_scores, far, ["GATA"])
    with pytest.raises(RegionError, match=r"--motif CTCF names no site in .*; its names are GATA, TAL1"):
        site_recovery(demo_scores, DEMO["sites"], ["CTCF"])
    bad = tmp_path / "bad.bed"
    bad.write_text("chr1\t100\t90\tGATA\n")
    with pytest.raises(RegionError, match=r"bad\.bed line 1: end \(90\) is not greater than start"):
        site_recovery(demo_scores, bad)
    with pytest.raises(OutputError, match=r"output .*far\.bed exists"):
        evaluate_sites(demo_scores, DEMO["sites"], far)
    result = run("sites", demo_scores, "--sites", far, "-o", tmp_path / "t.tsv")
    assert result.exit_code == 1 and "no site of" in result.output and not (tmp_path / "t.tsv").exists()


# --- metrics --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_auroc_auprc_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 3000))
    y = rng.random(n) < rng.uniform(0.05, 0.5)
    y[:2] = [True, False]
    s = rng.normal(size=n) + y * rng.uniform(0, 2)
    if seed % 2:
        s = np.round(s, 1)  # many ties
    assert abs(auroc(y, s) - roc_auc_score(y, s)) < 1e-10
    assert abs(auprc(y, s) - average_precision_score(y, s)) < 1e-10


def test_metrics_by_hand():
    assert auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert auroc([0, 1], [1.0, 1.0]) == 0.5
    assert auprc([1, 0, 1], [3.0, 2.0, 1.0]) == pytest.approx(0.5 * 1 + 0.5 * (2 / 3))
    with pytest.raises(ValueError, match="one class only"):
        auroc([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match=r"labels of shape \(2,\) and scores of shape \(3,\) differ"):
        auprc([1, 0], [0.1, 0.2, 0.3])


def test_perturbation_columns_stay_bounded_when_random_changes_nothing(demo_scores, tmp_path):
    """The old ratio top/random flipped sign and exploded when the random change was near 0."""
    table = perturbation(demo_scores, DEMO["model_pt2"], ks=[1, 2, 5, 10, 20], progress=False)
    assert "ratio" not in table[0]
    for row in table:
        assert np.isfinite(row["difference"]) and 0.0 <= row["top_wins"] <= 1.0
