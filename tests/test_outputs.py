"""atomic_output and check_absent: an output is written whole or not at all, and never clobbered without force."""

import pytest

from seqlift.errors import OutputError, SeqliftError, UsageError
from seqlift.outputs import atomic_output, check_absent


def test_a_finished_write_is_renamed_into_place_and_leaves_no_temporary(tmp_path):
    final = tmp_path / "out.tsv"
    with atomic_output(final) as tmp:
        assert tmp == tmp_path / "out.tsv.partial"
        tmp.write_text("a\tb\n")
        assert not final.exists()
    assert final.read_text() == "a\tb\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tsv"]


def test_a_failed_write_leaves_neither_the_output_nor_its_temporary(tmp_path):
    final = tmp_path / "out.tsv"
    with pytest.raises(RuntimeError, match="boom"), atomic_output(final, suffix=".123.partial") as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_an_existing_output_is_refused_before_anything_is_written(tmp_path):
    final = tmp_path / "out.tsv"
    final.write_text("earlier run")
    with pytest.raises(OutputError, match=r"^output .*out\.tsv exists; use --force to overwrite it$"):
        with atomic_output(final):
            pytest.fail("the block must not run")
    assert final.read_text() == "earlier run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tsv"]


def test_force_replaces_the_output_and_a_failed_forced_write_keeps_the_old_one(tmp_path):
    final = tmp_path / "out.tsv"
    final.write_text("earlier run")
    with pytest.raises(RuntimeError, match="boom"), atomic_output(final, force=True) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert final.read_text() == "earlier run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tsv"]
    with atomic_output(final, force=True) as tmp:
        tmp.write_text("new run")
    assert final.read_text() == "new run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tsv"]


def test_an_output_another_run_finished_meanwhile_is_not_overwritten_without_force(tmp_path):
    final = tmp_path / "out.tsv"
    with pytest.raises(OutputError, match="exists; use --force to overwrite it"), atomic_output(final) as tmp:
        tmp.write_text("this run")
        final.write_text("other run")
    assert final.read_text() == "other run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tsv"]


def test_writers_with_their_own_suffix_do_not_share_a_temporary(tmp_path):
    final = tmp_path / "index.npz"
    with atomic_output(final, force=True, suffix=".1.partial") as first:
        first.write_text("first")
        with atomic_output(final, force=True, suffix=".2.partial") as second:
            assert second != first
            second.write_text("second")
        assert final.read_text() == "second" and first.read_text() == "first"
    assert final.read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.npz"]


def test_a_folder_another_run_finished_meanwhile_is_not_replaced_without_force(tmp_path):
    final = tmp_path / "motifs"
    with pytest.raises(OutputError, match="output folder .*motifs exists"), atomic_output(final, folder=True) as tmp:
        (tmp / "report.html").write_text("this run")
        final.mkdir()
        (final / "report.html").write_text("other run")
    assert (final / "report.html").read_text() == "other run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["motifs"]


def test_a_folder_is_built_beside_its_place_and_renamed_when_complete(tmp_path):
    final = tmp_path / "motifs"
    with atomic_output(final, folder=True) as tmp:
        assert tmp == tmp_path / "motifs.partial" and tmp.is_dir()
        (tmp / "logos").mkdir()
        (tmp / "logos" / "a.png").write_bytes(b"png")
        assert not final.exists()
    assert (final / "logos" / "a.png").read_bytes() == b"png"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["motifs"]


def test_a_failed_folder_leaves_nothing_and_a_failed_forced_one_keeps_the_old_folder(tmp_path):
    final = tmp_path / "motifs"
    with pytest.raises(RuntimeError, match="boom"), atomic_output(final, folder=True) as tmp:
        (tmp / "report.html").write_text("half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []

    final.mkdir()
    (final / "report.html").write_text("earlier run")
    with pytest.raises(OutputError, match=r"^output folder .*motifs exists; use --force to replace it$"):
        with atomic_output(final, folder=True):
            pytest.fail("the block must not run")
    with pytest.raises(RuntimeError, match="boom"), atomic_output(final, folder=True, force=True) as tmp:
        (tmp / "report.html").write_text("half")
        raise RuntimeError("boom")
    assert (final / "report.html").read_text() == "earlier run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["motifs"]


def test_a_forced_folder_replaces_the_old_one_whole(tmp_path):
    final = tmp_path / "motifs"
    final.mkdir()
    (final / "old.png").write_bytes(b"old")
    with atomic_output(final, folder=True, force=True) as tmp:
        (tmp / "new.png").write_bytes(b"new")
        assert (final / "old.png").exists()  # the old folder stays until the new one is complete
    assert sorted(p.name for p in final.iterdir()) == ["new.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["motifs"]


def test_a_temporary_left_by_a_killed_run_is_replaced(tmp_path):
    stale = tmp_path / "motifs.partial"
    stale.mkdir()
    (stale / "half.png").write_bytes(b"half")
    with atomic_output(tmp_path / "motifs", folder=True) as tmp:
        assert list(tmp.iterdir()) == []
        (tmp / "whole.png").write_bytes(b"whole")
    assert sorted(p.name for p in (tmp_path / "motifs").iterdir()) == ["whole.png"]


def test_check_absent_names_the_missing_folder(tmp_path):
    assert check_absent(tmp_path / "new.h5") == tmp_path / "new.h5"
    with pytest.raises(OutputError, match=r"cannot write .*nowhere/x\.h5: folder .*nowhere does not exist; create it"):
        check_absent(tmp_path / "nowhere" / "x.h5")
    (tmp_path / "old.h5").write_text("")
    assert check_absent(tmp_path / "old.h5", force=True) == tmp_path / "old.h5"


def test_a_bad_option_is_a_usage_error_and_a_value_error():
    from seqlift.devices import check_device

    with pytest.raises(UsageError, match=r"--device 'gpu7' is not") as caught:
        check_device("gpu7")
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, SeqliftError)
