"""Tests of seqlift.references: k-mer shuffles, fixed references, seeds, and make_references."""

from collections import Counter
from typing import NamedTuple

import h5py
import numpy as np
import pytest

import seqlift
from seqlift import references
from seqlift.errors import ReferencesError, UsageError
from seqlift.references import REFERENCES, make_references
from seqlift.references.checks import identical_to_input
from seqlift.references import shuffle
from seqlift.references.shuffle import dinucleotide_shuffle, region_seed
from seqlift.references.simple import uniform, zeros


def onehot(seqs):
    """One-hot (N, 4, L) uint8 of equal-length strings; any non-ACGT letter is N."""
    X = np.zeros((len(seqs), 4, len(seqs[0])), np.uint8)
    for i, seq in enumerate(seqs):
        for p, letter in enumerate(seq):
            if letter in "ACGT":
                X[i, "ACGT".index(letter), p] = 1
    return X


def decode(x):
    """The string of one one-hot (4, L) sequence, N for all-zero columns."""
    return "".join("ACGT"[c.argmax()] if c.any() else "N" for c in x.T)


def kmer_counts(seq, k):
    """Counts of the k-mers of the non-N letters of ``seq``, read as one sequence."""
    letters = seq.replace("N", "")
    return Counter(letters[i : i + k] for i in range(len(letters) - k + 1))


def random_seqs(seed, n_seqs, length):
    """Random ACGT strings with runs of N at random places, at the ends included."""
    rng = np.random.default_rng(seed)
    seqs = []
    for _ in range(n_seqs):
        letters = rng.choice(list("ACGT"), size=length)
        for _ in range(3):
            start = rng.integers(-5, length)
            letters[max(start, 0) : start + rng.integers(1, 12)] = "N"
        seqs.append("".join(letters))
    return seqs


def all_shuffles(seq, k):
    """Every string with the k-mer counts and first k-1 letters of ``seq`` (brute force)."""
    counts = Counter(seq[i : i + k] for i in range(len(seq) - k + 1))
    found = set()

    def extend(prefix):
        if len(prefix) == len(seq):
            found.add(prefix)
        for kmer, count in list(counts.items()):
            if count and kmer[:-1] == prefix[len(prefix) - k + 1 :]:
                counts[kmer] -= 1
                extend(prefix + kmer[-1])
                counts[kmer] += 1

    extend(seq[: k - 1])
    return found


@pytest.mark.parametrize("k", [1, 2, 3])
def test_shuffle_keeps_kmer_counts_ends_and_n_columns(k):
    seqs = random_seqs(0, 12, 150)
    refs = dinucleotide_shuffle(onehot(seqs), n=8, seeds=np.arange(12), k=k)
    assert refs.shape == (12, 8, 4, 150) and refs.dtype == np.float32
    for seq, row in zip(seqs, refs):
        letters = seq.replace("N", "")
        for ref in row:
            shuffled = decode(ref)
            assert [p for p, c in enumerate(shuffled) if c == "N"] == [p for p, c in enumerate(seq) if c == "N"]
            assert kmer_counts(shuffled, k) == kmer_counts(seq, k)
            if k > 1:
                kept = shuffled.replace("N", "")
                assert kept[: k - 1] == letters[: k - 1] and kept[1 - k :] == letters[1 - k :]


def test_the_dinucleotide_path_draws_the_shuffles_of_the_general_de_bruijn_path():
    """k = 2 walks successor letters (:func:`_euler_shuffle2`); it must give the very shuffles of the general
    path, so that the references of a run stay the same."""
    rng = np.random.default_rng(6)
    for trial in range(400):
        alphabet = rng.permutation(4)[: rng.integers(1, 5)]
        letters = rng.choice(alphabet, int(rng.integers(2, 80))).astype(np.uint8)
        vid, eptr, elist = shuffle._de_bruijn(letters, 2)
        present, starts, succ = shuffle._successors(letters)
        for j in range(3):
            state = np.uint64(int(shuffle._mix(np.uint64(trial * 3 + j))))
            general, dinucleotide = letters.copy(), letters.copy()
            shuffle._euler_shuffle(letters, 2, vid, eptr, elist, state, general)
            shuffle._euler_shuffle2(letters, present, starts, succ, state, dinucleotide)
            np.testing.assert_array_equal(dinucleotide, general)


