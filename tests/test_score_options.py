"""The options of a scoring run (ScoreOptions), the table of methods, and the provenance they make."""

import dataclasses
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

import seqlift
from seqlift.cli.score import score as score_command
from seqlift.errors import SeqliftError
from seqlift.methods import METHODS, get_method
from seqlift.pipeline import provenance
from seqlift.score_options import ScoreOptions

ROOT = Path(__file__).resolve().parents[1]


def options(**kwargs):
    return ScoreOptions(
        **{"regions": "regions.bed", "fasta": "genome.fa", "model": "model.pt2", "output": "out.h5", **kwargs}
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"reference": "nope"}, "unknown reference 'nope'"),
        ({"n_refs": 0}, "--n-refs and --batch-size must be at least 1"),
        ({"batch_size": 0}, "--n-refs and --batch-size must be at least 1"),
        ({"compression": "zstd"}, "unknown compression 'zstd'"),
        ({"tolerance": -1.0}, "--tolerance -1.0 must be a number >= 0"),
        ({"tolerance": float("nan")}, "--tolerance nan must be a number >= 0"),
        ({"shard": "4-of-3"}, "--shard '4-of-3' is not of the form k-of-n"),
        ({"model": []}, "no model given; use --model"),
        ({"method": "shap"}, "unknown method 'shap'; choose one of deeplift, gradient"),
        ({"method": "ism", "rule": "revealcancel"}, "go with --method deeplift"),
        ({"method": "gradient", "max_rule": "pair"}, "go with --method deeplift"),
        ({"method": "integrated-gradients", "split_signs": True}, "go with --method deeplift"),
        ({"method": "gradient-x-input", "normalize_input_weights": True}, "go with --method deeplift"),
        ({"steps": 0}, "--steps 0 must be at least 1"),
        ({"shuffle_k": 0}, "--shuffle-k 0 must be at least 1"),
        ({"window": 0}, "--window 0 must be at least 1"),
        ({"output_index": -1}, "--output-index -1 must be at least 0"),
        ({"gc_tolerance": 1.5}, "--gc-tolerance 1.5 must be a GC fraction from 0 to 1"),
    ],
)
def test_each_bad_option_is_refused_when_the_options_are_made(kwargs, message):
    with pytest.raises(SeqliftError, match=message.replace("(", r"\(").replace(".", r"\.")):
        options(**kwargs)


def test_the_python_api_refuses_bad_options_before_reading_any_file(tmp_path):
    with pytest.raises(SeqliftError, match="go with --method deeplift"):
        seqlift.score(
            tmp_path / "missing.bed",
            tmp_path / "missing.fa",
            tmp_path / "missing.pt2",
            tmp_path / "out.h5",
            method="ism",
            split_signs=True,
        )
    assert list(tmp_path.iterdir()) == []


def test_options_are_frozen_and_read_back():
    opts = options(model=("a.pt2", "b.py:Net"), shard=" 2-of-4", method="integrated-gradients")
    assert opts.model_specs == ["a.pt2", "b.py:Net"]
    assert opts.k_of_n == (2, 4)
    assert opts.scoring_method is METHODS["integrated-gradients"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.n_refs = 3
    plain = options()
    assert plain.model_specs == ["model.pt2"] and plain.k_of_n is None and plain.method == "deeplift"


def test_the_defaults_are_the_commands():
    fields = {f.name: f.default for f in dataclasses.fields(ScoreOptions)}
    given = ["regions.bed", "-f", "genome.fa", "-m", "model.pt2", "-o", "out.h5"]
    parsed = score_command.make_context("score", given).params
    for name, value in parsed.items():
        if fields.get(name, dataclasses.MISSING) is not dataclasses.MISSING:
            assert str(value) == str(fields[name]), name  # the command's target is the text "0"
    assert set(parsed) - set(fields) == {"quiet"}
    assert set(fields) - {p.name for p in score_command.params} == {"progress", "command"}


def test_the_command_line_offers_the_registered_methods():
    method = next(p for p in score_command.params if p.name == "method")
    assert list(method.type.choices) == list(METHODS)
    assert method.default == "deeplift"


def test_the_workflow_schema_and_its_readme_list_the_registered_methods():
    schema = yaml.safe_load((ROOT / "workflows/seqlift/workflow/schemas/config.schema.yaml").read_text())
    assert schema["properties"]["score"]["properties"]["method"]["enum"] == list(METHODS)
    row = next(
        line
        for line in (ROOT / "workflows/seqlift/config/README.md").read_text().splitlines()
        if line.startswith("| `score.method` |")
    )
    assert [name for name in METHODS if f"`{name}`" in row] == list(METHODS)


def test_what_the_table_says_of_each_method():
    assert [m for m in METHODS.values() if m.uses_references] == [METHODS["deeplift"], METHODS["integrated-gradients"]]
    assert {m.name: m.summation for m in METHODS.values()} == {
        "deeplift": "exact",
        "gradient": "none",
        "gradient-x-input": "none",
        "integrated-gradients": "approximate",
        "ism": "none",
    }
    assert [m.name for m in METHODS.values() if m.layer_rules or m.probed] == ["deeplift"]
    assert [m.name for m in METHODS.values() if m.uses_steps] == ["integrated-gradients"]
    with pytest.raises(SeqliftError, match="unknown method 'x'"):
        get_method("x")


def test_the_table_of_methods_loads_without_torch():
    code = "import sys, seqlift.methods; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def _provenance(opts, **found):
    model = SimpleNamespace(spec="model.pt2", sha256="ab" * 32, kwargs={})
    run = dict(
        models=[model, model],
        input_length=200,
        n_refs=20,
        batch_size=8,
        batch_how="given",
        fasta_sha256="cd" * 32,
        n_regions=10,
        n_skipped=1,
        n_regions_total=30,
        device="cpu",
        target="0",
        target_space="logits",
    )
    return provenance(opts, **{**run, **found})


def test_provenance_records_what_goes_with_the_method_and_reference(tmp_path):
    bed = tmp_path / "regions.bed"
    bed.write_text("chr1\t0\t10\n")
    attrs = _provenance(
        ScoreOptions(
            bed,
            "genome.fa",
            "model.pt2",
            "out.h5",
            rule={"conv": "rescale"},
            max_rule="pair",
            shard="2-of-3",
            command="seqlift score ...",
        )
    )
    assert attrs["rule"] == "{conv: rescale}" and attrs["max_rule"] == "pair" and attrs["steps"] == 0
    assert attrs["shard"] == "2-of-3" and attrs["n_regions_total"] == 30 and attrs["n_models"] == 2
    assert attrs["reference"] == "shuffle" and attrs["shuffle_k"] == 2 and attrs["gc_tolerance"] == 0.0
    assert attrs["command"] == "seqlift score ..." and len(attrs["regions_sha256"]) == 64
    assert list(attrs)[-2:] == ["target", "target_space"] and attrs["target_space"] == "logits"

    attrs = _provenance(ScoreOptions(bed, "genome.fa", "model.pt2", "out.h5", method="gradient", steps=7), n_refs=0)
    assert attrs["reference"] == "none" and attrs["n_refs"] == 0 and attrs["steps"] == 0
    assert attrs["rule"] == "" and attrs["max_rule"] == "" and "shard" not in attrs

    attrs = _provenance(
        ScoreOptions(
            bed,
            "genome.fa",
            "model.pt2",
            "out.h5",
            method="integrated-gradients",
            steps=7,
            reference="gc-matched",
            gc_tolerance=0.05,
        )
    )
    assert attrs["steps"] == 7 and attrs["gc_tolerance"] == 0.05 and attrs["shuffle_k"] == 0
