"""``DepthEngine.submit_batch``: frames queued together run together, reproducibly."""

from __future__ import annotations

import threading
from collections import Counter

import numpy as np
import pytest
from model_factories import tiny_model

from depth_pro_ros.engine import DepthEngine, EngineConfig, FocalTracker, Frame, Intrinsics

WAIT = 120.0


@pytest.fixture(scope="module")
def model():
    return tiny_model().eval()


def _frames(tracker: FocalTracker) -> list[Frame]:
    rng = np.random.default_rng(7)
    return [Frame(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), channel_order="bgr",
                  meta=i, focal_filter=tracker.observe_estimate) for i in range(2)]


def _run(model) -> list:
    tracker = FocalTracker("fov_head", ema_alpha=0.5)
    with DepthEngine(model, EngineConfig(device="cpu", policy="all", batch_size=2,
                                         queue_size=1)) as engine:
        # queue_size 1 < 2 frames: submit_batch still takes them as one group.
        assert engine.submit_batch(_frames(tracker), timeout=WAIT)
        results = [engine.get(timeout=WAIT) for _ in range(2)]
    assert [r.meta for r in results] == [0, 1] and all(r.ok for r in results)
    return results


def test_frames_submitted_together_run_as_one_batch_and_repeat_exactly(model):
    first, second = _run(model), _run(model)
    # One batch: both frames carry the same measured inference time.
    assert first[0].timings_ms["inference"] == first[1].timings_ms["inference"]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a.depth, b.depth)
        assert a.intrinsics == b.intrinsics
    # The EMA saw the estimates in frame order.
    est = [r.focal_estimate_px for r in first]
    assert first[1].intrinsics.fx == pytest.approx(0.5 * est[0] + 0.5 * est[1], rel=1e-9)


def test_submit_batch_needs_policy_all_and_an_open_engine(model):
    tracker = FocalTracker("fov_head")
    with DepthEngine(model, EngineConfig(device="cpu", policy="latest")) as engine:
        with pytest.raises(ValueError, match="policy 'all'"):
            engine.submit_batch(_frames(tracker))
    engine = DepthEngine(model, EngineConfig(device="cpu", policy="all"))
    engine.close()
    with pytest.raises(RuntimeError, match="closed"):
        engine.submit_batch(_frames(tracker))
    with DepthEngine(model, EngineConfig(device="cpu", policy="all")) as engine:
        with pytest.raises(ValueError, match="uint8"):  # invalid frames: nothing queued
            engine.submit_batch([_frames(tracker)[0], Frame(np.zeros((4, 4), np.float32))])
        assert engine.waiting == 0 and engine.stats.submitted == 0


def test_submit_batch_groups_never_mix_even_when_waiting_together(model):
    """Two groups of two equal frames and a plain frame wait at once, with room for
    four in a batch: each group still runs alone, and the plain frame joins neither."""
    entered, release = threading.Event(), threading.Event()
    delivered = []

    def gate(result):
        delivered.append(result)
        entered.set()
        release.wait(WAIT)  # the first frame holds the worker until all others wait

    rng = np.random.default_rng(11)
    known = Intrinsics.from_focal(60.0, 64, 48)

    def frame(meta) -> Frame:
        return Frame(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), intrinsics=known,
                     meta=meta)

    config = EngineConfig(device="cpu", policy="all", batch_size=4, queue_size=5)
    engine = DepthEngine(model, config, on_result=gate)
    try:
        assert engine.submit(frame("gate"), timeout=WAIT)
        assert entered.wait(WAIT), "first frame never delivered"
        assert engine.submit_batch([frame("a0"), frame("a1")], timeout=WAIT)
        assert engine.submit_batch([frame("b0"), frame("b1")], timeout=WAIT)
        assert engine.submit(frame("plain"), timeout=WAIT)
        assert engine.waiting == 5
        release.set()
        assert engine.drain(timeout=WAIT)
        stats = engine.stats
    finally:
        release.set()
        engine.close()
    assert [r.meta for r in delivered] == ["gate", "a0", "a1", "b0", "b1", "plain"]
    assert all(r.ok for r in delivered), [r.error for r in delivered]
    assert [r.batch_size for r in delivered] == [1, 2, 2, 2, 2, 1]
    assert stats.batch_sizes == Counter({1: 2, 2: 2})
    assert [b.size for b in stats.recent_batches] == [1, 2, 2, 1]
    inference = [r.timings_ms["inference"] for r in delivered]
    assert inference[1] == inference[2] != inference[3] == inference[4], inference
