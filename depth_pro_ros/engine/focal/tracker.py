"""Which focal each frame gets: the policy (:class:`FocalSource`), the EMA of the FoV
head's estimates and the per-camera choice (:class:`FocalTracker`).

Pure Python (no torch, no ROS) so that the node, the bag tool and the tests share the
exact same policy. Time is always passed in explicitly, which keeps the policy
deterministic and testable.
"""

from __future__ import annotations

import math
from collections import deque
from enum import Enum

from depth_pro_ros.engine.focal.freshness import (
    DEFAULT_CAMERA_INFO_TIMEOUT_S,
    CameraInfoFreshness,
)
from depth_pro_ros.engine.focal.intrinsics import Intrinsics

__all__ = ["DEFAULT_EMA_ALPHA", "FOCAL_SOURCES", "FocalEMA", "FocalSource", "FocalTracker",
           "parse_focal_source"]


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
