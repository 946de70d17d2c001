"""Tests for intrinsics handling, the focal EMA and the focal source policy."""

from __future__ import annotations

import math

import pytest

from depth_pro_ros.engine.focal import (
    CameraInfoFreshness,
    FocalEMA,
    FocalSource,
    FocalTracker,
    Intrinsics,
    intrinsics_from_camera_info,
)

K_1280 = [1000.0, 0.0, 640.0, 0.0, 1010.0, 480.0, 0.0, 0.0, 1.0]


def drain(tracker: FocalTracker) -> list[str]:
    messages = []
    while (message := tracker.pop_switch_message()) is not None:
        messages.append(message)
    return messages


# --- Intrinsics -------------------------------------------------------------------------


def test_scaled_to_halves_everything() -> None:
    intr = intrinsics_from_camera_info(K_1280, 1280, 960)
    half = intr.scaled_to(640, 480)
    assert (half.fx, half.fy, half.cx, half.cy) == (500.0, 505.0, 320.0, 240.0)
    assert (half.width, half.height) == (640, 480)


def test_scaled_to_anisotropic_and_identity() -> None:
    intr = Intrinsics(fx=100.0, fy=200.0, cx=50.0, cy=40.0, width=100, height=80)
    scaled = intr.scaled_to(300, 40)
    assert scaled == Intrinsics(fx=300.0, fy=100.0, cx=150.0, cy=20.0, width=300, height=40)
    assert intr.scaled_to(100, 80) is intr
    with pytest.raises(ValueError, match="size"):
        intr.scaled_to(0, 80)


def test_from_focal_centres_principal_point() -> None:
    intr = Intrinsics.from_focal(700.0, 640, 480)
    assert intr == Intrinsics(fx=700.0, fy=700.0, cx=320.0, cy=240.0, width=640, height=480)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fx": math.nan}, "fx is not finite"),
        ({"cy": math.inf}, "cy is not finite"),
        ({"fx": 0.0}, "focal"),
        ({"fy": -1.0}, "focal"),
        ({"width": 0}, "size"),
        ({"height": -5}, "size"),
    ],
)
def test_validate_names_problem(kwargs: dict, match: str) -> None:
    base = {"fx": 500.0, "fy": 500.0, "cx": 320.0, "cy": 240.0, "width": 640, "height": 480}
    base.update(kwargs)
    with pytest.raises(ValueError, match=match):
        Intrinsics(**base).validate()


def test_from_focal_rejects_bad_focal() -> None:
    with pytest.raises(ValueError):
        Intrinsics.from_focal(0.0, 640, 480)


# --- CameraInfo -------------------------------------------------------------------------


def test_camera_info_valid() -> None:
    intr = intrinsics_from_camera_info(tuple(K_1280), 1280, 960)
    assert intr == Intrinsics(fx=1000.0, fy=1010.0, cx=640.0, cy=480.0, width=1280, height=960)


