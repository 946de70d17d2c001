"""The streaming engine on the CPU against the reference pipeline (``model.infer``).

Every test runs real forward passes of the tiny network (about a second each on two
cores), so frames are few and reference results are computed once and shared.
"""

from __future__ import annotations

import gc
import math
import threading
import time
import weakref

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from harness.engine import process_one
from model_factories import ReferenceRuns

from depth_pro_ros.engine import (
    DepthEngine,
    EngineConfig,
    FocalTracker,
    Frame,
    Intrinsics,
    create_engine,
    depth_to_points,
    to_numpy_record,
)
from depth_pro_ros.model import (
    DepthProConfig,
    create_model,
    save_checkpoint,
)

TIMINGS = ("queue", "preprocess", "inference", "postprocess", "total")
WAIT = 120.0  # generous bound on any wait, so that a hung engine fails instead of hanging


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(20240601)
    net = create_model(DepthProConfig.tiny())
    with torch.no_grad():
        # Random weights: make the FoV plausible and the depth finite and varied (the
        # head's final ReLU would otherwise zero most pixels: depth clamped to 1e4 m).
        net.fov.head[-1].bias.fill_(60.0)
        net.head[-2].weight.mul_(20.0)
        net.head[-2].bias.fill_(0.3)
    return net


def _pixels(height: int, width: int, channels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels == 0 else (height, width, channels)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def _as_rgb(image: np.ndarray, channel_order: str) -> np.ndarray:
    """What the reference pipeline gets for a frame: an (H, W, 3) RGB copy."""
    if channel_order == "rgb":
        return image
    if channel_order == "bgr":
        return np.ascontiguousarray(image[..., ::-1])
    grey = image if image.ndim == 2 else image[..., 0]
    return np.repeat(grey[..., None], 3, axis=-1)


# Shared pictures (pixels, channel order): 48x64 and 60x80 in every channel order.
P_RGB = (_pixels(48, 64, 3, seed=1), "rgb")
P_BGR_BIG = (_pixels(60, 80, 3, seed=2), "bgr")
P_MONO = (_pixels(48, 64, 0, seed=3), "mono")
P_BGR = (_pixels(48, 64, 3, seed=4), "bgr")

# Known intrinsics: one at the image size, one for a 2x larger calibration (scaled down).
K_BIG = Intrinsics(fx=70.0, fy=72.0, cx=40.0, cy=30.0, width=80, height=60)
K_2X = Intrinsics(fx=140.0, fy=138.0, cx=64.0, cy=48.0, width=128, height=96)


class _Reference:
    """Reference results: ``model.infer`` on the frame's RGB pixels, one forward pass per
    distinct image (``ReferenceRuns``), whose network output gives the depth for a
    known focal by ``infer``'s own metric conversion."""

    def __init__(self) -> None:
        self._reference = ReferenceRuns()

    def __call__(self, model, image: np.ndarray, channel_order: str, f_px: float | None):
        rgb = _as_rgb(image, channel_order)
        pred, cid = self._reference.run(model, rgb)
        out = {
            "canonical_inverse_depth": cid,
            "estimate_px": pred.focal_px,
            "estimate_fov_deg": pred.fov_deg,
        }
        if f_px is None:
            out.update(depth=pred.depth.numpy(), focal_px=pred.focal_px, fov_deg=pred.fov_deg,
                       focal_source=pred.focal_source)
        else:
            out.update(depth=self._reference.depth(model, rgb, f_px), focal_px=float(f_px),
                       fov_deg=None, focal_source="camera_info")
        return out


@pytest.fixture(scope="module")
def ref():
    return _Reference()


def _frame(picture, intrinsics=None, meta=None, estimate_fov=False) -> Frame:
    image, order = picture
    return Frame(image=image, channel_order=order, intrinsics=intrinsics,
                 estimate_fov=estimate_fov, meta=meta)


def _cpu(**kwargs) -> EngineConfig:
    return EngineConfig(device="cpu", **kwargs)


def _collect(engine: DepthEngine, n: int) -> list:
    results = []
    for _ in range(n):
        result = engine.get(timeout=WAIT)
        assert result is not None, f"no result within {WAIT} s ({len(results)} of {n} came)"
        results.append(result)
    return results


def _run_all(model, frames: list[Frame], focal_filter) -> tuple[list, object]:
    """Every frame through a policy-"all" engine with ``focal_filter``: (results, stats)."""
    for frame in frames:
        frame.focal_filter = focal_filter
    with DepthEngine(model, _cpu(policy="all", queue_size=4)) as eng:
        for frame in frames:
            assert eng.submit(frame, timeout=WAIT)
        return _collect(eng, len(frames)), eng.stats


def _check_against_reference(result, frame: Frame, model, ref) -> None:
    """One engine result equals the reference pipeline for its frame."""
    assert result.ok, result.error
    assert result.meta is frame.meta
    height, width = frame.image.shape[:2]
    assert result.depth.dtype == np.float32 and result.depth.shape == (height, width)
    image, order = frame.image, frame.channel_order
    if frame.intrinsics is None:
        expected = ref(model, image, order, None)
        assert expected["focal_source"] == result.focal_source == "fov_head"
        assert result.intrinsics.fx == pytest.approx(expected["focal_px"], rel=1e-6)
        assert result.intrinsics.fy == pytest.approx(expected["focal_px"], rel=1e-6)
        assert (result.intrinsics.cx, result.intrinsics.cy) == (width / 2, height / 2)
        assert result.fov_deg == pytest.approx(expected["fov_deg"], rel=1e-6)
        assert result.focal_estimate_px == pytest.approx(expected["focal_px"], rel=1e-6)
    else:
        known = frame.intrinsics.scaled_to(width, height)
        expected = ref(model, image, order, known.fx)
        assert expected["focal_source"] == result.focal_source == "camera_info"
        assert result.intrinsics == known
        if frame.estimate_fov:
            assert result.fov_deg == pytest.approx(expected["estimate_fov_deg"], rel=1e-6)
            assert result.focal_estimate_px == pytest.approx(expected["estimate_px"], rel=1e-6)
        else:
            assert result.fov_deg is None and result.focal_estimate_px is None
    assert (result.intrinsics.width, result.intrinsics.height) == (width, height)
    np.testing.assert_allclose(result.depth, expected["depth"], rtol=1e-5, atol=0)
    assert result.points is None and result.points_shape is None
    assert np.ptp(result.depth) > 0.01 * float(np.median(result.depth)), "degenerate depth"
    assert float(result.depth.max()) < 1e3, "depth clamped: the test would prove little"
    for key in TIMINGS:
        assert key in result.timings_ms, f"timing {key!r} missing: {result.timings_ms}"
        assert math.isfinite(result.timings_ms[key]) and result.timings_ms[key] >= 0.0
    assert result.timings_ms["total"] >= result.timings_ms["inference"]


# ----------------------------------------------------------------------------- (a)
def test_results_equal_reference_over_mixed_frames(model, ref):
    mono_hw1 = (P_MONO[0][..., None], "mono")
    frames = [
        _frame(P_RGB, meta="rgb, estimated"),
        _frame(P_BGR_BIG, K_BIG, meta={"stamp": 1.5}),
        _frame(P_MONO, meta=("mono", 2)),
        _frame(mono_hw1, K_2X, meta=[3], estimate_fov=True),  # known focal, estimate too
    ]
    with DepthEngine(model, _cpu(policy="all", queue_size=8)) as engine:
        for frame in frames:
            assert engine.submit(frame, timeout=WAIT)
        results = _collect(engine, len(frames))
        assert engine.drain(timeout=WAIT)
        assert engine.get(timeout=0.05) is None
        stats = engine.stats
    assert [r.meta for r in results] == [f.meta for f in frames]  # submission order
    for result, frame in zip(results, frames):
        _check_against_reference(result, frame, model, ref)
    assert (stats.submitted, stats.processed, stats.dropped, stats.failed) == (4, 4, 0, 0)


# ----------------------------------------------------------------------------- (b)
def test_focal_filter_smooths_estimates_with_ema(model, ref):
    tracker = FocalTracker(source="fov_head", ema_alpha=0.5)
    seen = []

    def focal_filter(f_px: float, width: int, height: int):
        seen.append((f_px, width, height))
        return tracker.observe_estimate(f_px, width, height)

    big_rgb = (_as_rgb(*P_BGR_BIG), "rgb")
    frames = [_frame(P_RGB, meta=0), _frame(P_MONO, meta=1), _frame(big_rgb, meta=2)]
    results, _ = _run_all(model, frames, focal_filter)

    raw = [ref(model, f.image, f.channel_order, None)["focal_px"] for f in frames]
    assert [s[1:] for s in seen] == [(64, 48), (64, 48), (80, 60)]  # in frame order
    assert [s[0] for s in seen] == pytest.approx(raw, rel=1e-6)
    # The EMA runs on f / W; the third frame changes the size, which restarts it.
    smoothed = [raw[0], (0.5 * raw[1] / 64 + 0.5 * raw[0] / 64) * 64, raw[2]]
    assert abs(smoothed[1] - raw[1]) > 1e-4 * raw[1], "test needs distinct estimates"
    for result, frame, f_raw, f_smooth in zip(results, frames, raw, smoothed):
        assert result.ok, result.error
        height, width = frame.image.shape[:2]
        assert result.focal_source == "fov_head"
        assert result.focal_estimate_px == pytest.approx(f_raw, rel=1e-6)
        assert result.intrinsics.fx == pytest.approx(f_smooth, rel=1e-6)
        assert result.intrinsics == Intrinsics.from_focal(result.intrinsics.fx, width, height)
        expected = ref(model, frame.image, frame.channel_order, result.intrinsics.fx)
        np.testing.assert_allclose(result.depth, expected["depth"], rtol=1e-5, atol=0)
    assert tracker.ema.count == 1  # restarted by the size change


def test_process_and_create_engine_from_checkpoint(model, ref, tmp_path):
    path = save_checkpoint(model, tmp_path / "tiny.pt")
    with create_engine(str(path), _cpu(policy="all")) as engine:
        assert engine.backend.device.type == "cpu"
        frame = _frame(P_RGB, meta="checkpoint")
        result = process_one(engine, frame)
    _check_against_reference(result, frame, model, ref)


# ----------------------------------------------------------------------------- (c)
def test_latest_policy_drops_old_frames_under_a_slow_consumer(model):
    delivered = []

    def slow_consumer(result):
        delivered.append(result)
        time.sleep(0.2)

    n = 30
    refs = []
    waiting_seen = []
    engine = DepthEngine(model, _cpu(policy="latest"), on_result=slow_consumer)
    try:
        for i in range(n):
            image = _pixels(48, 64, 3, seed=100 + i)
            refs.append(weakref.ref(image))
            assert engine.submit(Frame(image=image, meta=i)) is True  # never blocks
            del image
            waiting_seen.append(engine.waiting)
            time.sleep(0.005)
        assert engine.drain(timeout=WAIT)
        stats = engine.stats
    finally:
        engine.close()

    assert max(waiting_seen) <= 1, f"more than one frame waiting: {waiting_seen}"
    assert stats.submitted == n and stats.failed == 0
    assert stats.dropped > 0
    assert stats.processed + stats.dropped == stats.submitted
    metas = [r.meta for r in delivered]
    assert len(metas) == stats.processed and all(r.ok for r in delivered)
    assert all(a < b for a, b in zip(metas, metas[1:])), metas
    assert metas[-1] == n - 1  # the newest frame is never dropped
    # Dropped frames are released, not kept somewhere: memory does not grow.
    del delivered[:]
    gc.collect()
    alive = sum(r() is not None for r in refs)
    assert alive <= 2, f"{alive} of {n} submitted images are still referenced"


# ----------------------------------------------------------------------------- (d)
def test_all_policy_back_pressure_and_order(model):
    entered, release = threading.Event(), threading.Event()
    delivered = []

    def blocking_consumer(result):
        delivered.append(result)
        entered.set()
        release.wait(WAIT)  # hold the worker inside the first delivery

    frames = [_frame(P_RGB, meta=i) for i in range(3)]
    engine = DepthEngine(model, _cpu(policy="all", queue_size=1), on_result=blocking_consumer)
    outcome = []
    try:
        assert engine.submit(frames[0], timeout=WAIT)
        assert entered.wait(WAIT), "first frame never delivered"
        assert engine.submit(frames[1], timeout=5.0)  # one frame may wait
        assert engine.waiting == 1
        t0 = time.perf_counter()
        assert engine.submit(frames[2], timeout=0.3) is False  # queue full, worker busy
        assert time.perf_counter() - t0 >= 0.25
        assert engine.stats.submitted == 2

        blocked = threading.Thread(target=lambda: outcome.append(engine.submit(frames[2])))
        blocked.start()
        blocked.join(0.3)
        assert blocked.is_alive(), "submit did not block on a full queue"
        release.set()
        blocked.join(WAIT)
        assert not blocked.is_alive() and outcome == [True]
        assert engine.drain(timeout=WAIT)
        stats = engine.stats
    finally:
        release.set()
        engine.close()
    assert [r.meta for r in delivered] == [0, 1, 2]
    assert all(r.ok for r in delivered)
    assert (stats.submitted, stats.processed, stats.dropped, stats.failed) == (3, 3, 0, 0)


# ----------------------------------------------------------------------------- (e)
def test_batching_gives_the_same_results(model, ref):
    entered, release = threading.Event(), threading.Event()
    delivered = []

    def gate(result):
        delivered.append(result)
        entered.set()
        release.wait(WAIT)  # the first frame holds the worker until all others wait

    rgb_of_mono = (_as_rgb(*P_MONO), "rgb")
    bgr_of_rgb = (np.ascontiguousarray(P_RGB[0][..., ::-1]), "bgr")
    frames = [
        _frame(P_RGB, meta=0),
        # Estimated and known focal mixed in each batch; the channel order splits the
        # 48x64 frames, the size the last one.
        _frame(rgb_of_mono, meta=1),
        _frame((_as_rgb(*P_BGR), "rgb"), K_2X, meta=2),
        _frame(P_BGR, meta=3),
        _frame(bgr_of_rgb, K_2X, meta=4),
        _frame(P_BGR_BIG, K_BIG, meta=5),
    ]
    engine = DepthEngine(model, _cpu(policy="all", queue_size=8, batch_size=3), on_result=gate)
    try:
        assert engine.submit(frames[0], timeout=WAIT)
        assert entered.wait(WAIT)
        for frame in frames[1:]:
            assert engine.submit(frame, timeout=WAIT)
        release.set()
        assert engine.drain(timeout=WAIT)
        stats = engine.stats
    finally:
        release.set()
        engine.close()
    assert [r.meta for r in delivered] == list(range(len(frames)))
    assert (stats.submitted, stats.processed, stats.failed) == (6, 6, 0)
    for result, frame in zip(delivered, frames):
        assert result.ok, result.error
        height, width = frame.image.shape[:2]
        known = frame.intrinsics
        f_px = None if known is None else known.scaled_to(width, height).fx
        expected = ref(model, frame.image, frame.channel_order, f_px)
        assert result.focal_source == expected["focal_source"]
        assert result.intrinsics.fx == pytest.approx(expected["focal_px"], rel=1e-6)
        if known is None:
            assert result.fov_deg == pytest.approx(expected["fov_deg"], rel=1e-6)
        np.testing.assert_allclose(result.depth, expected["depth"], rtol=1e-5, atol=0)
    # Frames run as one batch share the network time: evidence that batching happened.
    inference = [r.timings_ms["inference"] for r in delivered]
    assert inference[1] == inference[2] != inference[3] == inference[4] != inference[5], inference


# ----------------------------------------------------------------------------- (f)
def test_points_match_depth_to_points(model, ref):
    image, order = P_BGR_BIG
    rgb = _as_rgb(image, order)
    reference_depth = ref(model, image, order, K_BIG.fx)["depth"]
    low, high = np.percentile(reference_depth, [25, 75])
    config = _cpu(policy="all", points=True, points_rgb=True, points_decimation=2,
                  min_depth=float(low), max_depth=float(high))
    with DepthEngine(model, config) as engine:
        result = process_one(engine, _frame(P_BGR_BIG, K_BIG, meta="points"))
    assert result.ok, result.error
    np.testing.assert_allclose(result.depth, reference_depth, rtol=1e-5, atol=0)
    assert result.intrinsics == K_BIG  # the depth image's intrinsics, not the cloud's
    assert result.points_shape == (30, 40)
    assert result.points.shape == (30 * 40,)
    assert result.points.dtype.names == ("x", "y", "z", "rgb")
    assert result.points.dtype.itemsize == 16

    expected = to_numpy_record(depth_to_points(
        torch.from_numpy(result.depth), result.intrinsics, min_depth=float(low),
        max_depth=float(high), decimation=2, rgb=torch.from_numpy(rgb),
    ))
    for name in ("x", "y", "z"):
        got, want = result.points[name], expected[name]
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7, equal_nan=True)
    assert np.array_equal(result.points["rgb"].view(np.uint32), expected["rgb"].view(np.uint32))

    # Independently: geometry at the kept pixels and ROS rgb packing from the RGB pixels.
    z = result.points["z"].reshape(30, 40)
    kept = result.depth[::2, ::2]
    in_range = (kept >= low) & (kept <= high)
    assert in_range.any() and (~in_range).any()
    np.testing.assert_array_equal(np.isnan(z), ~in_range)
    np.testing.assert_array_equal(z[in_range], kept[in_range])
    v, u = np.nonzero(in_range)
    x = result.points["x"].reshape(30, 40)[v, u]
    y = result.points["y"].reshape(30, 40)[v, u]
    np.testing.assert_allclose(x, (2 * u - K_BIG.cx) * kept[v, u] / K_BIG.fx, rtol=1e-5)
    np.testing.assert_allclose(y, (2 * v - K_BIG.cy) * kept[v, u] / K_BIG.fy, rtol=1e-5)
    sub = rgb[::2, ::2].astype(np.uint32)
    packed = (sub[..., 0] << 16) | (sub[..., 1] << 8) | sub[..., 2]
    assert np.array_equal(result.points["rgb"].view(np.uint32).reshape(30, 40), packed)


