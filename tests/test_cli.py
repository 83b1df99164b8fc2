"""``seqlift score`` end to end with CliRunner: outputs, provenance, resume, and every bad input."""

import re
from functools import partial

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

import seqlift
from seqlift.cli import main
from seqlift.genome import Genome, fetch_one_hot
from seqlift.regions import read_regions, to_windows
from seqlift.writers import ScoreWriter

import cli_helpers
from cli_helpers import DATASETS, assert_one_line_error, assert_same, run

pytestmark = pytest.mark.usefixtures("one_thread")


score_args = partial(cli_helpers.score_args, n_refs=5)


def read_all(path):
    with h5py.File(path, "r") as h5:
        return {name: h5[name][:] for name in DATASETS}, dict(h5.attrs)


def test_score_end_to_end(data):
    out = data["dir"] / "scores.h5"
    result = run(*score_args(data, out, "--target", 1))
    assert result.exit_code == 0, result.output
    d, attrs = read_all(out)
    n = 6
    assert d["raw/seq"].shape == (n, 4, 50) and d["raw/seq"].dtype == np.uint8
    assert d["shap/seq"].shape == (n, 4, 50) and d["shap/seq"].dtype == np.float32
    np.testing.assert_array_equal(d["projected_shap/seq"], d["shap/seq"] * d["raw/seq"])
    # rows in input order, windows of the model's length centred on summit or midpoint (0-based half-open)
    assert [s.decode() if isinstance(s, bytes) else s for s in d["meta/name"]] == [
        "r1",
        "r2",
        "r3_with_N",
        "r4",
        "r5_softmasked",
        "r6",
    ]
    np.testing.assert_array_equal(d["coords_start"], [100, 305, 80, 495, 290, 0])
    np.testing.assert_array_equal(d["coords_end"] - d["coords_start"], [50] * n)
    np.testing.assert_array_equal(d["meta/line"], [2, 3, 4, 5, 6, 7])
    # the stored one-hot is the genome (minus strand reverse-complemented, soft-masked read as upper, N as zeros)
    with Genome(data["fasta"]) as genome:
        windows, _ = to_windows(read_regions(data["bed"]), 50, genome.chrom_sizes())
        np.testing.assert_array_equal(d["raw/seq"], fetch_one_hot(genome, windows))
    assert (d["raw/seq"][2].sum(0) == 0).sum() == 10
    assert np.all(d["projected_shap/seq"][2][:, d["raw/seq"][2].sum(0) == 0] == 0)
    # predictions are the model's; projected scores sum to f(x) - mean f(refs)
    x = torch.tensor(d["raw/seq"], dtype=torch.float32)
    np.testing.assert_allclose(d["meta/prediction"], data["model"](x)[:, 1].detach().numpy(), rtol=1e-5, atol=1e-6)
    total = d["projected_shap/seq"].sum(axis=(1, 2))
    np.testing.assert_allclose(total, d["meta/prediction"] - d["meta/reference_prediction"], atol=1e-5)
    assert d["meta/delta_rel_error"].max() < 1e-4
    # provenance
    assert attrs["seqlift_version"] == seqlift.__version__
    assert attrs["method"] == "deeplift" and attrs["rule"] == "rescale" and attrs["reference"] == "shuffle"
    assert attrs["n_refs"] == 5 and attrs["seed"] == 0 and attrs["target"] == "1" and attrs["target_space"] == "output"
    assert len(attrs["model_sha256"]) == 64 and "seqlift score" in attrs["command"]
    assert not (data["dir"] / "scores.h5.partial").exists()


def test_reproducible_regardless_of_batch_size(data):
    a, b = data["dir"] / "a.h5", data["dir"] / "b.h5"
    assert run(*score_args(data, a)).exit_code == 0
    assert run(*score_args(data, b), "--batch-size", 4).exit_code == 0
    da, _ = read_all(a)
    db, _ = read_all(b)
    np.testing.assert_allclose(da["shap/seq"], db["shap/seq"], atol=1e-6)


def test_class_model_with_safetensors_and_config(data, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        "score:\n"
        "  fasta: genome.fa\n  model: tinymodel.py:TinyCNN\n  weights: tiny.safetensors\n"
        "  model_kwargs: {n_filters: 4}\n  n_refs: 3\n  reference: shuffle\n"
    )
    out = tmp_path / "cls.h5"
    result = run("score", data["bed"], "--config", config, "-o", out, "--quiet")
    assert result.exit_code == 0, result.output
    ref = tmp_path / "pt2.h5"
    assert run(*score_args(data, ref), "--n-refs", 3).exit_code == 0
    dc, attrs = read_all(out)
    dp, _ = read_all(ref)
    assert attrs["n_refs"] == 3
    np.testing.assert_allclose(dc["shap/seq"], dp["shap/seq"], atol=1e-5)


def test_zeros_and_uniform_references(data):
    for kind in ("zeros", "uniform"):
        out = data["dir"] / f"{kind}.h5"
        assert run(*score_args(data, out), "--reference", kind).exit_code == 0
        d, attrs = read_all(out)
        assert attrs["n_refs"] == 1 and attrs["reference"] == kind
        assert d["meta/delta_rel_error"].max() < 1e-4


