import gzip
import re
import tracemalloc

import numpy as np
import pybedtools
import pytest

from seqlift.errors import RegionError
from seqlift.regions import Region, Spans, Window, Windows, read_regions, to_windows, window_columns, write_skipped

SIZES = {"chr1": 5000, "chr2": 1500}


def write_bed(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


@pytest.fixture
def peaks(tmp_path):
    """A BED mixing BED3, BED6 and narrowPeak lines with comments and headers."""
    return write_bed(
        tmp_path / "peaks.bed",
        [
            "track name=peaks description='test'",  # 1
            "browser position chr1:1-1000",  # 2
            "# a comment",  # 3
            "chr1\t100\t300",  # 4  BED3
            "",  # 5
            "chr1\t1000\t1200\tp2\t0\t-",  # 6  BED6, minus strand
            "chr2\t200\t400\t.\t5\t+",  # 7  name '.'
            "chr1\t2000\t2500\tp4\t0\t.\t8.1\t5.2\t3.3\t120",  # 8  narrowPeak summit
            "chr2\t500\t701\tp5\t0\t+\t8.1\t5.2\t3.3\t-1",  # 9  narrowPeak no summit
            "chr1\t10\t20\tp6",  # 10 BED4
        ],
    )


def test_read_regions_fields(peaks):
    regions = read_regions(peaks)
    path = str(peaks)
    assert regions == [
        Region("chr1", 100, 300, "chr1:100-300", ".", None, 4, path),
        Region("chr1", 1000, 1200, "p2", "-", None, 6, path),
        Region("chr2", 200, 400, "chr2:200-400", "+", None, 7, path),
        Region("chr1", 2000, 2500, "p4", ".", 2120, 8, path),
        Region("chr2", 500, 701, "p5", "+", None, 9, path),
        Region("chr1", 10, 20, "p6", ".", None, 10, path),
    ]


def test_read_regions_gzip_and_crlf(tmp_path, peaks):
    gz = tmp_path / "peaks.bed.gz"
    crlf = tmp_path / "crlf.bed"
    with gzip.open(gz, "wt") as f:
        f.write(peaks.read_text())
    crlf.write_bytes(peaks.read_text().replace("\n", "\r\n").encode())
    plain = read_regions(peaks)
    for other in (gz, crlf):
        regions = read_regions(other)
        assert [r.path for r in regions] == [str(other)] * len(plain)
        assert [(r.chrom, r.start, r.end, r.name, r.strand, r.summit, r.line) for r in regions] == [
            (r.chrom, r.start, r.end, r.name, r.strand, r.summit, r.line) for r in plain
        ]


def test_read_regions_agrees_with_pybedtools(tmp_path):
    """pybedtools as an oracle on a valid, seeded BED6."""
    rng = np.random.default_rng(0)
    lines = []
    for i in range(50):
        start = int(rng.integers(0, 4000))
        lines.append(
            f"chr{rng.integers(1, 3)}\t{start}\t{start + int(rng.integers(1, 900))}"
            f"\tr{i}\t{rng.integers(0, 1000)}\t{rng.choice(['+', '-', '.'])}"
        )
    path = write_bed(tmp_path / "random.bed", ["# header"] + lines)
    ours = [(r.chrom, r.start, r.end, r.name, r.strand) for r in read_regions(path)]
    theirs = [(iv.chrom, iv.start, iv.end, iv.name, iv.strand) for iv in pybedtools.BedTool(str(path))]
    assert ours == theirs
    assert [r.line for r in read_regions(path)] == list(range(2, 52))


@pytest.mark.parametrize(
    "line,message",
    [
        (
            "chr1\t100",
            r"line 3: expected at least 3 tab-separated columns \(chrom, start, end\), found 2; "
            r"give at least chrom, start and end",
        ),
        (
            "chr1 100 200",
            r"line 3: expected at least 3 tab-separated columns \(chrom, start, end\), found 1; "
            r"separate the columns with tabs",
        ),
        ("chr1\tabc\t200", r"line 3: start \('abc'\) is not an integer; fix the BED line"),
        ("chr1\t100\t2e3", r"line 3: end \('2e3'\) is not an integer; fix the BED line"),
        ("chr1\t1.5\t200", r"line 3: start \('1.5'\) is not an integer"),
        ("chr1\t-5\t200", r"line 3: start \(-5\) is negative; BED starts are 0-based and at least 0"),
        ("chr1\t1000\t900", r"line 3: end \(900\) is not greater than start \(1000\); fix the BED line"),
        ("chr1\t1000\t1000", r"line 3: end \(1000\) is not greater than start \(1000\); fix the BED line"),
        ("\t10\t20", r"line 3: the chromosome name \(column 1\) is empty; fix the BED line"),
        ("chr1\t10\t20\tx\t0\t*", r"line 3: strand \(column 6\) is '\*'; use '\+', '-' or '\.'"),
        ("chr1\t10\t20\tx\t0\t", r"line 3: strand \(column 6\) is ''; use '\+', '-' or '\.'"),
        (
            "chr1\t10\t20\tx\t0\t+\t1\t1\t1\t10",
            r"line 3: summit offset \(10\) is outside the region \(length 10\); give an offset from 0 to 9, or -1 for none",
        ),
        ("chr1\t10\t20\tx\t0\t+\t1\t1\t1\t-2", r"line 3: summit offset \(-2\) is outside the region \(length 10\)"),
        ("chr1\t10\t20\tx\t0\t+\t1\t1\t1\tmid", r"line 3: summit offset \(column 10\) \('mid'\) is not an integer"),
    ],
)
def test_malformed_lines(tmp_path, line, message):
    path = write_bed(tmp_path / "bad.bed", ["# header", "chr1\t0\t10", line, "chr1\t0\t10"])
    with pytest.raises(RegionError, match="^" + re.escape(str(path)) + " " + message):
        read_regions(path)


def test_missing_bed(tmp_path):
    path = tmp_path / "nope.bed"
    with pytest.raises(RegionError, match=rf"^BED file not found: {re.escape(str(path))}; check the path$"):
        read_regions(path)


def test_directory_instead_of_bed(tmp_path):
    with pytest.raises(
        RegionError,
        match=rf"^cannot read BED file {re.escape(str(tmp_path))} \(.*\); "
        "give a readable plain or gzip-compressed BED$",
    ):
        read_regions(tmp_path)


@pytest.mark.parametrize("lines", [[], ["# only a comment", "", "track name=x"]])
def test_empty_bed(tmp_path, lines):
    path = write_bed(tmp_path / "empty.bed", lines)
    with pytest.raises(
        RegionError,
        match=(
            rf"^{re.escape(str(path))} has no regions \(only blank, comment, track or browser lines\); "
            "give a BED file with at least one region$"
        ),
    ):
        read_regions(path)


# --- windows ----------------------------------------------------------------


def test_windows_midpoint_and_summit(peaks):
    regions = read_regions(peaks)
    windows, skipped = to_windows(regions[:5], 100, SIZES)
    assert skipped == []
    path = str(peaks)
    assert windows == [
        Window("chr1", 150, 250, ".", "chr1:100-300", 0, 4, path),  # midpoint 200
        Window("chr1", 1050, 1150, "-", "p2", 1, 6, path),  # midpoint 1100
        Window("chr2", 250, 350, "+", "chr2:200-400", 2, 7, path),  # midpoint 300
        Window("chr1", 2070, 2170, ".", "p4", 3, 8, path),  # summit 2000 + 120
        Window("chr2", 550, 650, "+", "p5", 4, 9, path),  # summit -1: midpoint 600
    ]


def test_windows_act_as_a_sequence_of_window(peaks):
    windows, _ = to_windows(read_regions(peaks)[:5], 100, SIZES)
    objects = list(windows)
    assert isinstance(windows, Windows) and len(windows) == 5 and all(type(w) is Window for w in objects)
    assert windows[-1] == objects[4] and windows[1:4] == objects[1:4] and windows[::2] == objects[::2]
    assert windows[np.array([3, 0])] == [objects[3], objects[0]]
    assert type(windows[np.int64(2)].start) is int and windows[0:0] == [] and not windows[0:0]
    with pytest.raises(IndexError):
        windows[5]
    assert windows + objects[:1] == objects + objects[:1] and objects[:1] + windows == objects[:1] + objects
    columns, expected = window_columns(windows), window_columns(objects)
    assert list(columns) == ["chrom", "start", "end", "strand", "name", "row", "line"]
    for name in columns:
        assert columns[name].dtype == expected[name].dtype and columns[name].tolist() == expected[name].tolist()
    assert window_columns(windows[1:3])["name"].tolist() == ["p2", "chr2:200-400"]


def test_windows_of_many_regions_take_little_memory(tmp_path):
    """Genome-wide tilings have millions of windows; a list of Window objects took about 600 bytes each (57 MiB
    for 100,000), the columns take under 80 with a name of 7 characters."""
    n, path = 100_000, str(tmp_path / "tiles.bed")
    regions = (Region("chr1", 10 * i, 10 * i + 10, f"t{i:06d}", ".", None, i + 1, path) for i in range(n))
    tracemalloc.start()
    try:
        windows, _ = to_windows(regions, 10, {"chr1": 10 * n})
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(windows) == n and windows[n - 1] == Window(
        "chr1", 10 * n - 10, 10 * n, ".", f"t{n - 1:06d}", n - 1, n, path
    )
    assert held / n < 80, held / n


def test_windows_odd_width(peaks):
    region = read_regions(peaks)[4]  # chr2:500-701, midpoint (500 + 701) // 2 = 600
    (window,), _ = to_windows([region], 101, SIZES)
    assert (window.start, window.end) == (550, 651)
    (window,), _ = to_windows([region], 1, SIZES)
    assert (window.start, window.end) == (600, 601)


def test_windows_touching_chromosome_ends_are_kept(tmp_path):
    path = write_bed(tmp_path / "edges.bed", ["chr2\t0\t100", "chr2\t1400\t1500"])
    windows, skipped = to_windows(read_regions(path), 100, SIZES)
    assert [(w.start, w.end) for w in windows] == [(0, 100), (1400, 1500)]
    assert skipped == []


@pytest.fixture
def invalid(tmp_path):
    return write_bed(
        tmp_path / "invalid.bed",
        [
            "chr1\t100\t300\tok1",  # 1
            "#",  # 2
            "chrUn\t5\t10\tun",  # 3 unknown chromosome
            "chr1\t0\t40\tstart",  # 4 window -30..70
            "chr2\t1000\t3000\tend",  # 5 window 1950..2050 past 1500
            "chr2\t1449\t1451\tend1",  # 6 window 1400..1500: fits
            "chr2\t1450\t1452\tend2",  # 7 window 1401..1501: one past the end
            "chr1\t400\t600\tok2",  # 8
        ],
    )


def test_unknown_chromosome_error(invalid):
    regions = read_regions(invalid)
    with pytest.raises(
        RegionError,
        match=(
            rf"^Region chrUn:5-10 \({re.escape(str(invalid))} line 3\): chromosome 'chrUn' is not in "
            r"the FASTA \(has chr1, chr2\); use --skip-invalid to skip such regions$"
        ),
    ):
        to_windows(regions, 100, SIZES)


def test_unknown_chromosome_lists_few_names(invalid):
    sizes = {f"chr{i}": 1000 for i in range(1, 9)}
    with pytest.raises(RegionError, match=r"\(has chr1, chr2, chr3, chr4, chr5, \.\.\.\)"):
        to_windows(read_regions(invalid)[1:2], 100, sizes)


def test_window_off_start_error(invalid):
    region = read_regions(invalid)[2]
    with pytest.raises(
        RegionError,
        match=(
            rf"^Region chr1:0-40 \({re.escape(str(invalid))} line 4\): its window chr1:-30-70 runs past "
            r"the start of chr1 \(position 0\); use --skip-invalid to skip such regions$"
        ),
    ):
        to_windows([region], 100, SIZES)


@pytest.mark.parametrize(
    "row,line,coords,window",
    [
        (3, 5, "chr2:1000-3000", "chr2:1950-2050"),
        (5, 7, "chr2:1450-1452", "chr2:1401-1501"),
    ],
)
def test_window_off_end_error(invalid, row, line, coords, window):
    region = read_regions(invalid)[row]
    with pytest.raises(
        RegionError,
        match=(
            rf"^Region {coords} \({re.escape(str(invalid))} line {line}\): its window {window} runs past "
            r"the end of chr2 \(length 1500\); use --skip-invalid to skip such regions$"
        ),
    ):
        to_windows([region], 100, SIZES)


def test_skip_invalid(invalid):
    regions = read_regions(invalid)
    windows, skipped = to_windows(regions, 100, SIZES, skip_invalid=True)
    assert [(w.name, w.row, w.line, w.start, w.end) for w in windows] == [
        ("ok1", 0, 1, 150, 250),
        ("end1", 4, 6, 1400, 1500),
        ("ok2", 6, 8, 450, 550),
    ]
    assert [(r.name, r.line, reason) for r, reason in skipped] == [
        ("un", 3, "unknown chromosome"),
        ("start", 4, "window off chromosome end"),
        ("end", 5, "window off chromosome end"),
        ("end2", 7, "window off chromosome end"),
    ]
    assert [r for r, _ in skipped] == [regions[i] for i in (1, 2, 3, 5)]


def test_write_skipped(invalid, tmp_path):
    _, skipped = to_windows(read_regions(invalid), 100, SIZES, skip_invalid=True)
    out = tmp_path / "skipped.tsv"
    write_skipped(out, skipped)
    assert out.read_text() == (
        "#chrom\tstart\tend\tname\tline\treason\n"
        "chrUn\t5\t10\tun\t3\tunknown chromosome\n"
        "chr1\t0\t40\tstart\t4\twindow off chromosome end\n"
        "chr2\t1000\t3000\tend\t5\twindow off chromosome end\n"
        "chr2\t1450\t1452\tend2\t7\twindow off chromosome end\n"
    )
    write_skipped(out, [])
    assert out.read_text() == "#chrom\tstart\tend\tname\tline\treason\n"


@pytest.mark.parametrize("width", [0, -10, 100.0, "100"])
def test_bad_width(peaks, width):
    with pytest.raises(
        RegionError,
        match=(
            rf"^window width must be a positive integer, got {re.escape(repr(width))}; "
            "give the model's input length$"
        ),
    ):
        to_windows(read_regions(peaks), width, SIZES)


def test_numpy_integer_width(peaks):
    windows, _ = to_windows(read_regions(peaks)[:1], np.int64(100), SIZES)
    assert (windows[0].start, windows[0].end) == (150, 250)
    assert type(windows[0].end) is int


def test_spans_record_where_regions_lie_as_they_stream_by():
    """gc-matched references leave every region of the BED out of their index: Spans keeps where they lie, in
    order (skipped ones too), without holding the regions."""
    regions = [
        Region("chr2", 5, 300, "a", "+", None, 1, "x.bed"),
        Region("chrUn", 0, 50, "b", ".", None, 2, "x.bed"),
        Region("chr1", 900, 1000, "c", "-", 950, 3, "x.bed"),
    ]
    spans = Spans()
    assert [c.tolist() for c in spans.intervals()] == [[], [], []]
    _, skipped = to_windows(spans.passing(iter(regions)), 100, SIZES, skip_invalid=True)
    chrom, start, end = spans.intervals()
    assert len(spans) == 3 and [s[0].name for s in skipped] == ["b"]
    assert chrom.tolist() == ["chr2", "chrUn", "chr1"] and chrom.dtype == object
    assert start.tolist() == [5, 0, 900] and end.tolist() == [300, 50, 1000] and start.dtype == np.int64


def test_windows_give_their_intervals_as_columns():
    windows, _ = to_windows(
        [Region("chr2", 100, 200, "a", "+", None, 1, "x.bed"), Region("chr1", 0, 100, "b", ".", None, 2, "x.bed")],
        50,
        SIZES,
    )
    chrom, start, end = windows.intervals()
    assert chrom.tolist() == ["chr2", "chr1"] and start.tolist() == [125, 25] and end.tolist() == [175, 75]
    assert windows[1:].intervals()[0].tolist() == ["chr1"]
