"""The TensorRT backend: its engine cache on any machine, the rest where a GPU and
TensorRT are.

On the CPU (here, CI): the cache key changes with each thing an engine is specific to;
entries are written whole or not at all and read back byte for byte; a damaged, cut
short or foreign entry is refused with one warning (the backend then builds again); and
without a GPU or the tensorrt package ``create_engine`` and ``depth-pro-ros export
--format tensorrt`` fail at once with one line saying what is missing, writing nothing.
The cache tests run on real files with plan bytes that are not TensorRT's: the cache
never looks inside a plan.

On a GPU with TensorRT (``-m cuda``; skipped visibly elsewhere): engines built from the
tiny exported files pass the accuracy gate and give torch fp32's depth within the gate's
limit, a second start reads the engine instead of building it, a damaged entry is built
again, and ONNX Runtime's TensorRT provider passes the gate in fp16.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import torch

from depth_pro_ros.cli import main
from depth_pro_ros.engine import EngineConfig, Frame, Intrinsics, create_engine
from depth_pro_ros.engine.backends import gate, gate_cache
from depth_pro_ros.engine.backends.gate_cache import write_atomic
from depth_pro_ros.engine.backends.tensorrt_cache import (
    MAGIC,
    EngineKey,
    engine_path,
    read_engine,
    write_engine,
)
from depth_pro_ros.engine.errors import BackendUnavailableError

KEY = EngineKey(model_sha256="ab" * 32, gpu="NVIDIA Jetson AGX Orin",
                compute_capability="8.7", tensorrt="10.3.0", precision="fp16",
                shapes=(("image", (3, 518, 686)),), max_batch=1)
PLAN = bytes(range(256)) * 64  # 16 kB standing for a serialized engine


def _tensorrt_here() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """The engine cache in this test's folder."""
    monkeypatch.setenv(gate_cache.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache" / "tensorrt"


# ------------------------------------------------------------------ the cache (CPU)
@pytest.mark.parametrize("field, value", [
    ("model_sha256", "cd" * 32), ("gpu", "NVIDIA GeForce RTX 4090"),
    ("compute_capability", "8.9"), ("tensorrt", "10.13.0"), ("precision", "fp32"),
    ("shapes", (("image", (3, 518, 924)),)),
    ("shapes", (("image", (3, 518, 686)), ("prompt", (1, 192, 256)))),
    ("max_batch", 4), ("format", 2)])
def test_each_component_of_the_key_names_another_entry(field, value, cache):
    changed = dataclasses.replace(KEY, **{field: value})
    assert changed.digest() != KEY.digest() and engine_path(changed) != engine_path(KEY)
    assert dataclasses.replace(KEY).digest() == KEY.digest()  # equal keys, one entry
    assert engine_path(KEY).parent == cache and engine_path(KEY).suffix == ".engine"


def test_an_entry_is_read_back_as_written_and_only_for_its_key(cache, caplog):
    path = engine_path(KEY)
    assert read_engine(path, KEY) is None and not caplog.records  # absent: silent
    write_engine(path, KEY, PLAN)
    assert read_engine(path, KEY) == PLAN
    assert [p.name for p in cache.iterdir()] == [path.name]  # no temporary file left
    other = dataclasses.replace(KEY, precision="fp32")
    with caplog.at_level(logging.WARNING):
        assert read_engine(path, other) is None  # a file under the wrong name
    assert "built for other settings" in caplog.text


def test_a_write_that_fails_midway_leaves_the_old_entry(cache):
    path = engine_path(KEY)
    write_engine(path, KEY, PLAN)
    with pytest.raises(TypeError):  # the second part cannot be written
        write_atomic(path, [b"half of a new engine", None])
    assert read_engine(path, KEY) == PLAN
    assert [p.name for p in cache.iterdir()] == [path.name]


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


@pytest.mark.parametrize("damage, message", [
    (lambda d: d[:-100], "cut short"),
    (lambda d: _flip(d, len(d) - 10), "does not match its checksum"),
    (lambda d: b"\x00" * len(d), "not a TensorRT cache entry"),
    (lambda d: MAGIC, "not a TensorRT cache entry"),
    (lambda d: d[:len(MAGIC)] + b"\xff\xff\xff\x7f" + d[len(MAGIC) + 4:], "damaged header"),
    (lambda d: _flip(d, len(MAGIC) + 8), "damaged header"),
])
def test_a_damaged_entry_is_refused_with_one_warning(damage, message, cache, caplog):
    path = engine_path(KEY)
    write_engine(path, KEY, PLAN)
    path.write_bytes(damage(path.read_bytes()))
    with caplog.at_level(logging.WARNING):
        assert read_engine(path, KEY) is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and message in warnings[0].getMessage()
    assert str(path) in warnings[0].getMessage() and "building the engine again" in (
        warnings[0].getMessage())
    write_engine(path, KEY, PLAN)  # what the backend does next: the rebuilt plan
    assert read_engine(path, KEY) == PLAN


# ------------------------------------------------- without a GPU or TensorRT (CPU)
needs_no_tensorrt = pytest.mark.skipif(_tensorrt_here(), reason="TensorRT runs here")


@needs_no_tensorrt
def test_create_engine_says_what_tensorrt_needs(onnx_checkpoint, tiny_checkpoint):
    with pytest.raises(BackendUnavailableError) as info:
        create_engine(onnx_checkpoint("metric"), EngineConfig(backend="tensorrt"))
    message = str(info.value)
    assert message.startswith("backend tensorrt needs ") and "\n" not in message
    if not torch.cuda.is_available():
        assert "an NVIDIA GPU (this machine has none; set device cuda)" in message
    assert "the tensorrt package (pip install 'depth_pro_ros[tensorrt]'" in message
    with pytest.raises(BackendUnavailableError, match="export the checkpoint first"):
        create_engine(tiny_checkpoint, EngineConfig(backend="tensorrt", device="cpu"))


@needs_no_tensorrt
def test_export_format_tensorrt_fails_first_and_writes_nothing(tiny_checkpoint, tmp_path,
                                                                capsys):
    out = tmp_path / "model.onnx"
    code = main(["export", "--format", "tensorrt", "--checkpoint", str(tiny_checkpoint),
                 "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("depth-pro-ros: error: backend tensorrt needs")
    assert "pip install 'depth_pro_ros[tensorrt]'" in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []  # refused before the (minute-long) export
    with pytest.raises(SystemExit) as info:  # -o is needed unless given an .onnx
        main(["export", "--checkpoint", str(tiny_checkpoint)])
    assert info.value.code == 2 and "-o/--output is required" in capsys.readouterr().err


# --------------------------------------------------- GPU and TensorRT (-m cuda)
K = Intrinsics(fx=60.0, fy=60.0, cx=32.0, cy=24.0, width=64, height=48)
gpu = pytest.mark.skipif(not _tensorrt_here(), reason="needs a CUDA GPU and tensorrt")


def _one(engine, frame: Frame):
    assert engine.submit(frame)
    return engine.get(timeout=600)  # a build of the tiny engines takes seconds


def _depths(checkpoint, frames, **settings) -> tuple[object, list]:
    """The backend that ran and its results for ``frames``, one at a time, on CUDA."""
    config = EngineConfig(device="cuda", policy="all", **settings)
    with create_engine(checkpoint, config) as engine:
        results = [_one(engine, frame) for frame in frames]
    assert all(r is not None and r.ok for r in results), [r and r.error for r in results]
    return engine.backend, results


@pytest.mark.cuda
@gpu
@pytest.mark.parametrize("name", ["metric", "depth_pro"])
@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_tensorrt_engine_gives_torch_fp32s_depth_and_is_cached(
        name, precision, onnx_checkpoint, cache, caplog):
    exported = onnx_checkpoint(name)
    rng = np.random.default_rng(3)
    frames = [Frame(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8),
                    intrinsics=None if name == "depth_pro" else K,
                    estimate_fov=name == "depth_pro") for _ in range(2)]
    with caplog.at_level(logging.INFO):
        backend, got = _depths(exported, frames, backend="tensorrt", precision=precision)
    assert backend.builds == 1 and backend.loads == 0 and len(backend.entries) == 1
    assert f"accuracy gate passed: tensorrt on {exported.name}" in caplog.text
    _, want = _depths(exported.with_suffix(".pt"), frames, backend="torch",
                      precision="fp32")
    for a, b in zip(got, want):  # the gate's figure, on the frames' final depth
        figure = gate.relative_l1(torch.from_numpy(a.depth), torch.from_numpy(b.depth))
        assert figure <= gate.LIMITS[precision], figure
    again, _ = _depths(exported, frames[:1], backend="tensorrt", precision=precision)
    assert (again.builds, again.loads) == (0, 1)  # read, not built
    entry = again.entries[0]
    entry.write_bytes(entry.read_bytes()[:-1000])
    rebuilt, _ = _depths(exported, frames[:1], backend="tensorrt", precision=precision)
    assert (rebuilt.builds, rebuilt.loads) == (1, 0) and "cut short" in caplog.text


@pytest.mark.cuda
@gpu
def test_a_batch_larger_than_the_engines_runs_in_chunks(onnx_checkpoint, cache):
    exported = onnx_checkpoint("metric")
    image = np.random.default_rng(5).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    with create_engine(exported, EngineConfig(device="cuda", backend="tensorrt",
                                              policy="all", batch_size=2)) as engine:
        engine.reconfigure(batch_size=3)
        assert engine.submit_batch([Frame(image, intrinsics=K)] * 3)
        results = [engine.get(timeout=600) for _ in range(3)]
    assert all(r is not None and r.ok for r in results)
    # The same frame in a chunk of 2 and one of 1: other kernels may run, within fp16.
    first, last = (torch.from_numpy(results[i].depth) for i in (0, 2))
    assert gate.relative_l1(last, first) <= gate.LIMITS["fp16"]


@pytest.mark.cuda
def test_onnxruntime_tensorrt_provider_passes_the_gate_in_fp16(onnx_checkpoint, cache,
                                                               caplog):
    ort = pytest.importorskip("onnxruntime")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        pytest.skip("needs onnxruntime-gpu with TensorRT (its TensorRT provider)")
    with caplog.at_level(logging.INFO), create_engine(
            onnx_checkpoint("metric"), EngineConfig(device="cuda", precision="fp16")
    ) as engine:
        assert engine.backend.providers[0] == "TensorrtExecutionProvider"
    assert "accuracy gate passed: onnxruntime on" in caplog.text
