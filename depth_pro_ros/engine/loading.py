"""The one way to load a model and start an engine (node, bag tool and image command).

A ``.onnx`` checkpoint is an exported file (:mod:`~depth_pro_ros.engine.backends.
onnx_file`): its metadata gives the model, no torch network is built. Every backend but
fp32 torch passes the accuracy gate (:mod:`~depth_pro_ros.engine.backends.gate`) here,
before the engine serves a frame.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from pathlib import Path
from typing import NamedTuple

import torch

from depth_pro_ros.engine.backends import OnnxModel, gate, gate_cache
from depth_pro_ros.engine.backends.onnx_file import is_onnx, read_onnx
from depth_pro_ros.engine.device import resolve_device, resolve_precision
from depth_pro_ros.engine.pipeline import DepthEngine, ResultCallback
from depth_pro_ros.engine.types import EngineConfig
from depth_pro_ros.model import load_checkpoint, parse_precision, recipe_for

__all__ = ["LoadedModel", "create_engine", "load_model"]

_log = logging.getLogger(__name__)


class LoadedModel(NamedTuple):
    # the network of the family the checkpoint holds, or an exported ONNX file
    model: torch.nn.Module | OnnxModel
    device: torch.device
    precision: str  # fp32 / fp16 / bf16, "auto" resolved


def load_model(checkpoint: str | Path, device: str | None = None,
               precision: str = "auto", model_type: str | None = None,
               backend: str = "auto") -> LoadedModel:
    """Load ``checkpoint`` on ``device`` (None: CUDA when present) in ``precision``.

    The model family is detected from the file; ``model_type`` (see
    ``model.MODEL_TYPES``; None or ``auto``: detect) settles what a file cannot say and
    is refused when it contradicts the file. A ``.onnx`` file is read as an exported
    model (its metadata is checked, its weights are left to the backend): its graph is
    fp32, which backend ``tensorrt`` builds in fp16 (``auto``), bf16 or fp32 and
    ``onnxruntime`` runs in fp32, or fp16 through its TensorRT execution provider on CUDA.

    Raises:
        ValueError: an unusable device or precision.
        CheckpointError: a missing, corrupt or foreign checkpoint.
    """
    dev = resolve_device(device)
    if is_onnx(checkpoint):
        model = read_onnx(checkpoint, model_type)
        if model.precision != "fp32":  # int8 (export --quantize): runs as it was written
            if str(precision).lower() not in ("auto", model.precision):
                raise ValueError(f"{checkpoint} is an {model.precision} ONNX graph; "
                                 f"precision must be auto or {model.precision}, got "
                                 f"{precision!r}")
            return LoadedModel(model, dev, model.precision)
        return LoadedModel(model, dev, _onnx_precision(checkpoint, precision, dev, backend))
    prec = resolve_precision(precision, dev)
    model = load_checkpoint(checkpoint, device=dev, precision=parse_precision(prec),
                            model_type=model_type)
    return LoadedModel(model, dev, prec)


def _onnx_precision(checkpoint: str | Path, precision: str, dev: torch.device,
                    backend: str) -> str:
    """The precision an exported (fp32) graph runs in on ``dev`` with ``backend``."""
    if str(precision).lower() == "auto":
        return "fp16" if backend == "tensorrt" and dev.type == "cuda" else "fp32"
    allowed = {"fp32"}
    if dev.type == "cuda":  # TensorRT engines, or ONNX Runtime's TensorRT provider
        allowed |= {"fp16", "bf16"} if backend == "tensorrt" else {"fp16"}
    if str(precision).lower() not in allowed:
        raise ValueError(f"{checkpoint} is an fp32 ONNX graph; precision must be auto or "
                         f"fp32 (fp16: backend tensorrt or onnxruntime on CUDA; bf16: "
                         f"tensorrt), got {precision!r}")
    return resolve_precision(precision, dev)


def create_engine(
    checkpoint: str | Path,
    config: EngineConfig = EngineConfig(),
    on_result: ResultCallback | None = None,
    model_type: str | None = None,
) -> DepthEngine:
    """Load ``checkpoint`` on the config's device and precision and start an engine.

    The engine's ``config`` holds the device, precision and backend actually used; its
    ``recipe.info`` says which model it runs. A backend other than fp32 torch must pass
    the accuracy gate first (unless ``config.accuracy_gate`` is False).

    Raises:
        ValueError: an unusable device, precision or ``input_size``; a backend that
            cannot run here (``BackendUnavailableError``) or fails the accuracy gate
            (``AccuracyGateError``, with the measured figure).
        CheckpointError: a missing, corrupt or foreign checkpoint.
    """
    reference = None
    if config.accuracy_gate and not is_onnx(checkpoint):
        reference = _fp32_reference(checkpoint, config, model_type)
    loaded = load_model(checkpoint, config.device, config.precision, model_type,
                        config.backend)
    config = dataclasses.replace(config, device=str(loaded.device), precision=loaded.precision)
    engine = DepthEngine(loaded.model, config, on_result=on_result)
    try:
        _gate(engine, loaded.model, reference)
    except BaseException:
        engine.close()
        raise
    return engine


def _fp32_reference(checkpoint: str | Path, config: EngineConfig,
                    model_type: str | None) -> gate.GateReference | None:
    """fp32 torch's gate outputs, for a torch checkpoint that will run in fp16 / bf16
    (None otherwise): read from the gate cache (:mod:`~depth_pro_ros.engine.backends.
    gate_cache`), else computed and kept there. Computed with the fp32 model loaded and
    freed before the reduced-precision one is loaded, so both never take memory at once."""
    dev = resolve_device(config.device)
    if resolve_precision(config.precision, dev) == "fp32":
        return None
    entry = gate_cache.entry_path(checkpoint, model_type, config.input_size)
    reference = None if entry is None else gate_cache.read_entry(entry)
    if reference is not None:
        _log.info("accuracy gate: fp32 reference read from %s", entry)
        return reference
    model = load_checkpoint(checkpoint, device=dev, precision=torch.float32,
                            model_type=model_type)
    recipe = recipe_for(model, config.input_size)
    reference = gate.gate_outputs(functools.partial(recipe.run, model), recipe, dev,
                                  torch.float32)
    if entry is not None:
        gate_cache.write_entry(entry, reference)
    return reference


def _gate(engine: DepthEngine, model: torch.nn.Module | OnnxModel,
          reference: gate.GateReference | None) -> None:
    """Run the accuracy gate of ``engine``'s backend, or log why it does not run."""
    config = engine.config
    if isinstance(model, OnnxModel):
        recipe, reference = model.gate_recipe(), model.gate
        what = f"{config.backend} on {model.path.name}"
    elif config.precision != "fp32" or config.backend != "torch":
        recipe = engine.recipe
        what = f"{config.backend} in {config.precision}"
    else:
        return  # fp32 torch is the reference itself
    if not config.accuracy_gate:
        _log.warning("accuracy gate skipped for %s (accuracy_gate is false)", what)
        return
    if reference is None:
        raise gate.AccuracyGateError(f"accuracy gate: no fp32 torch reference for {what}")
    backend = engine.backend
    figure = gate.check(backend.run, recipe, backend.device, backend.dtype, reference,
                        gate.LIMITS[config.precision], what)
    _log.info("accuracy gate passed: %s differs from fp32 torch by %.3g", what, figure)
