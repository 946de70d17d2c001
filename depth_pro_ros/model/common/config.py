"""The config base of every family (JSON round trip) and the precisions a network runs in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, fields
from typing import Any

import torch

__all__ = ["PRECISIONS", "DictConfig", "build_network", "parse_precision"]

PRECISIONS: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}


def parse_precision(name: str | torch.dtype) -> torch.dtype:
    """Map ``fp32`` / ``fp16`` / ``bf16`` (or a torch dtype) to the torch dtype."""
    if isinstance(name, torch.dtype):
        if name in PRECISIONS.values():
            return name
        raise ValueError(f"unsupported precision {name}; use one of {sorted(PRECISIONS)}")
    try:
        return PRECISIONS[str(name).lower()]
    except KeyError:
        raise ValueError(
            f"unknown precision {name!r}; use one of {', '.join(PRECISIONS)}"
        ) from None


def build_network(network: Callable[[Any], torch.nn.Module], config: Any,
                  device: str | torch.device, precision: str | torch.dtype) -> Any:
    """``network(config)`` built on ``device`` (``"meta"`` allocates nothing) with
    parameters in ``precision``, in eval mode: every family's factory."""
    dtype = parse_precision(precision)
    with torch.device(device):
        model = network(config)
    return model.to(dtype=dtype).eval()


class DictConfig:
    """JSON round trip of a config dataclass (the project's checkpoint files store it)."""

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON values (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        """Build from a dict, rejecting unknown keys (a typo must not pass silently)."""
        if not isinstance(data, dict):
            raise ValueError(f"config must be a dict, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; known keys are {sorted(known)}")
        return cls(**data)
