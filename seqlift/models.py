"""Loading models safely, and describing them for provenance.

Two formats load without running code from the model file:

``model.pt2``
    A ``torch.export`` program (``torch.export.save``), exported with a dynamic
    batch dimension. Its graph and weights are data.
``path/to/file.py:ClassName`` or ``package.module:ClassName`` plus ``weights``
    The user names the Python class (that is the user's own code, imported on
    their say-so) and the weights come from a state dict read with
    ``torch.load(weights_only=True)`` or from a ``.safetensors`` file, which
    cannot carry code. Constructor keyword arguments come from ``model_kwargs``.

A TorchScript file loads too (its code is TorchScript, run by PyTorch's
interpreter), for the gradient methods and ISM; DeepLIFT needs a graph it can
rewrite, so it asks for ``.pt2``. A pickled full module (``torch.save(model)``)
is refused unless the user passes ``trust_model``: unpickling runs arbitrary code.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import ModelError

EXPORT_HINT = (
    "export it with torch.export.save(torch.export.export(model.eval(), (torch.zeros(2, 4, L),), "
    "dynamic_shapes=({0: torch.export.Dim.AUTO},)), 'model.pt2')"
)


@dataclass
class LoadedModel:
    """A model ready for the engine, with what identifies it.

    Attributes
    ----------
    model : torch.export.ExportedProgram or torch.nn.Module
    spec : str
        How the user named it (path or ``file.py:Class``).
    sha256 : str
        SHA-256 of the model file (``.pt2``) or of the weights file.
    input_length : int or None
        Input length read from the model, None when it cannot be read.
    kwargs : dict
        Constructor keyword arguments (class models).
    kind : str
        ``program``, ``module`` or ``torchscript``. TorchScript graphs cannot be
        rewritten for DeepLIFT; they serve the gradient methods and ISM.
    """

    model: object
    spec: str
    sha256: str
    input_length: int | None
    kwargs: dict = field(default_factory=dict)
    kind: str = "program"  # "program" (.pt2), "module" (class or trusted pickle) or "torchscript"


def sha256_file(path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_model(spec: str, weights: str | None = None, model_kwargs: dict | None = None,
               trust_model: bool = False) -> LoadedModel:
    """Load a model from ``spec``.

    Parameters
    ----------
    spec : str
        ``model.pt2``, ``path/to/file.py:ClassName`` or ``package.module:ClassName``.
    weights : str, optional
        State dict for a class model: ``.safetensors``, or a ``torch.save``'d
        state dict (read with ``weights_only=True``).
    model_kwargs : dict, optional
        Keyword arguments for the class constructor.
    trust_model : bool
        Also load a pickled full module (``torch.save(model)``). Unpickling runs
        code from the file: only for files the user trusts.

    Returns
    -------
    LoadedModel
    """
    spec = str(spec)
    path = Path(spec)
    if ":" in spec and not path.exists():
        return _load_class(spec, weights, model_kwargs or {})
    if not path.exists():
        raise ModelError(f"model file {spec} does not exist")
    if weights is not None:
        raise ModelError(f"--weights goes with a class model (file.py:ClassName), not with the file {spec}")
    if not zipfile.is_zipfile(path):
        raise ModelError(f"{spec} is not a model file (not a torch.export .pt2 archive); {EXPORT_HINT}")
    names = zipfile.ZipFile(path).namelist()
    if any(n.endswith("constants.pkl") for n in names) and any("/code/" in n for n in names):
        try:
            script = torch.jit.load(spec, map_location="cpu").eval()
        except Exception as exc:  # a damaged archive fails in many ways
            raise ModelError(f"{spec} could not be read as TorchScript: {_first_line(exc)}") from exc
        return LoadedModel(model=script, spec=spec, sha256=sha256_file(path), input_length=None, kind="torchscript")
    if any(n.endswith("data.pkl") for n in names) and not any("serialized_exported_program" in n or "models/" in n for n in names):
        if trust_model:
            return _load_pickled(spec, path)
        raise ModelError(
            f"{spec} is a torch.save pickle; loading it could run code, so seqlift refuses it unless you pass "
            f"--trust-model. For a state dict use --model file.py:ClassName --weights {spec}; for a full model, {EXPORT_HINT}"
        )
    try:
        program = torch.export.load(spec)
    except Exception as exc:  # a corrupt or foreign archive fails in many ways
        raise ModelError(f"{spec} could not be read as a torch.export program: {_first_line(exc)}; {EXPORT_HINT}") from exc
    from .attribution.graph import capture

    length = capture(program).input_length
    return LoadedModel(model=program, spec=spec, sha256=sha256_file(path), input_length=length)


def _load_pickled(spec: str, path: Path) -> LoadedModel:
    try:
        model = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # unpickling fails in many ways (missing classes, corrupt files)
        raise ModelError(f"{spec} could not be unpickled: {_first_line(exc)}; {EXPORT_HINT}") from exc
    if not isinstance(model, torch.nn.Module):
        raise ModelError(f"{spec} holds a {type(model).__name__}, not a model; for a state dict use --model "
                         f"file.py:ClassName --weights {spec}")
    model.eval()
    length = getattr(model, "input_length", None)
    return LoadedModel(model=model, spec=spec, sha256=sha256_file(path), input_length=int(length) if length else None,
                       kind="module")


def _load_class(spec: str, weights: str | None, kwargs: dict) -> LoadedModel:
    where, _, name = spec.rpartition(":")
    if where.endswith(".py"):
        file = Path(where)
        if not file.exists():
            raise ModelError(f"model source {where} (from --model {spec}) does not exist")
        module_name = f"_seqlift_model_{hashlib.sha1(str(file.resolve()).encode()).hexdigest()[:12]}"
        module_spec = importlib.util.spec_from_file_location(module_name, file)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_name] = module
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise ModelError(f"cannot import {where} (from --model {spec}): {exc}") from exc
    cls = getattr(module, name, None)
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise ModelError(f"{where} has no nn.Module class named {name!r} (from --model {spec})")
    if weights is None:
        raise ModelError(f"--model {spec} names a class; give its trained state dict with --weights")
    try:
        model = cls(**kwargs)
    except TypeError as exc:
        raise ModelError(f"{name}(**{kwargs}) failed: {exc}; set constructor arguments under model_kwargs in --config") from exc
    state = load_state_dict(weights)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"weights {weights} do not fit {name}: {_first_line(exc)}") from exc
    model.eval()
    length = getattr(model, "input_length", None)
    return LoadedModel(
        model=model, spec=spec, sha256=sha256_file(weights), input_length=int(length) if length else None,
        kwargs=kwargs, kind="module",
    )


def load_state_dict(path: str) -> dict:
    """Read a state dict without running code: safetensors, or ``torch.load(weights_only=True)``."""
    if not Path(path).exists():
        raise ModelError(f"weights file {path} does not exist")
    if str(path).endswith(".safetensors"):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except (SafetensorError, OSError) as exc:
            raise ModelError(f"{path} is not a safetensors file: {_first_line(exc)}") from exc
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors come in several types
        raise ModelError(
            f"{path} is not a plain state dict (weights_only loading refused it: {_first_line(exc)}); "
            "save the weights with torch.save(model.state_dict(), path) or safetensors"
        ) from exc
    if not isinstance(state, dict):
        raise ModelError(f"{path} holds a {type(state).__name__}, not a state dict")
    return state


def resolve_length(loaded: LoadedModel, window: int | None) -> int:
    """The input length to score with: the model's, checked against ``--window``."""
    if loaded.input_length is not None:
        if window is not None and window != loaded.input_length:
            raise ModelError(
                f"--window {window} does not fit the model {loaded.spec}, which takes inputs of length "
                f"{loaded.input_length}; drop --window or use --window {loaded.input_length}"
            )
        return loaded.input_length
    if window is None:
        raise ModelError(f"the input length of {loaded.spec} cannot be read from the model; give it with --window")
    return window


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
