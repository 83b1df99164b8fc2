import gzip
import os
import re
import shutil
from collections import namedtuple
from pathlib import Path

import conftest
import numpy as np
import pyfaidx
import pytest

from seqlift.errors import GenomeError
from seqlift.genome import (
    ALPHABET,
    Genome,
    fetch_one_hot,
    one_hot_decode,
    one_hot_encode,
    reverse_complement,
)
from seqlift.regions import Window, Windows

CE_FASTA = Path("/usr/share/samtools/test/mpileup/ce.fa")
IUPAC_OTHER = "NRYSWKMBDHV-."
W = namedtuple("W", "chrom start end strand")


def revcomp(seq):
    """Reverse complement of an ACGTN string, spelled out base by base."""
    pairs = {"A": "T", "C": "G", "G": "C", "T": "A", "N": "N"}
    return "".join(pairs[b] for b in reversed(seq))


def write_fasta(path, seqs, width=60):
    return conftest.write_fasta(path, seqs, width, description="some description")


def make_seqs(seed=0):
    """chr1 (500 bp) with soft-masked stretches and an N run, chr2 (300 bp)."""
    rng = np.random.default_rng(seed)
    chr1 = list(rng.choice(list(ALPHABET), 500))
    chr1[100:150] = [b.lower() for b in chr1[100:150]]
    chr1[200:230] = "N" * 30
    chr1[400:420] = [b.lower() for b in chr1[400:420]]
    chr2 = rng.choice(list(ALPHABET), 300)
    return {"chr1": "".join(chr1), "chr2": "".join(chr2)}


@pytest.fixture
def seqs():
    return make_seqs()


@pytest.fixture
def fasta(tmp_path, seqs):
    path = tmp_path / "genome.fa"
    write_fasta(path, seqs)
    return path


@pytest.fixture
def genome(fasta):
    with Genome(fasta) as g:
        yield g


# --- Genome -----------------------------------------------------------------


def test_chrom_sizes_and_path(genome, fasta):
    assert genome.chrom_sizes() == {"chr1": 500, "chr2": 300}
    assert genome.path == str(fasta)


@pytest.mark.parametrize(
    "chrom,start,end",
    [
        ("chr1", 0, 500),
        ("chr1", 90, 160),
        ("chr1", 195, 235),
        ("chr1", 59, 61),
        ("chr2", 299, 300),
    ],
)
def test_fetch_is_uppercase_slice(genome, seqs, chrom, start, end):
    assert genome.fetch(chrom, start, end) == seqs[chrom][start:end].upper()
    assert genome.fetch(chrom, start, end, ".") == seqs[chrom][start:end].upper()


def test_fetch_minus_strand_is_reverse_complement(genome, seqs):
    expected = revcomp(seqs["chr1"][95:240].upper())
    assert genome.fetch("chr1", 95, 240, "-") == expected
    assert genome.fetch("chr1", 0, 3, "-") == revcomp(seqs["chr1"][:3].upper())


def test_fetch_minus_strand_complements_iupac(tmp_path):
    path = tmp_path / "iupac.fa"
    path.write_text(">s\nACGTRYKMBDHVSWNacgtn\n")
    with Genome(path) as g:
        assert g.fetch("s", 0, 20, "-") == "NACGTNWSBDHVKMRYACGT"


def test_fetch_unknown_chromosome(genome, fasta):
    with pytest.raises(
        GenomeError,
        match=(
            rf"chromosome 'chrUn' is not in {re.escape(str(fasta))} \(has chr1, chr2\); "
            "use the FASTA's chromosome names"
        ),
    ):
        genome.fetch("chrUn", 0, 10)


@pytest.mark.parametrize("start,end", [(-1, 10), (490, 501), (10, 10), (20, 10)])
def test_fetch_out_of_bounds(genome, fasta, start, end):
    with pytest.raises(
        GenomeError,
        match=(
            rf"interval chr1:{start}-{end} does not fit in chr1 \(length 500\) of "
            rf"{re.escape(str(fasta))}; coordinates are 0-based half-open"
        ),
    ):
        genome.fetch("chr1", start, end)