@pytest.mark.parametrize(
    ("k", "width", "height", "match"),
    [
        ([0.0] * 9, 640, 480, "all zero"),
        ([0.0, 0, 320, 0, 500, 240, 0, 0, 1], 640, 480, "focal"),
        ([500.0, 0, 320, 0, -500, 240, 0, 0, 1], 640, 480, "focal"),
        ([500.0, 0, math.nan, 0, 500, 240, 0, 0, 1], 640, 480, "non-finite"),
        ([math.inf, 0, 320, 0, 500, 240, 0, 0, 1], 640, 480, "non-finite"),
        (K_1280, 0, 480, "size"),
        (K_1280, 640, 0, "size"),
        (K_1280[:8], 640, 480, "9 elements"),
    ],
)
def test_camera_info_invalid(k: list[float], width: int, height: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        intrinsics_from_camera_info(k, width, height)


# --- FocalEMA ---------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.0, -0.1, 1.5, math.nan])
def test_ema_rejects_bad_alpha(alpha: float) -> None:
    with pytest.raises(ValueError, match="alpha"):
        FocalEMA(alpha)


def test_ema_arithmetic_by_hand() -> None:
    ema = FocalEMA(0.5)
    assert ema.ratio is None and ema.value_px(100) is None
    assert ema.update(80.0, 100, 50) == pytest.approx(80.0)  # ratio 0.8 initialises
    assert ema.update(100.0, 100, 50) == pytest.approx(90.0)  # 0.5*1.0 + 0.5*0.8 = 0.9
    assert ema.update(60.0, 100, 50) == pytest.approx(75.0)  # 0.5*0.6 + 0.5*0.9 = 0.75
    assert ema.ratio == pytest.approx(0.75)
    assert ema.value_px(200) == pytest.approx(150.0)
    assert ema.count == 3


def test_ema_alpha_one_follows_input_and_small_alpha_smooths() -> None:
    follow = FocalEMA(1.0)
    follow.update(50.0, 100, 100)
    assert follow.update(70.0, 100, 100) == pytest.approx(70.0)
    slow = FocalEMA(0.1)
    slow.update(100.0, 100, 100)  # ratio 1.0
    slow.update(200.0, 100, 100)  # 0.1*2.0 + 0.9*1.0 = 1.1
    assert slow.update(200.0, 100, 100) == pytest.approx(100.0 * (0.1 * 2.0 + 0.9 * 1.1))


def test_ema_resets_on_size_change() -> None:
    ema = FocalEMA(0.5)
    ema.update(80.0, 100, 50)
    ema.update(100.0, 100, 50)
    # Width change: the new estimate initialises, the old average is gone.
    assert ema.update(300.0, 200, 50) == pytest.approx(300.0)
    assert ema.ratio == pytest.approx(1.5)
    assert ema.count == 1
    # Height-only change also resets.
    assert ema.update(100.0, 200, 60) == pytest.approx(100.0)
    assert ema.count == 1


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 0.0, -10.0])
def test_ema_rejects_unusable_estimates(bad: float) -> None:
    ema = FocalEMA(0.5)
    assert ema.update(bad, 100, 50) is None
    assert ema.rejected == 1 and ema.count == 0 and ema.ratio is None
    ema.update(80.0, 100, 50)
    assert ema.update(bad, 100, 50) == pytest.approx(80.0)
    assert ema.rejected == 2 and ema.count == 1 and ema.ratio == pytest.approx(0.8)
    # A rejected estimate at another size neither resets nor returns the old value.
    assert ema.update(bad, 200, 50) is None
    assert ema.ratio == pytest.approx(0.8)
    assert ema.update(100.0, 100, 50) == pytest.approx(90.0)


def test_ema_reset_keeps_rejected_counter() -> None:
    ema = FocalEMA(0.5)
    ema.update(math.nan, 100, 50)
    ema.update(80.0, 100, 50)
    ema.reset()
    assert ema.ratio is None and ema.count == 0 and ema.rejected == 1
    assert ema.update(100.0, 100, 50) == pytest.approx(100.0)


# --- FocalTracker -----------------------------------------------------------------------


def test_tracker_fov_head_always_estimates() -> None:
    tracker = FocalTracker(FocalSource.FOV_HEAD, ema_alpha=0.5)
    tracker.set_camera_info(intrinsics_from_camera_info(K_1280, 1280, 960), received=0.0)
    assert tracker.needs_estimate(640, 480, now=0.0)
    assert tracker.known_focal(640, 480, now=0.0) is None
    assert tracker.current_source is None
    tracker.observe_estimate(480.0, 640, 480)
    intr = tracker.observe_estimate(640.0, 640, 480)
    assert intr == Intrinsics.from_focal(560.0, 640, 480)
    assert tracker.current_source == "fov_head"
    assert tracker.observe_estimate(math.nan, 640, 480) == intr
    assert tracker.ema.rejected == 1
    assert drain(tracker) == []


def test_tracker_fixed() -> None:
    with pytest.raises(ValueError, match="fixed_focal_px"):
        FocalTracker(FocalSource.FIXED)
    with pytest.raises(ValueError, match="fixed_focal_px"):
        FocalTracker("fixed", fixed_focal_px=-3.0)
    tracker = FocalTracker("fixed", fixed_focal_px=600.0)
    assert tracker.source is FocalSource.FIXED
    assert not tracker.needs_estimate(640, 480, now=0.0)
    assert tracker.known_focal(640, 480, now=0.0) == Intrinsics.from_focal(600.0, 640, 480)
    assert tracker.current_source is FocalSource.FIXED