def test_shuffles_differ_from_input_and_from_each_other():
    X = onehot(random_seqs(1, 6, 200))
    refs = dinucleotide_shuffle(X, n=10, seeds=np.arange(6))
    assert not identical_to_input(X, refs).any()
    assert not (refs == X[:, None]).all(axis=(2, 3)).any()
    flat = refs.reshape(6, 10, -1)
    assert all(len({r.tobytes() for r in row}) == 10 for row in flat)


def test_low_complexity_windows_are_reported_identical():
    seqs = ["A" * 40, "AC" * 20, "NNAAAANAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAANN", random_seqs(2, 1, 40)[0]]
    X = onehot(seqs)
    refs = dinucleotide_shuffle(X, n=5, seeds=np.arange(4))
    assert identical_to_input(X, refs).tolist() == [True, True, True, False]


@pytest.mark.parametrize(
    "seqs, k", [(["A", "C"], 2), (["NNNN", "NANN"], 2), (["ACG", "ACN"], 4), (["NGNN", "TNNN"], 1)]
)
def test_too_short_rows_are_returned_unchanged(seqs, k):
    X = onehot(seqs)
    refs = dinucleotide_shuffle(X, n=3, k=k)
    assert identical_to_input(X, refs).all()


def test_same_seeds_same_output_whatever_the_batch():
    X = onehot(random_seqs(3, 5, 300))
    seeds = np.array([7, 1, 2**40, 2**64 - 1, 5], np.uint64)
    refs = dinucleotide_shuffle(X, n=6, seeds=seeds)
    np.testing.assert_array_equal(refs, dinucleotide_shuffle(X, n=6, seeds=seeds))
    np.testing.assert_array_equal(refs[3], dinucleotide_shuffle(X[3:4], n=6, seeds=seeds[3:4])[0])
    np.testing.assert_array_equal(refs[1:3], dinucleotide_shuffle(X[1:3], n=6, seeds=seeds[1:3]))
    np.testing.assert_array_equal(refs[:, :4], dinucleotide_shuffle(X, n=4, seeds=seeds))


def test_different_seeds_different_output():
    X = onehot(random_seqs(4, 1, 300) * 3)
    refs = dinucleotide_shuffle(X, n=4, seeds=np.array([0, 1, -1]))
    assert not np.array_equal(refs[0], refs[1])
    assert not np.array_equal(refs[1], refs[2])
    np.testing.assert_array_equal(dinucleotide_shuffle(X, n=4)[1], dinucleotide_shuffle(X, n=4)[0])


def test_input_dtypes_give_the_same_shuffles():
    X = onehot(random_seqs(5, 3, 100))
    seeds = np.arange(3)
    refs = dinucleotide_shuffle(X, n=4, seeds=seeds)
    for dtype in (np.float32, np.float64, bool):
        np.testing.assert_array_equal(refs, dinucleotide_shuffle(X.astype(dtype), n=4, seeds=seeds))


@pytest.mark.parametrize("seq, k", [("AACGT", 1), ("AACNAGATNNACG", 2), ("AAACAAAGAAAT", 3)])
def test_shuffles_are_roughly_uniform_over_valid_shuffles(seq, k):
    valid = all_shuffles(seq.replace("N", ""), k)
    n_seeds, n = 100, 100
    refs = dinucleotide_shuffle(onehot([seq] * n_seeds), n=n, seeds=np.arange(n_seeds), k=k)
    seen = Counter(decode(ref).replace("N", "") for ref in refs.reshape(-1, 4, len(seq)))
    assert set(seen) == valid
    expected = n_seeds * n / len(valid)
    chi2 = sum((count - expected) ** 2 / expected for count in seen.values())
    df = len(valid) - 1
    assert chi2 < df + 6 * np.sqrt(2 * df)


