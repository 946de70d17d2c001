"""Fixtures shared by the node, bag and CLI tests: a small saved random-weight model."""

from __future__ import annotations

import pytest
import torch

from depth_pro_ros.model import DepthProConfig, create_model, save_checkpoint


def tiny_model() -> torch.nn.Module:
    """The tiny config with fixed random weights whose outputs look plausible.

    Random weights give a negative FoV and nearly constant depth; shifting the FoV
    head's bias and scaling the depth head gives a ~60 degree FoV and depth that varies
    across the image, so tests can tell pixels and frames apart.
    """
    torch.manual_seed(3)
    model = create_model(DepthProConfig.tiny())
    with torch.no_grad():
        model.fov.head[-1].bias.fill_(60.0)
        model.head[-2].weight.mul_(20.0)
        model.head[-2].bias.fill_(0.3)
    return model


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """Path of the tiny model saved in the project's checkpoint format."""
    return save_checkpoint(tiny_model(), tmp_path_factory.mktemp("ckpt") / "tiny.pt")
