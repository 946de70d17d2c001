"""Fixtures shared by the node, bag and CLI tests: small random-weight checkpoints written
by the product's own stand-in command (``depth-pro-ros checkpoint --random tiny``), so
every test that loads one also shows that command's files load in that tool."""

from __future__ import annotations

from pathlib import Path

import pytest
from model_factories import tiny_model

__all__ = ["tiny_model", "tiny_checkpoint", "write_stand_in"]


def write_stand_in(path: Path, model_type: str = "depth_pro") -> Path:
    """``depth-pro-ros checkpoint --random tiny --model-type MODEL_TYPE -o PATH``, run in
    this process; its weights are those of ``model_factories``' tiny models."""
    import contextlib
    import io

    from depth_pro_ros.cli import main

    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["checkpoint", "--random", "tiny", "--model-type", model_type,
                     "-o", str(path)])
    assert code == 0 and path.is_file(), f"checkpoint --random tiny: exit status {code}"
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """Path of the tiny Depth Pro (``model_factories.tiny_model``) in the project's format."""
    return write_stand_in(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture(scope="session")
def da_checkpoints(tmp_path_factory):
    """Tiny Depth Anything V2 metric (indoor, 20 m) and relative and Prompt Depth Anything
    models (``model_factories.tiny_depth_anything``) in the project's format: name -> path."""
    root = tmp_path_factory.mktemp("da_ckpt")
    types = {"metric": "depth_anything_v2_metric_indoor", "relative": "depth_anything_v2",
             "prompt": "prompt_depth_anything"}
    return {name: write_stand_in(root / f"{name}.pt", t) for name, t in types.items()}