def test_low_complexity_window_is_reported(data, tmp_path):
    bed = tmp_path / "polyA.bed"
    bed.write_text("chr3\t10\t60\tpolyA\nchr1\t100\t150\tr1\n")
    out = tmp_path / "low.h5"
    result = run("score", bed, "--fasta", data["fasta"], "--model", data["pt2"], "-o", out, "--n-refs", 4, "--quiet")
    assert result.exit_code == 0
    assert (
        "1 region(s): references all equal the input (low-complexity window; scores are 0): polyA (chr3:10-60)"
        in result.output
    )
    d, attrs = read_all(out)
    np.testing.assert_array_equal(d["meta/low_complexity"], [True, False])
    assert attrs["n_low_complexity"] == 1


def test_skip_invalid_writes_sidecar(data, tmp_path):
    bed = tmp_path / "mixed.bed"
    bed.write_text("chr1\t100\t150\tok1\nchrUn\t5\t60\tunknown\nchr1\t580\t600\toffend\nchr2\t200\t250\tok2\n")
    out = tmp_path / "skip.h5"
    result = run("score", bed, "--fasta", data["fasta"], "--model", data["pt2"], "-o", out, "--skip-invalid", "--quiet")
    assert result.exit_code == 0, result.output
    d, attrs = read_all(out)
    np.testing.assert_array_equal(d["meta/row"], [0, 3])
    assert attrs["n_skipped"] == 2
    sidecar = (tmp_path / "skip.h5.skipped.bed").read_text()
    assert "chrUn\t5\t60\tunknown\t2\tunknown chromosome" in sidecar
    assert "chr1\t580\t600\toffend\t3\twindow off chromosome end" in sidecar
    shown = run("score", bed, "--fasta", data["fasta"], "--model", data["pt2"], "-o", out, "--skip-invalid", "--force")
    assert (
        f"seqlift: note: 2 of 4 regions skipped (--skip-invalid), each with its BED line and reason in {out}.skipped.bed"
        in shown.output
    ), shown.output


def test_a_run_that_skips_nothing_leaves_no_earlier_runs_skipped_list(data, tmp_path):
    """--force over an output whose run skipped regions: the new run skips none, and the old list of skipped
    regions, beside a file that now has n_skipped 0, was left in place."""
    mixed, clean = tmp_path / "mixed.bed", tmp_path / "clean.bed"
    mixed.write_text("chr1\t100\t150\tok1\nchrUn\t5\t60\tunknown\n")
    clean.write_text("chr1\t100\t150\tok1\n")
    out = tmp_path / "o.h5"
    args = ["--fasta", data["fasta"], "--model", data["pt2"], "-o", out, "--quiet"]
    assert run("score", mixed, *args, "--skip-invalid").exit_code == 0
    assert (tmp_path / "o.h5.skipped.bed").exists()
    result = run("score", clean, *args, "--force")
    assert result.exit_code == 0, result.output
    assert read_all(out)[1]["n_skipped"] == 0
    assert not (tmp_path / "o.h5.skipped.bed").exists()


@pytest.mark.slow  # three scoring runs under tracemalloc, one of 20,000 regions
def test_memory_while_scoring_does_not_grow_with_the_regions_skipped_or_read(data, tmp_path, monkeypatch):
    """Python memory held while batches are scored is the same for a BED of 4 regions and for one with 20,000
    more that --skip-invalid skips: the regions read and the regions skipped are not kept (the sidecar is
    written as they are met), only the windows scored and counts."""
    import gc
    import tracemalloc

    import seqlift.pipeline
    from seqlift.writers import ScoreWriter

    class Traced(seqlift.pipeline.Genome):  # traced from the FASTA's opening on: the regions are read after it
        def __init__(self, path):
            tracemalloc.start()
            super().__init__(path)

    held = []
    write = ScoreWriter.write

    def measuring(self, start, rows):
        gc.collect()  # what is held, not cyclic garbage that a collection at another moment would have freed
        held.append(tracemalloc.take_snapshot())
        return write(self, start, rows)

    monkeypatch.setattr(ScoreWriter, "write", measuring)
    good = "chr1\t100\t150\tok1\nchr2\t200\t250\tok2\nchr1\t300\t350\tok3\nchr2\t10\t60\tok4\n"
    bad = "".join(f"chrUn{i % 7}\t{i}\t{i + 50}\tunplaced_region_{i}\n" for i in range(20_000))
    at_write = {}
    for name, text in (("warm-up", good), ("few", good), ("many", good + bad)):  # warm-up: one-time costs (JIT)
        bed = tmp_path / f"{name}.bed"
        bed.write_text(text)
        out = tmp_path / f"{name}.h5"
        held.clear()
        monkeypatch.setattr(seqlift.pipeline, "Genome", Traced)
        try:
            result = run(
                "score",
                bed,
                "--fasta",
                data["fasta"],
                "--model",
                data["pt2"],
                "-o",
                out,
                "--skip-invalid",
                "--quiet",
                "--n-refs",
                2,
                "-b",
                4,
            )
        finally:
            tracemalloc.stop()
        assert result.exit_code == 0, result.output
        at_write[name] = held[0]
    assert (tmp_path / "many.h5.skipped.bed").read_text().count("\n") == 20_001
    with h5py.File(tmp_path / "many.h5") as h5:
        assert h5.attrs["n_skipped"] == 20_000 and h5.attrs["n_regions"] == 4
    # Counted in blocks: anything kept per region is 20,000 blocks or more, while a one-time resize of a
    # process-wide table (the interned strings, grown by whatever else the process imported) is one block.
    diff = at_write["many"].compare_to(at_write["few"], "filename")
    blocks = sum(d.count_diff for d in diff)
    grown = sum(d.size_diff for d in diff)
    assert blocks < 2_000, f"{blocks} more memory blocks held while scoring with 20,000 regions skipped"
    assert grown < 10_000_000, f"{grown / 20_000:.0f} bytes held per skipped region while scoring"


