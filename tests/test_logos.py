"""``seqlift logo`` and :mod:`seqlift.logos`: region parsing, row selection, genome orientation, figures, outputs."""

import re
import shutil

import h5py
import matplotlib.image
import numpy as np
import pyfaidx
import pytest

import seqlift
from seqlift.demo import demo_paths
from seqlift.errors import RegionError
from seqlift.genome import one_hot_encode
from seqlift.logos import figure, format_region, matrix, open_scores, parse_region, select_rows, top_rows, window

import cli_helpers

#: Demo regions scored for the tests; the ones named here are on the minus strand.
ROWS = [0, 1, 2, 3, 4, 5, 19]
MINUS = {"region_0004_tal", "region_0019_both"}


def run(*args):
    return cli_helpers.run("logo", *args)


@pytest.fixture(scope="module")
def scores(tmp_path_factory):
    """Demo regions (two of them on the minus strand) scored for the GATA task, and the path of the file."""
    folder = tmp_path_factory.mktemp("logos")
    lines = open(demo_paths()["regions"]).read().splitlines()
    bed = folder / "regions.bed"
    with open(bed, "w") as fh:
        for i in ROWS:
            fields = lines[i].split("\t")
            fields[5] = "-" if fields[3] in MINUS else "."
            fh.write("\t".join(fields) + "\n")
    out = folder / "scores.h5"
    seqlift.score(str(bed), demo_paths()["fasta"], demo_paths()["model_pt2"], str(out), n_refs=5, progress=False)
    return out


def write_scores(path, windows, length=20, method="deeplift"):
    """A small score file of random contributions; ``windows`` is a list of (chrom, start, end, strand, name)."""
    rng = np.random.default_rng(0)
    raw = np.eye(4, dtype=np.uint8)[rng.integers(0, 4, (len(windows), length))].transpose(0, 2, 1)
    shap = rng.normal(size=raw.shape).astype(np.float32)
    with h5py.File(path, "w") as h5:
        h5["raw/seq"], h5["shap/seq"], h5["projected_shap/seq"] = raw, shap, shap * raw
        for i, key in enumerate(["coords_chrom", "coords_start", "coords_end", "meta/strand", "meta/name"]):
            h5[key] = [w[i] for w in windows]
        h5.attrs.update(method=method, rule="rescale", target="0")
    return path


def copy_scores(src, dst, shift=0, **attrs):
    """A copy of a score file, its windows moved by ``shift`` bases, with attributes replaced."""
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as h5:
        h5["coords_start"][:] += shift
        h5["coords_end"][:] += shift
        h5.attrs.update(attrs)
    return dst


def read_png(path):
    image = matplotlib.image.imread(path)
    assert len(np.unique(image.reshape(-1, image.shape[-1]), axis=0)) > 10  # a drawing, not a blank
    return image


@pytest.mark.parametrize(
    "text, expected",
    [
        ("chr1:1,001-1,100", ("chr1", 1000, 1100)),
        ("chr1:1-1", ("chr1", 0, 1)),
        ("chr2:7", ("chr2", 6, 7)),
        ("  chrX:10-20\n", ("chrX", 9, 20)),
        ("HLA-A*01:01:5-9", ("HLA-A*01:01", 4, 9)),
    ],
)
def test_parse_region_reads_1_based_inclusive(text, expected):
    assert parse_region(text) == expected
    assert format_region(*expected) == format_region(*parse_region(format_region(*expected)))


@pytest.mark.parametrize(
    "text, message",
    [
        ("chr1:0-10", r"region 'chr1:0-10' starts at 0, but positions start at 1; write chrom:start-end"),
        ("chr1:20-10", r"region 'chr1:20-10' ends \(10\) before it starts \(20\); write chrom:start-end"),
        ("chr1", r"cannot read region 'chr1'; write chrom:start-end, 1-based and inclusive"),
        ("chr1:1e3-2000", r"cannot read region 'chr1:1e3-2000'"),
        ("chr1:5-", r"cannot read region 'chr1:5-'"),
    ],
)
def test_parse_region_errors(text, message):
    with pytest.raises(RegionError, match=message):
        parse_region(text)


def test_format_region_is_1_based_with_commas():
    assert format_region("chr1", 999, 1100) == "chr1:1,000-1,100"


