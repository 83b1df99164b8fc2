"""What a run guarantees about its output: nothing finished is lost or deleted, a crash at any instant
resumes to the same bytes, one writer per output, no input overwritten, no non-finite score passed as exact."""

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.export import Dim

from cli_helpers import assert_same, run
from conftest import LENGTH, TinyCNN

pytestmark = pytest.mark.usefixtures("one_thread")


def fragments(out):
    return sorted(Path(str(out) + ".partial").glob("rows-*.npz"))


@pytest.fixture
def many(data):
    """The test genome with 275 overlapping regions on chr1, enough for a run that lasts a few seconds."""
    bed = data["dir"] / "many.bed"
    bed.write_text("".join(f"chr1\t{s}\t{s + 50}\tr{s}\n" for s in range(0, 550, 2)))
    return {**data, "many": bed}


def cli_args(data, bed, out, *extra):
    return ["score", bed, "--fasta", data["fasta"], "--model", data["pt2"], "-o", out, "--n-refs", 8, "--quiet", *extra]


def spawn(data, bed, out, *extra):
    args = [sys.executable, "-m", "seqlift.cli", *[str(a) for a in cli_args(data, bed, out, *extra)]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_for_fragment(proc, out, timeout=90):
    deadline = time.time() + timeout
    while not fragments(out) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.005)


