"""Focal length bookkeeping: pinhole intrinsics, EMA smoothing and source selection.

Pure Python (no torch, no ROS) so that the node, the bag tool and the tests share the
exact same policy. Time is always passed in explicitly, which keeps the policy
deterministic and testable.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

__all__ = [
    "CAMERA_INFO_PERIODS",
    "CameraInfoFreshness",
    "DEFAULT_CAMERA_INFO_TIMEOUT_S",
    "DEFAULT_EMA_ALPHA",
    "FOCAL_SOURCES",
    "FocalEMA",
    "FocalSource",
    "FocalTracker",
    "Intrinsics",
    "intrinsics_from_camera_info",
    "parse_focal_source",
]


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics of an image of ``width`` x ``height`` pixels.

    Pixel centres lie at integer coordinates (ROS/OpenCV convention): the pixel in
    column ``u`` and row ``v`` sees the ray ``((u - cx) / fx, (v - cy) / fy, 1)``.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def validate(self) -> Intrinsics:
        """Raise ``ValueError`` naming the first problem found; return ``self`` if valid."""
        for name in ("fx", "fy", "cx", "cy"):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise ValueError(f"intrinsics {name} is not finite ({value})")
        if self.fx <= 0.0 or self.fy <= 0.0:
            raise ValueError(f"intrinsics focal lengths must be > 0 (fx={self.fx}, fy={self.fy})")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(
                f"intrinsics image size must be > 0 (width={self.width}, height={self.height})"
            )
        return self

    def scaled_to(self, width: int, height: int) -> Intrinsics:
        """Return these intrinsics for the same view resized to ``width`` x ``height``.

        K is scaled proportionally (``fx' = fx * sx``, ``cx' = cx * sx`` and likewise in
        y), which is what ROS ``image_proc`` resize does to CameraInfo. The exact
        pixel-centre mapping would be ``cx' = (cx + 0.5) * sx - 0.5``; the difference is
        under half a pixel and we follow the ROS tools so that outputs agree with them.
        """
        if width <= 0 or height <= 0:
            raise ValueError(f"target image size must be > 0 (width={width}, height={height})")
        if width == self.width and height == self.height:
            return self
        sx = width / self.width
        sy = height / self.height
        return Intrinsics(
            fx=self.fx * sx,
            fy=self.fy * sy,
            cx=self.cx * sx,
            cy=self.cy * sy,
            width=int(width),
            height=int(height),
        ).validate()

    @classmethod
    def from_focal(cls, f_px: float, width: int, height: int) -> Intrinsics:
        """Synthesize square-pixel intrinsics from one focal length in pixels.

        The principal point is put at ``(W / 2, H / 2)``, as Apple's Depth Pro and most
        tools that synthesize intrinsics do (rather than ``(W - 1) / 2``, the exact centre
        under the integer pixel-centre convention; the two differ by half a pixel).
        """
        return cls(
            fx=float(f_px),
            fy=float(f_px),
            cx=width / 2.0,
            cy=height / 2.0,
            width=int(width),
            height=int(height),
        ).validate()


def intrinsics_from_camera_info(k: Sequence[float], width: int, height: int) -> Intrinsics:
    """Build intrinsics from a CameraInfo's row-major 3x3 ``k``, ``width`` and ``height``.

    Raises ``ValueError`` with the reason when the CameraInfo is unusable (an
    uncalibrated camera publishes K all zero). Skew (``k[1]``) is ignored.
    """
    values = [float(v) for v in k]
    if len(values) != 9:
        raise ValueError(f"CameraInfo K must have 9 elements, got {len(values)}")
    if width <= 0 or height <= 0:
        raise ValueError(f"CameraInfo image size must be > 0 (width={width}, height={height})")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"CameraInfo K contains non-finite values: {values}")
    if all(v == 0.0 for v in values):
        raise ValueError("CameraInfo K is all zero (camera not calibrated)")
    fx, fy = values[0], values[4]
    if fx <= 0.0 or fy <= 0.0:
        raise ValueError(f"CameraInfo K has non-positive focal length (fx={fx}, fy={fy})")
    return Intrinsics(
        fx=fx, fy=fy, cx=values[2], cy=values[5], width=int(width), height=int(height)
    ).validate()


class FocalSource(str, Enum):
    """Where the focal length fed to the network comes from.

    The policy a user picks is one of the four; the focal a frame actually got (in a
    ``DepthResult``, the node's diagnostics and the bag summary) is one of the last three.
    """

    AUTO = "auto"
    CAMERA_INFO = "camera_info"
    FOV_HEAD = "fov_head"
    FIXED = "fixed"


#: The focal policies a user can choose (node parameter, ``--focal-source``).
FOCAL_SOURCES: tuple[str, ...] = tuple(s.value for s in FocalSource)
#: Weight of each new FoV estimate in the EMA on f/W.
DEFAULT_EMA_ALPHA = 0.1
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


def parse_focal_source(source: FocalSource | str) -> FocalSource:
    """The :class:`FocalSource` named ``source``; ``ValueError`` names the choices."""
    try:
        return FocalSource(source)
    except ValueError:
        raise ValueError(f"focal_source must be one of {', '.join(FOCAL_SOURCES)}, "
                         f"got {source!r}") from None


class FocalEMA:
    """Exponential moving average of the network's focal estimate.

    The smoothed quantity is the resolution-independent ratio ``f / W``. A change of
    image size (width or height) restarts the average because the new stream may be a
    different camera or crop. ``count`` is the number of accepted estimates since the
    last (re)start; ``rejected`` counts unusable estimates over the object's lifetime.
    """

    def __init__(self, alpha: float) -> None:
        if not (math.isfinite(alpha) and 0.0 < alpha <= 1.0):
            raise ValueError(f"focal_ema_alpha must be in (0, 1], got {alpha}")
        self._alpha = float(alpha)
        self._ratio: float | None = None
        self._size: tuple[int, int] | None = None
        self._count = 0
        self._rejected = 0

    @property
    def alpha(self) -> float:
        return self._alpha

    @property
    def ratio(self) -> float | None:
        """Smoothed ``f / W``, or None before the first accepted estimate."""
        return self._ratio

    @property
    def count(self) -> int:
        return self._count

    @property
    def rejected(self) -> int:
        return self._rejected

    def value_px(self, width: int) -> float | None:
        """Smoothed focal in pixels for an image ``width`` pixels wide."""
        return None if self._ratio is None else self._ratio * width

    def reset(self) -> None:
        """Forget the average (the ``rejected`` counter is kept)."""
        self._ratio = None
        self._size = None
        self._count = 0

    def update(self, f_px: float, width: int, height: int) -> float | None:
        """Feed one estimate; return the smoothed focal in pixels for ``width``.

        Non-finite or non-positive estimates are rejected: the state is unchanged and the
        current smoothed value is returned (None if there is none, or if the image size
        differs from the one the average belongs to).
        """
        if width <= 0 or height <= 0:
            raise ValueError(f"image size must be > 0 (width={width}, height={height})")
        size = (int(width), int(height))
        f = float(f_px)
        if not (math.isfinite(f) and f > 0.0):
            self._rejected += 1
            return self.value_px(width) if size == self._size else None
        if size != self._size:
            self.reset()
            self._size = size
        ratio = f / width
        if self._ratio is None:
            self._ratio = ratio
        else:
            self._ratio = self._alpha * ratio + (1.0 - self._alpha) * self._ratio
        self._count += 1
        return self._ratio * width


class FocalTracker:
    """Decide per frame which focal the network gets; shared by the node and bag tool.

    Per frame the caller asks :meth:`known_focal`; if it returns intrinsics, they are fed
    to the network. Otherwise, if :meth:`needs_estimate` is True, the network's FoV head
    runs and its estimate goes through :meth:`observe_estimate`. With ``CAMERA_INFO`` and
    no CameraInfo received yet, both say no: the caller must skip (or hold) the frame.

    ``CAMERA_INFO`` uses the latest CameraInfo whatever its age (calibrations are static);
    only ``AUTO`` judges freshness (:class:`CameraInfoFreshness`: ``camera_info_timeout``,
    or 3 observed CameraInfo periods when longer; age by header stamps or by arrival,
    whichever is smaller). Feed every CameraInfo message to :meth:`camera_info_arrived`
    so that its period is known. A CameraInfo newer than the image counts as fresh.
    """

    def __init__(
        self,
        source: FocalSource | str,
        ema_alpha: float = DEFAULT_EMA_ALPHA,
        fixed_focal_px: float | None = None,
        camera_info_timeout: float = DEFAULT_CAMERA_INFO_TIMEOUT_S,
    ) -> None:
        self._source = parse_focal_source(source)
        if self._source is FocalSource.FIXED and not (
            fixed_focal_px is not None and math.isfinite(fixed_focal_px) and fixed_focal_px > 0.0
        ):
            raise ValueError(f"focal_source 'fixed' needs fixed_focal_px > 0, "
                             f"got {fixed_focal_px}")
        self._freshness = CameraInfoFreshness(camera_info_timeout)
        self._fixed = None if fixed_focal_px is None else float(fixed_focal_px)
        self._ema = FocalEMA(ema_alpha)
        self._camera_info: Intrinsics | None = None
        self._camera_info_received: float | None = None
        self._camera_info_stamp_ns: int | None = None
        self._current: FocalSource | None = None
        # Effective AUTO choice, tracked separately from _current so that a switch is
        # reported when it is decided, not only once a focal has been produced.
        self._auto_choice: FocalSource | None = None
        self._messages: deque[str] = deque()

    @property
    def source(self) -> FocalSource:
        return self._source

    @property
    def ema(self) -> FocalEMA:
        return self._ema

    @property
    def current_source(self) -> FocalSource | None:
        """Source of the last focal handed out (CAMERA_INFO, FOV_HEAD or FIXED)."""
        return self._current

    @property
    def camera_info(self) -> Intrinsics | None:
        return self._camera_info

    @property
    def freshness(self) -> CameraInfoFreshness:
        return self._freshness

    def camera_info_arrived(self, stamp_ns: int, received: float) -> None:
        """Note a CameraInfo message as it arrives (every one, paired or not): its header
        stamp in ns and the time it was taken in. Gives ``auto`` the CameraInfo period."""
        self._freshness.arrived(stamp_ns, received)

    def set_camera_info(self, intrinsics: Intrinsics, received: float,
                        stamp_ns: int | None = None) -> None:
        """Record the CameraInfo for the next frame: its intrinsics, the time it was
        received and its header stamp in ns (None: judged by arrival only)."""
        self._camera_info = intrinsics.validate()
        self._camera_info_received = float(received)
        self._camera_info_stamp_ns = stamp_ns

    def forget_camera_info(self) -> None:
        """Drop the CameraInfo (e.g. none pairs with the current image)."""
        self._camera_info = None
        self._camera_info_received = None
        self._camera_info_stamp_ns = None

    def camera_info_fresh(self, info_stamp_ns: int | None, info_received: float,
                          image_stamp_ns: int | None, image_received: float) -> bool:
        """Whether a CameraInfo (stamp, time received) is fresh for an image (stamp, time
        received) by ``auto``'s rule, without changing any state."""
        age = self._freshness.age(info_stamp_ns, info_received, image_stamp_ns, image_received)
        return age <= self._freshness.limit

    def needs_estimate(self, width: int, height: int, now: float,
                       stamp_ns: int | None = None) -> bool:
        """True when the network's FoV head must run for this frame (received at ``now``,
        stamped ``stamp_ns``)."""
        if self._source is FocalSource.FOV_HEAD:
            return True
        if self._source is FocalSource.AUTO:
            return not self._auto_uses_camera_info(now, stamp_ns)
        return False

    def known_focal(self, width: int, height: int, now: float,
                    stamp_ns: int | None = None) -> Intrinsics | None:
        """Intrinsics to feed the network when a known focal applies, else None (the
        frame was received at ``now`` and is stamped ``stamp_ns``)."""
        if self._source is FocalSource.FIXED:
            assert self._fixed is not None  # guaranteed by __init__
            self._current = FocalSource.FIXED
            return Intrinsics.from_focal(self._fixed, width, height)
        if self._source is FocalSource.CAMERA_INFO:
            return self._scaled_camera_info(width, height)
        if self._source is FocalSource.AUTO and self._auto_uses_camera_info(now, stamp_ns):
            return self._scaled_camera_info(width, height)
        return None

    def observe_estimate(self, f_px: float, width: int, height: int) -> Intrinsics | None:
        """Feed a FoV-head estimate; return intrinsics from the smoothed focal (or None)."""
        smoothed = self._ema.update(f_px, width, height)
        if smoothed is None:
            return None
        self._current = FocalSource.FOV_HEAD
        return Intrinsics.from_focal(smoothed, width, height)

    def pop_switch_message(self) -> str | None:
        """Return the oldest unread AUTO source-switch message, or None."""
        return self._messages.popleft() if self._messages else None

    def _scaled_camera_info(self, width: int, height: int) -> Intrinsics | None:
        if self._camera_info is None:
            return None
        self._current = FocalSource.CAMERA_INFO
        return self._camera_info.scaled_to(width, height)

    def _auto_uses_camera_info(self, now: float, stamp_ns: int | None) -> bool:
        """Decide AUTO's effective source for an image received at ``now`` and stamped
        ``stamp_ns``, and log a message when it changes."""
        received = self._camera_info_received
        age = None if received is None else self._freshness.age(
            self._camera_info_stamp_ns, received, stamp_ns, now)
        if age is None:
            choice = FocalSource.FOV_HEAD
            message = "no camera_info for this image, using the FoV estimate"
        elif age > self._freshness.limit:
            choice = FocalSource.FOV_HEAD
            message = (
                f"camera_info stale for {age:.1f} s ({self._freshness.describe_limit()}), "
                "falling back to the FoV estimate"
            )
        else:
            choice = FocalSource.CAMERA_INFO
            message = "camera_info is fresh, using its focal length instead of the FoV estimate"
        if choice is not self._auto_choice:
            self._auto_choice = choice
            self._messages.append(message)
        return choice is FocalSource.CAMERA_INFO