def test_select_rows(tmp_path):
    path = write_scores(
        tmp_path / "tiny.h5",
        [
            ("chr1", 100, 200, ".", "a"),
            ("chr1", 150, 250, ".", "b"),
            ("chr2", 0, 100, "-", "c"),
            ("chr1", 300, 400, ".", "a"),
        ],
        length=100,
    )
    with open_scores(path) as h5:
        assert select_rows(h5, index=2) == [(2, 0, 100)]
        assert select_rows(h5, name="a") == [(0, 100, 200), (3, 300, 400)]
        # the windows holding the region, first first; the stretch is the region itself
        assert select_rows(h5, region=parse_region("chr1:160-190")) == [(0, 159, 190), (1, 159, 190)]
        assert select_rows(h5, region=parse_region("chr1:201-250")) == [(1, 200, 250)]
        assert select_rows(h5, name="b", region=parse_region("chr1:160-190")) == [(1, 159, 190)]
        with pytest.raises(
            RegionError,
            match=r"region chr1:190-260 lies in no scored window of .*tiny\.h5; "
            r"the nearest is chr1:151-250 \(row 1, b\): give a region inside",
        ):
            select_rows(h5, region=parse_region("chr1:190-260"))
        with pytest.raises(
            RegionError,
            match=r"chr3:1-5 lies in no scored window: .*tiny\.h5 has no window on "
            r"chr3; give a region on chr1, chr2",
        ):
            select_rows(h5, region=parse_region("chr3:1-5"))
        with pytest.raises(RegionError, match=r"chr1:301-310 lies in no scored window of row 1 of .*tiny\.h5"):
            select_rows(h5, index=1, region=parse_region("chr1:301-310"))
        with pytest.raises(
            RegionError,
            match=r"index 4 is out of range: .*tiny\.h5 holds 4 windows; give a row "
            r"from 0 to 3",
        ):
            select_rows(h5, index=4)
        with pytest.raises(RegionError, match=r"no window named 'bb' in .*tiny\.h5 \(did you mean b\?\)"):
            select_rows(h5, name="bb")


def test_matrix_is_in_genome_orientation(scores):
    genome = pyfaidx.Fasta(demo_paths()["fasta"])
    with open_scores(scores) as h5:
        strands = h5["meta/strand"].asstr()[:]
        assert sorted(h5["meta/name"].asstr()[strands == "-"]) == sorted(MINUS)
        for row in range(len(strands)):
            chrom, start, end = h5["coords_chrom"].asstr()[row], h5["coords_start"][row], h5["coords_end"][row]
            expected = one_hot_encode(genome[chrom][int(start) : int(end)].seq)
            np.testing.assert_array_equal(matrix(h5, row, "raw/seq"), expected)
            # minus-strand rows are stored as the reverse complement, so the flip is not a no-op
            assert np.array_equal(h5["raw/seq"][row], expected) == (strands[row] != "-")
            full = matrix(h5, row)
            np.testing.assert_array_equal(full, matrix(h5, row, "shap/seq") * expected)
            np.testing.assert_array_equal(matrix(h5, row, region=(chrom, start + 10, start + 25)), full[:, 10:25])
        with pytest.raises(RegionError, match=r"region chr1:1-10 is not inside row 0 of .*scores\.h5 \(chr1:1,348"):
            matrix(h5, 0, region=("chr1", 0, 10))


def test_top_rows_ranks_by_total_absolute_contribution(scores):
    with open_scores(scores) as h5:
        total = np.abs(h5["projected_shap/seq"][:]).sum(axis=(1, 2))
        starts = h5["coords_start"][:]
        ranked = top_rows(h5, 3, block=2)
        assert [row for row, _, _ in ranked] == list(np.argsort(-total)[:3])
        assert all(start == starts[row] for row, start, _ in ranked)
        assert len(top_rows(h5, 100)) == len(total)


