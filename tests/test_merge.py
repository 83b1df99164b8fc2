"""``seqlift score --shard k-of-n`` and ``seqlift merge`` end to end: shards merged equal the unsharded run."""

import shutil

import h5py
import numpy as np
import pytest

import seqlift.merge
from seqlift.demo import demo_paths
from seqlift.shards import shard_rows

from cli_helpers import run


#: Attributes that a shard may hold differently from the unsharded run.
SHARD_ONLY = {"shard", "n_regions", "n_regions_total", "rows_done", "command", "n_delta_violations", "n_low_complexity"}
#: Chosen per run when --batch-size is left out (each shard probes its own); they do not change the scores.
PER_RUN = {"batch_size", "batch_size_probe"}


def read(path):
    with h5py.File(path, "r") as h5:
        names = []
        h5.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
        return {name: h5[name][:] for name in names}, dict(h5.attrs)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One run on 14 narrow regions (mixed strands) with gc-matched references, and its 3 shards."""
    tmp = tmp_path_factory.mktemp("shards")
    paths = demo_paths()
    fasta = shutil.copy(paths["fasta"], tmp / "genome.fa")
    rng = np.random.default_rng(3)
    with open(paths["regions"]) as src, open(tmp / "regions.bed", "w") as bed:
        for i, line in enumerate(src.read().splitlines()[:14]):
            chrom, start, _, name = line.split("\t")[:4]
            centre = int(start) + 100 + int(rng.integers(-5, 5))
            # regions narrower than the 200-bp windows: a GC index that left out only a shard's windows would differ
            bed.write(f"{chrom}\t{centre - 10}\t{centre + 10}\t{name}\t0\t{'+-.'[i % 3]}\n")
    common = [
        tmp / "regions.bed",
        "--fasta",
        fasta,
        "--model",
        paths["model_pt2"],
        "--n-refs",
        3,
        "--reference",
        "gc-matched",
        "--quiet",
    ]
    out = {"dir": tmp, "common": common, "all": tmp / "all.h5"}
    result = run("score", *common, "-o", out["all"])
    assert result.exit_code == 0, result.output
    for k in (1, 2, 3):
        out[k] = tmp / f"part{k}.h5"
        result = run("score", *common, "--shard", f"{k}-of-3", "-o", out[k])
        assert result.exit_code == 0, result.output
    return out


def test_shards_are_contiguous_blocks_of_the_unsharded_rows(runs):
    full, full_attrs = read(runs["all"])
    assert len(full["meta/row"]) == 14
    starts = []
    for k in (1, 2, 3):
        part, attrs = read(runs[k])
        rows = shard_rows(k, 3, 14)
        starts.append(rows.start)
        assert set(part) == set(full)
        for name in full:
            np.testing.assert_array_equal(part[name], full[name][rows], err_msg=name)
        assert attrs["shard"] == f"{k}-of-3" and attrs["n_regions"] == len(part["meta/row"])
        assert attrs["n_regions_total"] == 14
        differ = {
            key
            for key in full_attrs.keys() | attrs.keys()
            if key not in SHARD_ONLY | PER_RUN and str(attrs.get(key)) != str(full_attrs.get(key))
        }
        assert differ == set()
    assert starts == [0, 4, 9]


def test_merged_shards_equal_the_unsharded_run(runs, monkeypatch):
    full, full_attrs = read(runs["all"])
    monkeypatch.setattr(seqlift.merge, "_STEP_BYTES", 1)  # one row per copy step: the streaming path
    for order in ((1, 2, 3), (3, 1, 2)):
        out = runs["dir"] / f"merged{''.join(map(str, order))}.h5"
        result = run("merge", *[runs[k] for k in order], "-o", out, "--quiet")
        assert result.exit_code == 0, result.output
        merged, attrs = read(out)
        assert set(merged) == set(full)
        for name in full:
            assert merged[name].dtype == full[name].dtype, name
            np.testing.assert_array_equal(merged[name], full[name], err_msg=name)
        assert "shard" not in attrs and "n_regions_total" not in attrs
        assert list(attrs["merged_from"]) == [str(runs[k]) for k in (1, 2, 3)]
        for key in ("n_regions", "n_delta_violations", "n_low_complexity", "model_sha256", "seed", "reference"):
            assert attrs[key] == full_attrs[key], key
        assert attrs["command"].startswith("seqlift merge")
    result = run("merge", runs[1], runs[2], runs[3], "-o", out, "--quiet")
    assert result.exit_code == 1 and "exists; use --force to overwrite it" in result.output
    assert run("merge", runs[1], runs[2], runs[3], "-o", out, "--quiet", "--force").exit_code == 0


def filters(path):
    with h5py.File(path, "r") as h5:
        return {
            name: (h5[name].compression, h5[name].compression_opts, h5[name].shuffle, h5[name].chunks)
            for name in ("raw/seq", "shap/seq", "projected_shap/seq")
        }


@pytest.mark.parametrize("compression", ["gzip-1", "lzf", "none"])
def test_merged_chunks_keep_the_shards_compression(runs, compression):
    """The (N, 4, L) datasets are re-encoded chunk by chunk, across shard boundaries that split chunks."""
    common = [*runs["common"], "--batch-size", "3", "--compression", compression]
    paths = [runs["dir"] / f"{compression}-{k}.h5" for k in ("all", 1, 2)]
    assert run("score", *common, "-o", paths[0]).exit_code == 0
    for k, path in zip((1, 2), paths[1:]):
        assert run("score", *common, "--shard", f"{k}-of-2", "-o", path).exit_code == 0
    merged = runs["dir"] / f"{compression}-merged.h5"
    assert run("merge", *paths[1:], "-o", merged, "--quiet").exit_code == 0
    full, _ = read(paths[0])
    got, _ = read(merged)
    for name in full:
        np.testing.assert_array_equal(got[name], full[name], err_msg=name)
    assert filters(merged) == filters(paths[0])


def edited_copy(runs, k, name, edit):
    path = runs["dir"] / name
    shutil.copy(runs[k], path)
    with h5py.File(path, "r+") as h5:
        edit(h5)
    return path


def one_line_error(result, message):  # unlike cli_helpers.assert_one_line_error, no warning line may come first
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ") and len(result.output.strip().splitlines()) == 1, result.output
    assert message in result.output, result.output


def test_merge_refuses_shards_of_different_runs(runs):
    other_seed = edited_copy(runs, 3, "seed1.h5", lambda h5: h5.attrs.__setitem__("seed", 1))
    result = run("merge", runs[1], runs[2], other_seed, "-o", runs["dir"] / "bad.h5")
    one_line_error(result, "is not from the same run as")
    assert "seed is 1 there and 0 in" in result.output
    fewer = edited_copy(runs, 2, "fewer.h5", lambda h5: h5.__delitem__("meta/low_complexity"))
    one_line_error(
        run("merge", runs[1], fewer, runs[3], "-o", runs["dir"] / "bad.h5"),
        "hold different datasets: 'meta/low_complexity'",
    )
    unsharded = run("merge", runs["all"], runs[1], "-o", runs["dir"] / "bad.h5")
    one_line_error(unsharded, "all.h5 has no 'shard' attribute")
    assert not (runs["dir"] / "bad.h5").exists() and not (runs["dir"] / "bad.h5.partial").exists()


def test_merge_refuses_overlapping_and_incomplete_shards(runs):
    again = runs["dir"] / "part1-again.h5"
    shutil.copy(runs[1], again)
    one_line_error(
        run("merge", runs[1], again, runs[2], runs[3], "-o", runs["dir"] / "bad.h5"),
        "the shards overlap: region row 0 (0-based, input order) is in",
    )
    one_line_error(
        run("merge", runs[3], runs[1], "-o", runs["dir"] / "bad.h5"), "shard(s) 2-of-3 missing: 2 of 3 shards given"
    )
    one_line_error(
        run("merge", runs[1], runs["dir"] / "none.h5", "-o", runs["dir"] / "bad.h5"),
        f"scores file {runs['dir'] / 'none.h5'} does not exist",
    )
    text = runs["dir"] / "text.h5"
    text.write_text("not hdf5")
    one_line_error(run("merge", runs[1], text, "-o", runs["dir"] / "bad.h5"), "text.h5 is not an HDF5 scores file")
    no_rows = edited_copy(runs, 2, "no-rows.h5", lambda h5: h5.__delitem__("meta/row"))
    one_line_error(
        run("merge", runs[1], no_rows, runs[3], "-o", runs["dir"] / "bad.h5"),
        "no-rows.h5 is not a seqlift scores file: it has no dataset meta/row",
    )


@pytest.mark.parametrize("shard", ["0-of-3", "4-of-3", "a-of-b", "2of3", "1-of-0"])
def test_bad_shard_strings(runs, shard):
    result = run("score", *runs["common"], "--shard", shard, "-o", runs["dir"] / "x.h5")
    one_line_error(result, f"--shard '{shard}' is not of the form k-of-n with 1 <= k <= n")


def test_empty_shard_is_an_error(runs):
    result = run("score", *runs["common"], "--shard", "1-of-30", "-o", runs["dir"] / "x.h5")
    one_line_error(result, "--shard 1-of-30 selects no region: only 14 window(s) of")
    assert "split them into at most 14 shards" in result.output
    assert not (runs["dir"] / "x.h5").exists()
