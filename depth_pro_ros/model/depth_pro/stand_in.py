"""Depth Pro's random-weight stand-ins (``depth-pro-ros checkpoint --random``): the sizes,
and the biases that make their outputs look plausible."""

from __future__ import annotations

import torch

from ..common.family import ModelType
from .config import DepthProConfig
from .network import DepthPro

__all__ = ["SIZES", "SEED", "plausible", "stand_in_config"]

SIZES = ("tiny", "full")
SEED = 3


def stand_in_config(size: str, model_type: ModelType) -> DepthProConfig:
    """The architecture of the stand-in ``size`` (one of :data:`SIZES`)."""
    return DepthProConfig.tiny() if size == "tiny" else DepthProConfig.depth_pro()


@torch.no_grad()
def plausible(model: DepthPro, tiny: bool) -> None:
    """Random weights give a negative FoV and nearly constant depth: a ~60 degree FoV that
    differs between pictures, and depth that varies across the image."""
    if model.fov is not None:
        model.fov.head[-1].bias.fill_(60.0)
        if tiny:
            model.fov.head[-1].weight.mul_(30.0)
    if tiny:
        model.head[-2].weight.mul_(20.0)
    model.head[-2].bias.fill_(0.3)
