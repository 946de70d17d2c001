"""ErrorThrottle: one line per kind of problem and period, a bounded table of kinds."""

from __future__ import annotations

import pytest

from depth_pro_ros.ros.throttle import ErrorThrottle


def test_first_report_of_a_kind_is_logged_then_held_back_for_the_period():
    throttle = ErrorThrottle(period=5.0)
    assert throttle.admit("decode:unsupported_encoding", 100.0) == 0
    assert [throttle.admit("decode:unsupported_encoding", 100.0 + 0.1 * i)
            for i in range(1, 40)] == [None] * 39
    # Another kind is not held back by the first.
    assert throttle.admit("decode:too_short", 101.0) == 0
    # After the period the next report is logged with the count of those held back.
    assert throttle.admit("decode:unsupported_encoding", 105.0) == 39
    assert throttle.admit("decode:unsupported_encoding", 109.9) is None
    assert throttle.admit("decode:unsupported_encoding", 110.0) == 1


def test_the_table_of_kinds_stays_bounded_and_drops_the_oldest():
    throttle = ErrorThrottle(period=5.0, max_kinds=8)
    for i in range(1000):
        assert throttle.admit(f"kind{i}", 0.001 * i) == 0
    assert len(throttle) == 8
    # The 8 newest kinds are still throttled; an evicted one starts afresh.
    assert throttle.admit("kind999", 1.5) is None
    assert throttle.admit("kind0", 1.5) == 0


@pytest.mark.parametrize(("period", "kinds"), [(0.0, 4), (-1.0, 4), (5.0, 0)])
def test_invalid_settings_are_refused(period, kinds):
    with pytest.raises(ValueError):
        ErrorThrottle(period, kinds)
