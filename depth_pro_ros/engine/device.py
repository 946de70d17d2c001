"""Turning a user's device and precision strings into what the engine runs with."""

from __future__ import annotations

from contextlib import nullcontext

import torch

from depth_pro_ros.engine.errors import UnsupportedPrecisionError
from depth_pro_ros.model import PRECISIONS, parse_precision

__all__ = ["PRECISION_CHOICES", "require_precision_support", "resolve_device",
           "resolve_precision"]

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

    Raises:
        ValueError: an unknown precision name.
        UnsupportedPrecisionError: bf16 on a GPU without bf16 support.
    """
    if str(name).lower() == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    require_precision_support(parse_precision(name), device)  # parse: ValueError naming them
    return str(name).lower()


def require_precision_support(dtype: torch.dtype, device: torch.device) -> None:
    """Refuse bf16 on a CUDA device without native bf16 (compute capability below 8.0).

    torch's emulation there is not counted as support: it runs without tensor cores and
    many kernels lack it, so the first frame would fail or crawl.

    Raises:
        UnsupportedPrecisionError: naming fp16, which such GPUs run natively.
    """
    if dtype != torch.bfloat16 or device.type != "cuda" or not torch.cuda.is_available():
        return  # without CUDA the device itself is refused (resolve_device)
    # is_bf16_supported asks about the current device: make it this one.
    ctx = torch.cuda.device(device.index) if device.index is not None else nullcontext()
    with ctx:
        supported = torch.cuda.is_bf16_supported(including_emulation=False)
    if not supported:
        raise UnsupportedPrecisionError(
            f"precision bf16 is not supported on {device} (bf16 needs compute capability "
            "8.0 or newer): use precision fp16 (or fp32)")
