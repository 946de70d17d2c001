"""The engine's CUDA streams under stress: no host synchronisation in steady state for
every model family, results unchanged when the streams are made to race, overlap of
upload and network proven from the batches' own events, and host waits that sleep.

Every test is marked ``cuda``; the root conftest skips them, visibly, without a GPU.
TF32 is not involved: every comparison here is GPU against GPU with the same kernels
(bit-identical), or not of depth values at all.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from model_factories import tiny_depth_anything, tiny_model

from depth_pro_ros.engine import DepthEngine, EngineConfig, Frame, Intrinsics
from depth_pro_ros.engine.backends import BACKEND_FACTORIES, TorchBackend

pytestmark = pytest.mark.cuda

ROOT = Path(__file__).resolve().parents[2]
WAIT = 300.0
K = Intrinsics(fx=500.0, fy=500.0, cx=320.0, cy=240.0, width=640, height=480)
#: GPU spin per injected sleep: ~25 ms at the H200's ~2 GHz clock, far longer than any
#: stage of the tiny models, so an ordering bug shows as a wrong or different result.
RACE_CYCLES = 50_000_000

# One child process for all cases: set_sync_debug_mode is global and must not leak.
_PROBE = textwrap.dedent(
    """
    import json, sys
    import numpy as np, torch
    sys.path.insert(0, sys.argv[1])
    from model_factories import tiny_depth_anything, tiny_model
    from depth_pro_ros.engine import DepthEngine, EngineConfig, Frame, Intrinsics

    K = Intrinsics(fx=500.0, fy=500.0, cx=320.0, cy=240.0, width=640, height=480)
    MODELS = {"depth_pro": tiny_model, "metric": lambda: tiny_depth_anything("metric"),
              "relative": lambda: tiny_depth_anything("relative"),
              "prompt": lambda: tiny_depth_anything("metric", prompt=True)}
    SHAPES = [(480, 640), (1080, 1920)]
    rng = np.random.default_rng(0)

    def frame(family, shape, i):
        prompt = None
        if family == "prompt":
            prompt = (1.0 + 4.0 * rng.random((24, 32))).astype(np.float32)
        return Frame(rng.integers(0, 256, (*shape, 3), dtype=np.uint8), channel_order="bgr",
                     intrinsics=K if family == "depth_pro" else None, prompt=prompt, meta=i)

    for family, make in MODELS.items():
        model = make().to("cuda")
        for graphs in (False, True):
            config = EngineConfig(device="cuda", policy="all", queue_size=16,
                                  precision="fp32", cuda_graphs=graphs)
            errors = []
            with DepthEngine(model, config) as engine:
                # Warm-up: allocator, pinned buffers, kernels, constants, graphs.
                for i in range(4):
                    engine.submit(frame(family, SHAPES[i % 2], i))
                errors += [r.error for r in (engine.get(300) for _ in range(4))
                           if r is None or not r.ok]
                torch.cuda.set_sync_debug_mode("error")
                try:
                    for i in range(8):
                        engine.submit(frame(family, SHAPES[i % 2], i))
                    steady = [engine.get(300) for _ in range(8)]
                finally:
                    torch.cuda.set_sync_debug_mode(0)
                errors += ["no result" if r is None else r.error for r in steady
                           if r is None or not r.ok]
                captures = engine.stats.graph_captures
            print("RESULT " + json.dumps(dict(family=family, graphs=graphs, errors=errors,
                                              captures=captures)), flush=True)
    """
)


@pytest.fixture(scope="module")
def probe_results() -> dict:
    proc = subprocess.run([sys.executable, "-c", _PROBE, str(Path(__file__).parents[1])],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    results = {}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            report = json.loads(line[len("RESULT "):])
            results[report["family"], report["graphs"]] = report
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return results


@pytest.mark.parametrize("graphs", [False, True])
@pytest.mark.parametrize("family", ["depth_pro", "metric", "relative", "prompt"])
def test_no_synchronisation_in_steady_state_for_every_family(probe_results, family, graphs):
    """At two shapes, after warm-up: a synchronising call (a pageable copy, ``.item()``, a
    capture) fails its frame under sync-debug mode ``error``."""
    report = probe_results[family, graphs]
    assert report["errors"] == [], report
    if graphs:
        # Depth Pro's input is one fixed size; Depth Anything's follows the image's shape.
        assert report["captures"] == (1 if family == "depth_pro" else 2), report


class SleepyBackend(TorchBackend):
    """The torch backend with GPU sleeps queued before and after the network on the
    compute stream: a network that is slow to start and slow to finish."""

    cycles = RACE_CYCLES

    def run(self, x, estimate_fov, prompt):
        torch.cuda._sleep(self.cycles)
        out = super().run(x, estimate_fov, prompt)
        torch.cuda._sleep(self.cycles)
        return out


class DrowsyBackend(SleepyBackend):
    """~200 ms of GPU sleep per batch: the GPU time dwarfs the worker's own CPU time."""

    cycles = 4 * RACE_CYCLES


