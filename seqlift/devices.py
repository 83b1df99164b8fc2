"""``--device``: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``, checked before any work.

One process per GPU is how seqlift uses a node with several: each process
scores one shard on its own device (``--device cuda:0 --shard 1-of-2``, ...)
and ``seqlift merge`` joins the shards. This module does not import torch at
import time, so the command line can check the form of a device name cheaply.
"""

from __future__ import annotations

import re

from .errors import UsageError

DEVICE_FORMS = "auto, cpu, cuda or cuda:N (N = 0, 1, ...)"
_DEVICE = re.compile(r"auto|cpu|cuda(?::([0-9]+))?")


def check_device(text) -> str:
    """``text`` when it names a device of the form :data:`DEVICE_FORMS`, else :class:`~seqlift.errors.UsageError`."""
    text = str(text).strip()
    if not _DEVICE.fullmatch(text):
        raise UsageError(f"--device {text!r} is not {DEVICE_FORMS}; e.g. --device cuda:1 for the second GPU")
    return text


def resolve_device(device: str):
    """The ``torch.device`` of ``device``: ``auto`` is CUDA when available, else the CPU.

    ``cuda`` and ``cuda:N`` need a CUDA GPU, and ``cuda:N`` needs at least
    ``N + 1`` of them; otherwise :class:`~seqlift.errors.UsageError` says what is there.
    """
    import torch

    device = check_device(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UsageError(f"--device {device} was asked for but no CUDA GPU is available; use --device cpu or auto")
    index = _DEVICE.fullmatch(device)[1]
    count = torch.cuda.device_count()
    if index is not None and int(index) >= count:
        raise UsageError(
            f"--device {device}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}; "
            "pick one of those (check CUDA_VISIBLE_DEVICES, which renumbers them)"
        )
    return torch.device(device)
