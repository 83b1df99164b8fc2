"""Which rule, Rescale or RevealCancel, each nonlinearity takes: the presets and per-layer mappings.

``--rule`` names a preset of :data:`RULE_PRESETS` or maps layers to rules:
by module path (the longest matching key wins), else by the kind of weighted
layer that feeds the nonlinearity (``conv`` or ``dense``), else ``default``.
How each op is attributed under the chosen rule is :mod:`.rules`' table.
"""

from __future__ import annotations

import torch

from ..errors import UsageError
from .graph import module_path

aten = torch.ops.aten

#: Rule presets: layer kind (``conv``, ``dense``) or ``default`` -> rule for the nonlinearities after it.
RULE_PRESETS = {
    "rescale": {"default": "rescale"},
    "revealcancel": {"default": "revealcancel"},
    "genomics-default": {"conv": "rescale", "dense": "revealcancel", "default": "rescale"},
}
#: The rules a nonlinearity can take.
LAYER_RULES = ("rescale", "revealcancel")


def rule_spec(rule) -> dict:
    """A rule name or a mapping of layer kind / module path -> rule, checked."""
    if isinstance(rule, str):
        if rule not in RULE_PRESETS:
            raise UsageError(f"unknown rule {rule!r}; choose one of {', '.join(RULE_PRESETS)}, or give a mapping")
        return RULE_PRESETS[rule]
    if not isinstance(rule, dict):
        raise UsageError(f"a rule is a name or a mapping of layer to rule, not {rule!r}")
    bad = {k: v for k, v in rule.items() if v not in LAYER_RULES}
    if bad:
        key, value = next(iter(bad.items()))
        raise UsageError(f"rule {value!r} for {key!r} is not one of {', '.join(LAYER_RULES)}")
    return rule


_CONV = {aten.conv1d, aten.conv2d, aten.convolution, aten._convolution, aten.conv_transpose1d}
_DENSE = {aten.linear, aten.addmm, aten.mm, aten.bmm, aten.matmul}


def rule_for(node, spec: dict) -> str:
    """The rule for a nonlinearity: by module path (longest matching key), else by the
    kind of weighted layer that feeds it (``conv`` or ``dense``), else ``default``."""
    if "seqlift_rule" in node.meta:  # set by graph.lower
        return node.meta["seqlift_rule"]
    path = module_path(node)
    matches = [k for k in spec if k not in ("conv", "dense", "default") and (path == k or path.startswith(k + "."))]
    if matches:
        return spec[max(matches, key=len)]
    return spec.get(_feeding_layer(node), spec.get("default", "rescale"))


def _feeding_layer(node) -> str:
    """``conv`` or ``dense``: the nearest weighted op upstream of ``node``'s input."""
    current = node.args[0] if node.args else None
    while isinstance(current, torch.fx.Node) and current.op == "call_function":
        packet = getattr(current.target, "overloadpacket", None)
        if packet in _CONV:
            return "conv"
        if packet in _DENSE:
            return "dense"
        first = current.args[0] if current.args else None
        current = first[0] if isinstance(first, (list, tuple)) and first else first
    return "conv"