@pytest.mark.parametrize(
    "bed_text, message",
    [
        ("chr1\t100\n", r"peaks.bed line 1: expected at least 3 tab-separated columns"),
        ("chr1\t100\t150\nchr1\tx\t150\n", r"line 2: .*start"),
        (
            "chrUn\t5\t60\n",
            r"Region chrUn:5-60 \(.*peaks.bed line 1\): chromosome 'chrUn' is not in the FASTA.*--skip-invalid",
        ),
        (
            "chr1\t580\t600\n",
            r"Region chr1:580-600 \(.*peaks.bed line 1\).*runs past the end of chr1 \(length 600\).*--skip-invalid",
        ),
    ],
)
def test_bad_regions(data, bed_text, message):
    bed = data["dir"] / "peaks.bed"
    bed.write_text(bed_text)
    out = data["dir"] / "bad.h5"
    result = run("score", bed, "--fasta", data["fasta"], "--model", data["pt2"], "-o", out, "--quiet")
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert re.search(message, result.output), result.output
    assert not out.exists() and not (data["dir"] / "bad.h5.partial").exists()


def test_bad_models(data, tmp_path):
    out = tmp_path / "x.h5"
    base = ["score", data["bed"], "--fasta", data["fasta"], "-o", out, "--quiet"]
    text = tmp_path / "notes.txt"
    text.write_text("not a model")
    r = run(*base, "--model", text)
    assert r.exit_code == 1 and "notes.txt is not a model file" in r.output
    pickled = tmp_path / "full.pt"
    torch.save(torch.nn.Sequential(torch.nn.Conv1d(4, 2, 3), torch.nn.Flatten()), pickled)
    r = run(*base, "--model", pickled)
    assert (
        r.exit_code == 1
        and "full.pt is a torch.save pickle; loading it could run code, so seqlift refuses it" in r.output
    )
    assert "--trust-model" in r.output
    r = run(*base, "--model", data["pt2"], "--window", 40)
    assert r.exit_code == 1 and "--window 40 does not fit the model" in r.output and "length 50" in r.output
    r = run(*base, "--model", data["class"])
    assert r.exit_code == 1 and "give its trained state dict with --weights" in r.output
    r = run(*base, "--model", data["class"], "--weights", data["weights"], "--model-kwargs", "{n_filters: 8}")
    assert r.exit_code == 1 and "do not fit TinyCNN" in r.output
    r = run(*base, "--model", tmp_path / "missing.pt2")
    assert r.exit_code == 1 and "missing.pt2 does not exist" in r.output
    assert not out.exists()


def test_existing_output_needs_force(data):
    out = data["dir"] / "scores.h5"
    out.write_text("previous results")
    r = run(*score_args(data, out))
    assert r.exit_code == 1 and "exists; use --force to overwrite it" in r.output
    assert out.read_text() == "previous results"
    assert run(*score_args(data, out), "--force").exit_code == 0
    assert h5py.is_hdf5(out)


def test_missing_fasta_and_bed(data, tmp_path):
    r = run("score", tmp_path / "none.bed", "--fasta", data["fasta"], "--model", data["pt2"], "-o", tmp_path / "o.h5")
    assert r.exit_code == 1 and "none.bed" in r.output
    r = run("score", data["bed"], "--fasta", tmp_path / "none.fa", "--model", data["pt2"], "-o", tmp_path / "o.h5")
    assert r.exit_code == 1 and "none.fa" in r.output


def _interrupt_second_batch(monkeypatch):
    """Make ``ScoreWriter.write`` raise KeyboardInterrupt on its second call; returns the original."""
    original = ScoreWriter.write
    calls = []

    def dies_on_second_batch(self, start, rows):
        calls.append(start)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, start, rows)

    monkeypatch.setattr(ScoreWriter, "write", dies_on_second_batch)
    return original


