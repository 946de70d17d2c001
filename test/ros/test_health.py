"""CameraHealth and engine_values: what /diagnostics reports, without ROS."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np

from depth_pro_ros.engine import BatchRecord, DepthResult, EngineStats, FocalSource, Intrinsics
from depth_pro_ros.ros.health import CameraHealth, engine_values


def _result(fx: float = 500.0, width: int = 64) -> DepthResult:
    return DepthResult(meta=None, depth=np.ones((48, width), np.float32),
                       intrinsics=Intrinsics.from_focal(fx, width, 48),
                       focal_source=FocalSource.FOV_HEAD, focal_estimate_px=fx + 1.0)


def _sleep_past(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() <= end:
        time.sleep(seconds / 4)


def test_counters_and_focal_values():
    health = CameraHealth()
    for _ in range(3):
        health.image_in()
    health.skipped("decode")
    health.skipped("too_large")
    health.failed()
    health.camera_info_error()
    health.published(_result(fx=512.25), time.monotonic())
    values = health.values(dropped=4, focal_ema_px=511.0)
    assert {k: values[k] for k in ("frames_in", "frames_out", "dropped_frames", "decode_errors",
                                   "skipped_frames", "failed_frames", "camera_info_errors")} \
        == {"frames_in": "3", "frames_out": "1", "dropped_frames": "4", "decode_errors": "1",
            "skipped_frames": "2", "failed_frames": "1", "camera_info_errors": "1"}
    assert (values["focal_source"], values["focal_px"], values["focal_estimate_px"],
            values["focal_ema_px"]) == ("fov_head", "512.25", "513.25", "511.00")
    assert float(values["input_rate_hz"]) > 0 and float(values["latency_median_ms"]) >= 0
    assert health.last_width == 64


def test_nothing_published_yet_leaves_the_focal_blank():
    values = CameraHealth().values(dropped=0, focal_ema_px=None)
    assert values["focal_source"] == values["focal_px"] == values["latency_median_ms"] == ""
    assert CameraHealth().last_width == 0


def test_health_levels():
    health = CameraHealth()
    assert health.health(stall_timeout=60.0) == ("WARN", "no images received yet")
    health.image_in()
    health.published(_result(), time.monotonic())
    assert health.health(stall_timeout=60.0) == ("OK", "running")
    health.skipped("decode")
    assert health.health(stall_timeout=60.0) == ("OK", "running (1 frames skipped or failed)")
    # Images keep coming, none is published: an error once the stall timeout passed.
    health.image_in()
    _sleep_past(0.05)
    health.image_in()
    level, message = health.health(stall_timeout=0.04)
    assert level == "ERROR" and message.startswith("images arrive but no depth")
    assert "(1 frames skipped or failed)" in message
    # No input at all for longer than the timeout: a warning.
    _sleep_past(0.05)
    assert health.health(stall_timeout=0.04)[0] == "WARN"
    # lazy: idle by request, not stalled.
    health.image_in()
    health.lazy_skipped()
    _sleep_past(0.05)
    health.image_in()
    assert health.health(stall_timeout=0.04)[0] == "OK"


def test_engine_values_summarize_the_batches():
    stats = EngineStats(processed=7, failed=1, dropped=3,
                        batch_sizes=Counter({1: 2, 3: 1, 2: 1}))
    stats.recent_batches.extend([
        BatchRecord(1, {"preprocess": 1.0, "inference": 10.0}),
        BatchRecord(3, {"preprocess": 3.0, "inference": 30.0}),
        BatchRecord(2, {"preprocess": 2.0, "inference": 20.0, "postprocess": 4.0}),
    ])
    values = engine_values(stats, max_batch_size=3)
    assert values == {
        "max_batch_size": "3", "batches": "4", "batch_sizes": "1x2 2x1 3x1",
        "frames_processed": "7", "frames_failed": "1", "frames_dropped": "3",
        "recent_batch_size_mean": "2.00", "preprocess_ms_per_batch_median": "2.0",
        "inference_ms_per_batch_median": "20.0", "postprocess_ms_per_batch_median": "4.0",
    }
    empty = engine_values(EngineStats(), max_batch_size=1)
    assert empty["batches"] == "0" and empty["recent_batch_size_mean"] == ""
    assert "graph_captures" not in values


def test_engine_values_count_cuda_graphs_only_when_they_are_on():
    stats = EngineStats(graph_captures=5, graph_evictions=2, graphs_cached=3)
    values = engine_values(stats, max_batch_size=1, cuda_graphs=True)
    assert (values["graph_captures"], values["graph_evictions"],
            values["graphs_cached"]) == ("5", "2", "3")
    assert "graph_captures" not in engine_values(stats, max_batch_size=1)