def test_output_scale_halves_depth_and_intrinsics(model, ref):
    image, order = P_BGR_BIG
    config = _cpu(policy="all", output_scale=0.5, points=True, points_rgb=True)
    colour = np.empty((60, 80, 3), np.uint8)
    colour[...] = (30, 100, 200)  # bgr: r=200, g=100, b=30
    with DepthEngine(model, config) as engine:
        result = process_one(engine, _frame(P_BGR_BIG, K_BIG, meta="half"))
        flat = process_one(engine, Frame(image=colour, channel_order="bgr", intrinsics=K_BIG))
    assert result.ok, result.error
    assert result.depth.shape == (30, 40)
    assert result.intrinsics == K_BIG.scaled_to(40, 30)
    assert result.intrinsics.fx == pytest.approx(35.0)
    # Expected: the network output converted with the full-size focal, resized to 30x40.
    cid = ref(model, image, order, K_BIG.fx)["canonical_inverse_depth"]
    inverse = F.interpolate(cid.float() * (80 / K_BIG.fx), size=(30, 40), mode="bilinear",
                            align_corners=False)
    expected = (1.0 / inverse.clamp(1e-4, 1e4))[0, 0].numpy()
    np.testing.assert_allclose(result.depth, expected, rtol=1e-5, atol=0)
    # The cloud is built from the scaled depth and intrinsics.
    assert result.points_shape == (30, 40)
    cloud = to_numpy_record(depth_to_points(torch.from_numpy(result.depth), result.intrinsics))
    for name in ("x", "y", "z"):
        np.testing.assert_allclose(result.points[name], cloud[name], rtol=1e-6, atol=1e-7,
                                   equal_nan=True)
    # Colour is resampled to the output size too (a flat colour stays exact).
    assert flat.ok and flat.points_shape == (30, 40)
    assert set(flat.points["rgb"].view(np.uint32).tolist()) == {0x00C8641E}