def test_resume_after_interruption_is_identical(data, monkeypatch):
    full = data["dir"] / "full.h5"
    assert run(*score_args(data, full)).exit_code == 0
    out = data["dir"] / "resumed.h5"
    original = _interrupt_second_batch(monkeypatch)
    r = run(*score_args(data, out))
    assert r.exit_code == 1 and "rerun the same command with --resume" in r.output
    assert not out.exists()
    kept = {f.name for f in (data["dir"] / "resumed.h5.partial").glob("rows-*.npz")}
    assert "rows-0000000000-0000000002.npz" in kept and "rows-0000000002-0000000004.npz" not in kept
    monkeypatch.setattr(ScoreWriter, "write", original)
    r = run(*score_args(data, out))
    assert r.exit_code == 1 and "use --resume to continue it or --force to start over" in r.output
    r = run(*score_args(data, out), "--seed", 3, "--resume")
    assert r.exit_code == 1 and "started with seed=0, this run has seed=3" in r.output
    assert run(*score_args(data, out), "--resume").exit_code == 0
    assert_same(full, out)


def test_strict_and_unsupported(data, tmp_path):
    class Gated(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = torch.nn.Conv1d(4, 2, 3, padding=1)

        def forward(self, x):
            h = self.conv(x)
            return torch.floor(3 * h).mean(dim=2)  # rounding has no DeepLIFT rule

    program = torch.export.export(
        Gated().eval(), (torch.zeros(2, 4, 50),), dynamic_shapes=({0: torch.export.Dim.AUTO},)
    )
    pt2 = tmp_path / "gated.pt2"
    torch.export.save(program, str(pt2))
    base = ["score", data["bed"], "--fasta", data["fasta"], "--model", pt2, "--quiet", "--n-refs", 3]
    r = run(*base, "-o", tmp_path / "a.h5")
    assert r.exit_code == 1 and "aten.floor" in r.output and "--allow-unsupported" in r.output
    r = run(*base, "-o", tmp_path / "b.h5", "--allow-unsupported")
    assert r.exit_code == 0
    assert "treated as linear (gradient)" in r.output and "summation-to-delta error above tolerance" in r.output
    r = run(*base, "-o", tmp_path / "c.h5", "--allow-unsupported", "--strict")
    assert r.exit_code == 1 and "summation-to-delta fails for r1" in r.output
    assert not (tmp_path / "c.h5").exists() and not (tmp_path / "c.h5.partial").exists()


def test_npz_for_modisco(data):
    out = data["dir"] / "s.h5"
    prefix = data["dir"] / "modisco"
    assert run(*score_args(data, out), "--npz-prefix", prefix).exit_code == 0
    d, _ = read_all(out)
    np.testing.assert_array_equal(np.load(str(prefix) + ".ohe.npz")["arr_0"], d["raw/seq"])
    np.testing.assert_array_equal(np.load(str(prefix) + ".shap.npz")["arr_0"], d["shap/seq"])


def test_python_api_matches_cli(data):
    cli_out, api_out = data["dir"] / "cli.h5", data["dir"] / "api.h5"
    assert run(*score_args(data, cli_out)).exit_code == 0
    assert seqlift.score(data["bed"], data["fasta"], data["pt2"], api_out, n_refs=5, batch_size=2, progress=False) == [
        api_out
    ]
    assert_same(cli_out, api_out)


def test_python_api_warnings_name_the_callers_line(data, tmp_path):
    from seqlift.pipeline import SeqliftNote

    with pytest.warns(SeqliftNote, match="integrated gradients is approximate") as record:
        seqlift.score(
            data["bed"],
            data["fasta"],
            data["pt2"],
            tmp_path / "ig.h5",
            method="integrated-gradients",
            steps=2,
            n_refs=2,
            batch_size=3,
            progress=False,
        )
    assert [w.filename for w in record if w.category is SeqliftNote] == [__file__]


def test_python_api_returns_one_path_per_target(data, tmp_path):
    out = tmp_path / "api.h5"
    paths = seqlift.score(
        data["bed"], data["fasta"], data["pt2"], out, target="all", n_refs=2, batch_size=3, progress=False
    )
    assert paths == [tmp_path / "api.0.h5", tmp_path / "api.1.h5"]
    assert [read_all(p)[1]["target"] for p in paths] == ["0", "1"]


def test_progress_bar_on_stderr(data):
    out = data["dir"] / "p.h5"
    result = CliRunner().invoke(main, [str(a) for a in score_args(data, out) if a != "--quiet"])
    assert result.exit_code == 0
    assert "scoring" in result.stderr and "6/6" in result.stderr and "wrote" in result.stderr


def test_cuda_device_without_gpu(data):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    r = run(*score_args(data, data["dir"] / "g.h5"), "--device", "cuda")
    assert r.exit_code == 1 and "no CUDA GPU is available" in r.output


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_n_without_gpu_is_one_line(data, device):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    r = run(*score_args(data, data["dir"] / "g.h5"), "--device", device)
    assert_one_line_error(r, f"--device {device}", "no CUDA GPU is available")
    assert not (data["dir"] / "g.h5.partial").exists()


@pytest.mark.parametrize("device", ["gpu", "cuda:", "cuda:x", "cuda:-1", "cpu:0", "cuda0", "CUDA"])
def test_malformed_device_is_refused_before_work(data, device):
    for command in (
        score_args(data, data["dir"] / "g.h5"),
        ["evaluate", "perturb", data["dir"] / "none.h5", "--model", data["pt2"], "-o", data["dir"] / "p.tsv"],
    ):
        r = run(*command, "--device", device)
        assert r.exit_code == 2 and "cuda:N" in r.output and repr(device) in r.output, r.output
    assert not (data["dir"] / "g.h5.partial").exists()


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_device_forms_accepted(device):
    from seqlift.devices import check_device

    assert check_device(device) == device


def test_cuda_n_past_the_gpus_present_names_them(monkeypatch):
    """On a CPU machine: pretend there are two GPUs; cuda:2 is refused naming cuda:0 to cuda:1."""
    from seqlift.devices import resolve_device
    from seqlift.errors import UsageError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(UsageError, match=r"--device cuda:2: this machine has 2 CUDA GPU\(s\), cuda:0 to cuda:1"):
        resolve_device("cuda:2")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_score_on_the_last_gpu(data):
    device = f"cuda:{torch.cuda.device_count() - 1}"
    out = data["dir"] / "gpu.h5"
    r = run(*score_args(data, out), "--device", device)
    assert r.exit_code == 0, r.output
    with h5py.File(out) as h5:
        assert h5.attrs["device"] == device


@pytest.mark.slow
def test_sigterm_keeps_finished_rows_and_resume_completes(data):
    """A scheduler's SIGTERM mid-run leaves a resumable partial file; --resume then gives the full result."""
    import subprocess
    import sys
    import time

    bed = data["dir"] / "many.bed"
    bed.write_text("".join(f"chr1\t{s}\t{s + 50}\tr{s}\n" for s in range(0, 550, 2)))
    out = data["dir"] / "killed.h5"
    options = ["--fasta", data["fasta"], "--model", data["pt2"], "--n-refs", 20, "--batch-size", 1, "--quiet"]
    args = [str(a) for a in [sys.executable, "-m", "seqlift.cli", "score", bed, "-o", out, *options]]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    partial = data["dir"] / "killed.h5.partial"
    deadline = time.time() + 60
    while not any(partial.glob("rows-*.npz")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(0.05)
    proc.terminate()
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the run finished before it could be interrupted")
    assert proc.returncode == 1 and "rerun the same command with --resume" in err
    assert partial.exists() and not out.exists()
    done = subprocess.run(args + ["--resume"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    full = data["dir"] / "full.h5"
    assert run("score", bed, "-o", full, *options).exit_code == 0
    assert_same(full, out)


def test_revealcancel_rule_and_split_signs(data, tmp_path):
    out = tmp_path / "rc.h5"
    r = run(*score_args(data, out), "--rule", "revealcancel", "--split-signs")
    assert r.exit_code == 0, r.output
    with h5py.File(out, "r") as h5:
        assert h5.attrs["rule"] == "revealcancel" and h5.attrs["split_signs"]
        total = h5["positive_shap/seq"][:] + h5["negative_shap/seq"][:]
        np.testing.assert_allclose(total, h5["shap/seq"][:], atol=1e-5)
        assert h5["meta/delta_rel_error"][:].max() < 1e-4
    out2 = tmp_path / "map.h5"
    r = run(*score_args(data, out2), "--rule", "{conv: rescale, dense: revealcancel}", "--normalize-input-weights")
    assert r.exit_code == 0, r.output
    with h5py.File(out2, "r") as h5:
        assert h5.attrs["normalize_input_weights"] and h5["meta/delta_rel_error"][:].max() < 1e-4
    r = run(*score_args(data, tmp_path / "x.h5"), "--split-signs")
    assert r.exit_code == 1 and "--split-signs needs a rule that keeps signs apart" in r.output
    r = run(*score_args(data, tmp_path / "y.h5"), "--rule", "deepshap")
    assert r.exit_code == 2 and "'deepshap' is not one of rescale, revealcancel, genomics-default" in r.output


def _export(module, path):
    program = torch.export.export(module.eval(), (torch.zeros(2, 4, 50),), dynamic_shapes=({0: torch.export.Dim.AUTO},))
    torch.export.save(program, str(path))
    return path


class _RCEquivariant(torch.nn.Module):
    """f(x) = g(x) + g(reverse complement of x): the same prediction on both strands."""

    def __init__(self, g):
        super().__init__()
        self.g = g

    def forward(self, x):
        return self.g(x) + self.g(x.flip(1, 2))


def test_rc_average_symmetric_on_rc_equivariant_model(data, tmp_path):
    pt2 = _export(_RCEquivariant(data["model"]), tmp_path / "rc.pt2")
    bed = tmp_path / "strands.bed"
    bed.write_text("chr1\t100\t150\tfwd\t0\t+\nchr1\t100\t150\trev\t0\t-\n")
    outs = {}
    for flag in ("", "--rc-average"):
        out = tmp_path / f"rc{flag}.h5"
        args = ["score", bed, "--fasta", data["fasta"], "--model", pt2, "-o", out, "--reference", "uniform", "--quiet"]
        r = run(*args, *([flag] if flag else []))
        assert r.exit_code == 0, r.output
        outs[flag], attrs = read_all(out)
    plain, averaged = outs[""]["shap/seq"], outs["--rc-average"]["shap/seq"]
    # the model is reverse-complement equivariant, so averaging changes nothing ...
    np.testing.assert_allclose(averaged, plain, atol=1e-5)
    # ... and the minus-strand window's scores are the plus-strand scores reverse-complemented
    np.testing.assert_allclose(averaged[1], averaged[0][::-1, ::-1], atol=1e-5)
    assert attrs["rc_average"]


def test_rc_average_is_strand_symmetric_on_any_model(data, tmp_path):
    bed = tmp_path / "strands.bed"
    bed.write_text("chr1\t100\t150\tfwd\t0\t+\nchr1\t100\t150\trev\t0\t-\n")
    out = tmp_path / "any.h5"
    r = run(
        "score",
        bed,
        "--fasta",
        data["fasta"],
        "--model",
        data["pt2"],
        "-o",
        out,
        "--reference",
        "uniform",
        "--rc-average",
        "--quiet",
    )
    assert r.exit_code == 0, r.output
    d, _ = read_all(out)
    np.testing.assert_allclose(d["shap/seq"][1], d["shap/seq"][0][::-1, ::-1], atol=1e-5)
    assert d["meta/delta_rel_error"].max() < 1e-4


def test_references_from_file(data, tmp_path):
    shared = tmp_path / "shared.h5"
    with h5py.File(shared, "w") as h5:
        h5["references"] = np.zeros((1, 4, 50), np.float32)
    a, b = tmp_path / "file.h5", tmp_path / "zeros.h5"
    assert run(*score_args(data, a), "--reference", f"file:{shared}").exit_code == 0
    assert run(*score_args(data, b), "--reference", "zeros").exit_code == 0
    np.testing.assert_array_equal(read_all(a)[0]["shap/seq"], read_all(b)[0]["shap/seq"])
    per_region = tmp_path / "per.h5"
    with h5py.File(per_region, "w") as h5:
        h5["references"] = np.zeros((4, 3, 4, 50), np.float32)  # the BED has 6 regions
    r = run(*score_args(data, tmp_path / "bad.h5"), "--reference", f"file:{per_region}")
    assert r.exit_code == 1 and "have shape (4, 3, 4, 50); expected (6, K, 4, 50) for the 6 regions" in r.output


def test_several_targets_one_file_each(data, tmp_path):
    out = tmp_path / "multi.h5"
    r = run(*score_args(data, out), "--target", "all")
    assert r.exit_code == 0, r.output
    singles = []
    for t in (0, 1):
        single = tmp_path / f"single{t}.h5"
        assert run(*score_args(data, single), "--target", t).exit_code == 0
        singles.append(read_all(single)[0])
    for t in (0, 1):
        d, attrs = read_all(tmp_path / f"multi.{t}.h5")
        assert attrs["target"] == str(t)
        np.testing.assert_allclose(d["shap/seq"], singles[t]["shap/seq"], atol=1e-6)
    assert not out.exists()
    r = run(*score_args(data, tmp_path / "bad.h5"), "--target", "0,zz")
    assert r.exit_code == 1 and "--target 'zz' is not an output column" in r.output


def test_gc_matched_references(data, tmp_path):
    out = tmp_path / "gc.h5"
    bed = tmp_path / "two.bed"
    bed.write_text("chr1\t100\t150\ta\nchr1\t300\t350\tb\n")
    r = run(
        "score",
        bed,
        "--fasta",
        data["fasta"],
        "--model",
        data["pt2"],
        "-o",
        out,
        "--reference",
        "gc-matched",
        "--n-refs",
        3,
        "--gc-tolerance",
        0.1,
        "--quiet",
    )
    assert r.exit_code == 0, r.output
    d, attrs = read_all(out)
    assert attrs["reference"] == "gc-matched" and attrs["n_refs"] == 3
    assert d["meta/delta_rel_error"].max() < 1e-4
    r = run(
        "score",
        bed,
        "--fasta",
        data["fasta"],
        "--model",
        data["pt2"],
        "-o",
        tmp_path / "few.h5",
        "--reference",
        "gc-matched",
        "--n-refs",
        500,
        "--gc-tolerance",
        0.001,
        "--quiet",
    )
    assert r.exit_code == 1 and "raise --gc-tolerance or lower --n-refs" in r.output


def test_gc_matched_run_with_an_unmatchable_window_stops_before_scoring(data, tmp_path):
    """The check that a window has enough GC-matched candidates ran only when its batch was reached: a run of
    many regions stopped there, maybe hours in (a 3000-peak run on ce.fa at region 74), with the options
    that cannot --resume once the tolerance is raised. Every window is now checked before the first batch."""
    rng = np.random.default_rng(0)
    fasta = tmp_path / "g.fa"
    fasta.write_text(">chr1\n" + "".join(rng.choice(list("ACGT"), 4000)) + "\n>chr2\n" + "G" * 80 + "\n")
    bed = tmp_path / "r.bed"
    bed.write_text("".join(f"chr1\t{s}\t{s + 50}\tr{s}\n" for s in range(100, 1100, 200)) + "chr2\t10\t70\tallG\n")
    out = tmp_path / "gc.h5"
    args = ["--reference", "gc-matched", "--n-refs", 2, "--gc-tolerance", 0.1, "-b", 2, "--quiet"]
    r = run("score", bed, "--fasta", fasta, "--model", data["pt2"], "-o", out, *args)
    assert_one_line_error(r, "Region allG (", "line 6, window chr2:15-65): only 0 genomic windows of length 50")
    assert "(1 of 6 windows cannot be matched; none was scored)" in r.output
    assert not out.exists() and not (tmp_path / "gc.h5.partial").exists()
    # a shard checks only its own windows (the index still leaves out every shard's)
    shard = ["score", bed, "--fasta", fasta, "--model", data["pt2"], *args, "--shard"]
    r = run(*shard, "1-of-2", "-o", tmp_path / "s1.h5")
    assert r.exit_code == 0, r.output
    r = run(*shard, "2-of-2", "-o", tmp_path / "s2.h5")
    assert r.exit_code == 1 and "(1 of 3 windows cannot be matched; none was scored)" in r.output, r.output
    bed.write_text("".join(f"chr1\t{s}\t{s + 50}\tr{s}\n" for s in range(100, 1100, 200)))
    r = run("score", bed, "--fasta", fasta, "--model", data["pt2"], "-o", out, *args[:-1])  # not --quiet
    assert r.exit_code == 0, r.output
    assert "GC matches: 100%" in r.output and "5/5" in r.output  # the check shows its progress, as scoring does


def test_gc_matched_regions_are_not_held_while_scoring(data, tmp_path, monkeypatch):
    """GC-matched references leave the BED's regions out of the index built before scoring; the regions read for
    that (a Region object each) were then held to the end of the run."""
    import gc

    from seqlift.regions import Region
    from seqlift.writers import ScoreWriter

    alive = []
    write = ScoreWriter.write

    def counting(self, start, rows):
        gc.collect()
        alive.append(sum(isinstance(o, Region) for o in gc.get_objects()))
        return write(self, start, rows)

    monkeypatch.setattr(ScoreWriter, "write", counting)
    bed = tmp_path / "three.bed"
    bed.write_text("chr1\t100\t150\ta\nchr1\t300\t350\tb\nchr2\t200\t250\tc\n")
    args = ("--reference", "gc-matched", "--n-refs", 2, "--gc-tolerance", 0.2, "--quiet", "-b", 2)
    r = run("score", bed, "--fasta", data["fasta"], "--model", data["pt2"], "-o", tmp_path / "gc.h5", *args)
    assert r.exit_code == 0, r.output
    assert alive == [0, 0], alive


def test_trust_model_loads_a_pickled_module(data, tmp_path):
    pickled = tmp_path / "full.pt"
    torch.save(
        torch.nn.Sequential(torch.nn.Conv1d(4, 2, 5), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(2 * 46, 1)),
        pickled,
    )
    out = tmp_path / "trusted.h5"
    r = run(*score_args(data, out)[:4], "--model", pickled, "--trust-model", "--window", 50, "-o", out, "--quiet")
    assert r.exit_code == 0, r.output
    assert read_all(out)[0]["meta/delta_rel_error"].max() < 1e-4


def test_several_models_are_averaged(data, tmp_path):
    torch.manual_seed(1)
    other = _export(type(data["model"])(), tmp_path / "fold1.pt2")
    outs = {}
    for name, models in (("a", [data["pt2"]]), ("b", [other]), ("ab", [data["pt2"], other])):
        out = tmp_path / f"{name}.h5"
        args = score_args(data, out)
        args = args[:4] + args[6:]  # without the single --model
        r = run(*args, *[x for m in models for x in ("--model", m)])
        assert r.exit_code == 0, r.output
        outs[name] = read_all(out)
    d, attrs = outs["ab"]
    assert attrs["n_models"] == 2 and len(attrs["model_sha256"].split()) == 2
    for key in ("shap/seq", "meta/prediction", "meta/reference_prediction"):
        np.testing.assert_allclose(d[key], (outs["a"][0][key] + outs["b"][0][key]) / 2, atol=1e-5)
    assert d["meta/delta_rel_error"].max() < 1e-4


@pytest.mark.parametrize("method", ["gradient", "gradient-x-input", "integrated-gradients", "ism"])
def test_comparison_methods(data, tmp_path, method):
    out = tmp_path / f"{method}.h5"
    r = run(*score_args(data, out), "--method", method, "--steps", 64, "--target", 1)
    assert r.exit_code == 0, r.output
    d, attrs = read_all(out)
    assert attrs["method"] == method and d["shap/seq"].shape == (6, 4, 50)
    np.testing.assert_array_equal(d["projected_shap/seq"], d["shap/seq"] * d["raw/seq"])
    x = torch.tensor(d["raw/seq"], dtype=torch.float32, requires_grad=True)
    y = data["model"](x)[:, 1]
    (grad,) = torch.autograd.grad(y.sum(), x)
    np.testing.assert_allclose(d["meta/prediction"], y.detach().numpy(), atol=1e-5)
    if method in ("gradient", "gradient-x-input"):
        np.testing.assert_allclose(d["shap/seq"], grad.numpy(), atol=1e-5)
        assert attrs["n_refs"] == 0 and np.isnan(d["meta/reference_prediction"]).all()
    if method == "integrated-gradients":
        assert attrs["n_refs"] == 5 and attrs["steps"] == 64
        assert d["meta/delta_rel_error"].max() < 0.05  # completeness, up to the integration error
    if method == "ism":
        # mutating position 7 of region 0 to each base changes the prediction by the (uncentred) score
        x0 = torch.tensor(d["raw/seq"][:1], dtype=torch.float32)
        deltas = []
        for b in range(4):
            m = x0.clone()
            m[0, :, 7] = 0
            m[0, b, 7] = 1
            deltas.append((data["model"](m)[0, 1] - data["model"](x0)[0, 1]).item())
        np.testing.assert_allclose(d["shap/seq"][0, :, 7], np.array(deltas) - np.mean(deltas), atol=1e-5)


def test_torchscript_models(data, tmp_path):
    script = tmp_path / "model.ts"
    torch.jit.save(torch.jit.trace(data["model"], torch.zeros(2, 4, 50)), str(script))
    base = ["score", data["bed"], "--fasta", data["fasta"], "--model", script, "--window", 50, "--quiet"]
    r = run(*base, "-o", tmp_path / "dl.h5")
    assert r.exit_code == 1 and "is TorchScript, whose graph seqlift cannot rewrite for DeepLIFT" in r.output
    r = run(*base, "-o", tmp_path / "g.h5", "--method", "gradient")
    assert r.exit_code == 0, r.output
    ref = tmp_path / "g2.h5"
    assert run(*score_args(data, ref), "--method", "gradient").exit_code == 0
    np.testing.assert_allclose(read_all(tmp_path / "g.h5")[0]["shap/seq"], read_all(ref)[0]["shap/seq"], atol=1e-5)


def test_no_low_complexity_warning_without_references(data, tmp_path):
    r = run(*score_args(data, tmp_path / "g.h5"), "--method", "gradient")
    assert r.exit_code == 0 and "low-complexity" not in r.output
    assert not read_all(tmp_path / "g.h5")[0]["meta/low_complexity"].any()


def test_integrated_gradients_reports_its_completeness_not_a_violation(data, tmp_path):
    r = run(*score_args(data, tmp_path / "ig.h5"), "--method", "integrated-gradients", "--steps", 4)
    assert r.exit_code == 0, r.output
    assert "integrated gradients is approximate" in r.output and "(median)" in r.output
    assert "summation-to-delta error above tolerance" not in r.output


def test_max_rule_option(data, tmp_path, monkeypatch):
    """--max-rule picks how max pooling splits its delta; it is recorded, exact, and must match on --resume."""
    scores = {}
    for max_rule in (None, "pair", "shapley"):
        out = tmp_path / f"{max_rule}.h5"
        r = run(*score_args(data, out), *(["--max-rule", max_rule] if max_rule else []))
        assert r.exit_code == 0, r.output
        with h5py.File(out, "r") as h5:
            assert h5.attrs["max_rule"] == (max_rule or "sign")
            assert h5["meta/delta_rel_error"][:].max() < 1e-4
            scores[max_rule or "sign"] = h5["shap/seq"][:]
    assert np.abs(scores["pair"] - scores["sign"]).max() > 1e-4
    assert np.abs(scores["sign"] - scores["shapley"]).max() > 1e-4
    r = run(*score_args(data, tmp_path / "ism.h5"), "--method", "ism", "--max-rule", "pair")
    assert r.exit_code == 1 and "--max-rule" in r.output and "go with --method deeplift" in r.output
    r = run(*score_args(data, tmp_path / "half.h5"), "--max-rule", "half")
    assert r.exit_code == 2 and "'half' is not one of 'sign', 'pair', 'shapley'" in r.output
    # a run interrupted under one max rule is not resumed under another
    original = _interrupt_second_batch(monkeypatch)
    out = tmp_path / "resumed.h5"
    assert run(*score_args(data, out), "--max-rule", "shapley").exit_code == 1
    monkeypatch.setattr(ScoreWriter, "write", original)
    r = run(*score_args(data, out), "--resume")
    assert r.exit_code == 1 and "started with max_rule='shapley', this run has max_rule='sign'" in r.output
    assert run(*score_args(data, out), "--max-rule", "shapley", "--resume").exit_code == 0
    with h5py.File(out, "r") as h5:
        np.testing.assert_array_equal(h5["shap/seq"][:], scores["shapley"])