def test_figure_axes_titles_and_minus_strand(scores):
    with open_scores(scores) as h5:
        minus = int(np.flatnonzero(h5["meta/strand"].asstr()[:] == "-")[0])
        win = window(h5, minus)
    chrom, start, end, name = win["chrom"], win["start"], win["end"], win["name"]
    fig = figure([scores], minus, hypothetical=True)
    top, bottom = fig.axes
    assert fig.get_suptitle() == f"{format_region(chrom, start, end)}   {name}   (- strand, shown on +)"
    assert top.get_title(loc="left") == "scores.h5: deeplift (rescale), target 0"
    assert (top.get_ylabel(), bottom.get_ylabel()) == ("contribution", "hypothetical")
    assert top.get_xlim() == bottom.get_xlim() == (start + 0.5, end + 0.5)  # 1-based positions start+1 .. end
    assert bottom.get_xlabel() == f"{chrom} position (1-based)"

    fig = figure([scores], 1, region=parse_region("chr1:3,410-3,430"))
    assert fig.axes[0].get_xlim() == (3409.5, 3430.5)
    assert fig.get_suptitle() == "chr1:3,410-3,430   region_0001_gata"


def test_cli_index_writes_png_with_default_name(scores):
    result = run(scores, "--index", 1, "--dpi", 50)
    assert result.exit_code == 0, result.output
    out = scores.with_name("scores.region_0001_gata.png")
    assert f"wrote {out}" in result.output
    image = read_png(out)
    assert image.shape[:2] == (110, 300)  # the default 100 bp at 6 in / 100 bp, 2.2 in tall, 50 dpi


@pytest.mark.slow  # three PNGs, one of them two 100-bp panels; test_cli_index_writes_png_with_default_name stays quick
def test_cli_region_width_dpi_and_hypothetical(scores, tmp_path):
    result = run(scores, "--region", "chr1:3,383-3,482", "--width", 10, "--dpi", 40, "-o", tmp_path / "r.png")
    assert result.exit_code == 0, result.output
    plain = read_png(tmp_path / "r.png")
    assert plain.shape[1] == 400  # 100 bp at 10 in / 100 bp, 40 dpi
    result = run(scores, "--name", "region_0001_gata", "--hypothetical", "--dpi", 40, "-o", tmp_path / "h.png")
    assert result.exit_code == 0, result.output
    assert read_png(tmp_path / "h.png").shape[0] > 1.7 * plain.shape[0]  # a second panel
    result = run(scores, "--region", "chr1:3,410-3,430", "--quiet")
    assert result.exit_code == 0 and result.output == ""
    read_png(scores.with_name("scores.chr1_3410-3430.png"))


def test_cli_svg(scores, tmp_path):
    result = run(scores, "--index", 0, "-o", tmp_path / "fig.svg", "--region", "chr1:1,400-1,430")
    assert result.exit_code == 0, result.output
    text = (tmp_path / "fig.svg").read_text()
    assert text.startswith("<?xml") and "<svg" in text and "</svg>" in text


def test_cli_top_pdf_has_one_page_per_window(scores, tmp_path):
    result = run(scores, "--top", 3, "-o", tmp_path / "top.pdf", "--quiet")
    assert result.exit_code == 0, result.output
    data = (tmp_path / "top.pdf").read_bytes()
    assert data.startswith(b"%PDF") and len(re.findall(rb"/Type\s*/Page\b", data)) == 3
    assert not list(tmp_path.glob("*.partial"))


def test_cli_top_png_folder_named_by_rank_and_name(scores, tmp_path):
    result = run(scores, "--top", 2, "-o", tmp_path / "best", "--dpi", 30)
    assert result.exit_code == 0, result.output
    with open_scores(scores) as h5:
        names = h5["meta/name"].asstr()[:]
        expected = [f"{rank}_{names[row]}.png" for rank, (row, _, _) in enumerate(top_rows(h5, 2), 1)]
    assert sorted(p.name for p in (tmp_path / "best").iterdir()) == expected
    for path in (tmp_path / "best").iterdir():
        read_png(path)


def test_cli_compares_files_of_the_same_windows(scores, tmp_path):
    other = copy_scores(scores, tmp_path / "ism.h5", method="ism")
    fig = figure([scores, other], 4, region=parse_region("chr1:7,340-7,370"))
    assert [ax.get_title(loc="left") for ax in fig.axes] == [
        "scores.h5: deeplift (rescale), target 0",
        "ism.h5: ism, target 0",
    ]
    result = run(scores, other, "--index", 4, "--dpi", 30)
    assert result.exit_code == 0, result.output
    read_png(scores.with_name("scores+ism.region_0004_tal.png"))