def test_tracker_camera_info_waits_then_scales_and_ignores_age() -> None:
    tracker = FocalTracker(FocalSource.CAMERA_INFO, camera_info_timeout=0.5)
    assert not tracker.needs_estimate(640, 480, now=0.0)
    assert tracker.known_focal(640, 480, now=0.0) is None  # caller skips the frame
    tracker.set_camera_info(intrinsics_from_camera_info(K_1280, 1280, 960), received=1.0)
    expected = Intrinsics(fx=500.0, fy=505.0, cx=320.0, cy=240.0, width=640, height=480)
    assert tracker.known_focal(640, 480, now=1.0) == expected
    assert tracker.known_focal(640, 480, now=100.0) == expected  # no timeout here
    assert not tracker.needs_estimate(640, 480, now=100.0)
    assert tracker.current_source == "camera_info"
    assert drain(tracker) == []


def test_tracker_rejects_bad_timeout() -> None:
    with pytest.raises(ValueError, match="timeout"):
        FocalTracker("auto", camera_info_timeout=0.0)
    with pytest.raises(ValueError):
        FocalTracker("nonsense")


def test_tracker_auto_switches_both_ways_with_one_message_per_switch() -> None:
    tracker = FocalTracker(FocalSource.AUTO, ema_alpha=0.5, camera_info_timeout=0.5)
    w, h = 640, 480

    # No CameraInfo yet: the estimate is used.
    assert tracker.known_focal(w, h, now=0.0) is None
    assert tracker.needs_estimate(w, h, now=0.0)
    assert tracker.observe_estimate(512.0, w, h) == Intrinsics.from_focal(512.0, w, h)
    assert tracker.current_source == "fov_head"
    first = drain(tracker)
    assert len(first) == 1 and "no camera_info" in first[0]
    assert tracker.needs_estimate(w, h, now=0.1)
    assert drain(tracker) == []

    # CameraInfo appears: switch to it, once.
    tracker.set_camera_info(intrinsics_from_camera_info(K_1280, 1280, 960), received=1.0)
    assert not tracker.needs_estimate(w, h, now=1.2)
    assert tracker.known_focal(w, h, now=1.2).fx == pytest.approx(500.0)
    assert tracker.current_source == "camera_info"
    to_info = drain(tracker)
    assert len(to_info) == 1 and "camera_info is fresh" in to_info[0]
    tracker.known_focal(w, h, now=1.4)
    assert drain(tracker) == []

    # Exactly at the timeout it is still fresh; beyond it we fall back.
    assert not tracker.needs_estimate(w, h, now=1.5)
    assert tracker.known_focal(w, h, now=2.2) is None
    assert tracker.needs_estimate(w, h, now=2.2)
    stale = drain(tracker)
    assert stale == [
        "camera_info stale for 1.2 s (timeout 0.5 s), falling back to the FoV estimate"
    ]
    # The EMA kept its state from before the CameraInfo period: 0.5*0.9 + 0.5*0.8 = 0.85.
    assert tracker.observe_estimate(576.0, w, h).fx == pytest.approx(0.85 * w)
    assert tracker.current_source == "fov_head"
    assert tracker.needs_estimate(w, h, now=3.0)
    assert drain(tracker) == []

    # A fresh CameraInfo switches back again.
    tracker.set_camera_info(intrinsics_from_camera_info(K_1280, 1280, 960), received=3.1)
    assert tracker.known_focal(w, h, now=3.2) is not None
    assert len(drain(tracker)) == 1


def test_tracker_messages_queue_until_popped() -> None:
    tracker = FocalTracker("auto", camera_info_timeout=1.0)
    tracker.needs_estimate(10, 10, now=0.0)
    tracker.set_camera_info(Intrinsics.from_focal(10.0, 10, 10), received=0.0)
    tracker.needs_estimate(10, 10, now=0.5)
    tracker.needs_estimate(10, 10, now=5.0)
    messages = drain(tracker)
    assert len(messages) == 3
    assert "no camera_info" in messages[0]
    assert "fresh" in messages[1]
    assert "stale for 5.0 s" in messages[2]


# --- CameraInfo freshness ----------------------------------------------------------------
S = 1_000_000_000  # ns per second
T0 = 1_700_000_000 * S  # a wall-clock stamp