def test_fetch_bad_strand(genome):
    with pytest.raises(ValueError, match=r"strand must be '\+', '-' or '\.', got 'x'"):
        genome.fetch("chr1", 0, 10, "x")


def test_fasta_without_index_gets_indexed(fasta, seqs):
    fai = Path(str(fasta) + ".fai")
    assert not fai.exists()
    with Genome(fasta) as g:
        assert g.fetch("chr2", 100, 130) == seqs["chr2"][100:130]
    rows = [line.split("\t") for line in fai.read_text().splitlines()]
    # name, length, byte offset of the sequence, bases per line, bytes per line
    header1 = len(">chr1 some description\n")
    chr1_bytes = 500 + 9  # 9 lines of 60 bases or fewer, one newline each
    assert rows == [
        ["chr1", "500", str(header1), "60", "61"],
        ["chr2", "300", str(header1 + chr1_bytes + len(">chr2 some description\n")), "60", "61"],
    ]


def test_context_manager_closes(fasta):
    with Genome(fasta) as g:
        assert g.fetch("chr1", 0, 5)
    with pytest.raises(ValueError):
        g.fetch("chr1", 0, 5)


def test_missing_fasta(tmp_path):
    path = tmp_path / "missing.fa"
    with pytest.raises(GenomeError, match=rf"^FASTA file not found: {re.escape(str(path))}; check the path$"):
        Genome(path)


def write_bgzip(path, seqs):
    from Bio import bgzf

    with bgzf.BgzfWriter(str(path), "wb") as fh:
        for name, seq in seqs.items():
            fh.write(f">{name}\n".encode())
            for i in range(0, len(seq), 60):
                fh.write((seq[i : i + 60] + "\n").encode())
    return path


def test_bgzip_fasta_is_read(tmp_path, seqs):
    path = write_bgzip(tmp_path / "genome.fa.gz", seqs)
    with Genome(path) as g:
        assert g.chrom_sizes() == {"chr1": 500, "chr2": 300}
        assert g.fetch("chr2", 250, 300, "-") == revcomp(seqs["chr2"][250:300])


def test_bgzip_fasta_not_named_gz(tmp_path, seqs):
    path = write_bgzip(tmp_path / "genome.fa", seqs)
    with pytest.raises(
        GenomeError,
        match=rf"^{re.escape(str(path))} is bgzip-compressed but its name does not end "
        r"in \.gz or \.bgz.*; rename it to end in \.gz$",
    ):
        Genome(path)


@pytest.mark.parametrize("name", ["genome.fa.gz", "genome.fa"])
def test_plain_gzip_fasta_says_to_bgzip_it(tmp_path, seqs, name):
    path = tmp_path / name
    with gzip.open(path, "wt") as fh:
        fh.write(">chr1\n" + seqs["chr1"] + "\n")
    with pytest.raises(
        GenomeError,
        match=rf"^{re.escape(str(path))} is compressed with plain gzip, which cannot be "
        r"read at random positions; recompress it with bgzip",
    ):
        Genome(path)
    assert not Path(str(path) + ".fai").exists()


@pytest.mark.parametrize(
    "content,detail",
    [
        ("chr1\t0\t10\n", "Unexpected text before the first sequence definition line"),
        ("", "does not contain a valid sequence"),
        (">a\nACGT\nAC\nACGT\n", "Line length of fasta file is not consistent"),
    ],
)
def test_not_a_fasta(tmp_path, content, detail):
    path = tmp_path / "bad.fa"
    path.write_text(content)
    with pytest.raises(
        GenomeError,
        match=(
            rf"^{re.escape(str(path))} is not a readable FASTA \(.*{detail}.*\); give an "
            "uncompressed or bgzip-compressed FASTA"
        ),
    ):
        Genome(path)