# ----------------------------------------------------------------------------- (g)
@pytest.mark.parametrize(
    "image, channel_order, message",
    [
        (np.zeros((8, 8, 3), np.float32), "rgb", "uint8"),
        ([[0, 1], [2, 3]], "mono", "uint8"),
        (np.zeros((8, 8, 4), np.uint8), "rgb", "shape"),
        (np.zeros((8, 8), np.uint8), "bgr", "shape"),
        (np.zeros((8, 8, 3), np.uint8), "mono", "shape"),
        (np.zeros((0, 8, 3), np.uint8), "rgb", "shape"),
        (np.zeros((8, 8, 3), np.uint8), "rgba", "channel order"),
    ],
)
def test_invalid_frames_raise_at_submit(model, image, channel_order, message):
    for policy in ("all", "latest"):
        with DepthEngine(model, _cpu(policy=policy)) as engine:
            with pytest.raises(ValueError, match=message):
                engine.submit(Frame(image=image, channel_order=channel_order))
            assert engine.stats.submitted == 0 and engine.waiting == 0
            assert engine.drain(timeout=1.0)


def test_rejected_or_failing_focal_filter_fails_only_that_frame(model, ref):
    tracker = FocalTracker(source="fov_head", ema_alpha=0.5)
    calls = []

    def focal_filter(f_px, width, height):
        calls.append(f_px)
        if len(calls) == 1:
            return None  # e.g. a non-finite estimate rejected by the tracker
        if len(calls) == 2:
            raise RuntimeError("filter exploded")
        return tracker.observe_estimate(f_px, width, height)

    frames = [_frame(P_RGB, meta=i) for i in range(3)]
    results, stats = _run_all(model, frames, focal_filter)
    assert [r.meta for r in results] == [0, 1, 2]
    rejected, exploded, fine = results
    assert not rejected.ok and "focal estimate rejected" in rejected.error
    assert rejected.depth is None and rejected.points is None
    assert not exploded.ok and "filter exploded" in exploded.error and exploded.depth is None
    assert fine.ok, fine.error
    expected = ref(model, *P_RGB, None)
    assert fine.intrinsics.fx == pytest.approx(expected["focal_px"], rel=1e-6)
    np.testing.assert_allclose(fine.depth, expected["depth"], rtol=1e-5, atol=0)
    assert (stats.submitted, stats.processed, stats.failed, stats.dropped) == (3, 1, 2, 0)


