"""How old a CameraInfo is for an image, and how old it may be for the ``auto`` policy.

Pure bookkeeping: times are passed in explicitly, which keeps the policy deterministic.
"""

from __future__ import annotations

import math
import statistics
from collections import deque

__all__ = ["CAMERA_INFO_PERIODS", "DEFAULT_CAMERA_INFO_TIMEOUT_S", "CameraInfoFreshness"]

#: Seconds a CameraInfo may be older than the image before ``auto`` stops trusting it
#: (see :class:`CameraInfoFreshness` for how the age is measured).
DEFAULT_CAMERA_INFO_TIMEOUT_S = 2.0
#: ``auto`` trusts a CameraInfo for at least this many of its observed periods, so that a
#: slow CameraInfo (1 Hz) stays in use when one message is lost and the next one is late.
CAMERA_INFO_PERIODS = 3
# Intervals between CameraInfo messages the period is the median of, and how many are
# needed first (a median of one or two would take a single long gap for the period).
_PERIOD_INTERVALS = 8
_MIN_PERIOD_INTERVALS = 3


class CameraInfoFreshness:
    """How old a CameraInfo is for an image, and how old it may be for ``auto``.

    The age has two measures, and the CameraInfo is stale only when both exceed the limit:

    - by header stamps: the image's stamp minus the CameraInfo's. It does not grow when
      the node is busy (callbacks run late, messages wait in the middleware), but is
      unusable when a stamp is zero or the CameraInfo is stamped more than the limit
      after the image (another clock);
    - by arrival: the time the image was taken in minus the time the CameraInfo was
      (both the caller's clock). It works whatever the stamps are, but grows when the
      node takes messages in late.

    The limit is ``timeout``, or :data:`CAMERA_INFO_PERIODS` times the observed CameraInfo
    period when that is longer: a CameraInfo that keeps arriving, however slowly, is not
    stale between two messages. The period is the median of the last 8 intervals between
    consecutive CameraInfo messages (:meth:`arrived`), by stamp where the stamp advanced,
    else by arrival; it is known from the fourth message on. Pure bookkeeping: times are
    passed in (seconds; stamps in ns).
    """

    def __init__(self, timeout: float = DEFAULT_CAMERA_INFO_TIMEOUT_S) -> None:
        if math.isnan(timeout) or timeout <= 0.0:
            raise ValueError(f"camera_info_timeout must be > 0 s, got {timeout}")
        self._timeout = float(timeout)
        self._last: tuple[int, float] | None = None
        self._intervals: deque[float] = deque(maxlen=_PERIOD_INTERVALS)
        self._period: float | None = None

    @property
    def timeout(self) -> float:
        return self._timeout

    @property
    def period(self) -> float | None:
        """The observed CameraInfo period in seconds (None before four have arrived)."""
        return self._period

    @property
    def limit(self) -> float:
        """The largest age at which a CameraInfo is still fresh, in seconds."""
        if self._period is None:
            return self._timeout
        return max(self._timeout, CAMERA_INFO_PERIODS * self._period)

    def arrived(self, stamp_ns: int, received: float) -> None:
        """Note one CameraInfo message (header stamp, time taken in) for the period."""
        stamp_ns, received = int(stamp_ns), float(received)
        if self._last is not None:
            last_stamp, last_received = self._last
            if last_stamp > 0 and stamp_ns > last_stamp:
                interval = (stamp_ns - last_stamp) * 1e-9
            else:
                interval = received - last_received
            if math.isfinite(interval) and interval > 0.0:
                self._intervals.append(interval)
                if len(self._intervals) >= _MIN_PERIOD_INTERVALS:
                    self._period = statistics.median(self._intervals)
        self._last = (stamp_ns, received)

    def age(self, info_stamp_ns: int | None, info_received: float,
            image_stamp_ns: int | None, image_received: float) -> float:
        """Seconds the CameraInfo is older than the image: the smaller of the two
        measures (by arrival alone when the stamps cannot be compared). Negative when the
        CameraInfo is newer than the image."""
        age = image_received - info_received
        if info_stamp_ns is not None and image_stamp_ns is not None \
                and info_stamp_ns > 0 and image_stamp_ns > 0:
            by_stamp = (image_stamp_ns - info_stamp_ns) * 1e-9
            if by_stamp >= -self.limit:  # else stamped far after the image: another clock
                age = min(age, by_stamp)
        return age

    def describe_limit(self) -> str:
        """The limit in words, for log lines."""
        text = f"timeout {self.limit:.1f} s"
        if self._period is not None and self.limit > self._timeout:
            text += f": {CAMERA_INFO_PERIODS} CameraInfo periods of {self._period:.2f} s"
        return text
