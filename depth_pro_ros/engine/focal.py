"""Focal length bookkeeping: pinhole intrinsics, EMA smoothing and source selection.

Pure Python (no torch, no ROS) so that the node, the bag tool and the tests share the
exact same policy. Time is always passed in explicitly, which keeps the policy
deterministic and testable.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

__all__ = [
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
#: Seconds after which ``auto`` stops trusting the last CameraInfo. Live streams measure
#: it in receive time, where a best-effort CameraInfo may be lost or delayed now and then.
DEFAULT_CAMERA_INFO_TIMEOUT_S = 2.0


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
    only ``AUTO`` applies ``camera_info_timeout``. A CameraInfo stamped in the future
    relative to ``now`` counts as fresh.
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
        if math.isnan(camera_info_timeout) or camera_info_timeout <= 0.0:
            raise ValueError(f"camera_info_timeout must be > 0 s, got {camera_info_timeout}")
        self._fixed = None if fixed_focal_px is None else float(fixed_focal_px)
        self._timeout = float(camera_info_timeout)
        self._ema = FocalEMA(ema_alpha)
        self._camera_info: Intrinsics | None = None
        self._camera_info_stamp: float | None = None
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

    def set_camera_info(self, intrinsics: Intrinsics, stamp: float) -> None:
        """Record the latest CameraInfo intrinsics and the time it was received."""
        self._camera_info = intrinsics.validate()
        self._camera_info_stamp = float(stamp)

    def forget_camera_info(self) -> None:
        """Drop the CameraInfo (e.g. none pairs with the current image)."""
        self._camera_info = None
        self._camera_info_stamp = None

    def needs_estimate(self, width: int, height: int, now: float) -> bool:
        """True when the network's FoV head must run for this frame."""
        if self._source is FocalSource.FOV_HEAD:
            return True
        if self._source is FocalSource.AUTO:
            return not self._auto_uses_camera_info(now)
        return False

    def known_focal(self, width: int, height: int, now: float) -> Intrinsics | None:
        """Intrinsics to feed the network when a known focal applies, else None."""
        if self._source is FocalSource.FIXED:
            assert self._fixed is not None  # guaranteed by __init__
            self._current = FocalSource.FIXED
            return Intrinsics.from_focal(self._fixed, width, height)
        if self._source is FocalSource.CAMERA_INFO:
            return self._scaled_camera_info(width, height)
        if self._source is FocalSource.AUTO and self._auto_uses_camera_info(now):
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

    def _auto_uses_camera_info(self, now: float) -> bool:
        """Decide AUTO's effective source at ``now`` and log a message when it changes."""
        stamp = self._camera_info_stamp
        if stamp is None:
            choice = FocalSource.FOV_HEAD
            message = "no camera_info for this image, using the FoV estimate"
        elif now - stamp > self._timeout:
            choice = FocalSource.FOV_HEAD
            message = (
                f"camera_info stale for {now - stamp:.1f} s "
                f"(timeout {self._timeout:.1f} s), falling back to the FoV estimate"
            )
        else:
            choice = FocalSource.CAMERA_INFO
            message = "camera_info is fresh, using its focal length instead of the FoV estimate"
        if choice is not self._auto_choice:
            self._auto_choice = choice
            self._messages.append(message)
        return choice is FocalSource.CAMERA_INFO