def test_raising_callback_does_not_stop_the_engine(model):
    delivered = []

    def bad_consumer(result):
        delivered.append(result.meta)
        if result.meta == 0:
            raise RuntimeError("consumer bug")

    engine = DepthEngine(model, _cpu(policy="all"), on_result=bad_consumer)
    try:
        for i in range(2):
            assert engine.submit(_frame(P_RGB, K_2X, meta=i), timeout=WAIT)
        assert engine.drain(timeout=WAIT)
        deadline = time.monotonic() + WAIT
        while len(delivered) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # drain must not have returned early; give it a chance anyway
        stats = engine.stats
    finally:
        engine.close()
    assert delivered == [0, 1], "each frame is delivered exactly once, in order"
    assert stats.processed + stats.failed == 2 and stats.submitted == 2


# ----------------------------------------------------------------------------- (h)
def _engine_threads(before: set) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t not in before]


def test_close_joins_the_worker_and_finishes_pending_frames(model):
    before = set(threading.enumerate())
    engine = DepthEngine(model, _cpu(policy="all", queue_size=4))
    started = _engine_threads(before)
    assert started and all(t.is_alive() for t in started)
    frames = [_frame(P_RGB, K_2X, meta=i) for i in range(2)]
    for frame in frames:
        assert engine.submit(frame, timeout=WAIT)
    engine.close()
    assert not any(t.is_alive() for t in started)
    assert engine.stats.processed == 2  # frames in flight are finished, not lost
    results = [engine.get(timeout=0) for _ in range(2)]
    assert [r.meta for r in results] == [0, 1] and all(r.ok for r in results)
    with pytest.raises(RuntimeError):
        engine.submit(frames[0])
    engine.close()  # idempotent


def test_context_manager_closes(model, ref):
    before = set(threading.enumerate())
    with DepthEngine(model, _cpu(policy="latest")) as engine:
        started = _engine_threads(before)
        assert started
        frame = _frame(P_RGB, meta="ctx")
        result = process_one(engine, frame)
        _check_against_reference(result, frame, model, ref)
    assert not any(t.is_alive() for t in started)
    assert not [t for t in threading.enumerate() if t.name == "depth_engine"]
