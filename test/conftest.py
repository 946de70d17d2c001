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


@pytest.fixture(scope="session")
def da_checkpoints(tmp_path_factory):
    """Tiny Depth Anything V2 metric and relative and Prompt Depth Anything models saved
    in the project's format: name -> path."""
    from model_factories import tiny_depth_anything

    root = tmp_path_factory.mktemp("da_ckpt")
    models = {"metric": tiny_depth_anything("metric"),
              "relative": tiny_depth_anything("relative"),
              "prompt": tiny_depth_anything("metric", prompt=True)}
    return {name: save_checkpoint(m, root / f"{name}.pt") for name, m in models.items()}
