"""``seqlift tracks`` end to end: bigWig values read back with pyBigWig equal the scores, in genome coordinates."""

import shutil

import h5py
import numpy as np
import pyBigWig
import pytest

import seqlift
from seqlift.demo import demo_paths
from seqlift.errors import GenomeError, UsageError
from seqlift.regions import Window
from seqlift.tracks import write_tracks
from seqlift.writers import ScoreWriter

from cli_helpers import run

L = 10
SIZES = {"chr1": 100, "chr2": 60, "chr3": 40}

#: (chrom, start, strand), in row order: chr2 first (output follows the FASTA), a minus window overlapping a plus
#: one (20-30 and 24-34), a window touching the latter (34-44), a tie of centres 1 base apart and a duplicate window.
WINDOWS = [
    ("chr2", 5, "+"),
    ("chr1", 20, "-"),
    ("chr1", 24, "+"),
    ("chr1", 34, "."),
    ("chr1", 70, "+"),
    ("chr3", 0, "-"),
    ("chr3", 1, "+"),
    ("chr3", 1, "-"),
]


@pytest.fixture
def synthetic(tmp_path):
    """A score file of the windows above with random scores (an N base), its FASTA, and the genome-oriented tracks."""
    rng = np.random.default_rng(0)
    fasta = tmp_path / "genome.fa"
    fasta.write_text("".join(f">{c}\n{''.join(rng.choice(list('ACGT'), n))}\n" for c, n in SIZES.items()))
    windows = [Window(c, s, s + L, strand, f"w{i}", i, i + 1, "x.bed") for i, (c, s, strand) in enumerate(WINDOWS)]
    n = len(windows)
    X = np.eye(4, dtype=np.uint8)[rng.integers(0, 4, (n, L))].transpose(0, 2, 1).copy()
    X[1, :, 5] = 0  # an N base: genome position 29 - 5 = 24 of the minus window 20-30
    shap = rng.normal(size=(n, 4, L)).astype(np.float32)
    writer = ScoreWriter(tmp_path / "scores.h5", windows, L, {"fasta": str(fasta), "input_length": L})
    writer.write(
        0,
        {
            "raw/seq": X,
            "shap/seq": shap,
            "projected_shap/seq": shap * X,
            "meta/prediction": np.arange(n, dtype=np.float32) / 4,
        },
    )
    writer.finish()
    # expected tracks in genome orientation: a minus window's bases are reversed
    flip = np.array([strand == "-" for _, _, strand in WINDOWS])
    tracks = np.stack([(shap * X).sum(1), shap.max(1), shap.min(1)], axis=1)  # (n, 3, L)
    tracks[flip] = tracks[flip, :, ::-1]
    return {"dir": tmp_path, "fasta": fasta, "scores": tmp_path / "scores.h5", "tracks": tracks}


def expected(tracks, rule):
    """Brute force: chrom -> {base: (contrib, hyp_max, hyp_min)} over the bases some window covers."""
    out = {}
    for chrom in SIZES:
        for p in range(SIZES[chrom]):
            cover = [i for i, (c, s, _) in enumerate(WINDOWS) if c == chrom and s <= p < s + L]
            if not cover:
                continue
            if rule == "mean":
                value = np.mean([tracks[i, :, p - WINDOWS[i][1]] for i in cover], axis=0)
            else:  # nearest centre to the base's centre; ties to the smaller start, then the first row
                i = min(cover, key=lambda i: (abs(p + 0.5 - (WINDOWS[i][1] + L / 2)), WINDOWS[i][1], i))
                value = tracks[i, :, p - WINDOWS[i][1]]
            out.setdefault(chrom, {})[p] = value
    return out


def read_bigwig(path):
    with pyBigWig.open(str(path)) as bw:
        assert list(bw.chroms().items()) == list(SIZES.items())
        return {c: {p: v for s, e, v in (bw.intervals(c) or ()) for p in range(s, e)} for c in SIZES}


