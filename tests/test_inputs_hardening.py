"""Inputs that used to end in a traceback: each is a one-line error with exit status 1 and no output left behind."""

import gzip
from functools import partial

import h5py
import pytest
import torch
from safetensors.torch import save_file
from torch.export import Dim

import cli_helpers
from cli_helpers import assert_one_line_error, run
from conftest import LENGTH


score_args = partial(cli_helpers.score_args, batch_size=3)


def assert_nothing_written(folder, name="scores.h5"):
    leftovers = sorted(p.name for p in folder.iterdir() if p.name.startswith(name))
    assert leftovers == [], leftovers


def export(model, path, channels=4, length=LENGTH):
    program = torch.export.export(model.eval(), (torch.zeros(2, channels, length),), dynamic_shapes=({0: Dim.AUTO},))
    torch.export.save(program, str(path))
    return str(path)


class FiveChannels(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(5, 2, 3)

    def forward(self, x):
        return self.conv(x).mean(dim=2)


class DictOutput(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(4, 2, 3)

    def forward(self, x):
        return {"logits": self.conv(x).mean(dim=2)}


class PerBaseOutput(torch.nn.Module):
    """Output (N, 1, L): a track of one value per base, not a column per example."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(4, 1, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


# --- models that do not fit the data ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["deeplift", "gradient"])
def test_model_with_five_input_channels(data, tmp_path, method):
    model = export(FiveChannels(), tmp_path / "five.pt2", channels=5)
    out = tmp_path / "scores.h5"
    result = run(*score_args(data, out, "--method", method, model=model))
    assert_one_line_error(result, model, "5 input channels", "(N, 4, L)")
    assert_nothing_written(tmp_path)


@pytest.mark.parametrize("method", ["deeplift", "ism"])
def test_model_returning_a_dict(data, tmp_path, method):
    model = export(DictOutput(), tmp_path / "dict.pt2")
    out = tmp_path / "scores.h5"
    result = run(*score_args(data, out, "--method", method, model=model))
    assert_one_line_error(result, model, "dict", "'logits'", "tensor or a tuple of tensors")
    assert_nothing_written(tmp_path)


def test_output_with_one_value_per_base_is_reported_per_example(data, tmp_path):
    model = export(PerBaseOutput(), tmp_path / "per_base.pt2")
    out = tmp_path / "scores.h5"
    result = run(*score_args(data, out, model=model))
    assert_one_line_error(result, f"(1, {LENGTH}) per example", "--target", "profile")
    assert_nothing_written(tmp_path)


def test_output_of_one_value_per_example_is_scored(data, tmp_path):
    """A (N,) output is one scalar per example: target 0 explains it, any other target is out of range."""

    class Scalar(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv1d(4, 1, 3)

        def forward(self, x):
            return torch.relu(self.conv(x)).sum(dim=(1, 2))

    model = export(Scalar(), tmp_path / "scalar.pt2")
    out = tmp_path / "scores.h5"
    assert run(*score_args(data, out, model=model)).exit_code == 0
    with h5py.File(out) as h5:
        assert h5["shap/seq"].shape == (6, 4, LENGTH)
    result = run(*score_args(data, tmp_path / "t1.h5", "--target", "1", model=model))
    assert_one_line_error(result, "--target 1", "one value per example", "--target 0")
    result = run(*score_args(data, tmp_path / "all.h5", "--target", "all", model=model))
    assert result.exit_code == 0, result.output


# --- class models ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source, what",
    [
        ("import torch\nclass Net(torch.nn.Module)\n    pass\n", "line 2: syntax error (expected ':')"),
        ("import torch\nraise RuntimeError('needs a GPU build')\n", "RuntimeError: needs a GPU build"),
        ("import torch\nimport not_a_module_xyz\n", "No module named 'not_a_module_xyz'"),
    ],
)
def test_model_source_that_cannot_be_imported(data, tmp_path, source, what):
    path = tmp_path / "broken.py"
    path.write_text(source)
    out = tmp_path / "scores.h5"
    result = run(*score_args(data, out, "--weights", data["weights"], model=f"{path}:Net"))
    assert_one_line_error(result, str(path), what)
    assert_nothing_written(tmp_path)


def test_syntax_error_names_the_line(data, tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("import torch\n\n\nclass Net(torch.nn.Module)\n    pass\n")
    result = run(*score_args(data, tmp_path / "scores.h5", "--weights", data["weights"], model=f"{path}:Net"))
    assert_one_line_error(result, f"{path} line 4")


def test_weights_that_do_not_fit_name_the_keys(data, tmp_path):
    state = dict(data["model"].state_dict())
    state["conv.weight"] = torch.zeros(4, 4, 7)  # mismatched shape
    state.pop("head.bias")  # missing
    state["extra.weight"] = torch.zeros(1)  # unexpected
    weights = tmp_path / "bad.safetensors"
    save_file(state, str(weights))
    out = tmp_path / "scores.h5"
    result = run(*score_args(data, out, "--weights", weights, model=data["class"]))
    assert_one_line_error(
        result,
        str(weights),
        "missing: head.bias",
        "unexpected: extra.weight",
        "conv.weight is (4, 4, 7) in the file but (4, 4, 5) in TinyCNN",
    )
    assert_nothing_written(tmp_path)


# --- inputs ------------------------------------------------------------------------------------------------------


def test_bed_with_a_utf8_byte_order_mark(data, tmp_path):
    bed = tmp_path / "bom.bed"
    bed.write_bytes(b"\xef\xbb\xbfchr1\t100\t150\tr1\n")
    out = tmp_path / "scores.h5"
    result = run(*score_args({**data, "bed": str(bed)}, out))
    assert_one_line_error(result, f"{bed} line 1", "byte order mark")
    assert_nothing_written(tmp_path)


def test_plain_gzip_fasta_says_to_bgzip_it(data, tmp_path, genome_seqs):
    fasta = tmp_path / "genome.fa.gz"
    with gzip.open(fasta, "wt") as fh:
        for name, seq in genome_seqs.items():
            fh.write(f">{name}\n{seq}\n")
    out = tmp_path / "scores.h5"
    result = run(*score_args({**data, "fasta": str(fasta)}, out))
    assert_one_line_error(result, str(fasta), "bgzip")
    assert_nothing_written(tmp_path)


def test_merge_into_a_missing_folder(data, tmp_path):
    shards = []
    for k in (1, 2):
        shard = tmp_path / f"s{k}.h5"
        assert run(*score_args(data, shard, "--shard", f"{k}-of-2")).exit_code == 0
        shards.append(shard)
    out = tmp_path / "missing" / "merged.h5"
    result = run("merge", *shards, "-o", out, "--quiet")
    assert_one_line_error(result, str(out.parent), "does not exist")
    assert not out.parent.exists()


# --- damaged score files -----------------------------------------------------------------------------------------


@pytest.fixture
def scores(data, tmp_path):
    out = tmp_path / "scores.h5"
    result = run(*score_args(data, out))
    assert result.exit_code == 0, result.output
    return out


def damage_header(path):
    blob = bytearray(path.read_bytes())
    blob[0:8] = b"\x00" * 8  # the HDF5 signature
    path.write_bytes(bytes(blob))


def damage_chunk(path, dataset="projected_shap/seq"):
    """Overwrite the bytes of the first stored chunk of ``dataset``: the file opens, reading the chunk fails."""
    with h5py.File(path, "r") as h5:
        info = h5[dataset].id.get_chunk_info(0)
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset)
        fh.write(b"\xff" * info.size)


def commands(scores, data, out):
    return {
        "logo": ["logo", scores, "--index", 0, "-o", out / "logo.png"],
        "tracks": ["tracks", scores, "-o", out / "tracks", "--fasta", data["fasta"], "--quiet"],
        "motifs": ["motifs", scores, "-o", out / "motifs", "--quiet"],
        "evaluate perturb": [
            "evaluate",
            "perturb",
            scores,
            "--model",
            data["pt2"],
            "-o",
            out / "perturb.tsv",
            "--k",
            1,
            "--quiet",
        ],
        "evaluate sites": ["evaluate", "sites", scores, "--sites", data["bed"], "-o", out / "sites.tsv", "--quiet"],
    }


@pytest.mark.parametrize("damage", [damage_header, damage_chunk])
@pytest.mark.parametrize("command", ["logo", "tracks", "motifs", "evaluate perturb", "evaluate sites"])
def test_damaged_scores_file(data, scores, tmp_path, damage, command):
    damage(scores)
    out = tmp_path / "out"
    out.mkdir()
    result = run(*commands(scores, data, out)[command])
    assert_one_line_error(result, str(scores))
    assert list(out.iterdir()) == []
