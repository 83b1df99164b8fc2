"""``seqlift motifs`` on the demo's GATA scores: modisco-lite motifs, MEME, BED, logos, report, TOMTOM."""

import re
import subprocess
import sys

import h5py
import numpy as np
import pytest
from memelite.io import read_meme

from seqlift.demo import demo_paths
from seqlift.errors import ScoresError, UsageError
from seqlift.motifs import benjamini_hochberg, find_motifs, read_windows, to_genome

import cli_helpers

N_RUN = ("chr2", 146317, 146367)  # the demo genome's N run, 0-based half-open

# Planted GATA (consensus AGATAAGA) and TAL1 (ACCAGCTGTC) matrices, rows A C G T per position.
GATA = [
    [0.93, 0.02, 0.03, 0.02],
    [0.01, 0.01, 0.96, 0.02],
    [0.98, 0.01, 0.005, 0.005],
    [0.005, 0.005, 0.01, 0.98],
    [0.98, 0.01, 0.005, 0.005],
    [0.96, 0.01, 0.02, 0.01],
    [0.03, 0.02, 0.93, 0.02],
    [0.90, 0.03, 0.04, 0.03],
]
TAL1 = [
    [0.60, 0.14, 0.13, 0.13],
    [0.05, 0.85, 0.05, 0.05],
    [0.01, 0.97, 0.01, 0.01],
    [0.97, 0.01, 0.01, 0.01],
    [0.02, 0.01, 0.60, 0.37],
    [0.01, 0.97, 0.01, 0.01],
    [0.01, 0.01, 0.01, 0.97],
    [0.01, 0.01, 0.97, 0.01],
    [0.08, 0.09, 0.08, 0.75],
    [0.13, 0.60, 0.14, 0.13],
]


def invoke(*args):
    return cli_helpers.run("motifs", *args)


def write_meme_db(path, motifs):
    lines = ["MEME version 4", "", "ALPHABET= ACGT", "", "strands: + -", ""]
    for name, pwm in motifs.items():
        lines += [f"MOTIF {name}", f"letter-probability matrix: alength= 4 w= {len(pwm)}"]
        lines += [" ".join(f"{p:.4f}" for p in row) for row in pwm] + [""]
    path.write_text("\n".join(lines))


def bed_rows(path):
    rows = [line.split("\t") for line in path.read_text().splitlines()]
    return [(c, int(s), int(e), n, float(v), d) for c, s, e, n, v, d in rows]


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """Demo regions (every other one on the minus strand) plus one over the N run, scored for the GATA task."""
    tmp = tmp_path_factory.mktemp("motifs")
    lines = open(demo_paths()["regions"]).read().splitlines()
    fields = [line.split("\t") for line in lines]
    for f in fields[1::2]:
        f[5] = "-"
    fields.append(["chr2", "146242", "146442", "n_run", "0", "-"])
    bed = tmp / "regions.bed"
    bed.write_text("".join("\t".join(f) + "\n" for f in fields))
    scores = tmp / "scores.h5"
    p = demo_paths()
    # In a child process, as the motifs run below: modisco-lite compiles its numba kernels into numba's cache
    # only from a single-threaded process, and tqdm's monitor thread, once started, stays for good.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "seqlift.cli",
            "score",
            bed,
            "--fasta",
            p["fasta"],
            "--model",
            p["model_pt2"],
            "-o",
            scores,
            "--n-refs",
            "5",
            "--target",
            "0",
            "--quiet",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    with h5py.File(scores) as h5:
        windows = {k: h5[k][:] for k in ("coords_start", "coords_end")}
        windows["chrom"] = h5["coords_chrom"].asstr()[:]
        windows["strand"] = h5["meta/strand"].asstr()[:]
    return tmp, scores, windows


