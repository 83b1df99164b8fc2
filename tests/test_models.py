"""Model loading: hostile .pt2 and TorchScript archives, models that do not fit the data, weights that do not fit."""

import io
import json
import zipfile
from importlib import resources

import pytest
import torch
from torch.export import Dim

from cli_helpers import assert_one_line_error, run, score_args
from seqlift.errors import ModelError
from seqlift.models import load_model


class _Marker:
    """Unpickling this creates the file ``path``: a stand-in for any code a pickle can run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def rewrite(src, dst, edit):
    """Copy the zip archive ``src`` to ``dst`` with ``edit(name, bytes) -> bytes`` applied to every entry."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            zout.writestr(name, edit(name, zin.read(name)))
    return dst


def hostile_pt2(data, kind, marker):
    """A copy of the test model's .pt2 in which one entry runs code (creates ``marker``) when loaded."""
    src = data["pt2"]
    dst = data["dir"] / f"hostile_{kind}.pt2"
    payload = __import__("pickle").dumps(_Marker(marker))
    with zipfile.ZipFile(src) as z:
        config_name = next(n for n in z.namelist() if n.endswith("model_weights_config.json"))
        weight_file = json.loads(z.read(config_name))["config"]["conv.weight"]["path_name"]

    def edit(name, blob):
        if kind == "weight":
            if name.endswith("model_weights_config.json"):
                config = json.loads(blob)
                config["config"]["conv.weight"]["use_pickle"] = True
                return json.dumps(config).encode()
            if name.endswith("data/weights/" + weight_file):
                return payload
        if kind == "constant" and name.endswith("model_constants_config.json"):
            config = json.loads(blob)
            config["config"]["evil"] = {
                "path_name": "opaque_obj_0",
                "is_param": False,
                "use_pickle": True,
                "tensor_meta": None,
            }
            return json.dumps(config).encode()
        if kind == "sample_inputs" and name.endswith("data/sample_inputs/model.pt"):
            return __import__("pickle").dumps((_Marker(marker), {}))
        if kind == "expression" and name.endswith("models/model.json"):
            text = blob.decode()
            symbol = json.loads(blob)["range_constraints"]
            first = next(iter(symbol))
            old = f"\"Symbol('{first}', positive=True, integer=True)\""
            assert old in text
            new = f"\"open({str(marker)!r}, 'w') and Symbol('{first}', positive=True, integer=True)\""
            return text.replace(old, new, 1).encode()
        if kind == "guards" and name.endswith("models/model.json"):
            program = json.loads(blob)
            program["guards_code"] = [f"1 #\n, '')\nopen({str(marker)!r}, 'w')\ndef g():\n  print(1"]
            return json.dumps(program).encode()
        return blob

    rewrite(src, dst, edit)
    if kind == "constant":  # the opaque object's payload: a plain pickle
        with zipfile.ZipFile(dst, "a") as z:
            root = z.namelist()[0].split("/")[0]
            z.writestr(f"{root}/data/constants/opaque_obj_0", payload)
    return str(dst)


HOSTILE = ["weight", "constant", "sample_inputs", "expression", "guards"]


@pytest.mark.parametrize("kind", HOSTILE)
def test_hostile_pt2_is_refused_without_running_code(data, tmp_path, kind):
    marker = tmp_path / f"ran_{kind}"
    model = hostile_pt2(data, kind, marker)
    out = tmp_path / "scores.h5"
    result = run(*score_args(data, out, model=model))
    assert not marker.exists(), f"loading the {kind} entry ran code from the model file"
    assert_one_line_error(result, "--trust-model", model)
    assert not out.exists() and not (tmp_path / "scores.h5.partial").exists()


def test_hostile_pt2_is_refused_by_evaluate_perturb(data, tmp_path):
    scores = tmp_path / "scores.h5"
    assert run(*score_args(data, scores)).exit_code == 0
    marker = tmp_path / "ran"
    model = hostile_pt2(data, "weight", marker)
    out = tmp_path / "perturb.tsv"
    result = run("evaluate", "perturb", scores, "--model", model, "-o", out, "--k", "1", "--quiet")
    assert not marker.exists()
    assert_one_line_error(result, "--trust-model")
    assert not out.exists()


def test_pickled_weight_entry_loads_with_trust_model(data, tmp_path):
    """A .pt2 whose weight is a genuine pickled tensor: refused by default, loaded with trust_model."""
    with zipfile.ZipFile(data["pt2"]) as z:
        config_name = next(n for n in z.namelist() if n.endswith("model_weights_config.json"))
        weight_file = json.loads(z.read(config_name))["config"]["conv.weight"]["path_name"]
    buffer = io.BytesIO()
    torch.save(torch.nn.Parameter(data["model"].conv.weight.detach().clone()), buffer)

    def edit(name, blob):
        if name == config_name:
            config = json.loads(blob)
            config["config"]["conv.weight"]["use_pickle"] = True
            return json.dumps(config).encode()
        if name.endswith("data/weights/" + weight_file):
            return buffer.getvalue()
        return blob

    path = str(rewrite(data["pt2"], tmp_path / "pickled_weight.pt2", edit))
    with pytest.raises(ModelError, match=r"pickled_weight\.pt2.*weight 'conv\.weight'.*--trust-model"):
        load_model(path)
    loaded = load_model(path, trust_model=True)
    x = torch.rand(3, 4, 50)
    torch.testing.assert_close(loaded.model.module()(x), data["model"](x))


def test_ordinary_pt2_files_load(data, tmp_path):
    assert load_model(data["pt2"]).input_length == 50
    demo = resources.files("seqlift") / "demo" / "model.pt2"
    assert load_model(str(demo)).input_length is not None
    # a program whose length is dynamic too carries shape guards; they are plain comparisons
    model = torch.nn.Sequential(torch.nn.Conv1d(4, 2, 3), torch.nn.ReLU()).eval()
    program = torch.export.export(model, (torch.zeros(2, 4, 10),), dynamic_shapes=({0: Dim.AUTO, 2: Dim.AUTO},))
    assert program._guards_code
    path = tmp_path / "dynamic.pt2"
    torch.export.save(program, str(path))
    loaded = load_model(str(path))
    assert loaded.kind == "program"


def test_torchscript_pickles_cannot_run_python(data, tmp_path):
    """TorchScript's unpickler resolves only TorchScript and torch types: a Python payload is refused."""
    scripted = tmp_path / "tiny.ts"
    torch.jit.save(torch.jit.trace(data["model"], torch.zeros(2, 4, 50)), str(scripted))
    marker = tmp_path / "ran"
    payload = __import__("pickle").dumps(_Marker(marker), protocol=2)
    for entry in ("data.pkl", "constants.pkl"):
        hostile = rewrite(
            scripted,
            tmp_path / f"hostile_{entry}.ts",
            lambda name, blob, entry=entry: payload if name.endswith("/" + entry) else blob,
        )
        with pytest.raises(ModelError, match="could not be read as TorchScript"):
            load_model(str(hostile))
        assert not marker.exists()
    assert load_model(str(scripted)).kind == "torchscript"