@pytest.mark.slow
def test_kill9_at_random_instants_resumes_to_identical_datasets(many):
    """kill -9 at a random instant, at batch sizes 1 to 4, then --resume: every dataset equals a clean run."""
    clean = many["dir"] / "clean.h5"
    assert run(*cli_args(many, many["many"], clean, "-b", 3)).exit_code == 0
    rng = random.Random(11)
    killed = 0
    for batch in (1, 2, 3, 4, 2, 1):
        out = many["dir"] / f"killed{killed}-b{batch}.h5"
        proc = spawn(many, many["many"], out, "-b", batch)
        wait_for_fragment(proc, out)
        time.sleep(rng.uniform(0, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        if out.exists():  # killed after the output was complete (or not killed at all)
            assert_same(clean, out)
            continue
        killed += 1
        r = run(*cli_args(many, many["many"], out, "-b", batch, "--resume"))
        assert r.exit_code == 0, r.output
        assert_same(clean, out)
        assert not Path(str(out) + ".partial").exists()
    assert killed >= 3, "the runs finished before they could be killed"


@contextlib.contextmanager
def small_filesystem(path, size, *options):
    path.mkdir()
    cmd = ["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", *options]), "tmpfs", str(path)]
    if os.geteuid() != 0 or subprocess.run(cmd, capture_output=True).returncode != 0:
        pytest.skip("mounting a small file system needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_full_disk_is_one_line_error_and_the_partial_resumes(many):
    clean = many["dir"] / "clean.h5"
    assert run(*cli_args(many, many["many"], clean, "-b", 4)).exit_code == 0
    with small_filesystem(many["dir"] / "small", "160k") as small:
        out = small / "s.h5"
        r = run(*cli_args(many, many["many"], out, "-b", 4))
        assert r.exit_code == 1
        assert r.output.count("\n") == 1 and "no room left" in r.output and "--resume" in r.output, r.output
        assert not out.exists()
        done = len(fragments(out))
        assert done > 0
        subprocess.run(["mount", "-o", "remount,size=16m", str(small)], check=True)
        r = run(*cli_args(many, many["many"], out, "-b", 4, "--resume"))
        assert r.exit_code == 0, r.output
        assert_same(clean, out)


def test_read_only_folder_is_one_line_error(data):
    with small_filesystem(data["dir"] / "ro", "1m", "ro") as ro:
        r = run(*cli_args(data, data["bed"], ro / "s.h5"))
        assert r.exit_code == 1 and r.output.count("\n") == 1 and "cannot write" in r.output, r.output


def interrupt_after_first_batch(monkeypatch):
    from seqlift.writers import ScoreWriter

    original = ScoreWriter.write
    calls = []

    def dies(self, start, rows):
        calls.append(start)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return original(self, start, rows)

    monkeypatch.setattr(ScoreWriter, "write", dies)
    return lambda: monkeypatch.setattr(ScoreWriter, "write", original)


def test_a_failing_resume_never_deletes_finished_rows(data, monkeypatch):
    out = data["dir"] / "s.h5"
    restore = interrupt_after_first_batch(monkeypatch)
    assert run(*cli_args(data, data["bed"], out, "-b", 2)).exit_code == 1
    restore()
    kept = fragments(out)
    assert len(kept) == 1
    r = run(*cli_args(data, data["bed"], out, "-b", 2, "--resume", "--strict", "--tolerance", "1e-12"))
    assert r.exit_code == 1 and "summation-to-delta fails" in r.output
    assert fragments(out) == kept and "kept in" in r.output
    assert run(*cli_args(data, data["bed"], out, "-b", 2, "--resume")).exit_code == 0


def test_a_run_that_stops_on_an_error_first_writes_the_batches_scored_before_it(many, monkeypatch):
    """Batches that come fast wait in the writer to share a fragment; an error in a later batch must not lose
    them, and the message counts them."""
    import seqlift.pipeline as pipeline

    out, calls, finite = many["dir"] / "s.h5", [], pipeline._finite

    def fails_at_the_fourth_batch(a, refs):
        calls.append(1)
        ok = finite(a, refs)
        return ok & (len(calls) != 4)

    monkeypatch.setattr(pipeline, "_finite", fails_at_the_fourth_batch)
    r = run(*cli_args(many, many["many"], out, "-b", 2))
    assert r.exit_code == 1 and "not finite" in r.output and "the 6 rows finished before are kept" in r.output
    assert [f.name for f in fragments(out)] == ["rows-0000000000-0000000002.npz", "rows-0000000002-0000000006.npz"]


def test_trouble_with_one_targets_file_keeps_the_others_partial(data, monkeypatch):
    out = data["dir"] / "s.h5"
    restore = interrupt_after_first_batch(monkeypatch)
    assert run(*cli_args(data, data["bed"], out, "-b", 2, "--target", "0,1")).exit_code == 1
    restore()
    first = fragments(data["dir"] / "s.0.h5")
    assert first
    (data["dir"] / "s.1.h5").write_text("someone else's file")
    r = run(*cli_args(data, data["bed"], out, "-b", 2, "--target", "0,1", "--resume"))
    assert r.exit_code == 1 and "s.1.h5 exists" in r.output
    assert fragments(data["dir"] / "s.0.h5") == first


@pytest.mark.slow
def test_a_second_run_on_the_same_output_is_refused_while_the_first_runs(many):
    out = many["dir"] / "s.h5"
    first = spawn(many, many["many"], out, "-b", 1)
    wait_for_fragment(first, out)
    assert first.poll() is None, "the first run ended too soon"
    r = run(*cli_args(many, many["many"], out, "-b", 1, "--force"))
    assert r.exit_code == 1 and f"being written by process {first.pid}" in r.output, r.output
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    with h5py.File(out, "r") as h5:
        assert h5["shap/seq"].shape[0] == 275


def test_resume_after_the_fasta_changed_is_refused(data, monkeypatch, genome_seqs):
    out = data["dir"] / "s.h5"
    restore = interrupt_after_first_batch(monkeypatch)
    assert run(*cli_args(data, data["bed"], out, "-b", 2)).exit_code == 1
    restore()
    fasta = Path(data["fasta"])
    text = fasta.read_text()
    i = text.index("\n") + 1 + 120  # a base of chr1 inside region r1, same length and layout
    fasta.write_text(text[:i] + ("A" if text[i] != "A" else "C") + text[i + 1 :])
    r = run(*cli_args(data, data["bed"], out, "-b", 2, "--resume"))
    assert r.exit_code == 1 and "fasta_sha256" in r.output, r.output


def test_npz_prefix_in_a_missing_folder_fails_before_any_work(data):
    out = data["dir"] / "s.h5"
    r = run(*cli_args(data, data["bed"], out, "--npz-prefix", data["dir"] / "nowhere" / "m"))
    assert r.exit_code == 1 and r.output.count("\n") == 1 and "nowhere does not exist" in r.output
    assert not out.exists() and not Path(str(out) + ".partial").exists()


@pytest.mark.parametrize("which", ["bed", "fasta", "pt2", "fai"])
def test_output_never_overwrites_an_input(data, which):
    from seqlift.genome import Genome

    Genome(data["fasta"]).close()  # indexes it
    target = {"bed": data["bed"], "fasta": data["fasta"], "pt2": data["pt2"], "fai": data["fasta"] + ".fai"}[which]
    before = Path(target).read_bytes()
    r = run(*cli_args(data, data["bed"], target, "--force"))
    assert r.exit_code == 1 and "is the input" in r.output and "choose another output" in r.output
    assert Path(target).read_bytes() == before


def test_output_never_overwrites_weights_or_references(data, tmp_path):
    refs = tmp_path / "refs.h5"
    with h5py.File(refs, "w") as h5:
        h5["references"] = np.zeros((2, 4, LENGTH), np.float32)
    link = tmp_path / "link.h5"
    os.link(refs, link)  # another name of the same file
    r = run(*cli_args(data, data["bed"], link, "--force", "--reference", f"file:{refs}"))
    assert r.exit_code == 1 and "is the input" in r.output
    r = run(
        "score",
        data["bed"],
        "--fasta",
        data["fasta"],
        "--model",
        data["class"],
        "--weights",
        data["weights"],
        "-o",
        data["weights"],
        "--force",
        "--quiet",
    )
    assert r.exit_code == 1 and "is the input" in r.output
    assert Path(data["weights"]).stat().st_size > 0


def export(model, path):
    program = torch.export.export(model.eval(), (torch.zeros(2, 4, LENGTH),), dynamic_shapes=({0: Dim.AUTO},))
    torch.export.save(program, str(path))
    return path


@pytest.mark.parametrize("damage", ["nan-weight", "inf-bias"])
def test_non_finite_scores_are_an_error_not_exact(data, tmp_path, damage):
    torch.manual_seed(0)
    model = TinyCNN()
    with torch.no_grad():
        if damage == "nan-weight":
            model.conv.weight[0, 0, 0] = float("nan")
        else:
            model.head.bias[0] = float("inf")
    pt2 = export(model, tmp_path / "broken.pt2")
    base = ["score", data["bed"], "--fasta", data["fasta"], "--model", pt2, "--quiet", "--n-refs", 3]
    for extra in ([], ["--strict"]):
        r = run(*base, "-o", tmp_path / "a.h5", *extra)
        assert r.exit_code == 1 and "not finite" in r.output and "r1 (chr1:" in r.output, r.output
        assert not (tmp_path / "a.h5").exists() and not (tmp_path / "a.h5.partial").exists()
    r = run(*base, "-o", tmp_path / "b.h5", "--allow-nonfinite")
    assert r.exit_code == 0 and "not finite" in r.output
    with h5py.File(tmp_path / "b.h5", "r") as h5:
        assert not h5["meta/finite"][:].any() and h5.attrs["n_nonfinite"] == 6


def test_non_finite_file_references_are_an_error(data, tmp_path):
    refs = np.zeros((3, 4, LENGTH), np.float32)
    refs[1, 2, 7] = np.nan
    path = tmp_path / "refs.h5"
    with h5py.File(path, "w") as h5:
        h5["references"] = refs
    r = run(*cli_args(data, data["bed"], tmp_path / "a.h5", "--reference", f"file:{path}"))
    assert r.exit_code == 1 and "not finite" in r.output, r.output


def test_negative_tolerance_is_refused(data):
    r = run(*cli_args(data, data["bed"], data["dir"] / "a.h5", "--tolerance", "-1"))
    assert r.exit_code != 0 and "tolerance" in r.output
