"""The score file's writer: fragments, chunk encoding for every compression, assembly."""

import time
from collections import namedtuple

import h5py
import numpy as np
import pytest

from seqlift import writers
from seqlift.writers import COMPRESSIONS, ScoreWriter, chunk_rows

W = namedtuple("W", "chrom start end strand name row line")


def windows(n, length):
    return [W("chr1", 10 * i, 10 * i + length, "+-"[i % 2], f"r{i}", i, i + 1) for i in range(n)]


@pytest.mark.parametrize("compression", ["gzip-1", "gzip-3", "gzip-4", "gzip-9", "lzf", "none"])
@pytest.mark.parametrize("n, batch", [(7, 3), (8, 4), (5, 32), (1, 1)])
def test_fragments_assemble_to_the_rows_written(tmp_path, compression, n, batch):
    rng = np.random.default_rng(n)
    length = 13
    X = np.eye(4, dtype=np.uint8)[rng.integers(0, 4, (n, length))].transpose(0, 2, 1).copy()
    shap = rng.normal(size=(n, 4, length)).astype(np.float32)
    pred = rng.normal(size=n).astype(np.float32)
    out = tmp_path / "s.h5"
    writer = ScoreWriter(out, windows(n, length), length, {"compression": compression}, batch)
    for start in range(0, n, batch):
        rows = slice(start, start + batch)
        writer.write(
            start,
            {
                "raw/seq": X[rows],
                "shap/seq": shap[rows],
                "projected_shap/seq": shap[rows] * X[rows],
                "meta/prediction": pred[rows],
            },
        )
    writer.finish()
    with h5py.File(out, "r") as h5:
        np.testing.assert_array_equal(h5["raw/seq"][:], X)
        np.testing.assert_array_equal(h5["shap/seq"][:], shap)
        np.testing.assert_array_equal(h5["projected_shap/seq"][:], shap * X)
        np.testing.assert_array_equal(h5["meta/prediction"][:], pred)
        assert h5["meta/finite"][:].all() and h5.attrs["rows_done"] == n
        assert h5["shap/seq"].chunks[0] == chunk_rows(min(batch, n))
        expected = {"none": None, "lzf": "lzf"}.get(compression, "gzip")
        assert h5["shap/seq"].compression == expected
        assert h5.attrs["compression"] == compression
    assert not (tmp_path / "s.h5.partial").exists()


def test_unknown_compression_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown compression 'zstd'"):
        ScoreWriter(tmp_path / "s.h5", windows(2, 5), 5, {"compression": "zstd"})
    assert "gzip-1" in COMPRESSIONS


