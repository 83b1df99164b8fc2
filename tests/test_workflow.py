"""The Snakemake workflow with the configs users write: class models, per-layer rule mappings, odd paths."""

import shutil
import subprocess
from pathlib import Path

import h5py
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "workflows" / "seqlift" / "workflow" / "Snakefile"
TEST_CONFIG = ROOT / "workflows" / "seqlift" / ".test" / "config" / "config.yaml"

pytestmark = pytest.mark.skipif(shutil.which("snakemake") is None, reason="snakemake is not installed")


def snakemake(config, *args):
    return subprocess.run(
        ["snakemake", "-s", str(SNAKEFILE), "--configfile", str(config), *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_class_model_and_rule_mapping_run_a_shard(tmp_path):
    """A file.py:Class model with weights, and a rule mapping, as a user writes them in the config."""
    config = yaml.safe_load(TEST_CONFIG.read_text())
    out = tmp_path / "out dir"  # a space in the path, to check quoting
    config.update(model="seqlift/demo/model.py:DemoCNN", weights="seqlift/demo/model.safetensors", outdir=str(out))
    config["score"]["rule"] = {"conv": "rescale", "dense": "revealcancel"}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    dry = snakemake(path, "-n", "-p")
    assert dry.returncode == 0, dry.stderr + dry.stdout
    assert "--rule '{conv: rescale, dense: revealcancel}'" in dry.stdout
    shard = out / "shards" / "1-of-3.h5"
    done = snakemake(path, "--cores", 1, shard)
    log = out / "logs" / "score" / "1-of-3.log"
    assert done.returncode == 0, done.stderr + (log.read_text() if log.exists() else "")
    with h5py.File(shard, "r") as h5:
        assert h5.attrs["rule"] == "{conv: rescale, dense: revealcancel}"
        assert h5.attrs["model"] == "seqlift/demo/model.py:DemoCNN"


def test_missing_weights_file_is_a_missing_input(tmp_path):
    config = yaml.safe_load(TEST_CONFIG.read_text())
    config.update(
        model="seqlift/demo/model.py:DemoCNN",
        weights=str(tmp_path / "missing.safetensors"),
        outdir=str(tmp_path / "out"),
    )
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    dry = snakemake(path, "-n")
    assert dry.returncode != 0 and "missing.safetensors" in dry.stderr + dry.stdout


@pytest.mark.parametrize("batch_size, flag", [("auto", None), (16, "--batch-size 16")])
def test_batch_size_auto_leaves_it_to_the_probe(tmp_path, batch_size, flag):
    config = yaml.safe_load(TEST_CONFIG.read_text())
    config["score"].update(batch_size=batch_size, max_rule="shapley")
    config["outdir"] = str(tmp_path / "out")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    dry = snakemake(path, "-n", "-p")
    assert dry.returncode == 0, dry.stderr + dry.stdout
    commands = [line for line in dry.stdout.splitlines() if "seqlift score" in line]
    assert commands and all("--max-rule shapley" in c for c in commands)
    assert all(("--batch-size" in c) == (flag is not None) and (flag is None or flag in c) for c in commands)