def test_cli_errors(scores, tmp_path):
    moved = copy_scores(scores, tmp_path / "moved.h5", shift=1)
    cases = [
        (
            ["--region", "chr1:100-200"],
            r"Error: region chr1:100-200 lies in no scored window of .*scores\.h5; the "
            r"nearest is chr1:1,348-1,547 \(row 0, region_0000_both\)",
        ),
        (["--name", "peak_7"], r"Error: no window named 'peak_7' in .*scores\.h5 \(names are region_0000_both"),
        (["--index", 7], r"Error: index 7 is out of range: .*scores\.h5 holds 7 windows; give a row from 0 to 6"),
        (
            [moved, "--index", 1, "-o", tmp_path / "m.png"],
            r"Error: .*moved\.h5 holds no window chr1:3,283-3,482 \(\. strand, row 1 of .*scores\.h5\); compare score "
            r"files of the same regions",
        ),
        (["--index", 1, "-o", tmp_path / "fig.jpg"], r"Error: cannot write .*fig\.jpg: unknown format '\.jpg'"),
        (["--top", 2, "-o", tmp_path / "top.png"], r"Error: --top writes one PDF or a folder of PNGs"),
    ]
    for args, message in cases:
        result = run(scores, *args)
        assert result.exit_code == 1, result.output
        assert re.search(message, result.output), result.output
        assert len(result.output.strip().splitlines()) == 1

    out = tmp_path / "fig.png"
    assert run(scores, "--index", 1, "-o", out, "--dpi", 20).exit_code == 0
    result = run(scores, "--index", 2, "-o", out)
    assert result.exit_code == 1 and f"Error: output {out} exists; use --force to overwrite it" in result.output
    before = out.read_bytes()
    assert run(scores, "--index", 2, "-o", out, "--force", "--dpi", 20).exit_code == 0
    assert out.read_bytes() != before


@pytest.mark.parametrize(
    "args, message",
    [
        (["--top", 2, "--index", 1], "--top ranks every window; give it without --region, --index or --name"),
        ([], "say what to draw: --region, --index, --name or --top"),
        (["--index", 1, "--name", "x"], "give --index or --name, not both"),
    ],
)
def test_cli_usage_errors(scores, args, message):
    result = run(scores, *args)
    assert result.exit_code == 2 and message in result.output


def test_cli_warns_when_a_name_is_repeated(tmp_path):
    path = write_scores(tmp_path / "dup.h5", [("chr1", 0, 20, ".", "a"), ("chr1", 40, 60, ".", "a")])
    result = run(path, "--name", "a", "--dpi", 20)
    assert result.exit_code == 0, result.output
    assert re.search(
        r"seqlift: warning: 2 windows of .*dup\.h5 are named 'a'; drawing the first \(row 0\); "
        r"use --index to pick another",
        result.output,
    ), result.output
    assert (tmp_path / "dup.a.png").exists()


@pytest.mark.slow
def test_default_logo_is_a_readable_span_around_the_strongest_contributions(tmp_path):
    """A 1 kb window used to give a 60-inch figure; now 100 bp around the peak of |contribution| by default."""
    from PIL import Image

    from seqlift.logos import strongest_stretch

    length = 1000
    scores = write_scores(tmp_path / "wide.h5", [("chr1", 0, length, "+", "wide")], length=length)
    with h5py.File(scores, "r+") as h5:
        shap = h5["shap/seq"][:] * 0.01
        shap[0, :, 600:612] += 2.0  # the motif
        h5["shap/seq"][...] = shap
        h5["projected_shap/seq"][...] = shap * h5["raw/seq"][:]
    with h5py.File(scores, "r") as h5:
        chrom, lo, hi = strongest_stretch(h5, 0, 100)
        assert hi - lo == 100 and lo <= 600 and 612 <= hi
        assert strongest_stretch(h5, 0, 0) == ("chr1", 0, length)
    assert figure([scores], 0, span=100).get_figwidth() <= 8
    assert run(scores, "--index", 0, "--out", tmp_path / "a.png").exit_code == 0
    assert run(scores, "--index", 0, "--span", 0, "--out", tmp_path / "b.png").exit_code == 0
    assert Image.open(tmp_path / "a.png").size[0] < Image.open(tmp_path / "b.png").size[0] / 5
