"""Depth Anything's random-weight stand-ins (``depth-pro-ros checkpoint --random``): the
sizes, and the head bias that makes their outputs look plausible."""

from __future__ import annotations

import torch

from ..common.family import ModelType
from .config import DepthAnythingConfig
from .network import DepthAnything

__all__ = ["SEED", "SIZES", "plausible", "stand_in_config"]

SIZES = ("tiny", "vits", "vitb", "vitl")
SEED = 5


def stand_in_config(size: str, model_type: ModelType) -> DepthAnythingConfig:
    """The architecture of the stand-in ``size`` (one of :data:`SIZES`) of ``model_type``."""
    fields = model_type.fields
    return getattr(DepthAnythingConfig, size)(
        head=fields.get("head"), max_depth=fields.get("max_depth") or 1.0,
        prompt=bool(fields.get("prompt")))


@torch.no_grad()
def plausible(model: DepthAnything, tiny: bool) -> None:
    """The last 1x1 convolution: scaled up, and its bias set so that the relative head's
    ReLU keeps most pixels positive and the metric sigmoid is not saturated."""
    last = [m for m in model.modules()
            if isinstance(m, torch.nn.Conv2d) and m.out_channels == 1][-1]
    last.weight.mul_(8.0)
    last.bias.fill_(0.5 if model.config.head == "metric" else 2.0)
