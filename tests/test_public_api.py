"""The public API is fully annotated, and the annotations resolve.

The public API of a module is its ``__all__`` where it has one, else the public functions and classes defined
in it. For a class, its public methods and ``__init__`` (written or dataclass-generated) are checked. Every parameter but ``self``/``cls`` and
every return but ``__init__``'s must carry an annotation, and ``typing.get_type_hints`` must resolve them in
the defining module's globals (which catches misspelled names and names imported only for type checkers).
"""

import importlib
import inspect
import typing

import pytest

MODULES = [
    "seqlift",
    "seqlift.attribution",
    "seqlift.attribution.gradients",
    "seqlift.attribution.ism",
    "seqlift.evaluate",
    "seqlift.genome",
    "seqlift.logos",
    "seqlift.merge",
    "seqlift.models",
    "seqlift.motifs",
    "seqlift.pipeline",
    "seqlift.references",
    "seqlift.regions",
    "seqlift.score_options",
    "seqlift.targets",
    "seqlift.tracks",
    "seqlift.writers",
]

# Functions whose hints name something imported only under ``if TYPE_CHECKING:`` because importing it for
# real would cost startup time; get_type_hints cannot resolve those, so only presence is checked for them.
# Keyed by "module.qualname" of the defining function, with the reason.
UNRESOLVABLE = {
    "seqlift.writers.score_rows": "Attributions lives in seqlift.attribution, which imports torch",
    "seqlift.writers.ScoreWriter.__init__": "Window lives in seqlift.regions, which imports pyfaidx",
    "seqlift.motifs.discover": "modiscolite.core.SeqletSet: modiscolite takes most of a second to import",
    "seqlift.motifs.to_motifs": "modiscolite.core.SeqletSet: modiscolite takes most of a second to import",
}


def public_functions(module_name):
    """(label, function) for every public function and public method of ``module_name``'s API."""
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    if names is None:
        names = [
            name
            for name, value in vars(module).items()
            if not name.startswith("_")
            and (inspect.isfunction(value) or inspect.isclass(value))
            and getattr(value, "__module__", "") == module_name
        ]
    found = []
    for name in names:
        obj = getattr(module, name)
        if inspect.isclass(obj):
            for attr, value in vars(obj).items():
                # a function that a base puts into the class (typing.Protocol's __init__) is not seqlift's
                if (
                    inspect.isfunction(value)
                    and (not attr.startswith("_") or attr == "__init__")
                    and value.__module__ == obj.__module__
                ):
                    found.append((f"{name}.{attr}", value))
        elif inspect.isfunction(obj):
            found.append((name, obj))
    return found


def missing_annotations(label, function):
    signature = inspect.signature(function)
    missing = [
        param
        for param, value in signature.parameters.items()
        if param not in ("self", "cls") and value.annotation is inspect.Parameter.empty
    ]
    if signature.return_annotation is inspect.Signature.empty and not label.endswith("__init__"):
        missing.append("return")
    return missing


@pytest.mark.parametrize("module_name", MODULES)
def test_public_api_is_annotated(module_name):
    functions = public_functions(module_name)
    assert functions, f"{module_name} has no public functions; is the module list stale?"
    missing = {label: names for label, function in functions if (names := missing_annotations(label, function))}
    assert not missing, f"{module_name}: missing annotations: " + "; ".join(
        f"{label} ({', '.join(names)})" for label, names in missing.items()
    )


@pytest.mark.parametrize("module_name", MODULES)
def test_public_annotations_resolve(module_name):
    failures = []
    for label, function in public_functions(module_name):
        key = f"{function.__module__}.{function.__qualname__}"
        if key in UNRESOLVABLE:
            continue
        defining = importlib.import_module(function.__module__)
        try:
            typing.get_type_hints(function, globalns=vars(defining))
        except Exception as error:  # NameError for an unknown name, TypeError for a malformed hint
            failures.append(f"{label} ({type(error).__name__}: {error})")
    assert not failures, f"{module_name}: unresolvable annotations: " + "; ".join(failures)


def test_unresolvable_list_is_current():
    """Each UNRESOLVABLE entry names a function that is checked and that still fails to resolve."""
    checked = {f"{f.__module__}.{f.__qualname__}": f for m in MODULES for _, f in public_functions(m)}
    for key in UNRESOLVABLE:
        assert key in checked, f"{key} is not in the public API any more"
        defining = importlib.import_module(checked[key].__module__)
        with pytest.raises(NameError):
            typing.get_type_hints(checked[key], globalns=vars(defining))