def test_freshness_limit_is_the_timeout_or_three_observed_periods() -> None:
    fresh = CameraInfoFreshness(2.0)
    assert fresh.period is None and fresh.limit == 2.0
    # 1 Hz by stamp, taken in late and irregularly: the stamps give the period, from the
    # fourth message on (a median of three intervals).
    for k, received in enumerate((0.3, 1.9, 2.1, 4.8, 4.9)):
        fresh.arrived(T0 + k * S, received)
        assert fresh.period is None if k < 3 else fresh.period == pytest.approx(1.0, abs=1e-9)
    assert fresh.limit == pytest.approx(3.0)
    # One lost message (a 2 s interval) does not move the median of the last 8.
    fresh.arrived(T0 + 6 * S, 6.0)
    assert fresh.period == pytest.approx(1.0, abs=1e-9)
    assert "3 CameraInfo periods of 1.00 s" in fresh.describe_limit()

    # 30 Hz: three periods are far below the timeout, which applies.
    fast = CameraInfoFreshness(2.0)
    for k in range(10):
        fast.arrived(T0 + k * S // 30, k / 30)
    assert fast.period == pytest.approx(1 / 30) and fast.limit == 2.0
    assert fast.describe_limit() == "timeout 2.0 s"

    # Zero stamps (a static CameraInfo publisher) or repeated ones: arrival intervals.
    for stamp in (lambda k: 0, lambda k: T0):
        unstamped = CameraInfoFreshness(0.5)
        for k in range(4):
            unstamped.arrived(stamp(k), 10.0 + 2.0 * k)
        assert unstamped.period == pytest.approx(2.0) and unstamped.limit == pytest.approx(6.0)

    with pytest.raises(ValueError, match="camera_info_timeout"):
        CameraInfoFreshness(math.nan)


def test_freshness_age_is_the_smaller_of_stamps_and_arrival() -> None:
    fresh = CameraInfoFreshness(2.0)
    # Taken in 3 s apart (the node was busy) but stamped 0.4 s apart: 0.4 s old.
    assert fresh.age(T0, 10.0, T0 + 4 * S // 10, 13.0) == pytest.approx(0.4)
    # Stamped far apart (another clock, or an old CameraInfo) but taken in 0.1 s apart.
    assert fresh.age(T0 - 3600 * S, 10.0, T0, 10.1) == pytest.approx(0.1)
    # A zero stamp on either side, or none given: by arrival only.
    assert fresh.age(0, 10.0, T0, 13.0) == pytest.approx(3.0)
    assert fresh.age(T0, 10.0, 0, 13.0) == pytest.approx(3.0)
    assert fresh.age(None, 10.0, None, 13.0) == pytest.approx(3.0)
    # A CameraInfo stamped after the image (within the limit) is newer: negative age.
    assert fresh.age(T0 + S, 10.0, T0, 13.0) == pytest.approx(-1.0)
    # Stamped hours after the image: another clock, so the stamps are not compared.
    assert fresh.age(T0 + 3600 * S, 10.0, T0, 13.0) == pytest.approx(3.0)


def test_tracker_auto_judges_age_by_stamps_when_the_node_takes_messages_late() -> None:
    tracker = FocalTracker("auto", camera_info_timeout=2.0)
    k = intrinsics_from_camera_info(K_1280, 1280, 960)
    tracker.camera_info_arrived(T0, 10.0)
    tracker.set_camera_info(k, received=10.0, stamp_ns=T0)
    # The image stamped 0.9 s after the CameraInfo is taken in 2.9 s after it.
    assert tracker.known_focal(640, 480, now=12.9, stamp_ns=T0 + 9 * S // 10).fx == 500.0
    assert tracker.camera_info_fresh(T0, 10.0, T0 + 9 * S // 10, 12.9)
    # Without stamps the same image would be 2.9 s late: stale by arrival alone.
    assert not tracker.camera_info_fresh(None, 10.0, None, 12.9)
    assert tracker.known_focal(640, 480, now=12.9) is None
    assert drain(tracker)[-1] == ("camera_info stale for 2.9 s (timeout 2.0 s), falling "
                                  "back to the FoV estimate")
