"""CUDA graphs and torch.compile on the GPU: compile runs Dynamo, compile + graphs replays
the compiled network, many shapes keep the graph cache and its memory bounded, fp16
replays, and an engine on a second GPU captures there.

Every test is marked ``cuda``; the root conftest skips them, visibly, without a GPU.
GPU is compared with GPU only, so TF32 cancels out except where compiled (Inductor)
kernels are compared with eager ones: those use the tolerances stated there.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from model_factories import tiny_depth_anything, tiny_model

from depth_pro_ros.engine import DepthEngine, EngineConfig, Frame, Intrinsics

pytestmark = pytest.mark.cuda

WAIT = 300.0
K = Intrinsics(fx=500.0, fy=500.0, cx=320.0, cy=240.0, width=640, height=480)


def _frames(n: int, shapes=((120, 160), (96, 128)), prompt=False) -> list[Frame]:
    rng = np.random.default_rng(11)
    return [Frame(rng.integers(0, 256, (*shapes[i % len(shapes)], 3), dtype=np.uint8),
                  intrinsics=K if i % 2 else None, meta=i,
                  prompt=(1 + 4 * rng.random((6, 8))).astype(np.float32) if prompt else None)
            for i in range(n)]


def _run(model, frames, device="cuda", **config):
    """Results of ``frames`` in order, and the engine's stats and backend."""
    config = EngineConfig(device=device, policy="all", queue_size=16, **config)
    with DepthEngine(model, config) as engine:
        for frame in frames:
            assert engine.submit(frame, timeout=WAIT)
        results = [engine.get(timeout=WAIT) for _ in frames]
        stats, backend = engine.stats, engine.backend
    assert all(r is not None and r.ok for r in results), [r and r.error for r in results]
    return results, stats, backend


def _close(a: np.ndarray, b: np.ndarray, median: float, p99: float) -> None:
    """Relative differences bounded at the median and 99th percentile (kernels differ)."""
    rel = np.abs(a - b) / np.maximum(np.abs(b), 1e-6)
    assert np.isfinite(a).all() and np.isfinite(b).all()
    assert float(np.median(rel)) < median and float(np.percentile(rel, 99)) < p99, (
        np.median(rel), np.percentile(rel, 99))


@pytest.fixture(scope="module")
def cuda_model():
    return tiny_model().to("cuda")


@pytest.fixture
def dynamo_counters():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    yield counters
    torch._dynamo.reset()


def test_compile_runs_dynamo(cuda_model, dynamo_counters):
    frames = _frames(4)
    compiled, _, _ = _run(cuda_model, frames, compile=True)
    eager, _, _ = _run(cuda_model, frames)
    assert dynamo_counters["stats"]["unique_graphs"] > 0
    for a, b in zip(compiled, eager):
        # Inductor fuses and reorders fp32 arithmetic: last-bits differences only.
        _close(a.depth, b.depth, median=1e-4, p99=1e-3)


def test_compile_with_graphs_replays_the_compiled_network(cuda_model, dynamo_counters):
    frames = _frames(6)
    both, stats, backend = _run(cuda_model, frames, compile=True, cuda_graphs=True)
    compiled, _, _ = _run(cuda_model, frames, compile=True)
    assert dynamo_counters["stats"]["unique_graphs"] > 0
    assert backend.graph_cache.captures == stats.graph_captures >= 2  # two FoV settings
    assert hasattr(backend._network.network, "_orig_mod")  # the graphs wrap the compiled
    for a, b in zip(both, compiled):
        _close(a.depth, b.depth, median=1e-5, p99=1e-4)  # same kernels, replayed


def test_many_shapes_keep_the_graph_cache_and_memory_bounded():
    """Four network input shapes in turn through a cache of two: every lookup captures,
    at most two graphs live, and reserved memory does not grow with more rounds."""
    model = tiny_depth_anything("metric").to("cuda")
    shapes = ((56, 56), (56, 84), (56, 112), (84, 56))  # input_size 56: four input shapes
    rng = np.random.default_rng(2)
    rounds = [[Frame(rng.integers(0, 256, (*s, 3), dtype=np.uint8), meta=i)
               for i, s in enumerate(shapes)] for _ in range(3)]
    config = EngineConfig(device="cuda", policy="all", queue_size=16, input_size=56,
                          cuda_graphs=True, graph_cache_size=2)
    reserved = []
    with DepthEngine(model, config) as engine:
        for frames in rounds:
            for frame in frames:
                assert engine.submit(frame, timeout=WAIT)
            assert all(engine.get(timeout=WAIT).ok for _ in frames)
            assert engine.drain(WAIT)
            torch.cuda.synchronize()
            reserved.append(torch.cuda.memory_reserved())
        stats = engine.stats
    assert stats.graph_captures == 12 and stats.graph_evictions == 10, stats
    assert stats.graphs_cached == 2
    assert reserved[2] <= 1.25 * reserved[0] + 64 * 2**20, reserved


def test_fp16_with_graphs_matches_fp16_eager():
    model = tiny_model().to("cuda", torch.float16)
    frames = _frames(6)
    graphed, stats, _ = _run(model, frames, precision="fp16", cuda_graphs=True)
    eager, _, _ = _run(model, frames, precision="fp16")
    assert stats.graph_captures >= 2
    for a, b in zip(graphed, eager):
        assert a.depth.dtype == np.float32
        _close(a.depth, b.depth, median=1e-4, p99=1e-3)


def test_prompt_depth_anything_with_graphs_takes_each_prompt():
    model = tiny_depth_anything("metric", prompt=True).to("cuda")
    frames = _frames(4, shapes=((60, 80),), prompt=True)
    graphed, stats, _ = _run(model, frames, input_size=56, cuda_graphs=True)
    eager, _, _ = _run(model, frames, input_size=56)
    assert stats.graph_captures == 1  # one shape, one prompt shape; prompts are inputs
    for a, b in zip(graphed, eager):
        _close(a.depth, b.depth, median=1e-6, p99=1e-5)  # same kernels, replayed


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_an_engine_on_the_second_gpu_captures_there(cuda_model):
    frames = _frames(4)
    second = copy.deepcopy(cuda_model).to("cuda:1")
    current = torch.cuda.current_device()
    on_1, stats, backend = _run(second, frames, device="cuda:1", cuda_graphs=True)
    on_0, _, _ = _run(cuda_model, frames, cuda_graphs=True)
    assert torch.cuda.current_device() == current
    assert stats.graph_captures >= 1
    assert backend._network._stream.device == torch.device("cuda", 1)
    for a, b in zip(on_1, on_0):
        _close(a.depth, b.depth, median=1e-6, p99=1e-5)  # same kernels on twin GPUs
