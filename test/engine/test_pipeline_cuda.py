"""The streaming engine on a CUDA GPU: streams, precisions, CUDA graphs, synchronisation.

Every test is marked ``cuda``; the root conftest skips them, visibly, without a GPU.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from harness.engine import process_one

from depth_pro_ros.engine import (
    DepthEngine,
    EngineConfig,
    Frame,
    Intrinsics,
    depth_to_points,
    to_numpy_record,
)
from depth_pro_ros.model import DepthProConfig, create_model, infer

pytestmark = pytest.mark.cuda

ROOT = Path(__file__).resolve().parents[2]
WAIT = 300.0
K_CAM = Intrinsics(fx=900.0, fy=910.0, cx=960.0, cy=540.0, width=1920, height=1080)


def _cpu_model():
    torch.manual_seed(20240601)
    net = create_model(DepthProConfig.tiny())
    with torch.no_grad():
        net.fov.head[-1].bias.fill_(60.0)  # plausible FoV with random weights
        net.head[-2].weight.mul_(20.0)  # finite, varied depth (see test_pipeline.py)
        net.head[-2].bias.fill_(0.3)
    return net


@pytest.fixture(scope="module")
def cpu_model():
    return _cpu_model()


@pytest.fixture(scope="module")
def cuda_model(cpu_model):
    return copy.deepcopy(cpu_model).to("cuda")


def _frames(n: int = 10) -> list[Frame]:
    """Mixed sizes, channel orders and focal sources, one 1080p frame among them."""
    rng = np.random.default_rng(7)
    shapes = [(120, 160), (96, 128), (120, 160), (1080, 1920), (96, 128)]
    orders = ["rgb", "bgr", "mono", "bgr", "rgb"]
    frames = []
    for i in range(n):
        h, w = shapes[i % len(shapes)]
        order = orders[(i // 2) % len(orders)]
        shape = (h, w) if order == "mono" else (h, w, 3)
        intrinsics = K_CAM if i % 3 == 1 else None
        frames.append(Frame(image=rng.integers(0, 256, shape, dtype=np.uint8),
                            channel_order=order, intrinsics=intrinsics,
                            estimate_fov=(i % 6 == 4), meta=i))
    return frames


def _run(model, frames: list[Frame], **config) -> list:
    config.setdefault("policy", "all")
    config.setdefault("queue_size", 4)
    with DepthEngine(model, EngineConfig(device="cuda", **config)) as engine:
        for frame in frames:
            assert engine.submit(frame, timeout=WAIT)
        results = []
        for _ in frames:
            result = engine.get(timeout=WAIT)
            assert result is not None, "engine produced no result in time"
            results.append(result)
        assert engine.drain(timeout=WAIT)
    assert [r.meta for r in results] == [f.meta for f in frames]
    for result in results:
        assert result.ok, result.error
    return results


def _rgb(frame: Frame) -> np.ndarray:
    if frame.channel_order == "bgr":
        return np.ascontiguousarray(frame.image[..., ::-1])
    if frame.channel_order == "mono":
        return np.repeat(frame.image.reshape(*frame.image.shape[:2], 1), 3, axis=-1)
    return frame.image


def _assert_same(a, b) -> None:
    """Two results of the same frame are identical."""
    assert a.meta == b.meta and a.focal_source == b.focal_source
    assert a.intrinsics == b.intrinsics
    assert a.fov_deg == b.fov_deg and a.focal_estimate_px == b.focal_estimate_px
    np.testing.assert_array_equal(a.depth, b.depth)


def test_streams_equal_sequential_and_infer(cuda_model):
    frames = _frames()
    overlapped = _run(cuda_model, frames, overlap=True)
    sequential = _run(cuda_model, frames, overlap=False)
    for a, b in zip(overlapped, sequential):
        _assert_same(a, b)
    for result, frame in zip(overlapped, frames):
        h, w = frame.image.shape[:2]
        assert result.depth.shape == (h, w) and result.depth.dtype == np.float32
        f_px = None if frame.intrinsics is None else frame.intrinsics.scaled_to(w, h).fx
        expected = infer(cuda_model, _rgb(frame), f_px=f_px)
        assert result.focal_source == expected.focal_source
        assert result.intrinsics.fx == pytest.approx(expected.focal_px, rel=1e-5)
        np.testing.assert_allclose(result.depth, expected.depth.cpu().numpy(), rtol=1e-4,
                                   atol=0)
        for key in ("queue", "preprocess", "inference", "postprocess", "total"):
            assert result.timings_ms[key] >= 0.0
        assert result.timings_ms["inference"] > 0.0


@pytest.fixture
def no_tf32(monkeypatch):
    """fp32 convolutions and matmuls in full fp32 (the engine's worker reads these global
    flags): TF32's ~1e-3 error is not what a CUDA-against-CPU comparison checks."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)