def test_duplicate_sequence_names(tmp_path):
    path = tmp_path / "dup.fa"
    path.write_text(">a\nACGT\n>a\nGG\n")
    with pytest.raises(
        GenomeError,
        match=(
            rf"{re.escape(str(path))} is not a readable FASTA \(Duplicate key \"a\"\); "
            "give a plain-text FASTA with unique sequence names"
        ),
    ):
        Genome(path)


def test_read_only_folder(tmp_path, seqs):
    folder = tmp_path / "ro"
    folder.mkdir()
    write_fasta(folder / "genome.fa", seqs)
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("chmod does not stop this user from writing (running as root)")
        with pytest.raises(
            GenomeError,
            match=(
                rf"cannot write or read the index {re.escape(str(folder / 'genome.fa'))}\.fai; "
                "copy the FASTA to a writable folder, or run `samtools faidx`"
            ),
        ):
            Genome(folder / "genome.fa")
    finally:
        folder.chmod(0o755)


@pytest.fixture
def refuse_index_writes(monkeypatch):
    """Call it to make writing an index fail from then on (as in a read-only folder, even for root)."""

    def refuse(self, mode):
        raise PermissionError(13, "Permission denied", self.indexname)

    return lambda: monkeypatch.setattr(pyfaidx.Faidx, "_open_fai", refuse)


def test_unwritable_index(fasta, refuse_index_writes):
    refuse_index_writes()
    with pytest.raises(
        GenomeError,
        match=(
            rf"^cannot write or read the index {re.escape(str(fasta))}\.fai; copy the FASTA "
            r"to a writable folder, or run `samtools faidx` on it where you can write$"
        ),
    ):
        Genome(fasta)


def make_index_stale(fasta, seqs):
    """Index the FASTA, then rewrite it with chr2 shortened, leaving an older index."""
    Genome(fasta).close()
    fai = Path(str(fasta) + ".fai")
    write_fasta(fasta, {"chr1": seqs["chr1"], "chr2": seqs["chr2"][:100]})
    os.utime(fai, (1_000_000, 1_000_000))
    return fai


def test_stale_index_is_rebuilt(fasta, seqs):
    make_index_stale(fasta, seqs)
    with Genome(fasta) as g:
        assert g.chrom_sizes() == {"chr1": 500, "chr2": 100}


def test_stale_unwritable_index_is_an_error(fasta, seqs, refuse_index_writes):
    """An index that no longer matches the FASTA and cannot be rewritten would give wrong sequences."""
    make_index_stale(fasta, seqs)
    refuse_index_writes()
    with pytest.raises(
        GenomeError,
        match=(
            rf"^{re.escape(str(fasta))}\.fai does not match {re.escape(str(fasta))} \(.*\): the FASTA changed after it "
            r"was indexed, and the index cannot be rewritten; run `samtools faidx .*` where you can write"
        ),
    ):
        Genome(fasta)


def edit_within_the_same_second(fasta, seqs, new_seqs):
    """Index ``fasta``, then rewrite it with ``new_seqs`` and give both files the same modification time."""
    Genome(fasta).close()
    fai = Path(str(fasta) + ".fai")
    write_fasta(fasta, new_seqs)
    os.utime(fasta, (1_000_000, 1_000_000))
    os.utime(fai, (1_000_000, 1_000_000))
    return fai


@pytest.mark.parametrize("change", ["shorter", "longer_last", "appended", "renamed", "line_width"])
def test_index_that_no_longer_matches_is_rebuilt_even_with_the_same_mtime(fasta, seqs, change):
    new = {
        "shorter": {"chr1": seqs["chr1"][:380], "chr2": seqs["chr2"]},
        "longer_last": {"chr1": seqs["chr1"], "chr2": seqs["chr2"] + "ACGT" * 5},
        "appended": {**seqs, "chr3": "ACGT" * 10},
        "renamed": {"chr1": seqs["chr1"], "chrB": seqs["chr2"]},
        "line_width": seqs,
    }[change]
    fai = edit_within_the_same_second(fasta, seqs, new)
    if change == "line_width":
        conftest.write_fasta(fasta, seqs, width=50, description="some description")
        os.utime(fasta, (1_000_000, 1_000_000))
    with Genome(fasta) as g:
        assert g.chrom_sizes() == {name: len(seq) for name, seq in new.items()}
        for name, seq in new.items():
            assert g.fetch(name, 0, len(seq)) == seq.upper()
    assert fai.read_text().count("\n") == len(new)