def test_a_damaged_fragment_is_set_aside_and_rescored(tmp_path, monkeypatch):
    monkeypatch.setattr(writers, "FLUSH_S", 0.0)  # a fragment per batch
    n, length = 6, 9
    attrs = {"seed": 0}
    writer = ScoreWriter(tmp_path / "s.h5", windows(n, length), length, attrs, 2)
    for start in (0, 2, 4):
        writer.write(start, {"meta/prediction": np.full(2, start, np.float32)})
    writer.close()
    frag = tmp_path / "s.h5.partial" / "rows-0000000002-0000000004.npz"
    data = bytearray(frag.read_bytes())
    data[len(data) // 2] ^= 0xFF
    frag.write_bytes(bytes(data))
    again = ScoreWriter(tmp_path / "s.h5", windows(n, length), length, attrs, 2, resume=True)
    assert again.has(0) and not again.has(2) and again.has(4)
    assert (tmp_path / "s.h5.partial" / "rows-0000000002-0000000004.npz.bad").exists()
    again.close()


def fragment_names(out):
    return sorted(f.name for f in (out.parent / (out.name + ".partial")).glob("rows-*.npz"))


def test_batches_that_come_fast_share_a_fragment_and_assemble_and_resume_as_batches(tmp_path):
    """The first batch is written at once (how fast batches come is not known yet); those that follow within
    FLUSH_S wait and go to disk together, and every row reads back as written, straight or resumed."""
    n, length, batch = 23, 11, 4
    rows = _rows(np.random.default_rng(3), n, length)
    out = tmp_path / "s.h5"
    writer = ScoreWriter(out, windows(n, length), length, {"seed": 0}, batch)
    for start in range(0, 12, batch):
        writer.write(start, _batch(rows, start, batch))
    assert fragment_names(out) == ["rows-0000000000-0000000004.npz"]  # rows 4-12 wait in memory
    assert writer.has(0) and not writer.has(4) and writer.rows_done == 4
    writer.close()  # a run that stops writes the batches it holds
    assert fragment_names(out) == ["rows-0000000000-0000000004.npz", "rows-0000000004-0000000012.npz"]
    again = ScoreWriter(out, windows(n, length), length, {"seed": 0}, batch, resume=True)
    assert [again.has(s) for s in range(0, n, batch)] == [True, True, True, False, False, False]
    for start in range(12, n, batch):
        again.write(start, _batch(rows, start, batch))
    again.finish()
    with h5py.File(out, "r") as h5:
        for name, values in rows.items():
            np.testing.assert_array_equal(h5[name][:], values)


def test_a_damaged_fragment_of_several_batches_is_rescored_whole(tmp_path):
    n, length, batch = 12, 7, 2
    rows = _rows(np.random.default_rng(4), n, length)
    out = tmp_path / "s.h5"
    with ScoreWriter(out, windows(n, length), length, {"seed": 0}, batch) as writer:
        for start in range(0, n, batch):
            writer.write(start, _batch(rows, start, batch))
    frag = out.parent / "s.h5.partial" / "rows-0000000002-0000000012.npz"
    data = bytearray(frag.read_bytes())
    data[len(data) // 3] ^= 0xFF
    frag.write_bytes(bytes(data))
    with ScoreWriter(out, windows(n, length), length, {"seed": 0}, batch, resume=True) as again:
        assert [again.has(s) for s in range(0, n, batch)] == [True] + [False] * 5
        assert frag.with_name(frag.name + ".bad").exists()
        for start in range(2, n, batch):
            again.write(start, _batch(rows, start, batch))
        again.finish()
    with h5py.File(out, "r") as h5:
        np.testing.assert_array_equal(h5["shap/seq"][:], rows["shap/seq"])


def test_a_batch_that_comes_slower_than_flush_s_is_on_disk_when_it_is_handed_over(tmp_path, monkeypatch):
    monkeypatch.setattr(writers, "FLUSH_S", 0.05)
    n, length = 6, 5
    out = tmp_path / "s.h5"
    writer = ScoreWriter(out, windows(n, length), length, {"seed": 0}, 2)
    for start in (0, 2, 4):
        time.sleep(0.06)
        writer.write(start, {"meta/prediction": np.full(2, start, np.float32)})
        assert writer.has(start) and fragment_names(out)[-1] == f"rows-{start:010d}-{start + 2:010d}.npz"
    writer.finish()


def test_batches_that_come_fast_are_written_at_once_past_flush_bytes(tmp_path, monkeypatch):
    monkeypatch.setattr(writers, "FLUSH_BYTES", 1)
    n, length, batch = 8, 9, 2
    rows, out = _rows(np.random.default_rng(5), n, length), tmp_path / "s.h5"
    writer = ScoreWriter(out, windows(n, length), length, {"seed": 0}, batch)
    for start in range(0, n, batch):
        writer.write(start, _batch(rows, start, batch))
        assert writer.has(start) and fragment_names(out)[-1] == f"rows-{start:010d}-{start + 2:010d}.npz"
    writer.finish()


def test_the_batches_held_by_all_writers_together_stay_under_flush_bytes(tmp_path, monkeypatch):
    """``--target all`` writes one file a target: ten writers, each holding batches up to the cap, would hold
    ten times it."""
    n, length, batch = 40, 50, 4
    rows = _rows(np.random.default_rng(6), n, length)
    probe = ScoreWriter(tmp_path / "probe.h5", windows(n, length), length, {"seed": 0}, batch)
    probe.write(0, _batch(rows, 0, batch))  # the first batch is written at once; the second is held
    probe.write(batch, _batch(rows, batch, batch))
    one = probe._pending_bytes
    probe.close()
    assert one > 0
    monkeypatch.setattr(writers, "FLUSH_BYTES", 3 * one)
    many = [ScoreWriter(tmp_path / f"t{k}.h5", windows(n, length), length, {"seed": 0}, batch) for k in range(10)]
    most = 0
    for start in range(0, n, batch):
        for writer in many:
            writer.write(start, _batch(rows, start, batch))
            most = max(most, sum(w._pending_bytes for w in many))
    assert 2 * one <= most <= 5 * one  # batches are held, and never much past the cap, all writers together
    for writer in many:
        writer.finish()
    assert ScoreWriter._held_bytes == 0
    with h5py.File(tmp_path / "t9.h5", "r") as h5:
        np.testing.assert_array_equal(h5["shap/seq"][:], rows["shap/seq"])


def test_as_a_context_manager_the_writer_keeps_finished_batches_when_a_run_stops(tmp_path):
    n, length = 4, 9
    attrs = {"seed": 0}
    with pytest.raises(KeyboardInterrupt):
        with ScoreWriter(tmp_path / "s.h5", windows(n, length), length, attrs, 2) as writer:
            writer.write(0, {"meta/prediction": np.zeros(2, np.float32)})
            raise KeyboardInterrupt
    assert writer.lock is None
    assert (tmp_path / "s.h5.partial" / "rows-0000000000-0000000002.npz").exists()
    with ScoreWriter(tmp_path / "s.h5", windows(n, length), length, attrs, 2, resume=True) as again:
        assert again.has(0) and not again.has(2)
        again.write(2, {"meta/prediction": np.ones(2, np.float32)})
        assert again.finish() == tmp_path / "s.h5"
    assert again.lock is None and not (tmp_path / "s.h5.partial").exists()
    with h5py.File(tmp_path / "s.h5", "r") as h5:
        np.testing.assert_array_equal(h5["meta/prediction"][:], [0, 0, 1, 1])


def test_a_context_manager_writer_that_finished_no_batch_leaves_no_partial_folder(tmp_path):
    with ScoreWriter(tmp_path / "s.h5", windows(2, 5), 5, {"seed": 0}) as writer:
        assert (tmp_path / "s.h5.partial").is_dir()
    assert writer.lock is None and not (tmp_path / "s.h5.partial").exists()


def _rows(rng, n, length):
    X = np.eye(4, dtype=np.uint8)[rng.integers(0, 4, (n, length))].transpose(0, 2, 1).copy()
    shap = rng.normal(size=(n, 4, length)).astype(np.float32)
    return {"raw/seq": X, "shap/seq": shap, "projected_shap/seq": shap * X, "meta/prediction": shap[:, 0, 0]}


def _batch(rows, start, batch):
    return {name: values[start : start + batch] for name, values in rows.items()}


def _assert_rows(path, rows):
    with h5py.File(path, "r") as h5:
        for name, values in rows.items():
            np.testing.assert_array_equal(h5[name][:], values)


def test_a_stopped_writer_removes_its_assembling_file_and_a_resumed_one_takes_those_rows_from_fragments(tmp_path):
    n, length, batch = 9, 11, 2
    rows, attrs = _rows(np.random.default_rng(3), n, length), {"seed": 0, "compression": "gzip-1"}
    assembling = tmp_path / "s.h5.partial" / "assembling.h5"
    with ScoreWriter(tmp_path / "s.h5", windows(n, length), length, attrs, batch) as writer:
        for start in (0, 4):
            writer.write(start, _batch(rows, start, batch))
        assert assembling.exists()  # the final file grows as batches land
    assert not assembling.exists()  # a run that stops leaves only its fragments
    with ScoreWriter(tmp_path / "s.h5", windows(n, length), length, attrs, batch, resume=True) as again:
        for start in (2, 6, 8):
            again.write(start, _batch(rows, start, batch))
        again.finish()
    _assert_rows(tmp_path / "s.h5", rows)


def test_a_batch_the_assembling_file_could_not_take_comes_from_its_fragment(tmp_path):
    n, length, batch = 6, 7, 2
    rows = _rows(np.random.default_rng(4), n, length)
    writer = ScoreWriter(tmp_path / "s.h5", windows(n, length), length, {"seed": 0}, batch)
    blocked = tmp_path / "s.h5.partial" / "assembling.h5"
    blocked.mkdir()  # the assembling file cannot be made: the batch's fragment is all there is of it
    writer.write(0, _batch(rows, 0, batch))
    assert writer.has(0) and blocked.is_dir()
    blocked.rmdir()
    for start in (2, 4):
        writer.write(start, _batch(rows, start, batch))
    writer.finish()
    _assert_rows(tmp_path / "s.h5", rows)


def test_outputs_beyond_the_open_file_limit_are_assembled_from_their_fragments(tmp_path, monkeypatch):
    before = ScoreWriter._open_assemblies  # 0, unless another test left a writer open
    monkeypatch.setattr(writers, "MAX_ASSEMBLING", before + 2)  # reached as --target all on many outputs would
    n, length, batch = 5, 6, 2
    rows = [_rows(np.random.default_rng(10 + t), n, length) for t in range(3)]
    outs = [ScoreWriter(tmp_path / f"t{t}.h5", windows(n, length), length, {"seed": t}, batch) for t in range(3)]
    for start in range(0, n, batch):
        for out, r in zip(outs, rows):
            out.write(start, _batch(r, start, batch))
    assembling = [(tmp_path / f"t{t}.h5.partial" / "assembling.h5").exists() for t in range(3)]
    assert assembling == [True, True, False] and ScoreWriter._open_assemblies == before + 2
    for out in outs:
        out.finish()
    assert ScoreWriter._open_assemblies == before
    for t in range(3):
        _assert_rows(tmp_path / f"t{t}.h5", rows[t])