def test_cuda_matches_cpu_engine(cpu_model, cuda_model, no_tf32):
    """TF32 off (see ``no_tf32``); this head's depths are 3.9-5.7 m (no near-zero inverse
    depth to amplify an absolute error), so fp32 kernel differences stay far below rtol."""
    frames = _frames(3)
    on_gpu = _run(cuda_model, frames)
    with DepthEngine(cpu_model, EngineConfig(device="cpu", policy="all")) as engine:
        on_cpu = [process_one(engine, frame) for frame in frames]
    for a, b in zip(on_gpu, on_cpu):
        assert a.focal_source == b.focal_source
        assert a.intrinsics.fx == pytest.approx(b.intrinsics.fx, rel=1e-3)
        np.testing.assert_allclose(a.depth, b.depth, rtol=1e-3, atol=0)


def test_batched_and_latest_policies(cuda_model):
    frames = [f for f in _frames(12) if f.image.shape[:2] == (120, 160)]
    single = _run(cuda_model, frames)
    batched = _run(cuda_model, frames, batch_size=3, queue_size=8)
    for a, b in zip(single, batched):
        assert a.intrinsics.fx == pytest.approx(b.intrinsics.fx, rel=1e-5)
        np.testing.assert_allclose(a.depth, b.depth, rtol=1e-4)

    delivered = []
    with DepthEngine(cuda_model, EngineConfig(device="cuda", policy="latest"),
                     on_result=delivered.append) as engine:
        for frame in _frames(40):
            assert engine.submit(frame)
            assert engine.waiting <= 1
        assert engine.drain(timeout=WAIT)
        stats = engine.stats
    assert stats.processed + stats.dropped == stats.submitted == 40
    metas = [r.meta for r in delivered]
    assert metas == sorted(set(metas)) and metas[-1] == 39
    assert all(r.ok for r in delivered)


