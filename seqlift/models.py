"""Loading models safely, and describing them for provenance.

Two formats load without running code from the model file:

``model.pt2``
    A ``torch.export`` program (``torch.export.save``), exported with a dynamic
    batch dimension. Its graph and weights are data, once checked: PyTorch's
    loader also unpickles entries marked as pickles, evaluates the symbolic
    shape expressions with sympy (``eval``) and compiles the shape guards as
    Python code, so :func:`program_code_risk` first checks that every pickle
    holds tensors only, every expression and guard is plain arithmetic on
    shapes, and every op is a torch op; anything else is refused unless the
    user passes ``trust_model``.
``path/to/file.py:ClassName`` or ``package.module:ClassName`` plus ``weights``
    The user names the Python class (that is the user's own code, imported on
    their say-so) and the weights come from a state dict read with
    ``torch.load(weights_only=True)`` or from a ``.safetensors`` file, which
    cannot carry code. Constructor keyword arguments come from ``model_kwargs``.

A TorchScript file loads too (its code is TorchScript, run by PyTorch's
interpreter, and its pickles are read by TorchScript's own unpickler, which
resolves only torch and TorchScript types, never a Python callable), for the gradient methods and ISM; DeepLIFT needs a graph it can
rewrite, so it asks for ``.pt2``. A pickled full module (``torch.save(model)``)
is refused unless the user passes ``trust_model``: unpickling runs arbitrary code.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import io
import json
import re
import sys
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import ModelError, UsageError

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


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_model(
    spec: str, weights: str | None = None, model_kwargs: dict | None = None, trust_model: bool = False
) -> LoadedModel:
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
        raise UsageError(f"--weights goes with a class model (file.py:ClassName), not with the file {spec}")
    if not zipfile.is_zipfile(path):
        raise ModelError(f"{spec} is not a model file (not a torch.export .pt2 archive); {EXPORT_HINT}")
    names = zipfile.ZipFile(path).namelist()
    if any(n.endswith("constants.pkl") for n in names) and any("/code/" in n for n in names):
        try:
            script = torch.jit.load(spec, map_location="cpu").eval()
        except Exception as exc:  # a damaged archive fails in many ways
            raise ModelError(f"{spec} could not be read as TorchScript: {_first_line(exc)}") from exc
        return LoadedModel(model=script, spec=spec, sha256=sha256_file(path), input_length=None, kind="torchscript")
    if any(n.endswith("data.pkl") for n in names) and not any(
        "serialized_exported_program" in n or "models/" in n for n in names
    ):
        if trust_model:
            return _load_pickled(spec, path)
        raise ModelError(
            f"{spec} is a torch.save pickle; loading it could run code, so seqlift refuses it unless you pass "
            f"--trust-model. For a state dict use --model file.py:ClassName --weights {spec}; for a full model, {EXPORT_HINT}"
        )
    if not trust_model:
        risk = program_code_risk(path)
        if risk:
            raise ModelError(
                f"{spec} cannot be loaded safely: {risk}, and loading it could run code from the file; pass "
                f"--trust-model only if you trust where it came from, or {EXPORT_HINT}"
            )
    try:
        program = torch.export.load(spec)
    except Exception as exc:  # a corrupt or foreign archive fails in many ways
        raise ModelError(
            f"{spec} could not be read as a torch.export program: {_first_line(exc)}; {EXPORT_HINT}"
        ) from exc
    _check_program(program, spec)
    from .attribution.graph import capture

    length = capture(program).input_length
    return LoadedModel(model=program, spec=spec, sha256=sha256_file(path), input_length=length)


def _check_program(program, spec: str) -> None:
    """The program takes one (N, 4, L) tensor and returns a tensor or a tuple of tensors (read from its graph)."""
    inputs = [s for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    if len(inputs) == 1:
        node = next((n for n in program.graph.nodes if n.op == "placeholder" and n.name == inputs[0].arg.name), None)
        val = node.meta.get("val") if node is not None else None
        shape = tuple(val.shape) if isinstance(val, torch.Tensor) else None
        if shape is not None and (len(shape) != 3 or (isinstance(shape[1], int) and shape[1] != 4)):
            what = f"{shape[1]} input channels" if len(shape) == 3 else f"inputs of {len(shape)} dimensions"
            raise ModelError(
                f"{spec} takes {what} (example input of shape {tuple(int(d) if isinstance(d, int) else 'N' for d in shape)}); "
                "seqlift scores models of one-hot DNA, input (N, 4, L) with channels A, C, G, T"
            )
    out_spec = program.call_spec.out_spec
    if out_spec is not None and out_spec.type is dict:
        _refuse_output(spec, "a dict", list(out_spec.context))


def _load_pickled(spec: str, path: Path) -> LoadedModel:
    try:
        model = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # unpickling fails in many ways (missing classes, corrupt files)
        raise ModelError(f"{spec} could not be unpickled: {_first_line(exc)}; {EXPORT_HINT}") from exc
    if not isinstance(model, torch.nn.Module):
        raise ModelError(
            f"{spec} holds a {type(model).__name__}, not a model; for a state dict use --model "
            f"file.py:ClassName --weights {spec}"
        )
    model.eval()
    length = getattr(model, "input_length", None)
    return LoadedModel(
        model=model, spec=spec, sha256=sha256_file(path), input_length=int(length) if length else None, kind="module"
    )


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
        try:
            module_spec.loader.exec_module(module)
        except BaseException as exc:
            sys.modules.pop(module_name, None)
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            raise ModelError(_import_failure(where, spec, exc)) from None
    else:
        try:
            module = importlib.import_module(where)
        except Exception as exc:  # the module's own code can raise anything
            raise ModelError(_import_failure(where, spec, exc)) from None
    cls = getattr(module, name, None)
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise ModelError(f"{where} has no nn.Module class named {name!r} (from --model {spec})")
    if weights is None:
        raise UsageError(f"--model {spec} names a class; give its trained state dict with --weights")
    try:
        model = cls(**kwargs)
    except TypeError as exc:
        raise ModelError(
            f"{name}(**{kwargs}) failed: {exc}; set constructor arguments under model_kwargs in --config"
        ) from exc
    state = load_state_dict(weights)
    misfit = _state_misfit(model, state, name)
    if misfit:
        raise ModelError(
            f"weights {weights} do not fit {name}: {misfit}; give the weights saved from this class, with the "
            "constructor arguments they were trained with (model_kwargs)"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"weights {weights} do not fit {name}: {_first_line(exc)}") from exc
    model.eval()
    length = getattr(model, "input_length", None)
    return LoadedModel(
        model=model,
        spec=spec,
        sha256=sha256_file(weights),
        input_length=int(length) if length else None,
        kwargs=kwargs,
        kind="module",
    )


def _import_failure(where: str, spec: str, exc: BaseException) -> str:
    """One line on a model source that cannot be imported: the file and line of a syntax error, else the error."""
    if isinstance(exc, SyntaxError):
        line = f" line {exc.lineno}" if exc.lineno else ""
        return f"{exc.filename or where}{line}: syntax error ({exc.msg}) in the model source of --model {spec}; fix the file"
    return (
        f"importing {where} (from --model {spec}) failed: {type(exc).__name__}: {_first_line(exc)}; fix the model "
        "source, or install what it imports"
    )


def _state_misfit(model: torch.nn.Module, state: dict, name: str, shown: int = 5) -> str:
    """Missing and unexpected keys and mismatched shapes of ``state`` for ``model``; empty when it fits."""
    own = model.state_dict()

    def listed(keys):
        keys = sorted(keys)
        return ", ".join(keys[:shown]) + (f" and {len(keys) - shown} more" if len(keys) > shown else "")

    parts = []
    missing, unexpected = set(own) - set(state), set(state) - set(own)
    if missing:
        parts.append(f"missing: {listed(missing)}")
    if unexpected:
        parts.append(f"unexpected: {listed(unexpected)}")
    shapes = [
        f"{k} is {tuple(state[k].shape)} in the file but {tuple(own[k].shape)} in {name}"
        for k in sorted(set(own) & set(state))
        if hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if shapes:
        parts.append("; ".join(shapes[:shown]) + (f" and {len(shapes) - shown} more" if len(shapes) > shown else ""))
    return "; ".join(parts)


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
    """The input length to score with: the model's, checked against ``--window``.

    A class model, a pickled module or a TorchScript model is also run once on
    a batch of two all-N windows, shape (2, 4, L), to check that it takes
    one-hot DNA and returns a tensor or a tuple of tensors with the batch
    first (a ``.pt2`` program is checked from its graph when it is loaded).

    Raises
    ------
    UsageError
        When ``window`` differs from the model's length.
    ModelError
        When the length is unknown, or the model does not run on (2, 4, L) or
        returns something else.
    """
    if loaded.input_length is not None:
        if window is not None and window != loaded.input_length:
            raise UsageError(
                f"--window {window} does not fit the model {loaded.spec}, which takes inputs of length "
                f"{loaded.input_length}; drop --window or use --window {loaded.input_length}"
            )
        length = loaded.input_length
    elif window is None:
        raise ModelError(f"the input length of {loaded.spec} cannot be read from the model; give it with --window")
    else:
        length = window
    if loaded.kind != "program":
        check_runs(loaded.model, loaded.spec, length)
    return length


def check_runs(model: torch.nn.Module, spec: str, length: int) -> None:
    """Run ``model`` once on zeros of shape (2, 4, ``length``) and check what it returns.

    Raises
    ------
    ModelError
        When the call fails (e.g. a model of 5 input channels), or the output
        is not a tensor or a tuple/list of tensors whose first dimension is
        the batch (2).
    """
    params = [p for p in model.parameters()] if isinstance(model, torch.nn.Module) else []
    dtype = params[0].dtype if params and params[0].is_floating_point() else torch.float32
    device = params[0].device if params else torch.device("cpu")
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, 4, length, dtype=dtype, device=device))
    except Exception as exc:  # a model fails in as many ways as it has layers
        raise ModelError(
            f"{spec} does not run on one-hot DNA of shape (N, 4, {length}): {_first_line(exc)}; seqlift scores models "
            "that take one tensor (N, 4, L) with channels A, C, G, T"
        ) from None
    if isinstance(out, dict):
        _refuse_output(spec, "a dict", list(out))
    parts = list(out) if isinstance(out, (tuple, list)) else [out]
    for part in parts:
        if not isinstance(part, torch.Tensor):
            _refuse_output(spec, f"a {type(part).__name__}" + (" inside a tuple" if part is not out else ""), None)
        if part.dim() == 0 or part.shape[0] != 2:
            raise ModelError(
                f"{spec} returns an output of shape {tuple(part.shape)} for a batch of 2 inputs; its first dimension "
                "must be the batch (one row per input), e.g. (N,) or (N, T)"
            )


def _refuse_output(spec: str, what: str, keys) -> None:
    named = f" (keys {', '.join(repr(k) for k in keys)})" if keys else ""
    example = f"e.g. return out[{keys[0]!r}]" if keys else "e.g. return the logits"
    raise ModelError(
        f"{spec} returns {what}{named}; seqlift reads a tensor or a tuple of tensors: make forward return one, "
        f"{example}, or wrap the model in a module that does"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --- what in a .pt2 archive would run code when torch.export.load reads it -------------------------

#: Functions that may appear in a symbolic shape expression (sympy classes and torch's sympy functions).
_SYMPY_CALLS = frozenset(
    {
        "Symbol",
        "Integer",
        "Float",
        "Rational",
        "Add",
        "Mul",
        "Pow",
        "Mod",
        "Max",
        "Min",
        "Abs",
        "floor",
        "ceiling",
        "sqrt",
        "Eq",
        "Ne",
        "Lt",
        "Le",
        "Gt",
        "Ge",
        "And",
        "Or",
        "Not",
        "Piecewise",
        "ITE",
        "FloorDiv",
        "ModularIndexing",
        "Where",
        "PythonMod",
        "CleanDiv",
        "CeilToInt",
        "FloorToInt",
        "CeilDiv",
        "LShift",
        "RShift",
        "IsNonOverlappingAndDenseIndicator",
        "TruncToFloat",
        "TruncToInt",
        "RoundToInt",
        "RoundDecimal",
        "ToFloat",
        "FloatPow",
        "PowByNatural",
        "IntTrueDiv",
        "FloatTrueDiv",
        "Identity",
        "OpaqueUnaryFn_sqrt",
        "BitwiseFn_bitwise_and",
        "BitwiseFn_bitwise_or",
        "BitwiseFn_bitwise_xor",
    }
)
#: Functions that may be called in a shape guard (it is compiled with sympy's and Python's names in scope).
_GUARD_CALLS = frozenset(
    {
        "max",
        "min",
        "abs",
        "int",
        "float",
        "bool",
        "round",
        "IsNonOverlappingAndDenseIndicator",
        "cast_symbool_to_symint_guardless",
    }
)
#: Tensor methods a shape guard may call on an input (``L['x'].size()[0]``).
_GUARD_METHODS = frozenset({"size", "stride", "storage_offset", "dim", "numel"})
_ARITHMETIC = (
    ast.Expression,
    ast.BinOp,
    ast.UnaryOp,
    ast.BoolOp,
    ast.Compare,
    ast.IfExp,
    ast.Tuple,
    ast.Load,
    ast.operator,
    ast.unaryop,
    ast.boolop,
    ast.cmpop,
)
_SYMBOL = re.compile(r"[A-Za-z][A-Za-z0-9]*\Z")
#: Op targets the graph may call: torch operators, Python's operator and math modules.
_TARGET = re.compile(
    r"(torch\.ops\.[A-Za-z0-9_.]+|torch\.sym_[A-Za-z0-9_]+|_operator\.[a-z][a-z0-9_]*"
    r"|math\.[a-z][a-z0-9_]*)\Z"
)
_LEGACY_PICKLES = (
    "serialized_state_dict.pt",
    "serialized_constants.pt",
    "serialized_example_inputs.pt",
    "serialized_state_dict.json",
    "serialized_constants.json",
)


def program_code_risk(path: str | Path) -> str | None:
    """What in a ``torch.export`` archive would run code when it is loaded, or None.

    ``torch.export.load`` reads pickles (weights and constants marked
    ``use_pickle``, Python objects among the constants, and the sample inputs,
    which fall back to full unpickling), evaluates symbolic shape expressions
    with ``sympy.sympify`` (an ``eval``), compiles the shape guards as Python
    source when the program is turned into a module, and loads compiled
    AOTInductor libraries. This reads the archive with PyTorch's own reader and
    accepts only: pickles that ``torch.load(weights_only=True)`` reads (tensors
    and containers), expressions and guards that are arithmetic and
    comparisons on symbols and input shapes, and op targets in ``torch.ops``,
    ``operator`` or ``math``.

    Parameters
    ----------
    path : str or Path
        A ``.pt2`` file (a zip archive).

    Returns
    -------
    str or None
        The first entry that could run code, described for a message.
    """
    from torch.export.pt2_archive import constants as pt2
    from torch.export.pt2_archive._package import PT2ArchiveReader

    try:
        with zipfile.ZipFile(path) as zf:  # the format of torch < 2.8, which torch.export.load falls back to
            for info in zf.infolist():
                if info.filename in _LEGACY_PICKLES and not _tensors_only(zf.read(info)):
                    return f"entry {info.filename} is a pickle of Python objects"
                if info.filename == "serialized_exported_program.json":
                    risk = _program_json_risk(zf.read(info), info.filename)
                    if risk:
                        return risk
        with PT2ArchiveReader(str(path)) as reader:
            names = set(reader.get_file_names())
            if any(n.startswith(pt2.AOTINDUCTOR_DIR) for n in names):
                return f"it holds compiled native code ({pt2.AOTINDUCTOR_DIR})"
            models = [
                n[len(pt2.MODELS_DIR) : -len(".json")]
                for n in names
                if n.startswith(pt2.MODELS_DIR) and n.endswith(".json")
            ]
            for model in models:
                for legacy in (f"{pt2.WEIGHTS_DIR}{model}.pt", f"{pt2.CONSTANTS_DIR}{model}.pt"):
                    if legacy in names and not _tensors_only(reader.read_bytes(legacy)):
                        return f"entry {legacy} is a pickle of Python objects"
                weights = pt2.WEIGHTS_CONFIG_FILENAME_FORMAT.format(model)
                for fqn, meta in _payload_config(reader, weights, names).items():
                    if meta.get("use_pickle"):
                        return f"weight {fqn!r} is stored as a pickle ({weights})"
                constants = pt2.CONSTANTS_CONFIG_FILENAME_FORMAT.format(model)
                for fqn, meta in _payload_config(reader, constants, names).items():
                    if not str(meta.get("path_name", "")).startswith(pt2.TENSOR_CONSTANT_FILENAME_PREFIX):
                        return f"constant {fqn!r} is a pickled Python object ({constants})"
                    if meta.get("use_pickle"):
                        return f"constant {fqn!r} is stored as a pickle ({constants})"
                sample = pt2.SAMPLE_INPUTS_FILENAME_FORMAT.format(model)
                if sample in names and not _tensors_only(reader.read_bytes(sample)):
                    return f"its sample inputs ({sample}) are a pickle of Python objects"
                program = pt2.MODELS_FILENAME_FORMAT.format(model)
                risk = _program_json_risk(reader.read_bytes(program), program)
                if risk:
                    return risk
    except (zipfile.BadZipFile, RuntimeError, OSError, ValueError, UnicodeDecodeError) as exc:
        return f"its archive cannot be checked ({_first_line(exc)})"
    return None


def _payload_config(reader, name: str, names: set) -> dict:
    if name not in names:
        return {}
    config = json.loads(reader.read_string(name))
    entries = config.get("config", {}) if isinstance(config, dict) else None
    if not isinstance(entries, dict) or not all(isinstance(m, dict) for m in entries.values()):
        raise ValueError(f"{name} is not a payload config")
    return entries


def _tensors_only(blob: bytes) -> bool:
    """Whether ``torch.load(weights_only=True)`` reads ``blob``, as ``torch.export.load`` tries first."""
    if not blob:
        return True
    try:
        with warnings.catch_warnings():  # e.g. about the pickle protocol of a blob that is refused anyway
            warnings.simplefilter("ignore")
            torch.load(io.BytesIO(blob), weights_only=True)
    except Exception:  # any refusal means the full unpickler would be tried
        return False
    return True


def _program_json_risk(blob: bytes, where: str) -> str | None:
    """The first shape expression, guard or op target in a serialized program that is not plain data."""
    program = json.loads(blob)
    found = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "expr_str" and isinstance(value, str):
                    found.append(("expression", value))
                elif key == "target" and isinstance(value, str) and "graph" not in node:
                    found.append(("target", value))
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(program)
    for key in (program.get("range_constraints") or {}) if isinstance(program, dict) else ():
        found.append(("expression", key))
    guards = program.get("guards_code") or [] if isinstance(program, dict) else []
    found += [("guard", g) for g in (guards if isinstance(guards, list) else [guards])]
    for kind, text in found:
        ok = (
            (_TARGET.match(text) is not None or text.startswith("#"))
            if kind == "target"
            else _is_arithmetic(text, kind)
        )
        if not ok:
            shown = text if len(text) <= 60 else text[:57] + "..."
            return f"{where} has a {'shape ' if kind != 'target' else 'op '}{kind} that is not plain data: {shown!r}"
    return None


def _is_arithmetic(text, kind: str) -> bool:
    """Whether ``text`` is arithmetic on symbols (``expression``) or on input shapes (``guard``)."""
    if not isinstance(text, str) or any(c in text for c in "\n\r#\\;"):
        return False
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, _ARITHMETIC) or isinstance(node, ast.keyword):
            continue
        if isinstance(node, ast.Constant):
            if isinstance(node.value, str) and kind == "expression":
                continue  # a symbol's name: only Symbol() and Integer() take strings, checked below
            if isinstance(node.value, (int, float, bool, str)) or node.value is None:
                continue
            return False
        if isinstance(node, ast.Name):
            if node.id.startswith("_") or not _SYMBOL.match(node.id):
                return False
            continue
        if isinstance(node, ast.Call):
            func = node.func
            if kind == "expression":
                if not (isinstance(func, ast.Name) and func.id in _SYMPY_CALLS):
                    return False
                if any(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in node.args) and func.id not in (
                    "Symbol",
                    "Integer",
                ):
                    return False
            elif isinstance(func, ast.Name):
                if func.id not in _GUARD_CALLS:
                    return False
            elif not (
                isinstance(func, ast.Attribute)
                and (
                    func.attr in _GUARD_METHODS
                    or (isinstance(func.value, ast.Name) and func.value.id == "math" and not func.attr.startswith("_"))
                    or (isinstance(func.value, ast.Name) and func.value.id == "torch" and func.attr.startswith("sym_"))
                )
            ):
                return False
            continue
        if kind == "guard" and isinstance(node, ast.Attribute):
            if node.attr.startswith("_") or not (
                node.attr in _GUARD_METHODS
                or node.attr == "shape"
                or (isinstance(node.value, ast.Name) and node.value.id in ("math", "torch"))
            ):
                return False
            continue
        if kind == "guard" and isinstance(node, ast.Subscript):
            continue
        return False
    if kind == "expression":
        # strings only as a symbol's name, and keywords only as its assumptions
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and not isinstance(node.value, ast.Constant):
                return False
    return True