def test_tangermeme_shuffles_keep_the_same_dinucleotide_counts():
    torch = pytest.importorskip("torch")
    ersatz = pytest.importorskip("tangermeme.ersatz")
    seqs = [s.replace("N", "A") for s in random_seqs(6, 4, 120)]
    X = onehot(seqs)
    ours = dinucleotide_shuffle(X, n=5, seeds=np.arange(4))
    theirs = ersatz.dinucleotide_shuffle(torch.from_numpy(X.astype(np.float32)), n=5, random_state=0).numpy()
    assert theirs.shape == ours.shape
    for seq, our_row, their_row in zip(seqs, ours, theirs):
        for ref in np.concatenate([our_row, their_row]):
            assert kmer_counts(decode(ref), 2) == kmer_counts(seq, 2)


def test_zeros_and_uniform():
    X = onehot(["ACGNNT", "NNNNNN"])
    np.testing.assert_array_equal(zeros(X, n=2), np.zeros((2, 2, 4, 6), np.float32))
    refs = uniform(X, n=3, seeds=np.arange(2))
    assert refs.shape == (2, 3, 4, 6) and refs.dtype == np.float32
    np.testing.assert_array_equal(refs[0, 2], np.tile([0.25, 0.25, 0.25, 0, 0, 0.25], (4, 1)))
    assert not refs[1].any()


def test_registry_strategies_share_one_signature():
    X = onehot(random_seqs(7, 2, 50))
    assert set(REFERENCES) == {"shuffle", "zeros", "uniform"}
    for strategy in REFERENCES.values():
        refs = strategy(X, n=3, seeds=np.array([1, 2]))
        assert refs.shape == (2, 3, 4, 50) and refs.dtype == np.float32


def test_region_seed_is_stable_and_depends_on_every_field():
    seed = region_seed(42, "chr1", 1000, 3114)
    assert seed == region_seed(42, "chr1", 1000, 3114, "+")
    assert 0 <= seed < 2**63
    others = [
        region_seed(43, "chr1", 1000, 3114),
        region_seed(42, "chr2", 1000, 3114),
        region_seed(42, "chr1", 1001, 3115),
        region_seed(42, "chr1", 1000, 3115),
        region_seed(42, "chr1", 1000, 3114, "-"),
    ]
    assert len({seed, *others}) == 6
    X = onehot(random_seqs(8, 6, 40))
    refs = dinucleotide_shuffle(X, n=2, seeds=[seed, *others])
    assert refs.shape == (6, 2, 4, 40)


def with_a_at(X, i, p):
    """A copy of ``X`` with channel A of column p of row i also set."""
    X = X.copy()
    X[i, 0, p] = 1
    return X


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda X: dinucleotide_shuffle(X[:, :3]), r"X has shape \(2, 3, 8\), not \(N, 4, L\)"),
        (lambda X: dinucleotide_shuffle(X * 2), r"X\[0, :, 0\] = \[2, 0, 0, 0\] is not one-hot"),
        (lambda X: uniform(with_a_at(X, 1, 4)), r"X\[1, :, 4\] = \[1, 0, 0, 1\] is not one-hot"),
        (lambda X: dinucleotide_shuffle(X, seeds=[1, 2, 3]), r"seeds has shape \(3,\) .* shape \(2,\), or None"),
        (lambda X: dinucleotide_shuffle(X, seeds=[0.5, 1.5]), r"seeds .* dtype float64; pass one integer seed"),
        (lambda X: dinucleotide_shuffle(X, k=0), r"k=0 is not a valid k-mer length; pass an integer from 1 to 32"),
        (lambda X: zeros(X, n=0), r"n=0 is not a valid number of references per sequence; pass an integer >= 1"),
        (lambda X: identical_to_input(X, zeros(X)[..., :5]), r"refs has shape \(2, 1, 4, 5\), which does not fit X"),
    ],
)
def test_user_errors_are_one_line_and_name_the_fix(call, match):
    X = onehot(["ACGTACGT", "AANNTTGG"])
    with pytest.raises(ReferencesError, match=match) as error:
        call(X)
    assert isinstance(error.value, ValueError) and "\n" not in str(error.value)


