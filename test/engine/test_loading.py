"""Device and precision choice, and the one loader used by the node, bag tool and CLI."""

from __future__ import annotations

import pytest
import torch

from depth_pro_ros.engine import (
    PRECISION_CHOICES,
    EngineConfig,
    create_engine,
    load_model,
    resolve_device,
    resolve_precision,
)
from depth_pro_ros.model import CheckpointError


@pytest.mark.parametrize(("name", "device", "expected"), [
    ("auto", "cpu", "fp32"), ("auto", "cuda", "fp16"), ("AUTO", "cuda:1", "fp16"),
    ("bf16", "cuda", "bf16"), ("fp16", "cpu", "fp16"), ("fp32", "cuda", "fp32"),
])
def test_auto_precision_is_fp16_on_cuda_and_fp32_on_the_cpu(name, device, expected):
    # torch.device("cuda") is only a name: no GPU is needed to decide.
    assert resolve_precision(name, torch.device(device)) == expected


def test_unknown_precision_names_the_choices():
    with pytest.raises(ValueError, match="fp32, fp16, bf16"):
        resolve_precision("int8", torch.device("cpu"))
    assert PRECISION_CHOICES == ("auto", "fp32", "fp16", "bf16")


def test_resolve_device_refuses_what_cannot_run():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="unsupported device"):
        resolve_device("mps")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_load_model_and_create_engine_report_what_they_resolved(tiny_checkpoint):
    loaded = load_model(tiny_checkpoint, "cpu")
    assert loaded.device == torch.device("cpu") and loaded.precision == "fp32"
    assert next(loaded.model.parameters()).dtype == torch.float32
    with create_engine(tiny_checkpoint, EngineConfig(device="cpu")) as engine:
        assert engine.config.device == "cpu" and engine.config.precision == "fp32"


def test_load_model_errors_are_clear(tmp_path):
    with pytest.raises(CheckpointError):
        load_model(tmp_path / "missing.pt", "cpu")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_model(junk, "cpu")
    with pytest.raises(ValueError, match="precision"):
        load_model(junk, "cpu", "fp8")
