"""The one way to load a model and start an engine (node, bag tool and image command)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import NamedTuple

import torch

from depth_pro_ros.engine.device import resolve_device, resolve_precision
from depth_pro_ros.engine.pipeline import DepthEngine, ResultCallback
from depth_pro_ros.engine.types import EngineConfig
from depth_pro_ros.model import load_checkpoint, parse_precision

__all__ = ["LoadedModel", "create_engine", "load_model"]


class LoadedModel(NamedTuple):
    model: torch.nn.Module  # the network of the family the checkpoint holds
    device: torch.device
    precision: str  # fp32 / fp16 / bf16, "auto" resolved


def load_model(checkpoint: str | Path, device: str | None = None,
               precision: str = "auto", model_type: str | None = None) -> LoadedModel:
    """Load ``checkpoint`` on ``device`` (None: CUDA when present) in ``precision``.

    The model family is detected from the file; ``model_type`` (see
    ``model.MODEL_TYPES``; None or ``auto``: detect) settles what a file cannot say and
    is refused when it contradicts the file.

    Raises:
        ValueError: an unusable device or precision.
        CheckpointError: a missing, corrupt or foreign checkpoint.
    """
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    model = load_checkpoint(checkpoint, device=dev, precision=parse_precision(prec),
                            model_type=model_type)
    return LoadedModel(model, dev, prec)


def create_engine(
    checkpoint: str | Path,
    config: EngineConfig = EngineConfig(),
    on_result: ResultCallback | None = None,
    model_type: str | None = None,
) -> DepthEngine:
    """Load ``checkpoint`` on the config's device and precision and start an engine.

    The engine's ``config`` holds the device and precision actually used; its
    ``recipe.info`` says which model it runs.

    Raises:
        ValueError: an unusable device, precision or ``input_size``.
        CheckpointError: a missing, corrupt or foreign checkpoint.
    """
    loaded = load_model(checkpoint, config.device, config.precision, model_type)
    config = dataclasses.replace(config, device=str(loaded.device), precision=loaded.precision)
    return DepthEngine(loaded.model, config, on_result=on_result)
