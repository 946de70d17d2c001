"""Fixtures shared by the node, bag and CLI tests: a small saved random-weight model."""

from __future__ import annotations

import pytest
from model_factories import tiny_model

from depth_pro_ros.model import save_checkpoint

__all__ = ["tiny_model", "tiny_checkpoint"]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """Path of the tiny model saved in the project's checkpoint format."""
    return save_checkpoint(tiny_model(), tmp_path_factory.mktemp("ckpt") / "tiny.pt")
