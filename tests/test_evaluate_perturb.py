"""``seqlift evaluate perturb``: mutating the top-k scored bases of the demo lowers the target more than random."""

import numpy as np
import pytest

from cli_helpers import read_tsv, run
from conftest import N_DEMO_REGIONS, copy_scores
from seqlift.demo import demo_paths
from seqlift.errors import ModelError, OutputError, SeqliftError, UsageError
from seqlift.evaluate.perturb import (
    FLIP_NOTE,
    PERTURB_COLUMNS,
    _variants,
    evaluate_perturbation,
    perturbation,
)

DEMO = demo_paths()


def test_top_k_lowers_the_target_far_more_than_random_k(demo_scores_60):
    table = perturbation(demo_scores_60, DEMO["model_pt2"], ks=[1, 5, 10], progress=False)
    assert [row["k"] for row in table] == [1, 5, 10]
    for row in table:
        assert row["n_regions"] == N_DEMO_REGIONS and row["mean_n_mutated"] == row["k"]
        assert row["mean_delta_top"] < -1.0
        assert row["mean_delta_top"] < row["mean_delta_random"] - 1.0
        assert row["difference"] == pytest.approx(row["mean_delta_top"] - row["mean_delta_random"])
        assert row["difference"] < -1.0 and 0.8 < row["top_wins"] <= 1.0
        assert row["flip_frac_top"] > row["flip_frac_random"]
    deltas = [row["mean_delta_top"] for row in table]
    assert deltas == sorted(deltas, reverse=True)  # more positions mutated, larger drop


def test_reference_mutation_is_seeded(demo_scores_60):
    table = perturbation(demo_scores_60, DEMO["model_pt2"], ks="1,5", mutation="reference", progress=False)
    for row in table:
        assert row["mean_delta_top"] < row["mean_delta_random"] - 1.0
    assert perturbation(demo_scores_60, DEMO["model_pt2"], ks=[5, 1], mutation="reference", progress=False) == table
    other = perturbation(demo_scores_60, DEMO["model_pt2"], ks=[1, 5], mutation="reference", seed=1, progress=False)
    assert other[1]["mean_delta_random"] != table[1]["mean_delta_random"]


def test_variants_mutate_the_top_positive_positions_and_random_called_ones():
    rng = np.random.default_rng(0)
    X = np.zeros((2, 4, 12), np.uint8)
    X[:, rng.integers(0, 4, 12), np.arange(12)] = 1
    X[1, :, :4] = 0  # N columns
    contrib = np.array(
        [[0.1, 5, -3, 2, 0, 0, 0, 0.5, 0, 0, 0, 0], [9, 9, 9, 9, 1, -1, -2, -1, -1, -1, -1, -1]], np.float32
    )
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


def test_perturb_cli_writes_table_and_plot(demo_scores_60, tmp_path):
    out, fig = tmp_path / "table.tsv", tmp_path / "fig.png"
    result = run(
        "evaluate",
        "perturb",
        demo_scores_60,
        "--model",
        DEMO["model_pt2"],
        "--k",
        "1,5",
        "-o",
        out,
        "--plot",
        fig,
        "-q",
    )
    assert result.exit_code == 0, result.output
    notes, header, rows = read_tsv(out)
    assert tuple(header) == PERTURB_COLUMNS
    assert f"# {FLIP_NOTE}" in notes and any("target 0" in n and "shuffle" in n for n in notes)
    assert [int(r["k"]) for r in rows] == [1, 5]
    assert all(float(r["mean_delta_top"]) < float(r["mean_delta_random"]) for r in rows)
    assert fig.read_bytes()[:4] == b"\x89PNG"
    again = run("evaluate", "perturb", demo_scores_60, "--model", DEMO["model_pt2"], "--k", "1", "-o", out, "-q")
    assert again.exit_code == 1 and "exists; use --force" in again.output
    forced = run(
        "evaluate", "perturb", demo_scores_60, "--model", DEMO["model_pt2"], "--k", "1", "-o", out, "-q", "--force"
    )
    assert forced.exit_code == 0 and len(read_tsv(out)[2]) == 1
    assert not list(tmp_path.glob("*.partial"))


def test_perturb_warns_when_predictions_do_not_match(demo_scores_60, tmp_path):
    other = copy_scores(
        demo_scores_60, tmp_path / "other.h5", meta__prediction=np.zeros(N_DEMO_REGIONS, np.float32) + 50
    )
    with pytest.warns(UserWarning, match=r"differs from its meta/prediction by up to .*another model"):
        perturbation(other, DEMO["model_pt2"], ks=[1], progress=False)


def test_perturb_errors(demo_scores_60, tmp_path, data):
    model = DEMO["model_pt2"]
    with pytest.raises(ModelError, match=r"model file .*missing\.pt2 does not exist"):
        perturbation(demo_scores_60, str(tmp_path / "missing.pt2"), progress=False)
    with pytest.raises(UsageError, match=r"--k 500 is larger than the windows of .* \(200 bp\); give k from 1 to"):
        perturbation(demo_scores_60, model, ks=[1, 500], progress=False)
    with pytest.raises(UsageError, match=r"--k '1,x' is not a list of integers"):
        perturbation(demo_scores_60, model, ks="1,x", progress=False)
    with pytest.raises(UsageError, match=r"must list positive integers"):
        perturbation(demo_scores_60, model, ks=[0, 2], progress=False)
    with pytest.raises(UsageError, match=r"--mutation 'random' is unknown; choose one of shuffle, reference"):
        perturbation(demo_scores_60, model, mutation="random", progress=False)
    with pytest.raises(ModelError, match=r"takes inputs of length 50 but .* holds windows of 200 bp"):
        perturbation(demo_scores_60, data["pt2"], ks=[1], progress=False)
    with pytest.raises(SeqliftError, match=r"scores file .*nope\.h5 does not exist"):
        perturbation(tmp_path / "nope.h5", model, progress=False)
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(SeqliftError, match=r"text\.h5 is not an HDF5 scores file"):
        perturbation(tmp_path / "text.h5", model, progress=False)
    (tmp_path / "exists.tsv").write_text("")
    with pytest.raises(OutputError, match=r"output .*exists\.tsv exists; use --force to overwrite it"):
        evaluate_perturbation(demo_scores_60, model, tmp_path / "exists.tsv", ks=[1], progress=False)
    with pytest.raises(OutputError, match=r"cannot write .*fig\.png: folder .*absent does not exist"):
        evaluate_perturbation(demo_scores_60, model, tmp_path / "t.tsv", plot=tmp_path / "absent" / "fig.png")
    result = run("evaluate", "perturb", demo_scores_60, "--model", model, "--k", "300", "-o", tmp_path / "t.tsv", "-q")
    assert result.exit_code == 1 and result.output.count("\n") == 1 and "--k 300 is larger" in result.output
    assert not (tmp_path / "t.tsv").exists()


def test_perturbation_columns_stay_bounded_when_random_changes_nothing(demo_scores_60, tmp_path):
    """The old ratio top/random flipped sign and exploded when the random change was near 0."""
    table = perturbation(demo_scores_60, DEMO["model_pt2"], ks=[1, 2, 5, 10, 20], progress=False)
    assert "ratio" not in table[0]
    for row in table:
        assert np.isfinite(row["difference"]) and 0.0 <= row["top_wins"] <= 1.0
