"""GC-matched genomic references: candidates, GC matching, exclusion, seeding, caching, errors."""

import os
import re
import shutil
import tracemalloc

import numpy as np
import pytest

from seqlift.errors import ReferencesError
from seqlift.genome import Genome, fetch_one_hot, one_hot_encode
from seqlift.references import make_references
from seqlift.references.gc import GCIndex, gc_fraction, gc_matched
from seqlift.references.shuffle import region_seed
from seqlift.regions import Region, Spans, iter_regions, read_regions, to_windows

L = 100
CE_FASTA = "/usr/share/samtools/test/mpileup/ce.fa"


def _stretch(rng, n, gc):
    """n random bases with GC fraction ``gc`` on average."""
    return "".join(rng.choice(list("ACGT"), n, p=[(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2]))


def _genome_seqs(seed=11):
    rng = np.random.default_rng(seed)
    chr1 = list(
        _stretch(rng, 3000, 0.5) + _stretch(rng, 4000, 0.7) + _stretch(rng, 4000, 0.3) + _stretch(rng, 1000, 0.5)
    )
    chr1[2500:2530] = "N" * 30
    chr1[4100:4400] = [c.lower() for c in chr1[4100:4400]]  # soft-masked
    chr2 = list(_stretch(rng, 3000, 0.5))
    chr2[1000:1100] = "N" * 100
    chr2[2017] = "R"  # an IUPAC code other than N is not a base either
    return {"chr1": "".join(chr1), "chr2": "".join(chr2), "chr3": _stretch(rng, 80, 0.5)}


def _write_fasta(path, seqs):
    with open(path, "w") as handle:
        for name, seq in seqs.items():
            handle.write(f">{name}\n" + "".join(seq[i : i + 60] + "\n" for i in range(0, len(seq), 60)))
    return str(path)


@pytest.fixture
def setup(tmp_path):
    seqs = _genome_seqs()
    fasta = _write_fasta(tmp_path / "genome.fa", seqs)
    bed = tmp_path / "peaks.bed"
    bed.write_text(
        "# header\n"
        "chr1\t400\t500\tbalanced\t0\t+\n"
        "chr1\t5000\t5100\tgc_rich\t0\t-\n"
        "chr1\t9000\t9100\tat_rich\t0\t+\n"
        "chr2\t500\t600\tchr2_balanced\t0\t.\n"
        "chr1\t1200\t1300\tbalanced2\t0\t+\n"
    )
    blacklist = tmp_path / "blacklist.bed"
    blacklist.write_text("chr1\t1500\t1620\nchr2\t2400\t2460\nchrUn\t0\t50\n")
    genome = Genome(fasta)
    windows, _ = to_windows(read_regions(bed), L, genome.chrom_sizes())
    yield {
        "seqs": seqs,
        "fasta": fasta,
        "bed": str(bed),
        "blacklist": str(blacklist),
        "genome": genome,
        "windows": windows,
        "X": fetch_one_hot(genome, windows),
        "dir": tmp_path,
    }
    genome.close()


def _oracle(seqs, length, stride, avoid):
    """(chrom, start) -> GC of every window on the stride grid with only ACGT and no overlap with ``avoid``."""
    out = {}
    for chrom, seq in seqs.items():
        for start in range(0, len(seq) - length + 1, stride):
            window = seq[start : start + length].upper()
            clear = not any(c == chrom and a < start + length and start < b for c, a, b in avoid)
            if set(window) <= set("ACGT") and clear:
                out[chrom, start] = (window.count("C") + window.count("G")) / length
    return out


def _contents(index):
    """(chrom, start) of every candidate in ``index``."""
    chroms, starts = index.sample([0.5], len(index), [0], tolerance=1)
    return sorted(zip(chroms[0].tolist(), starts[0].tolist()))


def _avoid(setup):
    return [(w.chrom, w.start, w.end) for w in setup["windows"]] + [
        (r.chrom, r.start, r.end) for r in read_regions(setup["blacklist"])
    ]


def _check_refs(seqs, windows, X, refs, index, n, seed, tolerance, avoid):
    """Every reference is the genome at the coordinates drawn for its region, GC-matched, N-free and clear of ``avoid``."""
    length = X.shape[2]
    gc = gc_fraction(X)
    assert refs.shape == (len(windows), n, 4, length) and refs.dtype == np.float32
    assert (refs.sum(axis=2) == 1).all()  # one base in every column: no N
    ref_gc = gc_fraction(refs.reshape(-1, 4, length)).reshape(len(windows), n)
    assert np.all(np.abs(ref_gc - gc[:, None]) <= tolerance + 1e-9)
    seeds = [region_seed(seed, w.chrom, w.start, w.end, w.strand) for w in windows]
    chroms, starts = index.sample(gc, n, seeds, tolerance)
    for i in range(len(windows)):
        assert len(set(zip(chroms[i], starts[i]))) == n  # drawn without replacement
        for j, (chrom, start) in enumerate(zip(chroms[i], starts[i])):
            seq = seqs[chrom][start : start + length].upper()
            assert set(seq) <= set("ACGT")
            assert abs((seq.count("C") + seq.count("G")) / length - gc[i]) <= tolerance + 1e-9
            assert not any(c == chrom and a < start + length and start < b for c, a, b in avoid)
            np.testing.assert_array_equal(refs[i, j], one_hot_encode(seq))


def test_gc_fraction_counts_bases_only():
    X = np.stack([one_hot_encode(s) for s in ("ACGN", "GGCC", "ATAT", "NNNN")])
    np.testing.assert_allclose(gc_fraction(X), [2 / 3, 1, 0, np.nan])
    with pytest.raises(ReferencesError, match=r"X has shape \(4, 4\), not \(N, 4, L\)"):
        gc_fraction(X[0])


def test_index_holds_every_clean_window_once(setup):
    seqs, genome = setup["seqs"], setup["genome"]
    blacklist = [(r.chrom, r.start, r.end) for r in read_regions(setup["blacklist"])]
    avoid = _avoid(setup)
    for exclude, length, stride, expected in [
        ((), L, None, _oracle(seqs, L, L // 2, [])),
        (setup["blacklist"], L, None, _oracle(seqs, L, L // 2, blacklist)),  # a BED path; chrUn is not in the FASTA
        (setup["windows"] + read_regions(setup["blacklist"]), L, None, _oracle(seqs, L, L // 2, avoid)),
        (avoid, 37, 7, _oracle(seqs, 37, 7, avoid)),  # tuples, another length and stride
    ]:
        index = GCIndex.build(genome, length, exclude=exclude, stride=stride)
        assert _contents(index) == sorted(expected)
        # 0.56 - 0.01 and 0.57 + 0.01 are 55 and 58 counts of 100, up to rounding: both bounds are inclusive.
        for gc, tolerance in [
            (0.0, 0.03),
            (0.25, 0.03),
            (0.5, 0.03),
            (0.71, 0.03),
            (1.0, 0.03),
            (0.56, 0.01),
            (0.57, 0.01),
        ]:
            want = sum(abs(v - gc) <= tolerance + 1e-12 for v in expected.values())
            assert index.count([gc], tolerance).tolist() == [want]
    index = GCIndex.build(genome, L, exclude=avoid)
    assert not any(c == "chr3" for c, _ in _contents(index))  # shorter than the windows
    assert index.overlapping(setup["windows"]).tolist() == [False] * 5
    # The blacklist (chr1:1500-1620) removed the candidates from 1450 to 1600; 1400-1500 and 1650-1750 remain.
    touching = [("chr1", 0, 1), ("chr1", 1500, 1650), ("chr1", 1499, 1650), ("chr1", 1500, 1651), ("chrUn", 0, 9)]
    assert index.overlapping(touching).tolist() == [True, False, True, True, False]


def test_references_are_gc_matched_genomic_windows_clear_of_scored_and_excluded(setup):
    windows, X = setup["windows"], setup["X"]
    refs = gc_matched(setup["genome"], windows, X, n=4, seed=3, tolerance=0.03, exclude=setup["blacklist"])
    index = GCIndex.build(setup["genome"], L, exclude=_avoid(setup))
    _check_refs(setup["seqs"], windows, X, refs, index, 4, 3, 0.03, _avoid(setup))
    gc = gc_fraction(X)
    assert gc[1] > 0.65 and gc[2] < 0.35  # the GC-rich and AT-rich regions got matched too


def test_references_do_not_depend_on_batch_order_or_other_regions(setup):
    genome, windows, X = setup["genome"], setup["windows"], setup["X"]
    index = GCIndex.build(genome, L, exclude=_avoid(setup))
    whole = gc_matched(genome, windows, X, n=4, seed=5, tolerance=0.05, index=index)
    backwards = gc_matched(genome, windows[::-1], X[::-1], n=4, seed=5, tolerance=0.05, index=index)
    np.testing.assert_array_equal(backwards[::-1], whole)
    for i in range(len(windows)):
        one = gc_matched(genome, windows[i : i + 1], X[i : i + 1], n=4, seed=5, tolerance=0.05, index=index)
        np.testing.assert_array_equal(one[0], whole[i])
    built_inside = gc_matched(genome, windows, X, n=4, seed=5, tolerance=0.05, exclude=setup["blacklist"])
    np.testing.assert_array_equal(built_inside, whole)
    # Two balanced regions with GC bands of many candidates draw different windows; another seed does too.
    assert abs(gc_fraction(X)[0] - gc_fraction(X)[4]) <= 0.05 and not np.array_equal(whole[0], whole[4])
    other_seed = gc_matched(genome, windows, X, n=4, seed=6, tolerance=0.05, index=index)
    assert not np.array_equal(other_seed[0], whole[0])


def test_make_references_draws_from_one_index_clear_of_windows_regions_and_exclude(setup):
    genome, windows, X = setup["genome"], setup["windows"], setup["X"]
    index = GCIndex.build(genome, L, exclude=_avoid(setup))
    whole = gc_matched(genome, windows, X, n=4, seed=5, tolerance=0.05, index=index)
    blacklist = read_regions(setup["blacklist"])
    for regions, exclude in [(read_regions(setup["bed"]), setup["blacklist"]), (blacklist, None)]:
        make, k = make_references(
            "gc-matched",
            L,
            n=4,
            seed=5,
            genome=genome,
            windows=windows,
            regions=regions,
            tolerance=0.05,
            exclude=exclude,
        )
        assert k == 4
        np.testing.assert_array_equal(make(X, windows), whole)
        np.testing.assert_array_equal(make(X[3:], windows[3:]), whole[3:])


def test_make_references_takes_windows_and_regions_as_columns(setup):
    """The run passes its windows as columns (Windows) and the regions as where they lie (Spans, recorded as the
    BED streams by): the same index, the same references, as lists of windows and regions."""
    genome, windows, X = setup["genome"], setup["windows"], setup["X"]
    spans = Spans()
    to_windows(spans.passing(iter_regions(setup["bed"])), L, genome.chrom_sizes())
    options = dict(n=4, seed=5, genome=genome, tolerance=0.05, exclude=setup["blacklist"])
    listed, _ = make_references("gc-matched", L, windows=list(windows), regions=read_regions(setup["bed"]), **options)
    columns, _ = make_references("gc-matched", L, windows=windows, regions=spans, **options)
    np.testing.assert_array_equal(columns(X, windows), listed(X, windows))


def test_the_index_of_a_run_with_many_windows_makes_no_object_per_window(setup):
    """Genome-wide runs leave 100,000s of windows out of the index: a Window object and a tuple for each took
    about 600 bytes a window at the peak; the columns take under 150. The check that each window has its
    candidates (tolerance 1: chr1 is covered by windows, the candidates lie elsewhere) reads them in blocks."""
    genome, n = setup["genome"], 20_000
    regions = (
        Region("chr1", 7 * i % 11_000, 7 * i % 11_000 + 100, f"t{i:06d}", ".", None, i + 1, "x.bed") for i in range(n)
    )
    windows, _ = to_windows(regions, L, genome.chrom_sizes())
    GCIndex.build(genome, L, cache=True)  # the scan of the genome, cached: not what is measured
    tracemalloc.start()
    try:
        make_references("gc-matched", L, n=2, genome=genome, windows=windows, tolerance=1.0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak / n < 150, peak / n


def test_too_few_candidates_names_region_gc_tolerance_count_and_fix(setup):
    w, X = setup["windows"][1], setup["X"][1:2]
    gc = gc_fraction(X)[0]
    avoid = [(w.chrom, w.start, w.end)] + [(r.chrom, r.start, r.end) for r in read_regions(setup["blacklist"])]
    found = sum(abs(v - gc) <= 0.001 for v in _oracle(setup["seqs"], L, L // 2, avoid).values())
    assert 0 < found < 50
    message = (
        f"Region gc_rich ({setup['bed']} line 3, window chr1:{w.start}-{w.end}): only {found} genomic windows "
        f"of length 100 have GC within 0.001 of {gc:.3f}, fewer than the 50 references needed; "
        "raise --gc-tolerance or lower --n-refs"
    )
    with pytest.raises(ReferencesError, match=re.escape(message)):
        gc_matched(setup["genome"], [w], X, n=50, seed=0, tolerance=0.001, exclude=setup["blacklist"])
    index = GCIndex.build(setup["genome"], L, exclude=_avoid(setup))
    with pytest.raises(
        ReferencesError, match=r"^only \d+ genomic windows of length 100 have GC within 0.001 of 0.\d{3}, "
    ):
        index.sample(gc_fraction(setup["X"]), 50, np.zeros(5, np.int64), tolerance=0.001)


def test_unusable_windows_and_indexes_are_errors(setup):
    genome, windows, X = setup["genome"], setup["windows"], setup["X"]
    all_n = X.copy()
    all_n[2] = 0
    with pytest.raises(
        ReferencesError, match=r"Region at_rich \(.*peaks.bed line 4, window chr1:9000-9100\) has no A, C, G or T"
    ):
        gc_matched(genome, windows, all_n, n=2, seed=0)
    loose = GCIndex.build(genome, L, exclude=setup["blacklist"])
    with pytest.raises(
        ReferencesError, match=r"Region balanced \(.*line 2, window chr1:400-500\) overlaps candidate windows"
    ):
        gc_matched(genome, windows, X, n=2, seed=0, index=loose)
    with pytest.raises(
        ReferencesError, match=r"the GC index has windows of length 60, the scored windows have length 100"
    ):
        gc_matched(genome, windows, X, n=2, seed=0, index=GCIndex.build(genome, 60))
    with pytest.raises(
        ReferencesError, match=r"tolerance=-0.1 is not a valid GC tolerance; pass a fraction from 0 to 1"
    ):
        gc_matched(genome, windows, X, n=2, seed=0, tolerance=-0.1)
    with pytest.raises(ReferencesError, match=r"X has shape \(4, 4, 100\), which does not fit 5 windows"):
        gc_matched(genome, windows, X[:4], n=2, seed=0)


def test_cache_is_reused_and_rebuilt_when_the_genome_changes(setup, monkeypatch):
    genome, fasta = setup["genome"], setup["fasta"]
    first = GCIndex.build(genome, L, cache=True)
    assert os.path.isfile(fasta + ".gc-L100-s50.npz")
    explicit = setup["dir"] / "index.npz"
    GCIndex.build(genome, L, exclude=setup["blacklist"], cache=explicit)

    real_fetch = Genome.fetch
    monkeypatch.setattr(Genome, "fetch", lambda *a, **k: pytest.fail("the genome was read again"))
    assert _contents(GCIndex.build(genome, L, cache=True)) == _contents(first)
    # The cache holds the candidates before exclusion, so another exclude set reuses it.
    with_scored = GCIndex.build(genome, L, exclude=_avoid(setup), cache=explicit)
    assert _contents(with_scored) == sorted(_oracle(setup["seqs"], L, L // 2, _avoid(setup)))

    calls = []
    monkeypatch.setattr(Genome, "fetch", lambda *a, **k: calls.append(a[1:]) or real_fetch(*a, **k))
    with pytest.warns(UserWarning, match=r"cannot write the GC index cache .*missing/index.npz"):
        GCIndex.build(genome, L, cache=setup["dir"] / "missing" / "index.npz")
    GCIndex.build(genome, 60, cache=explicit)  # another length: stale, rebuilt
    assert calls
    calls.clear()
    changed = dict(setup["seqs"], chr1=setup["seqs"]["chr1"][:4000])
    _write_fasta(fasta, changed)
    os.remove(fasta + ".fai")
    with Genome(fasta) as new_genome:
        rebuilt = GCIndex.build(new_genome, L, cache=True)
        assert calls and _contents(rebuilt) == sorted(_oracle(changed, L, L // 2, []))
        calls.clear()
        GCIndex.build(new_genome, L, cache=True)
        assert not calls


@pytest.mark.skipif(not os.path.isfile(CE_FASTA), reason="samtools test data (C. elegans) not installed")
def test_real_genome(tmp_path):
    fasta = shutil.copy(CE_FASTA, tmp_path / "ce.fa")
    rng = np.random.default_rng(0)
    starts = np.sort(rng.choice(np.arange(0, 1_000_000, 500), 40, replace=False))
    bed = tmp_path / "peaks.bed"
    bed.write_text("".join(f"CHROMOSOME_I\t{s}\t{s + 500}\tp{k}\t0\t{'+-'[k % 2]}\n" for k, s in enumerate(starts)))
    with Genome(fasta) as genome:
        seqs = {c: genome.fetch(c, 0, n) for c, n in genome.chrom_sizes().items()}
        windows, _ = to_windows(read_regions(bed), 500, genome.chrom_sizes())
        X = fetch_one_hot(genome, windows)
        index = GCIndex.build(genome, 500, exclude=windows, cache=True)
        assert os.path.isfile(f"{fasta}.gc-L500-s250.npz") and len(index) > 3000
        refs = gc_matched(genome, windows, X, n=8, seed=1, index=index)
        avoid = [(w.chrom, w.start, w.end) for w in windows]
        _check_refs(seqs, windows, X, refs, index, 8, 1, 0.02, avoid)
