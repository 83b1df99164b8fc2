"""The attribution methods of ``seqlift score``, one record each in :data:`METHODS`.

A record says how to build the method's scorer for a loaded model and what
the rest of a run needs to know about it: whether it uses references, whether
its attributions add up to ``f(x) - f(r)`` (summation-to-delta), whether it
takes DeepLIFT's layer rules, and whether the batch size is probed for it.
The command line's ``--method`` choices, the option checks
(:class:`seqlift.score_options.ScoreOptions`) and the pipeline all read this
table; a new method is one more entry here.

This module loads no torch when imported (the command line reads the names
for ``--help``); the builders import what they need when they run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

from .errors import ModelError, UsageError


class Scorer(NamedTuple):
    """One model made ready for a method.

    ``score_batch(X, refs, targets)`` returns one :class:`~seqlift.attribution.Attributions`
    per target; ``forward(x)`` is the model's output on a batch (on the device);
    ``target_space(t)`` names what the scores of target ``t`` explain (``logits``, ...).
    """

    score_batch: Callable
    forward: Callable
    target_space: Callable


@dataclass(frozen=True)
class Method:
    """An attribution method of ``seqlift score``.

    Attributes
    ----------
    name : str
        The ``--method`` value.
    build : callable
        ``build(loaded, length, options, device, batch_size) -> Scorer`` with
        ``loaded`` a :class:`seqlift.models.LoadedModel`, ``options`` the
        run's :class:`~seqlift.score_options.ScoreOptions` and
        ``batch_size()`` the regions per call once chosen.
    uses_references : bool
        Scores are relative to references (``--reference``, ``--n-refs``).
    summation : str
        ``exact``: the attributions add up to ``f(x) - f(r)`` and regions off
        by more than ``--tolerance`` are reported; ``approximate``: they
        approach it (a note gives the error reached); ``none``: no such property.
    layer_rules : bool
        Takes ``--rule``, ``--max-rule``, ``--split-signs``,
        ``--normalize-input-weights`` and ``--compile``.
    uses_steps : bool
        Takes ``--steps`` (integration points).
    probed : bool
        Without ``--batch-size``, the batch size is probed on the first
        regions (:mod:`seqlift.batching`); otherwise :data:`DEFAULT_BATCH_SIZE`.
    """

    name: str
    build: Callable[..., Scorer]
    uses_references: bool
    summation: str
    layer_rules: bool = False
    uses_steps: bool = False
    probed: bool = False


#: Regions per call of the methods that are not probed, when --batch-size is not given.
DEFAULT_BATCH_SIZE = 32


def _build_deeplift(loaded, length, options, device, batch_size) -> Scorer:
    from .attribution import prepare
    from .models import EXPORT_HINT

    if loaded.kind == "torchscript":
        raise ModelError(
            f"{loaded.spec} is TorchScript, whose graph seqlift cannot rewrite for DeepLIFT; use it with --method "
            f"gradient, gradient-x-input, integrated-gradients or ism, or {EXPORT_HINT}"
        )
    engine = prepare(
        loaded.model,
        length,
        rule=options.rule,
        allow_unsupported=options.allow_unsupported,
        device=device,
        normalize_input_weights=options.normalize_input_weights,
        compile=options.compile,
        max_rule=options.max_rule,
    )
    split_signs = options.split_signs
    engine.check_split_signs(split_signs)  # before any work, not at the first batch
    return Scorer(
        lambda X, refs, targets: engine.run(X, refs, targets, split_signs=split_signs),
        engine.forward,
        engine.target_space,
    )


def _captured(attribute: Callable) -> Callable[..., Scorer]:
    """The builder of a method that runs on the captured model, on the logits like DeepLIFT.

    ``attribute(captured, X, refs, target, rows=, device=, options=, fast=)``
    explains one target, ``rows`` inputs per model call.
    """

    def build(loaded, length, options, device, batch_size) -> Scorer:
        from .attribution.gradients import as_captured
        from .attribution.graph import CapturedModel, strip_output_activation
        from .targets import output_activation, target_space

        if loaded.kind == "torchscript":
            captured = CapturedModel(module=loaded.model.to(device), input_length=length)
        else:
            captured = strip_output_activation(as_captured(loaded.model, length, device))
        activation = lambda t: output_activation(t, captured.output_activations)
        space = lambda t: target_space(t, captured.output_activations)
        fast = loaded.kind != "torchscript"

        def bound(t):
            return lambda out: t.bind(out, _rows(out), activation(t))(out)

        def score_batch(X, refs, targets):
            rows = max(64, 8 * batch_size())
            return [
                attribute(captured, X, refs, bound(t), rows=rows, device=device, options=options, fast=fast)
                for t in targets
            ]

        return Scorer(score_batch, captured.module, space)

    return build


def _rows(out) -> int:
    return (out[0] if isinstance(out, (tuple, list)) else out).shape[0]


def _saliency(captured, X, refs, target, *, rows, device, options, fast):
    from .attribution.gradients import saliency

    return saliency(captured, X, target, batch_size=rows, device=device)


def _gradient_x_input(captured, X, refs, target, *, rows, device, options, fast):
    from .attribution.gradients import gradient_x_input

    return gradient_x_input(captured, X, target, batch_size=rows, device=device)


def _integrated_gradients(captured, X, refs, target, *, rows, device, options, fast):
    from .attribution.gradients import integrated_gradients

    return integrated_gradients(captured, X, refs, target, steps=options.steps, batch_size=rows, device=device)


def _ism(captured, X, refs, target, *, rows, device, options, fast):
    from .attribution.ism import ism

    return ism(captured, X, target, batch_size=rows, device=device, fast=fast)


#: Every method of ``seqlift score``, by ``--method`` name; the first is the default.
METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("deeplift", _build_deeplift, uses_references=True, summation="exact", layer_rules=True, probed=True),
        Method("gradient", _captured(_saliency), uses_references=False, summation="none"),
        Method("gradient-x-input", _captured(_gradient_x_input), uses_references=False, summation="none"),
        Method(
            "integrated-gradients",
            _captured(_integrated_gradients),
            uses_references=True,
            summation="approximate",
            uses_steps=True,
        ),
        Method("ism", _captured(_ism), uses_references=False, summation="none"),
    )
}


def get_method(method: str) -> Method:
    """The method called ``method``; :class:`UsageError` naming the choices when there is none."""
    if method not in METHODS:
        raise UsageError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    return METHODS[method]