def _sleepy_prepare(recipe):
    """``recipe.prepare`` with a GPU sleep queued before it on the copy stream."""
    prepare = recipe.prepare

    def slow(images, channel_order, dtype):
        torch.cuda._sleep(RACE_CYCLES)
        return prepare(images, channel_order, dtype)

    return slow


def _frames(n: int, shapes=((120, 160), (96, 128))) -> list[Frame]:
    rng = np.random.default_rng(3)
    return [Frame(rng.integers(0, 256, (*shapes[i % len(shapes)], 3), dtype=np.uint8),
                  intrinsics=K if i % 2 else None, meta=i) for i in range(n)]


def _run(model, frames, backend="torch", slow_prepare=False, **config):
    with DepthEngine(model, EngineConfig(device="cuda", policy="all", queue_size=16,
                                         precision="fp32", backend=backend,
                                         **config)) as engine:
        if slow_prepare:
            engine.recipe.prepare = _sleepy_prepare(engine.recipe)
        for frame in frames:
            assert engine.submit(frame, timeout=WAIT)
        results = [engine.get(timeout=WAIT) for _ in frames]
        records = list(engine.stats.recent_batches)
    assert all(r is not None and r.ok for r in results), [r and r.error for r in results]
    return results, records


@pytest.fixture(scope="module")
def cuda_model():
    return tiny_model().to("cuda")


@pytest.mark.parametrize("graphs", [False, True])
def test_racing_streams_give_the_sequential_results(monkeypatch, cuda_model, graphs):
    """Sleeps on the copy stream (before preprocessing) and the compute stream (around
    the network) widen every window a missing wait would open."""
    monkeypatch.setitem(BACKEND_FACTORIES, "sleepy", SleepyBackend)
    frames = _frames(8)
    sequential, _ = _run(cuda_model, frames, overlap=False, cuda_graphs=graphs)
    raced, _ = _run(cuda_model, frames, backend="sleepy", slow_prepare=True, overlap=True,
                    cuda_graphs=graphs)
    for a, b in zip(raced, sequential):
        assert a.meta == b.meta and a.intrinsics == b.intrinsics
        assert a.fov_deg == b.fov_deg
        np.testing.assert_array_equal(a.depth, b.depth)


def test_overlap_is_proven_by_the_batches_events(monkeypatch, cuda_model):
    """With overlap, batch N+1's upload starts on the GPU before batch N's network ends;
    without it, after (the check can fail)."""
    monkeypatch.setitem(BACKEND_FACTORIES, "sleepy", SleepyBackend)
    frames = _frames(6, shapes=((120, 160),))

    def starts_before_previous_network_ends(records) -> list[bool]:
        origin = records[0].events["stage0"]  # ms from it (timing events only)
        at = [{k: origin.elapsed_time(r.events[k]) for k in ("stage0", "net1")}
              for r in records]
        return [b["stage0"] < a["net1"] for a, b in zip(at, at[1:])]

    _, overlapped = _run(cuda_model, frames, backend="sleepy", overlap=True)
    _, sequential = _run(cuda_model, frames, backend="sleepy", overlap=False)
    assert len(overlapped) == len(sequential) == 6
    # The first pair may miss: frame 1 can arrive after the worker took frame 0 alone.
    assert all(starts_before_previous_network_ends(overlapped)[1:])
    assert not any(starts_before_previous_network_ends(sequential))


def test_host_waits_sleep_instead_of_spinning(monkeypatch, cuda_model):
    """While the GPU works (~200 ms per frame of injected sleep), the engine's waits
    leave the CPU idle: blocking events, not spinning ones."""
    monkeypatch.setitem(BACKEND_FACTORIES, "drowsy", DrowsyBackend)
    frames = _frames(4, shapes=((120, 160),))
    _run(cuda_model, frames[:2], backend="drowsy")  # warm-up: kernels, pinned memory
    cpu0, wall0 = time.process_time(), time.perf_counter()
    _run(cuda_model, frames, backend="drowsy")
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    assert wall > 0.4, f"the injected GPU sleeps did not take effect ({wall:.3f} s)"
    assert cpu < 0.5 * wall, f"{cpu:.3f} s CPU in {wall:.3f} s: a host wait spins"


@pytest.mark.parametrize("family", ["metric", "relative", "prompt"])
def test_depth_anything_prompts_and_constants_stay_on_the_device(family):
    """Depth Anything frames (prompts through pinned memory) give the same results
    overlapped and sequentially, with the streams raced."""
    model = tiny_depth_anything("metric" if family == "prompt" else family,
                                prompt=family == "prompt").to("cuda")
    rng = np.random.default_rng(5)
    frames = [Frame(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8), meta=i,
                    prompt=(1 + 4 * rng.random((6, 8))).astype(np.float32)
                    if family == "prompt" else None) for i in range(6)]
    sequential, _ = _run(model, frames, overlap=False, input_size=56)
    raced, _ = _run(model, frames, slow_prepare=True, overlap=True, input_size=56)
    for a, b in zip(raced, sequential):
        out_a = a.relative if family == "relative" else a.depth
        out_b = b.relative if family == "relative" else b.depth
        np.testing.assert_array_equal(out_a, out_b)