def test_points_on_device_match_host_geometry(cuda_model):
    frames = _frames(4)
    config = dict(points=True, points_rgb=True, points_decimation=2, output_scale=0.5)
    for result, frame in zip(_run(cuda_model, frames, **config), frames):
        h, w = result.depth.shape
        assert (h, w) == (round(frame.image.shape[0] / 2), round(frame.image.shape[1] / 2))
        expected = to_numpy_record(depth_to_points(
            torch.from_numpy(result.depth), result.intrinsics, decimation=2))
        assert result.points_shape == ((h + 1) // 2, (w + 1) // 2)
        for name in ("x", "y", "z"):
            np.testing.assert_allclose(result.points[name], expected[name], rtol=1e-5,
                                       atol=1e-6, equal_nan=True)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_reduced_precision_is_finite_and_close_to_fp32(cpu_model, cuda_model, precision):
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    model = copy.deepcopy(cpu_model).to("cuda", dtype)
    frames = _frames(6)
    reduced = _run(model, frames, precision=precision)
    full = _run(cuda_model, frames)
    tolerance = {"fp16": 0.02, "bf16": 0.08}[precision]
    for low, ref in zip(reduced, full):
        assert low.depth.dtype == np.float32  # metric conversion in fp32
        assert np.isfinite(low.depth).all()
        assert low.intrinsics.fx == pytest.approx(ref.intrinsics.fx, rel=tolerance)
        relative = np.abs(low.depth - ref.depth) / ref.depth
        assert float(np.median(relative)) < tolerance, f"{precision}: {np.median(relative)}"
        assert float(np.percentile(relative, 99)) < 5 * tolerance


def test_cuda_graphs_give_the_same_results(cuda_model):
    # Repeated shapes with and without a known focal: several graphs, each replayed.
    frames = _frames(10)
    graphed = _run(cuda_model, frames, cuda_graphs=True)
    plain = _run(cuda_model, frames, cuda_graphs=False)
    for a, b in zip(graphed, plain):
        assert a.focal_source == b.focal_source and a.intrinsics == b.intrinsics
        np.testing.assert_allclose(a.depth, b.depth, rtol=1e-6, atol=0)
    batched = _run(cuda_model, frames, cuda_graphs=True, batch_size=2, queue_size=8)
    for a, b in zip(batched, plain):
        np.testing.assert_allclose(a.depth, b.depth, rtol=1e-4, atol=0)


# A child process, so that the global sync-debug mode and the monkeypatches cannot leak.
_SYNC_PROBE = textwrap.dedent(
    """
    import importlib, json, sys, threading
    import numpy as np, torch
    sys.path.insert(0, sys.argv[1])
    helpers = importlib.import_module(sys.argv[2])
    K_CAM, _cpu_model = helpers.K_CAM, helpers._cpu_model
    from depth_pro_ros.engine import DepthEngine, EngineConfig, Frame

    counts = dict(event_waits=0, blocking_event_waits=0, stream_syncs=0, device_syncs=0)

    def worker():
        return threading.current_thread() is not threading.main_thread()

    event_sync = torch.cuda.Event.synchronize
    stream_sync = torch.cuda.Stream.synchronize
    device_sync = torch.cuda.synchronize

    def counted_event_sync(self):
        if worker():
            counts["event_waits"] += 1
            counts["blocking_event_waits"] += not self.query()
        return event_sync(self)

    def counted_stream_sync(self):
        counts["stream_syncs"] += worker()
        return stream_sync(self)

    def counted_device_sync(*args, **kwargs):
        counts["device_syncs"] += worker()
        return device_sync(*args, **kwargs)

    torch.cuda.Event.synchronize = counted_event_sync
    torch.cuda.Stream.synchronize = counted_stream_sync
    torch.cuda.synchronize = counted_device_sync

    model = _cpu_model().to("cuda")
    known = sys.argv[3] == "known"
    rng = np.random.default_rng(0)
    frames = []
    for i in range(14):
        image = rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
        intrinsics = K_CAM if known else None
        frames.append(Frame(image=image, channel_order="bgr", intrinsics=intrinsics, meta=i))
    config = EngineConfig(device="cuda", policy="all", queue_size=16,
                          cuda_graphs=sys.argv[4] == "graphs")
    errors = []
    with DepthEngine(model, config) as engine:
        for frame in frames[:4]:  # warm up: allocator, pinned buffers, kernels, graphs
            engine.submit(frame)
        warm = [engine.get(timeout=300) for _ in range(4)]
        errors += [r.error for r in warm if r is None or not r.ok]
        for key in counts:
            counts[key] = 0
        torch.cuda.set_sync_debug_mode("error")
        try:
            for frame in frames[4:]:
                engine.submit(frame)
            steady = [engine.get(timeout=300) for _ in frames[4:]]
        finally:
            torch.cuda.set_sync_debug_mode(0)
        errors += [None if r is None else r.error for r in steady if r is None or not r.ok]
        sync_count = getattr(engine, "sync_count", None)
    print("RESULT " + json.dumps(dict(counts, errors=errors, frames=len(steady),
                                      sync_count=sync_count)))
    """
)


@pytest.mark.parametrize("focal, graphs", [("known", "eager"), ("estimated", "eager"),
                                           ("known", "graphs")])
def test_no_device_synchronisation_in_steady_state(focal, graphs):
    proc = subprocess.run(
        [sys.executable, "-c", _SYNC_PROBE, str(Path(__file__).parent), Path(__file__).stem,
         focal, graphs],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(lines[-1][len("RESULT "):])
    print(report)
    # A synchronising call under sync-debug mode "error" fails the frame with its message.
    assert report["errors"] == [], report
    assert report["stream_syncs"] == 0 and report["device_syncs"] == 0, report
    n = report["frames"]
    if report["sync_count"] is not None:
        assert report["sync_count"] == 0, report
    if focal == "known":
        # The one wait per delivered frame is the only one that actually blocks.
        assert report["blocking_event_waits"] <= n, report
    else:
        # The FoV estimate must reach the host before the metric conversion: one more.
        assert report["blocking_event_waits"] <= 2 * n, report
