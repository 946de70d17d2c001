"""A small random-weight Depth Pro for tests (shared by the node, bag and CLI tests)."""

from __future__ import annotations

import torch

from depth_pro_ros.model import DepthProConfig, create_model


def tiny_model() -> torch.nn.Module:
    """The tiny config with fixed random weights whose outputs look plausible.

    Random weights give a negative FoV and nearly constant depth; shifting the FoV
    head's bias (and scaling its weights) and scaling the depth head gives a ~60
    degree FoV that varies with the picture and depth that varies
    across the image, so tests can tell pixels and frames apart.
    """
    torch.manual_seed(3)
    model = create_model(DepthProConfig.tiny())
    with torch.no_grad():
        model.fov.head[-1].bias.fill_(60.0)
        model.fov.head[-1].weight.mul_(30.0)  # estimates that differ between pictures
        model.head[-2].weight.mul_(20.0)
        model.head[-2].bias.fill_(0.3)
    return model