def test_copied_index_of_another_fasta_is_rebuilt(tmp_path, seqs):
    """An index copied next to a different FASTA is newer than it, yet wrong."""
    other = tmp_path / "other.fa"
    write_fasta(other, {"chr1": seqs["chr1"][:200], "chr2": seqs["chr2"]})
    Genome(other).close()
    fasta = write_fasta(tmp_path / "genome.fa", seqs)
    shutil.copy(str(other) + ".fai", str(fasta) + ".fai")
    with Genome(fasta) as g:
        assert g.chrom_sizes() == {"chr1": 500, "chr2": 300}
        assert g.fetch("chr2", 0, 300) == seqs["chr2"]


def test_older_index_that_still_matches_is_used_without_rewriting(fasta, seqs):
    Genome(fasta).close()
    fai = Path(str(fasta) + ".fai")
    os.utime(fai, (1_000_000, 1_000_000))
    before = fai.read_bytes()
    fai.chmod(0o444)
    with Genome(fasta) as g:
        assert g.fetch("chr1", 0, 500) == seqs["chr1"].upper()
    assert fai.read_bytes() == before and os.path.getmtime(fai) == 1_000_000


def test_stale_index_through_the_cli(data, tmp_path, genome_seqs):
    """The FASTA is edited within the second it was indexed: the scores come from the new sequence."""
    from click.testing import CliRunner

    from seqlift.cli import main

    fasta = Path(data["fasta"])
    Genome(fasta).close()
    changed = {**genome_seqs, "chr1": genome_seqs["chr1"][::-1] + "ACGT" * 3}
    conftest.write_fasta(fasta, changed)
    os.utime(fasta, (1_000_000, 1_000_000))
    os.utime(str(fasta) + ".fai", (1_000_000, 1_000_000))
    out = tmp_path / "scores.h5"
    result = CliRunner().invoke(
        main,
        [
            "score",
            data["bed"],
            "--fasta",
            str(fasta),
            "--model",
            data["pt2"],
            "-o",
            str(out),
            "--n-refs",
            "2",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    import h5py

    with h5py.File(out) as h5:
        assert one_hot_decode(h5["raw/seq"][0]) == changed["chr1"][100:150]


def test_existing_index_is_used_in_read_only_folder(tmp_path, seqs):
    folder = tmp_path / "ro"
    folder.mkdir()
    write_fasta(folder / "genome.fa", seqs)
    Genome(folder / "genome.fa").close()  # writes the .fai
    folder.chmod(0o555)
    try:
        with Genome(folder / "genome.fa") as g:
            assert g.fetch("chr1", 10, 20) == seqs["chr1"][10:20]
    finally:
        folder.chmod(0o755)


# --- one-hot ----------------------------------------------------------------


def test_one_hot_exact():
    X = one_hot_encode("ACGTN")
    assert X.dtype == np.uint8 and X.shape == (4, 5)
    np.testing.assert_array_equal(
        X,
        [
            [1, 0, 0, 0, 0],
            [0, 1, 0, 0, 0],
            [0, 0, 1, 0, 0],
            [0, 0, 0, 1, 0],
        ],
    )


def test_one_hot_lowercase_equals_uppercase():
    rng = np.random.default_rng(1)
    seq = "".join(rng.choice(list("ACGTN"), 200))
    np.testing.assert_array_equal(one_hot_encode(seq.lower()), one_hot_encode(seq))
    assert one_hot_encode(seq).sum() == sum(b != "N" for b in seq)


@pytest.mark.parametrize("code", list(IUPAC_OTHER + IUPAC_OTHER.lower()) + ["é", "?"])
def test_non_acgt_is_zero_column(code):
    X = one_hot_encode(f"A{code}T")
    assert X.shape == (4, 3)
    np.testing.assert_array_equal(X[:, 1], 0)
    np.testing.assert_array_equal(X[:, [0, 2]], [[1, 0], [0, 0], [0, 0], [0, 1]])


def test_one_hot_empty():
    assert one_hot_encode("").shape == (4, 0)
    assert one_hot_decode(np.zeros((4, 0), dtype=np.uint8)) == ""


def test_encode_decode_round_trip():
    rng = np.random.default_rng(2)
    seq = "".join(rng.choice(list("ACGTN"), 1000))
    assert one_hot_decode(one_hot_encode(seq)) == seq
    assert one_hot_decode(one_hot_encode("acgtRYn")) == "ACGTNNN"


def test_decode_bad_shape():
    with pytest.raises(ValueError, match=r"expected a one-hot array of shape \(4, L\), got shape \(3, 5\)"):
        one_hot_decode(np.zeros((3, 5)))


def test_reverse_complement_matches_string():
    rng = np.random.default_rng(3)
    seqs = ["".join(rng.choice(list("ACGTN"), 50)) for _ in range(6)]
    X = np.stack([one_hot_encode(s) for s in seqs])
    expected = np.stack([one_hot_encode(revcomp(s)) for s in seqs])
    np.testing.assert_array_equal(reverse_complement(X[0]), expected[0])
    np.testing.assert_array_equal(reverse_complement(X), expected)
    np.testing.assert_array_equal(reverse_complement(X.reshape(2, 3, 4, 50)), expected.reshape(2, 3, 4, 50))
    np.testing.assert_array_equal(reverse_complement(reverse_complement(X)), X)


def test_reverse_complement_returns_new_array():
    X = one_hot_encode("AACG")
    Y = reverse_complement(X)
    Y[:] = 0
    assert one_hot_decode(X) == "AACG"


def test_reverse_complement_bad_shape():
    with pytest.raises(ValueError, match=r"expected an array of shape \(\.\.\., 4, L\), got shape \(2, 5, 7\)"):
        reverse_complement(np.zeros((2, 5, 7)))


def test_fetch_one_hot(genome, seqs):
    windows = [W("chr1", 180, 240, "+"), W("chr1", 90, 150, "-"), W("chr2", 240, 300, ".")]
    X = fetch_one_hot(genome, iter(windows))
    assert X.shape == (3, 4, 60) and X.dtype == np.uint8 and X.flags.c_contiguous
    assert one_hot_decode(X[0]) == seqs["chr1"][180:240].upper()
    assert one_hot_decode(X[1]) == revcomp(seqs["chr1"][90:150].upper())
    assert one_hot_decode(X[2]) == seqs["chr2"][240:300]
    np.testing.assert_array_equal(X[0][:, 20:50], 0)  # the N run at 200..229
    np.testing.assert_array_equal(reverse_complement(X[1]), one_hot_encode(seqs["chr1"][90:150]))


def test_fetch_one_hot_empty_and_unequal(genome):
    assert fetch_one_hot(genome, []).shape == (0, 4, 0)
    with pytest.raises(
        ValueError, match=r"windows must all have the same length; chr2:0-5 has length 5, the first has 10"
    ):
        fetch_one_hot(genome, [W("chr1", 0, 10, "+"), W("chr2", 0, 5, "+")])


def string_one_hot(genome, windows):
    """What fetch_one_hot must give, from Genome.fetch's strings (pyfaidx) one window at a time."""
    return np.stack([one_hot_encode(genome.fetch(w.chrom, w.start, w.end, w.strand)) for w in windows])


@pytest.mark.parametrize("width, newline", [(60, "\n"), (7, "\n"), (50, "\r\n"), (1000, "\n")])
def test_fetch_one_hot_reads_byte_offsets_as_pyfaidx_reads_strings(tmp_path, width, newline):
    """Plain-text FASTAs are read by byte offsets (os.pread) and decoded in numba; bgzip through pyfaidx."""
    rng = np.random.default_rng(width)
    seqs = {f"c{c}": "".join(rng.choice(list("ACGTNacgtnRYKM-"), int(rng.integers(60, 400)))) for c in range(3)}
    path = tmp_path / "g.fa"
    with open(path, "w", newline="") as fh:
        for name, seq in seqs.items():
            fh.write(f">{name} some description{newline}")
            fh.writelines(seq[i : i + width] + newline for i in range(0, len(seq), width))
    bgzip = write_bgzip(tmp_path / "g.fa.gz", seqs)
    with Genome(path) as genome, Genome(bgzip) as compressed:
        for length in (1, 7, 50, 60):
            windows = []
            for _ in range(30):
                chrom = str(rng.choice(list(seqs)))
                start = int(rng.integers(0, len(seqs[chrom]) - length + 1))
                windows.append(Window(chrom, start, start + length, str(rng.choice(list("+-."))), "r", 0, 1, "x"))
            windows.append(Window("c0", len(seqs["c0"]) - length, len(seqs["c0"]), "-", "end", 0, 1, "x"))
            expected = string_one_hot(genome, windows)
            np.testing.assert_array_equal(fetch_one_hot(genome, windows), expected)
            np.testing.assert_array_equal(fetch_one_hot(genome, Windows.build(windows)), expected)
            np.testing.assert_array_equal(fetch_one_hot(compressed, windows), expected)


def test_fetch_one_hot_refuses_what_fetch_refuses(genome, fasta):
    with pytest.raises(GenomeError, match=r"chromosome 'chrX' is not in .*genome.fa \(has chr1, chr2\)"):
        fetch_one_hot(genome, [W("chr1", 0, 10, "+"), W("chrX", 0, 10, "+")])
    with pytest.raises(GenomeError, match=r"interval chr2:295-305 does not fit in chr2 \(length 300\)"):
        fetch_one_hot(genome, Windows.build([Window("chr2", 295, 305, "+", "a", 0, 1, "x")]))
    with pytest.raises(ValueError, match=r"strand must be '\+', '-' or '\.', got '\?'"):
        fetch_one_hot(genome, [W("chr1", 0, 10, "?")])
    os.truncate(fasta, 300)  # the FASTA shrank after it was opened
    with pytest.raises(GenomeError, match=r"genome.fa is shorter than its index .*genome.fa.fai says"):
        fetch_one_hot(genome, [W("chr2", 200, 260, "+")])


# --- real genome ------------------------------------------------------------


def parse_fasta(path):
    """Plain-Python FASTA parse: name (first word of the header) -> sequence."""
    seqs, name = {}, None
    for line in Path(path).read_text().splitlines():
        if line.startswith(">"):
            name = line[1:].split()[0]
            seqs[name] = []
        elif name is not None:
            seqs[name].append(line.strip())
    return {k: "".join(v) for k, v in seqs.items()}


@pytest.mark.skipif(not CE_FASTA.exists(), reason=f"{CE_FASTA} is not installed")
def test_real_c_elegans_fasta(tmp_path):
    path = tmp_path / "ce.fa"
    shutil.copyfile(CE_FASTA, path)  # without its .fai, so it is indexed here
    expected = parse_fasta(path)
    with Genome(path) as g:
        assert g.chrom_sizes() == {k: len(v) for k, v in expected.items()}
        for chrom, start in [("CHROMOSOME_I", 512_345), ("CHROMOSOME_X", 4_000)]:
            end = start + 1000
            ref = expected[chrom][start:end].upper()
            assert g.fetch(chrom, start, end) == ref
            assert g.fetch(chrom, start, end, "-") == revcomp(ref)
            X = fetch_one_hot(g, [W(chrom, start, end, "+")])
            np.testing.assert_array_equal(X[0], one_hot_encode(ref))


# --- the FASTA's SHA-256, cached per version of the file ---------------------------------------------------------


@pytest.fixture
def digest_cache(tmp_path, monkeypatch):
    """A cache folder of its own; files count as old enough to cache at once."""
    import seqlift.genome

    monkeypatch.setenv("SEQLIFT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(seqlift.genome, "_RACY_S", 0.0)
    return tmp_path / "cache" / "sha256.json"


def _plant(cache, path, fake):
    """Replace the cached digest of ``path``: a later call that returns ``fake`` did not hash the file."""
    import json

    entries = json.loads(cache.read_text())
    entries[os.path.realpath(path)]["sha256"] = fake
    cache.write_text(json.dumps(entries))


def test_fasta_digest_is_cached_and_a_rerun_does_not_rehash(tmp_path, digest_cache):
    import hashlib

    from seqlift.genome import cached_sha256

    fasta = tmp_path / "g.fa"
    fasta.write_text(">chr1\nACGTACGT\n")
    assert cached_sha256(fasta) == hashlib.sha256(fasta.read_bytes()).hexdigest()
    _plant(digest_cache, fasta, "f" * 64)
    assert cached_sha256(fasta) == "f" * 64
    link = tmp_path / "link.fa"  # the same file by another name: the same entry
    link.symlink_to(fasta)
    assert Genome(link).sha256() == "f" * 64


@pytest.mark.parametrize("edit", ["size", "mtime", "same size and mtime restored", "replaced by a copy"])
def test_an_edited_fasta_is_rehashed(tmp_path, digest_cache, edit):
    import hashlib
    import time

    from seqlift.genome import cached_sha256

    fasta = tmp_path / "g.fa"
    fasta.write_text(">chr1\nACGTACGT\n")
    cached_sha256(fasta)
    _plant(digest_cache, fasta, "f" * 64)
    before = os.stat(fasta)
    time.sleep(0.05)  # past the file system's timestamp tick
    if edit == "size":
        fasta.write_text(">chr1\nACGTACGTAA\n")
    elif edit == "mtime":
        os.utime(fasta, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
    elif edit == "same size and mtime restored":
        fasta.write_text(">chr1\nTTTTACGT\n")
        os.utime(fasta, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert os.stat(fasta).st_size == before.st_size
    else:
        copy = tmp_path / "copy.fa"
        copy.write_text(">chr1\nCCCCACGT\n")
        os.utime(copy, ns=(before.st_atime_ns, before.st_mtime_ns))
        os.replace(copy, fasta)
    assert cached_sha256(fasta) == hashlib.sha256(fasta.read_bytes()).hexdigest()


def test_a_just_written_fasta_is_not_cached(tmp_path, monkeypatch):
    import json

    from seqlift.genome import cached_sha256

    monkeypatch.setenv("SEQLIFT_CACHE_DIR", str(tmp_path / "cache"))
    fasta = tmp_path / "g.fa"
    fasta.write_text(">chr1\nACGT\n")
    cached_sha256(fasta)  # written within the last 2 s: a write in the same timestamp tick could go unseen
    cache = tmp_path / "cache" / "sha256.json"
    assert not cache.exists() or os.path.realpath(fasta) not in json.loads(cache.read_text())


def test_an_unwritable_or_damaged_cache_only_costs_the_hashing(tmp_path, monkeypatch, digest_cache):
    import hashlib

    from seqlift.genome import cached_sha256

    fasta = tmp_path / "g.fa"
    fasta.write_text(">chr1\nACGT\n")
    expected = hashlib.sha256(fasta.read_bytes()).hexdigest()
    digest_cache.parent.mkdir()
    digest_cache.write_text("{not json")
    assert cached_sha256(fasta) == expected
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("SEQLIFT_CACHE_DIR", str(blocker / "cache"))  # cannot be created
    assert cached_sha256(fasta) == expected
    assert not list(tmp_path.glob("**/*.tmp"))
