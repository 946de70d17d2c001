"""RigWorker: a live stream's rig groups run jointly on a worker thread (the any-view DA3
stand-in); results equal RigEngine's on the same groups, missing cameras reported, only
the newest waiting group kept while the network is busy."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from depth_pro_ros.engine import EngineConfig, Frame
from depth_pro_ros.engine.rig import RigEngine
from depth_pro_ros.model.stand_in import random_model
from depth_pro_ros.stream.camera import FrameContext
from depth_pro_ros.stream.rig_worker import RigWorker

MS = 1_000_000
CAMS = ("a", "b", "c")


def _frame(camera: str, instant: int) -> Frame:
    rng = np.random.default_rng(10 * CAMS.index(camera) + instant)
    image = rng.integers(0, 255, (28, 42, 3), dtype=np.uint8)
    stamp = instant * 100 * MS + CAMS.index(camera) * MS
    return Frame(image, meta=FrameContext(camera, instant, None, stamp, 0.0, 0.0))


@pytest.fixture(scope="module")
def rig():
    return RigEngine(random_model("depth_anything_3", "tiny"),
                     EngineConfig(device="cpu", input_size=42))


def test_groups_run_jointly_with_missing_cameras_reported(rig):
    results, groups = [], []
    worker = RigWorker(rig, CAMS, 0.010, results.append,
                       lambda group, out: groups.append((group.missing, out.camera_to_rig)))
    try:
        for camera, instant in [("a", 0), ("b", 0), ("c", 0)]:
            worker.submit(_frame(camera, instant))
        assert worker.drain(60)
        for camera, instant in [("a", 1), ("b", 1), ("a", 2)]:  # c silent at instant 1
            worker.submit(_frame(camera, instant))
        assert worker.drain(60)
    finally:
        worker.close()  # runs the open group of instant 2 (a alone)
    assert [m for m, _ in groups] == [(), ("c",), ("b", "c")]
    assert [(r.meta.camera, r.meta.seq) for r in results] == [
        ("a", 0), ("b", 0), ("c", 0), ("a", 1), ("b", 1), ("a", 2)]
    expected = rig.run([_frame(c, 1) for c in ("a", "b")])
    for got, want in zip(results[3:5], expected.results):
        np.testing.assert_allclose(got.relative, want.relative, rtol=1e-6)
    np.testing.assert_allclose(groups[1][1], expected.camera_to_rig, rtol=1e-6, atol=1e-7)
    assert worker.stats.batch_sizes == {3: 1, 2: 1, 1: 1} and worker.stats.processed == 6


def test_only_the_newest_waiting_group_is_kept(rig):
    entered, release = threading.Event(), threading.Event()
    seen = []

    def slow(result) -> None:  # holds the worker inside the first group
        seen.append(result.meta.seq)
        entered.set()
        release.wait(60)

    worker = RigWorker(rig, CAMS, 0.010, slow)
    try:
        for camera in CAMS:
            worker.submit(_frame(camera, 0))
        assert entered.wait(60)  # the worker is busy with instant 0
        for instant in (1, 2):
            for camera in CAMS:
                worker.submit(_frame(camera, instant))
        worker.submit(_frame("a", 1))  # late: its group (a alone) is older than the waiting
        worker.submit(_frame("b", 3))  # one, released by this frame, and dropped
        release.set()
        assert worker.drain(60)
    finally:
        worker.close()
    # Instant 1 waited, then instant 2 replaced it; b at 3 s ran at close.
    assert sorted(set(seen)) == [0, 2, 3]
    assert worker.stats.dropped == 4 and worker.stats.dropped_by_source["a"] == 2
    with pytest.raises(ValueError, match="cannot change"):
        worker.reconfigure(device="cuda")
    assert worker.reconfigure(output_scale=0.5).output_scale == 0.5
