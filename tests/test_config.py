"""Option values from the command line and from --config: the same types and ranges, one-line errors."""

import h5py
import pytest

from cli_helpers import assert_one_line_error, run


def base_args(data, out):
    return ["score", data["bed"], "--fasta", data["fasta"], "--model", data["pt2"], "-o", out, "--quiet"]


@pytest.mark.parametrize(
    "option, value",
    [
        ("--tolerance", "-1"),
        ("--n-refs", "0"),
        ("--batch-size", "0"),
        ("--steps", "0"),
        ("--shuffle-k", "0"),
        ("--gc-tolerance", "1.5"),
        ("--gc-tolerance", "-0.1"),
    ],
)
def test_meaningless_option_values_are_refused(data, tmp_path, option, value):
    """A usage error, as click reports every bad option value: exit status 2, the option and the valid range."""
    out = tmp_path / "scores.h5"
    result = run(*base_args(data, out), option, value)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.output and "is not in the range" in result.output
    assert "Traceback" not in result.output
    assert not out.exists() and not (tmp_path / "scores.h5.partial").exists()


def test_evaluate_batch_size_must_be_positive(data, tmp_path):
    out = tmp_path / "perturb.tsv"
    result = run("evaluate", "perturb", tmp_path / "missing.h5", "--model", data["pt2"], "-o", out, "-b", "0")
    assert result.exit_code == 2 and "Invalid value for '--batch-size' / '-b': 0 is not in the range" in result.output


def write_config(tmp_path, body):
    config = tmp_path / "run.yaml"
    config.write_text("# scoring options\nscore:\n" + body)
    return config


@pytest.mark.parametrize(
    "body, line, fragments",
    [
        ("  n_refs: 2.7\n", 3, ["n_refs", "2.7", "integer"]),
        ("  seed: true\n", 3, ["seed", "True", "integer"]),
        ("  n_refs: 2\n  n_refs_unused: 1\n", None, ["n_refs_unused", "unknown"]),
        ("  batch_size: 2\n  n_refs: null\n", 4, ["n_refs", "no value"]),
        ("  target: [0, 1]\n", 3, ["target", "[0, 1]", "'0,1'"]),
        ("  tolerance: -1\n", 3, ["tolerance", "-1"]),
        ("  gc_tolerance: 2\n", 3, ["gc_tolerance", "2"]),
        ("  shuffle_k: 0\n", 3, ["shuffle_k", "0"]),
        ("  force: 1\n", 3, ["force", "true or false"]),
        ("  device: gpu\n", 3, ["device", "gpu", "cuda:N"]),
        ("  device: cuda:x\n", 3, ["device", "cuda:x", "cuda:N"]),
        ("  model_kwargs: 3\n", 3, ["model_kwargs", "3"]),
    ],
)
def test_bad_config_values_name_the_file_line_and_key(data, tmp_path, body, line, fragments):
    config = write_config(tmp_path, body)
    out = tmp_path / "scores.h5"
    result = run(*base_args(data, out), "--config", config)
    where = f"{config} line {line}" if line else str(config)
    assert_one_line_error(result, where, *fragments)
    assert not out.exists() and not (tmp_path / "scores.h5.partial").exists()


def test_config_values_of_the_right_types_are_used(data, tmp_path):
    config = write_config(
        tmp_path,
        "  target: 1\n  n_refs: 3\n  tolerance: 1\n  seed: 5\n  batch_size: 4\n"
        "  quiet: true\n  rule: {conv: rescale, dense: revealcancel}\n",
    )
    out = tmp_path / "scores.h5"
    result = run("score", data["bed"], "--fasta", data["fasta"], "--model", data["pt2"], "-o", out, "--config", config)
    assert result.exit_code == 0, result.output
    with h5py.File(out) as h5:
        assert h5.attrs["target"] == "1" and h5.attrs["n_refs"] == 3 and h5.attrs["seed"] == 5
        assert h5.attrs["tolerance"] == 1.0 and h5.attrs["batch_size"] == 4