class _Window(NamedTuple):
    chrom: str
    start: int
    end: int
    strand: str
    row: int


def _batch(n, length):
    return [_Window("chr1", 100 * i, 100 * i + length, "+-."[i % 3], i) for i in range(n)]


def test_package_names_are_the_modules_functions():
    assert references.dinucleotide_shuffle is dinucleotide_shuffle is seqlift.dinucleotide_shuffle
    assert references.region_seed is region_seed and references.identical_to_input is identical_to_input
    assert REFERENCES == {"shuffle": dinucleotide_shuffle, "zeros": zeros, "uniform": uniform}


def test_make_references_seeds_each_region_and_keeps_one_fixed_reference():
    X, batch = onehot(random_seqs(3, 4, 30)), _batch(4, 30)
    seeds = np.array([region_seed(7, w.chrom, w.start, w.end, w.strand) for w in batch], np.uint64)
    make, k = make_references("shuffle", 30, n=5, seed=7, shuffle_k=3)
    assert k == 5
    refs = make(X, batch)
    np.testing.assert_array_equal(refs, dinucleotide_shuffle(X, 5, seeds, k=3))
    np.testing.assert_array_equal(make(X[2:], batch[2:]), refs[2:])  # a row does not depend on its batch
    for kind, strategy in [("zeros", zeros), ("uniform", uniform)]:
        make, k = make_references(kind, 30, n=5, seed=7)
        assert k == 1
        np.testing.assert_array_equal(make(X, batch), strategy(X, 1))
    make, k = make_references(None, 30, n=5)
    none = make(X, batch)
    assert k == 0 and none.shape == (4, 0, 4, 30) and none.dtype == np.float32


def test_make_references_reads_a_file_per_region_or_shared(tmp_path):
    rng = np.random.default_rng(0)
    X, batch = onehot(random_seqs(4, 3, 30)), _batch(6, 30)
    per_region, shared = rng.random((6, 2, 4, 30)), rng.random((3, 4, 30))
    files = {"per_region": per_region, "shared": shared, "short": per_region[:5], "narrow": shared[..., :29]}
    for name, data in files.items():
        with h5py.File(tmp_path / f"{name}.h5", "w") as h5:
            h5["references"] = data
    make, k = make_references(f"file:{tmp_path / 'per_region.h5'}", 30, n=20, n_regions=6)
    assert k == 2
    np.testing.assert_array_equal(make(X, [batch[4], batch[1], batch[5]]), per_region[[4, 1, 5]].astype(np.float32))
    make, k = make_references(f"file:{tmp_path / 'shared.h5'}", 30, n_regions=6)
    assert k == 3
    np.testing.assert_array_equal(make(X, batch[3:]), np.repeat(shared[None].astype(np.float32), 3, axis=0))
    with pytest.raises(ReferencesError, match=r"short.h5 have shape \(5, 2, 4, 30\); expected \(6, K, 4, 30\)"):
        make_references(f"file:{tmp_path / 'short.h5'}", 30, n_regions=6)
    with pytest.raises(ReferencesError, match=r"narrow.h5 have shape \(1, 3, 4, 29\); .* or \(K, 4, 30\) shared"):
        make_references(f"file:{tmp_path / 'narrow.h5'}", 30, n_regions=6)
    with pytest.raises(ReferencesError, match=r"cannot read dataset 'references' from .*missing.h5"):
        make_references(f"file:{tmp_path / 'missing.h5'}", 30, n_regions=6)


def test_make_references_names_the_kinds_for_an_unknown_one():
    with pytest.raises(
        UsageError,
        match=r"^unknown reference 'shufle'; choose one of shuffle, zeros, uniform, "
        r"gc-matched or file:refs.h5$",
    ):
        make_references("shufle", 30)
