"""Anchor fits over time (``engine.anchor.tracker``): the tracker's EMA, timeout and
messages, and the settings that build a fit and a tracker."""

from __future__ import annotations

import math

import numpy as np
import pytest

from depth_pro_ros.engine.anchor import AnchorFit, AnchorSettings, AnchorTracker

# --- AnchorTracker ----------------------------------------------------------------------


def good(scale: float, shift: float = 0.0) -> AnchorFit:
    return AnchorFit(scale, shift, points=100, inliers=90, residual=0.01, ok=True)


REJECTED = AnchorFit(math.nan, math.nan, points=5, inliers=0, residual=math.nan, ok=False,
                     reason="too few anchor points: 5 valid < min_points 20")


def drain(tracker: AnchorTracker) -> list[str]:
    messages = []
    while (message := tracker.pop_switch_message()) is not None:
        messages.append(message)
    return messages


def test_tracker_ema_by_hand() -> None:
    """alpha 0.5, EMA on log(scale) and on shift, written out from the formula."""
    tracker = AnchorTracker(ema_alpha=0.5, timeout=1.0)
    assert tracker.current(0.0) is None and drain(tracker) == []
    # frame 1 initialises: (2, 0.1)
    assert tracker.observe(good(2.0, 0.1), 0.0) == pytest.approx((2.0, 0.1))
    [message] = drain(tracker)
    assert message.startswith("anchored: scale 2.0000")
    # frame 2: exp(0.5 ln 8 + 0.5 ln 2) = 4; 0.5 * 0.3 + 0.5 * 0.1 = 0.2
    assert tracker.observe(good(8.0, 0.3), 0.1) == pytest.approx((4.0, 0.2))
    # a rejected fit keeps the value and is counted
    assert tracker.observe(REJECTED, 0.2) == pytest.approx((4.0, 0.2))
    assert tracker.fits_rejected == 1 and tracker.last_fit is REJECTED
    # frame 3: exp(0.5 ln 1 + 0.5 ln 4) = 2; 0.5 * 0.0 + 0.5 * 0.2 = 0.1
    assert tracker.observe(good(1.0, 0.0), 0.3) == pytest.approx((2.0, 0.1))
    assert tracker.fits_ok == 3
    assert tracker.age(0.5) == pytest.approx(0.2)
    assert drain(tracker) == []  # still anchored: no switch


def test_tracker_alpha_one_follows_the_last_fit() -> None:
    tracker = AnchorTracker(ema_alpha=1.0, timeout=1.0)
    tracker.observe(good(2.0), 0.0)
    assert tracker.observe(good(3.0), 0.1) == pytest.approx((3.0, 0.0))


def test_tracker_timeout_and_recovery_messages_once() -> None:
    tracker = AnchorTracker(ema_alpha=0.5, timeout=1.0)
    assert tracker.age(0.0) is None
    tracker.observe(good(2.0), 0.0)
    drain(tracker)
    assert tracker.current(1.0) == pytest.approx((2.0, 0.0))  # exactly timeout: fresh
    # rejected fits do not refresh the anchor time
    assert tracker.observe(REJECTED, 1.5) is None
    assert tracker.current(1.6) is None
    [message] = drain(tracker)
    assert message.startswith("anchors stopped for 1.5 s (timeout 1.0 s): publishing "
                              "unanchored depth")
    assert "too few anchor points" in message  # the last fit's rejection reason
    assert tracker.current(2.0) is None and drain(tracker) == []
    # anchors come back: the EMA restarts from the new fit, one message
    assert tracker.observe(good(8.0, 0.02), 3.0) == pytest.approx((8.0, 0.02))
    [message] = drain(tracker)
    assert message.startswith("anchored: scale 8.0000, shift 0.0200 1/m")
    assert tracker.current(3.5) == pytest.approx((8.0, 0.02)) and drain(tracker) == []


@pytest.mark.parametrize("alpha", [0.0, -0.1, 1.5, math.nan])
def test_tracker_rejects_bad_alpha(alpha: float) -> None:
    with pytest.raises(ValueError, match="ema_alpha must be in"):
        AnchorTracker(alpha, 1.0)


@pytest.mark.parametrize("timeout", [0.0, -1.0, math.nan, math.inf])
def test_tracker_rejects_bad_timeout(timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout must be"):
        AnchorTracker(0.5, timeout)


# --- AnchorSettings ---------------------------------------------------------------------


def test_settings_defaults_build_a_tracker_and_fit() -> None:
    settings = AnchorSettings()
    assert settings.fit == "scale" and settings.timeout == 1.0
    tracker = settings.tracker()
    assert tracker.ema_alpha == settings.ema_alpha and tracker.timeout == settings.timeout
    depth = np.linspace(0.5, 20.0, 40 * 50, dtype=np.float32).reshape(40, 50)
    anchor = np.full_like(depth, np.nan)
    anchor[::4, ::4] = 1.37 * depth[::4, ::4]  # exact, sparse
    fit = settings.fit_anchor(depth, anchor)
    assert fit.ok and fit.scale == pytest.approx(1.37, rel=1e-6)


def test_settings_name_every_bad_field() -> None:
    with pytest.raises(ValueError) as err:
        AnchorSettings(fit="affine", ema_alpha=0.0, timeout=-1.0, min_points=1,
                       min_depth=3.0, max_depth=2.0, min_inlier_fraction=0.0,
                       max_residual=0.0)
    text = str(err.value)
    assert text.startswith("invalid AnchorSettings: ")
    for name in ("fit", "ema_alpha", "timeout", "min_points", "min_depth",
                 "min_inlier_fraction", "max_residual"):
        assert name in text, name


def test_a_frame_step_feeds_the_fit_and_keeps_the_problems_for_the_front_end() -> None:
    """step() is what the engine's worker calls per frame (engine.anchor.step); the
    front end reads snapshot() and the problems from another thread."""
    import threading

    tracker = AnchorTracker(ema_alpha=1.0, timeout=1.0)
    assert tracker.step(None, 0.0, "no anchor") == (None, None)
    assert tracker.step(good(2.0), 1.0) == ((2.0, 0.0), 0.0)
    assert tracker.step(REJECTED, 1.5, "anchor fit rejected: x") == ((2.0, 0.0), 0.5)
    seen = tracker.snapshot(1.5)
    assert seen["anchored"] and seen["value"] == (2.0, 0.0) and seen["last_fit"] is REJECTED
    assert (seen["fits_ok"], seen["fits_rejected"], seen["age_s"]) == (1, 1, 0.5)
    assert tracker.pop_problems() == ["no anchor", "anchor fit rejected: x"]
    assert tracker.pop_problems() == []

    def feed() -> None:
        for i in range(2000):
            tracker.step(good(2.0) if i % 2 else REJECTED, 2.0, "p")

    worker = threading.Thread(target=feed)
    worker.start()
    popped = 0
    while worker.is_alive():
        popped += len(tracker.pop_problems())
        tracker.snapshot(2.0)
    worker.join()
    popped += len(tracker.pop_problems())
    assert 100 <= popped <= 2000  # none twice; at most the last 100 wait uncollected
    assert tracker.fits_ok + tracker.fits_rejected == 2002
