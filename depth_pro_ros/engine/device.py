"""Turning a user's device and precision strings into what the engine runs with."""

from __future__ import annotations

import torch

from depth_pro_ros.model import PRECISIONS, parse_precision

__all__ = ["PRECISION_CHOICES", "resolve_device", "resolve_precision"]

#: What a user may ask for: a precision, or ``auto`` for the device's best (see below).
PRECISION_CHOICES: tuple[str, ...] = ("auto", *PRECISIONS)


def resolve_device(name: str | None) -> torch.device:
    """A usable ``torch.device`` from a user string; ``None`` picks CUDA when present."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"invalid device {name!r}: {exc}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} requested but only "
                             f"{torch.cuda.device_count()} CUDA device(s) are present")
    elif device.type != "cpu":
        raise ValueError(f"unsupported device {name!r} (use cpu, cuda or cuda:N)")
    return device


def resolve_precision(name: str, device: torch.device) -> str:
    """``fp32`` / ``fp16`` / ``bf16`` for ``name`` on ``device``.

    ``auto`` is fp16 on CUDA (tensor cores; the metric conversion stays fp32) and fp32 on
    the CPU, where half precision is slower and less exact.
    """
    if str(name).lower() == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    parse_precision(name)  # raises ValueError naming the choices
    return str(name).lower()
