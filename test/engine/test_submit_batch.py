"""``DepthEngine.submit_batch``: frames queued together run together, reproducibly."""

from __future__ import annotations

import numpy as np
import pytest
from model_factories import tiny_model

from depth_pro_ros.engine import DepthEngine, EngineConfig, FocalTracker, Frame

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
