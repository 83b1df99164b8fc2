"""Helpers for tests that run the command line: invoking it, checking a one-line user error, reading a TSV it wrote,
comparing the score files it wrote."""

import h5py
import numpy as np
from click.testing import CliRunner

from seqlift.cli import main

#: The per-row datasets of a score file: two runs of the same regions that must agree, agree on each of them.
DATASETS = [
    "raw/seq",
    "shap/seq",
    "projected_shap/seq",
    "coords_chrom",
    "coords_start",
    "coords_end",
    "meta/strand",
    "meta/name",
    "meta/row",
    "meta/line",
    "meta/prediction",
    "meta/reference_prediction",
    "meta/delta_error",
    "meta/delta_rel_error",
    "meta/low_complexity",
]


def score_args(data, out, *extra, model=None, n_refs=2, batch_size=2):
    """Arguments of a small, quiet ``seqlift score`` of a test data set (``bed``, ``fasta``, ``pt2`` paths)."""
    return [
        "score",
        data["bed"],
        "--fasta",
        data["fasta"],
        "--model",
        model or data["pt2"],
        "-o",
        out,
        "--n-refs",
        n_refs,
        "--batch-size",
        batch_size,
        "--quiet",
        *extra,
    ]


def run(*args):
    """``seqlift ARGS`` in-process; arguments are turned into strings."""
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, *fragments):
    """Exit status 1, no traceback, and one line ``Error: ...`` that holds every fragment."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.strip().splitlines() if not line.startswith("seqlift: warning:")]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def read_tsv(path):
    """A TSV written by a command: its ``#`` note lines, its header, and its rows as dicts of strings."""
    lines = path.read_text().splitlines()
    notes = [line for line in lines if line.startswith("#")]
    body = [line.split("\t") for line in lines if not line.startswith("#")]
    return notes, body[0], [dict(zip(body[0], row)) for row in body[1:]]


def assert_same(a_path, b_path):
    """Two score files hold equal :data:`DATASETS`, byte for byte."""
    with h5py.File(a_path, "r") as a, h5py.File(b_path, "r") as b:
        for name in DATASETS:
            np.testing.assert_array_equal(a[name][:], b[name][:], err_msg=name)
