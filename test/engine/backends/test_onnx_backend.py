"""ONNX export and the onnxruntime backend, on the tiny checkpoints of every family.

The exported files (``depth-pro-ros export``, the ``onnx_checkpoint`` fixture) run through
the one loading path (``create_engine``) with ``backend: auto`` and give what the torch
backend gives on the same frames, to 1e-4 relative; files with missing or inconsistent
metadata and a damaged network are refused with one clear error; the export refuses to
write when its self-check fails and leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from depth_pro_ros.engine import EngineConfig, Frame, Intrinsics, create_engine
from depth_pro_ros.engine.backends import gate, onnx_export
from depth_pro_ros.engine.backends.onnx_file import META_KEY, read_onnx
from depth_pro_ros.engine.errors import AccuracyGateError, BackendUnavailableError
from depth_pro_ros.model import CheckpointError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

RTOL = 1e-4  # the fp32 bound; measured differences are ~1e-6
CPU = EngineConfig(device="cpu", policy="all")
K = Intrinsics(fx=60.0, fy=60.0, cx=32.0, cy=24.0, width=64, height=48)


def _frames(name: str) -> list[Frame]:
    """Two frames of two sizes (the Depth Anything graph's dynamic axes), with what the
    model needs: a prompt depth, or no focal for Depth Pro (its FoV head runs)."""
    rng = np.random.default_rng(7)
    frames = []
    for h, w in ((48, 64), (60, 44)):
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        prompt = (np.linspace(1.0, 3.0, 12 * 16, dtype=np.float32).reshape(12, 16)
                  if name == "prompt" else None)
        frames.append(Frame(image, intrinsics=None if name == "depth_pro" else K,
                            prompt=prompt, estimate_fov=name == "depth_pro"))
    return frames


def _depths(checkpoint: Path, frames: list[Frame], **config) -> tuple[str, list]:
    with create_engine(checkpoint, EngineConfig(device="cpu", policy="all", **config)
                       ) as engine:
        results = []
        for frame in frames:
            engine.submit(frame)
            result = engine.get(timeout=120)
            assert result is not None and result.ok, result and result.error
            results.append(result)
        return engine.config.backend, results


@pytest.mark.parametrize("name", ["depth_pro", "metric", "prompt"])
def test_exported_file_runs_on_onnxruntime_as_torch(name, onnx_checkpoint, tiny_checkpoint,
                                                    da_checkpoints):
    source = {"depth_pro": tiny_checkpoint, **da_checkpoints}[name]
    exported = onnx_checkpoint(name)
    frames = _frames(name)
    backend, got = _depths(exported, frames)
    assert backend == "onnxruntime"  # auto, from the file alone
    torch_backend, want = _depths(source, frames)
    assert torch_backend == "torch"
    for a, b in zip(got, want):
        assert a.depth.shape == b.depth.shape
        err = np.nanmax(np.abs(a.depth - b.depth)) / np.nanmax(np.abs(b.depth))
        assert err <= RTOL, err
        if name == "depth_pro":  # the FoV head's estimate came through the graph too
            assert a.fov_deg == pytest.approx(b.fov_deg, rel=RTOL)
    meta = read_onnx(exported).meta
    source_bytes = exported.with_suffix(".pt").read_bytes()
    assert meta["source_sha256"] == hashlib.sha256(source_bytes).hexdigest()
    assert meta["inputs"] == (["image", "prompt"] if name == "prompt" else ["image"])


def _rewrite(src: Path, dst: Path, meta_change=None, weight_scale: float | None = None
             ) -> Path:
    """A copy of ``src`` with its metadata JSON changed (``meta_change(meta)``; returning
    None drops the entry) or its largest weight scaled."""
    model = onnx.load(str(src))
    if meta_change is not None:
        (entry,) = [p for p in model.metadata_props if p.key == META_KEY]
        changed = meta_change(json.loads(entry.value))
        model.metadata_props.remove(entry)
        if changed is not None:
            model.metadata_props.add(key=META_KEY, value=changed if isinstance(
                changed, str) else json.dumps(changed))
    if weight_scale is not None:
        from onnx import numpy_helper

        biggest = max(model.graph.initializer, key=lambda t: np.prod(t.dims))
        array = numpy_helper.to_array(biggest) * weight_scale
        biggest.CopyFrom(numpy_helper.from_array(array.astype(np.float32), biggest.name))
    onnx.save(model, str(dst))
    return dst


def _with(meta: dict, **changes) -> dict:
    return {**meta, **changes}


@pytest.mark.parametrize("change, message", [
    (lambda m: None, "without this project's metadata"),
    (lambda m: "{not json", "is not JSON"),
    (lambda m: _with(m, format=99), "has format 99"),
    (lambda m: _with(m, family="depth_pro"), "describes no usable model"),
    (lambda m: _with(m, outputs=["depth", "fov"]), "says inputs/outputs"),
    (lambda m: _with(m, source_sha256="x"), "no SHA-256 of its source"),
    (lambda m: _with(m, gate={"depth": {"shape": [1], "float32": "AAAA"}}),
     "malformed gate reference"),
])
def test_missing_or_inconsistent_metadata_is_one_clear_error(change, message,
                                                             onnx_checkpoint, tmp_path):
    bad = _rewrite(onnx_checkpoint("metric"), tmp_path / "bad.onnx", change)
    with pytest.raises(CheckpointError, match=message) as info:
        create_engine(bad, CPU)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)


def test_what_an_onnx_file_cannot_do_is_refused(onnx_checkpoint, tmp_path):
    exported = onnx_checkpoint("metric")
    with pytest.raises(CheckpointError, match="model_type 'depth_anything_v2' contradicts"):
        create_engine(exported, CPU, model_type="depth_anything_v2")
    with pytest.raises(BackendUnavailableError, match="use backend auto or onnxruntime"):
        create_engine(exported, EngineConfig(device="cpu", backend="torch"))
    with pytest.raises(ValueError, match="precision must be auto or fp32"):
        create_engine(exported, EngineConfig(device="cpu", precision="bf16"))
    text = tmp_path / "notes.onnx"
    text.write_text("not a model")
    with pytest.raises(CheckpointError, match="not an ONNX model file"):
        create_engine(text, CPU)


def test_gate_refuses_a_damaged_network_and_can_be_skipped(onnx_checkpoint, tmp_path,
                                                           caplog):
    damaged = _rewrite(onnx_checkpoint("metric"), tmp_path / "damaged.onnx",
                       weight_scale=1.05)
    with pytest.raises(AccuracyGateError) as info:
        create_engine(damaged, CPU)
    figure = float(str(info.value).split("by ")[1].split(" ")[0])
    assert figure > gate.LIMITS["fp32"] and "the limit is 0.0001" in str(info.value)
    with caplog.at_level(logging.WARNING), create_engine(
            damaged, EngineConfig(device="cpu", accuracy_gate=False)) as engine:
        assert engine.config.backend == "onnxruntime"
    assert "accuracy gate skipped for onnxruntime on damaged.onnx" in caplog.text


def test_reduced_precision_torch_is_gated_against_fp32(da_checkpoints, caplog):
    """fp16 torch (here on the CPU) is checked against the same checkpoint loaded in fp32;
    fp32 torch, the reference itself, is not."""
    with caplog.at_level(logging.INFO), create_engine(
            da_checkpoints["metric"], EngineConfig(device="cpu", precision="fp16")):
        pass
    passed = [r.getMessage() for r in caplog.records if "accuracy gate passed" in
              r.getMessage()]
    assert len(passed) == 1 and "torch in fp16 differs from fp32 torch by" in passed[0]
    assert float(passed[0].rsplit(" ", 1)[1]) <= gate.LIMITS["fp16"]
    caplog.clear()
    with caplog.at_level(logging.INFO), create_engine(da_checkpoints["metric"], CPU):
        pass
    assert "accuracy gate" not in caplog.text


def test_gate_images_are_fixed_and_references_round_trip():
    images = gate.gate_images()
    assert images.shape == (2, 96, 128, 3) and images.dtype == np.uint8
    assert np.array_equal(images, gate.gate_images()) and images.std() > 20
    ref = gate.GateReference.pooled(torch.rand(2, 1, 70, 90) + 0.5, torch.tensor([50., 60.]))
    back = gate.GateReference.from_json(json.loads(json.dumps(ref.to_json())))
    assert back.depth.shape == (2, 1, gate.POOL, gate.POOL)
    assert torch.equal(back.depth, ref.depth) and torch.equal(back.fov, ref.fov)
    assert gate.relative_l1(back.depth * 1.01, back.depth) == pytest.approx(0.01, rel=1e-4)


def test_export_refuses_a_failed_self_check_and_leaves_nothing(onnx_traced, tmp_path,
                                                               monkeypatch):
    """A self-check that fails (its limit set below any real difference) writes nothing:
    no output, no temporary folder; an existing output is kept without --overwrite. The
    check and write (``write_onnx``) run on the shared export's traced graph."""
    from depth_pro_ros.cli import main

    traced = onnx_traced("prompt")
    out = tmp_path / "prompt.onnx"
    monkeypatch.setattr(onnx_export, "SELF_CHECK_LIMIT", 0.0)
    with pytest.raises(onnx_export.ExportError, match="self-check failed: .* nothing was "
                                                      "written"):
        onnx_export.write_onnx(traced, out)
    assert list(tmp_path.iterdir()) == []
    out.write_bytes(b"keep")
    assert main(["export", "--checkpoint", str(traced.checkpoint), "-o", str(out)]) == 2
    assert out.read_bytes() == b"keep"
    onnx_file = tmp_path / "copy.onnx"
    shutil.copy(out, onnx_file)
    assert main(["export", "--checkpoint", str(onnx_file), "-o",
                 str(tmp_path / "again.onnx")]) == 2


@pytest.mark.cuda
def test_onnxruntime_cuda_provider_passes_the_gate(onnx_checkpoint):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("needs onnxruntime-gpu (the CUDA execution provider)")
    frames = _frames("metric")
    with create_engine(onnx_checkpoint("metric"), EngineConfig(device="cuda",
                                                               policy="all")) as engine:
        assert engine.backend.providers[0] == "CUDAExecutionProvider"
        engine.submit(frames[0])
        got = engine.get(timeout=120)
    _, want = _depths(onnx_checkpoint("metric"), frames[:1])
    assert got.ok and np.nanmax(np.abs(got.depth - want[0].depth)) <= RTOL * np.nanmax(
        np.abs(want[0].depth))


@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_reduced_precision_torch_passes_the_gate_on_cuda(precision, da_checkpoints, caplog):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    with caplog.at_level(logging.INFO), create_engine(
            da_checkpoints["metric"], EngineConfig(device="cuda", precision=precision)):
        pass
    assert f"accuracy gate passed: torch in {precision}" in caplog.text