@pytest.mark.parametrize("rule", ["midpoint", "mean"])
def test_tracks_match_the_scores_in_genome_coordinates(synthetic, rule):
    prefix = synthetic["dir"] / "out"
    result = run("tracks", synthetic["scores"], "-o", prefix, "--hypothetical", "--overlap", rule, "--quiet")
    assert result.exit_code == 0, result.output
    want = expected(synthetic["tracks"], rule)
    for k, name in enumerate(["contrib", "hyp_max", "hyp_min"]):
        got = read_bigwig(f"{prefix}.{name}.bw")
        for chrom in SIZES:
            # exactly the covered bases have entries: none outside the windows, no zero-filling
            assert sorted(got[chrom]) == sorted(want.get(chrom, {})), (name, chrom)
            for p, value in want.get(chrom, {}).items():
                assert got[chrom][p] == pytest.approx(value[k], rel=1e-6, abs=1e-7), (name, chrom, p)
    got = read_bigwig(f"{prefix}.contrib.bw")["chr1"]
    with h5py.File(synthetic["scores"], "r") as h5:
        stored = h5["projected_shap/seq"][:].sum(1)  # in each region's orientation
    assert got[20] == stored[1, 9] and got[40] == stored[3, 6]
    if rule == "midpoint":  # centres 25 and 29: bases 20..26 from the minus window, 27..33 from the plus one
        assert [got[p] for p in (20, 24, 26, 27, 33)] == [stored[1, 9], 0.0, stored[1, 3], stored[2, 3], stored[2, 9]]
    else:
        assert got[24] == pytest.approx(stored[2, 0] / 2, rel=1e-6)  # the N base of the minus window counts as 0
        assert got[25] == pytest.approx((stored[1, 4] + stored[2, 1]) / 2, rel=1e-6) and got[30] == stored[2, 6]
    bed = (synthetic["dir"] / "out.windows.bed").read_text().splitlines()
    assert bed[:2] == ["chr2\t5\t15\tw0\t0\t+", "chr1\t20\t30\tw1\t0.25\t-"] and len(bed) == len(WINDOWS)


def test_tracks_of_a_scored_demo_file(tmp_path):
    """Real scores, minus-strand windows included; chromosome sizes from the FASTA recorded in the file."""
    paths = demo_paths()
    fasta = shutil.copy(paths["fasta"], tmp_path / "genome.fa")
    with open(paths["regions"]) as src, open(tmp_path / "regions.bed", "w") as bed:
        for i, line in enumerate(src.read().splitlines()[:8]):
            bed.write("\t".join(line.split("\t")[:4]) + f"\t0\t{'-+'[i % 2]}\n")
    [scores] = seqlift.score(
        tmp_path / "regions.bed",
        fasta,
        paths["model_pt2"],
        tmp_path / "s.h5",
        n_refs=2,
        reference="zeros",
        progress=False,
    )
    write_tracks(scores, tmp_path / "demo", progress=False)
    with h5py.File(scores, "r") as h5, pyBigWig.open(str(tmp_path / "demo.contrib.bw")) as bw:
        contrib = h5["projected_shap/seq"][:].sum(1)
        for i, (chrom, start, end) in enumerate(zip(h5["coords_chrom"].asstr(), h5["coords_start"], h5["coords_end"])):
            values = contrib[i, ::-1] if i % 2 == 0 else contrib[i]
            np.testing.assert_array_equal(bw.values(chrom, int(start), int(end), numpy=True), values)
            assert np.isnan(bw.values(chrom, int(start) - 1, int(start))[0])  # nothing outside the windows
        assert sum(e - s for c in bw.chroms() for s, e, _ in (bw.intervals(c) or ())) == contrib.size


def test_tracks_errors(synthetic, tmp_path):
    prefix = synthetic["dir"] / "out"
    assert run("tracks", synthetic["scores"], "-o", prefix, "--quiet").exit_code == 0
    assert not (synthetic["dir"] / "out.hyp_max.bw").exists()
    result = run("tracks", synthetic["scores"], "-o", prefix, "--quiet")
    assert result.exit_code == 1 and "out.contrib.bw exists; use --force to overwrite it" in result.output
    assert run("tracks", synthetic["scores"], "-o", prefix, "--quiet", "--force").exit_code == 0
    small = tmp_path / "small.fa"
    small.write_text(">chr1\n" + "A" * 100 + "\n>chr2\n" + "A" * 12 + "\n>chr3\n" + "A" * 40 + "\n")
    result = run("tracks", synthetic["scores"], "-o", tmp_path / "x", "--fasta", small, "--quiet")
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert "window chr2:5-15 (row 0 of" in result.output and "runs past the end of chr2 (length 12)" in result.output
    small.write_text(">chr1\n" + "A" * 100 + "\n>chr3\n" + "A" * 40 + "\n")
    with pytest.raises(GenomeError, match=r"window chr2:5-15 \(row 0 of .*\) is on chr2, which the FASTA lacks"):
        write_tracks(synthetic["scores"], tmp_path / "x", fasta=small, progress=False)
    synthetic["fasta"].rename(tmp_path / "moved.fa")
    with pytest.raises(
        GenomeError,
        match=r"cannot read chromosome sizes from .*genome.fa, the FASTA recorded in "
        r".*scores.h5 \(FASTA file not found.*give --fasta genome.fa",
    ):
        write_tracks(synthetic["scores"], tmp_path / "x", progress=False)
    with pytest.raises(UsageError, match="unknown --overlap 'max'; choose one of midpoint, mean"):
        write_tracks(synthetic["scores"], tmp_path / "x", overlap="max", fasta=tmp_path / "moved.fa")
    assert not list(tmp_path.glob("x.*"))