@pytest.fixture(scope="module")
def run(scored):
    """``seqlift motifs`` (modisco-lite) on the scored windows, in a child process: the tests using it are slow."""
    tmp, scores, _ = scored
    rng = np.random.default_rng(0)
    decoys = {f"decoy{i}": rng.dirichlet(np.ones(4), size=rng.integers(6, 12)) for i in range(28)}
    db = tmp / "db.meme"
    write_meme_db(db, {"GATA": GATA, "TAL1": TAL1, **decoys})
    out = tmp / "out"
    done = subprocess.run(
        [sys.executable, "-m", "seqlift.cli", "motifs", scores, "-o", out, "--motif-db", db, "--pwm"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return out, done.stderr


def gata_like(seq):
    return "GATA" in seq or "TATC" in seq


@pytest.mark.slow
def test_modisco_finds_the_gata_motif(run):
    out, stderr = run
    assert "seqlift motifs: modisco-lite on 201 windows of 200 bp" in stderr
    assert re.search(r"wrote \d+ motifs to ", stderr)
    with h5py.File(out / "modisco.h5") as h5:
        assert h5.attrs["window_size"] == 200
        patterns = h5["pos_patterns"]
        consensus = {
            name: "".join("ACGT"[i] for i in patterns[name]["contrib_scores"][:].argmax(axis=1)) for name in patterns
        }
        counts = {name: int(patterns[name]["seqlets/n_seqlets"][0]) for name in patterns}
    gata = [name for name, seq in consensus.items() if gata_like(seq)]
    assert gata, consensus
    assert counts[gata[0]] >= 50


@pytest.mark.slow
def test_meme_file_reads_with_memelite(run):
    out, _ = run
    meme = read_meme(str(out / "motifs.meme"))
    with h5py.File(out / "modisco.h5") as h5:
        names = [
            f"{sign}_{name}" for sign in ("pos", "neg") if f"{sign}_patterns" in h5 for name in h5[f"{sign}_patterns"]
        ]
    assert sorted(meme) == sorted(names)
    for pwm in meme.values():
        assert pwm.shape[0] == 4 and pwm.shape[1] >= 4
        np.testing.assert_allclose(pwm.sum(axis=0), 1, atol=1e-5)
    assert any(gata_like("".join("ACGT"[i] for i in pwm.argmax(axis=0))) for pwm in meme.values())


@pytest.mark.slow
def test_seqlets_lie_in_windows_and_on_planted_sites(run, scored):
    out, _ = run
    _, _, win = scored
    rows = bed_rows(out / "seqlets.bed")
    meme = read_meme(str(out / "motifs.meme"))
    assert {r[3] for r in rows} <= set(meme) and {r[5] for r in rows} <= {"+", "-"}
    assert rows == sorted(rows, key=lambda r: r[:3])
    sites = [line.split("\t") for line in open(demo_paths()["sites"]).read().splitlines()]
    gata = {}
    for c, s, e, name, *_ in sites:
        if name == "GATA":
            gata.setdefault(c, []).append((int(s), int(e)))

    def on_site(c, s, e):
        return any(s < b and a < e for a, b in gata.get(c, []))

    rng = np.random.default_rng(0)
    hits = {False: [], True: []}  # by whether the window was scored on the minus strand
    shuffled = []
    for c, s, e, _name, _score, _ in rows:
        inside = np.flatnonzero((win["chrom"] == c) & (win["coords_start"] <= s) & (win["coords_end"] >= e))
        assert len(inside), f"seqlet {c}:{s}-{e} lies outside every scored window"
        w = inside[0]
        hits[win["strand"][w] == "-"].append(on_site(c, s, e))
        shift = rng.integers(win["coords_start"][w], win["coords_end"][w] - (e - s) + 1)
        shuffled.append(on_site(c, shift, shift + e - s))
    observed = np.mean(hits[False] + hits[True])
    # windows scored on either strand map back onto the planted sites
    assert np.mean(hits[False]) > 0.8 and np.mean(hits[True]) > 0.8, (np.mean(hits[False]), np.mean(hits[True]))
    assert observed > 3 * np.mean(shuffled), (observed, np.mean(shuffled))


@pytest.mark.slow
def test_report_shows_logos_and_the_gata_match_first(run):
    out, _ = run
    page = (out / "report.html").read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    meme = read_meme(str(out / "motifs.meme"))
    assert len(images) == 2 * len(meme)  # a CWM and a PWM logo per motif
    for src in images:
        assert not src.startswith("/") and (out / src).is_file()
        assert (out / src).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name, pwm in meme.items():
        row = re.search(rf"<tr><td>{name}</td><td>(\d+)</td>.*?</tr>", page).group(0)
        if gata_like("".join("ACGT"[i] for i in pwm.argmax(axis=0))):
            matches = row.rsplit("<td>", 1)[1]
            assert matches.startswith("GATA (p="), matches
            assert float(re.search(r"GATA \(p=([0-9.e-]+)", matches).group(1)) < 0.01


@pytest.mark.slow
def test_n_bases_carry_no_hypothetical_contribution(run, scored):
    _, scores, win = scored
    w = int(np.flatnonzero(win["chrom"] == N_RUN[0])[-1])
    assert (win["coords_start"][w], win["strand"][w]) == (146242, "-")
    with h5py.File(scores) as h5:
        n_cols = h5["raw/seq"][w].sum(axis=0) == 0
        assert n_cols.sum() == 50 and np.abs(h5["shap/seq"][w][:, n_cols]).sum() > 0
    one_hot, hyp, coords = read_windows(scores, window=120)
    assert one_hot.shape == (len(win["chrom"]), 120, 4) and coords["offset"] == 40
    n_rows = one_hot[w].sum(axis=1) == 0
    assert n_rows.sum() == 50 and np.all(hyp[w][n_rows] == 0) and np.abs(hyp[w][~n_rows]).sum() > 0
    assert read_windows(scores, window=1000)[0].shape[1] == 200  # clipped to the scored length


def test_to_genome_flips_minus_strand_windows():
    # window chr:100-120; span 2-5 of the cropped window at offset 3 -> region positions 5-8
    s, e, d = to_genome(
        np.array([5, 5]),
        np.array([8, 8]),
        np.array(["+", "-"]),
        np.array([100, 100]),
        np.array([120, 120]),
        np.array(["-", "."]),
    )
    np.testing.assert_array_equal(s, [112, 105])
    np.testing.assert_array_equal(e, [115, 108])
    assert list(d) == ["-", "-"]


def test_benjamini_hochberg():
    q = benjamini_hochberg(np.array([[0.01, 0.04, 0.03, 0.5]]))
    np.testing.assert_allclose(q, [[0.04, 0.16 / 3, 0.16 / 3, 0.5]])  # p x 4 / rank, then running minimum


def test_report_without_database_says_so(tmp_path):  # needs no modisco run (it took the run fixture unused)
    from seqlift.motifs import write_report

    write_report(tmp_path / "r.html", [], "x.h5")
    assert "No motif database given (--motif-db)" in (tmp_path / "r.html").read_text()


def tiny_scores(path, n=30, length=100, seed=0, datasets=("raw/seq", "shap/seq")):
    rng = np.random.default_rng(seed)
    X = np.eye(4, dtype=np.uint8)[rng.integers(0, 4, (n, length))].transpose(0, 2, 1)
    with h5py.File(path, "w") as h5:
        if "raw/seq" in datasets:
            h5["raw/seq"] = X
        if "shap/seq" in datasets:
            h5["shap/seq"] = rng.normal(0, 1e-3, X.shape).astype(np.float32)
        h5["coords_chrom"] = np.array(["chr1"] * n, dtype=object).astype(h5py.string_dtype())
        h5["coords_start"] = np.arange(n) * 1000
        h5["coords_end"] = np.arange(n) * 1000 + length
    return path


def test_not_a_scores_file(tmp_path):
    text = tmp_path / "scores.h5"
    text.write_text("chr1\t0\t10\n")
    with pytest.raises(ScoresError, match=r"scores\.h5 is not an HDF5 scores file .*make one with 'seqlift score'"):
        read_windows(text)
    bare = tiny_scores(tmp_path / "bare.h5", datasets=("raw/seq",))
    result = invoke(bare, "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: {bare} is not a seqlift scores file: it has no dataset shap/seq; make one with 'seqlift score'"
    ]
    with pytest.raises(UsageError, match="--window must be a positive number of bases, got 0"):
        read_windows(tiny_scores(tmp_path / "ok.h5"), window=0)


def test_no_motif_found_leaves_an_earlier_output_alone(tmp_path):
    noise = tiny_scores(tmp_path / "noise.h5")
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.html").write_text("earlier run")
    with pytest.raises(ScoresError, match=r"modisco-lite found no motif in .*noise\.h5 \(30 windows of 100 bp\)"):
        find_motifs(noise, out, force=True, progress=False)
    assert (out / "report.html").read_text() == "earlier run"
    assert not (tmp_path / "out.partial").exists()


def test_existing_output_needs_force(tmp_path):
    scores = tiny_scores(tmp_path / "s.h5")
    out = tmp_path / "out"
    out.mkdir()
    result = invoke(scores, "-o", out, "--quiet")
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: output folder {out} exists; use --force to replace it"
    (out / "notes.txt").write_text("mine")
    result = invoke(scores, "-o", out, "--force")
    assert result.exit_code == 1 and "holds files that 'seqlift motifs' did not write" in result.output
    assert (out / "notes.txt").read_text() == "mine"
    missing = tmp_path / "none.meme"
    with pytest.raises(ScoresError, match=r"motif database .*none\.meme does not exist"):
        find_motifs(scores, tmp_path / "new", motif_db=missing, progress=False)
