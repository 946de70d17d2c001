"""One camera's messages -> engine frames: decoding, CameraInfo pairing, focal tracking.

The ROS node and the bag tool both feed images through :class:`CameraStream`, so they
pick the focal for a frame in exactly the same way. Nothing here imports ROS: messages
are read by attribute (rclpy, rosbags and ROS 1 messages all work) and time is passed
in explicitly (ROS clock time in the node, log time in the bag tool).
"""

from __future__ import annotations

import math
import numbers
import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from depth_pro_ros.engine import FocalSource, FocalTracker, Frame, Intrinsics
from depth_pro_ros.engine.focal import (
    DEFAULT_CAMERA_INFO_TIMEOUT_S,
    DEFAULT_EMA_ALPHA,
    intrinsics_from_camera_info,
)
from depth_pro_ros.io.image_decode import (
    DEFAULT_MAX_INPUT_PIXELS,
    ImageDecodeError,
    ImageTooLargeError,
)
from depth_pro_ros.io.messages import camera_info_values, stamp_to_nanoseconds
from depth_pro_ros.stream.errors import FrameSkipped
from depth_pro_ros.stream.pairing import SYNC_MODES, StampedHistory
from depth_pro_ros.stream.transport import Transport, transport_of

__all__ = [
    "CAMERA_INFO_SYNC",
    "CameraStream",
    "FocalSettings",
    "FrameContext",
    "FrameSkipped",
    "RECORDED_FOCAL",
]

#: How an image is paired with a CameraInfo (see :class:`FocalSettings`).
CAMERA_INFO_SYNC = SYNC_MODES

# Aspect ratios of a CameraInfo and its image may differ this much (relative) before the
# CameraInfo is considered to describe another camera mode.
_ASPECT_TOLERANCE = 0.01


# Codec warnings kept for pop_warnings() when nobody collects them.
_MAX_WARNINGS = 100


@dataclass(frozen=True)
class FocalSettings:
    """Where the focal length comes from (the node's focal_* / camera_info_* parameters).

    ``focal_source``: ``auto`` (a fresh paired CameraInfo, else the FoV estimate; fresh:
    at most ``camera_info_timeout`` s, or 3 observed CameraInfo periods when longer,
    older than the image by header stamps or by arrival, see
    :class:`~depth_pro_ros.engine.focal.CameraInfoFreshness`),
    ``camera_info`` (skip images until one pairs), ``fov_head`` or ``fixed``.
    ``camera_info_sync``: ``exact`` pairs an image with the CameraInfo of identical
    stamp, ``approximate`` with the nearest stamp within ``sync_slop`` seconds,
    ``latest`` with the most recent CameraInfo whatever its stamp.

    The defaults are those of a live stream (the node); :data:`RECORDED_FOCAL` holds the
    bag tool's. Every value is checked here (the focal policy by the tracker it builds),
    so the node, the CLI and the bag tool report the same problem in the same words.
    """

    focal_source: str = FocalSource.AUTO.value
    fixed_focal_px: float = 0.0
    focal_ema_alpha: float = DEFAULT_EMA_ALPHA
    camera_info_timeout: float = DEFAULT_CAMERA_INFO_TIMEOUT_S
    # Live: a driver's CameraInfo and image stamps need not match, and an image must not
    # wait for a CameraInfo that a best-effort link may have lost, so take the latest.
    camera_info_sync: str = "latest"
    sync_slop: float = 0.02

    def __post_init__(self) -> None:
        problems = []
        try:
            self.tracker()
        except ValueError as exc:
            problems.append(str(exc))
        if self.camera_info_sync not in CAMERA_INFO_SYNC:
            problems.append(f"camera_info_sync must be one of {', '.join(CAMERA_INFO_SYNC)}, "
                            f"got {self.camera_info_sync!r}")
        if not (math.isfinite(self.sync_slop) and self.sync_slop >= 0.0):
            problems.append(f"sync_slop must be a finite number >= 0 s, got {self.sync_slop}")
        if problems:
            raise ValueError("; ".join(problems))

    def tracker(self) -> FocalTracker:
        return FocalTracker(
            self.focal_source,
            ema_alpha=self.focal_ema_alpha,
            fixed_focal_px=self.fixed_focal_px if self.focal_source == "fixed" else None,
            camera_info_timeout=self.camera_info_timeout,
        )


#: Recorded bags: every message is there, stamped and logged, so an image pairs with the
#: CameraInfo of its own stamp (within 10 ms of jitter between the two drivers' clocks),
#: and freshness is measured by stamps and log time, where 1 s without CameraInfo (or 3
#: of its periods, if longer) means it stopped.
RECORDED_FOCAL = FocalSettings(camera_info_timeout=1.0, camera_info_sync="approximate",
                               sync_slop=0.01)


@dataclass
class _CameraInfoEntry:
    stamp_ns: int
    received: float
    msg: Any
    intrinsics: Intrinsics


@dataclass
class FrameContext:
    """What travels with a frame through the engine (``Frame.meta``, ``DepthResult.meta``).

    ``camera`` is the name of the stream the frame came from and ``seq`` the number of
    images that stream took in before it (together they identify the frame); ``header``
    the source image's header (copied onto every output), ``received`` the time the image
    was taken in on the stream's clock (ROS time in the node, log time in the bag tool),
    ``arrival`` the monotonic time it was taken in (latency), ``camera_info`` the
    CameraInfo message whose intrinsics were used (None when the focal came from
    elsewhere).
    """

    camera: Hashable
    seq: int
    header: Any
    stamp_ns: int
    received: float
    arrival: float
    camera_info: Any = None


class CameraStream:
    """Turns one camera's image and CameraInfo messages into engine frames. Thread-safe.

    ``history`` bounds the CameraInfo messages kept for pairing (None keeps all, for a
    bag whose CameraInfo is loaded up front). With ``hold_unpaired`` (live streams in
    ``exact`` / ``approximate`` mode) an image whose CameraInfo has not arrived yet is
    held until it does; a newer image replaces a held one (counted in ``dropped``).
    ``max_input_pixels`` bounds the width * height an image may declare (None: no bound);
    larger ones are skipped with reason ``too_large`` before anything is allocated.
    ``name`` is put on every frame's :class:`FrameContext` (``camera``).
    """

    def __init__(
        self,
        settings: FocalSettings,
        history: int | None = 64,
        hold_unpaired: bool = False,
        max_input_pixels: int | None = DEFAULT_MAX_INPUT_PIXELS,
        name: Hashable = None,
    ) -> None:
        self._lock = threading.Lock()
        self.name = name
        self._seq = 0
        self._settings = settings
        self._tracker = settings.tracker()
        self._hold_unpaired = hold_unpaired
        self._entries: StampedHistory[_CameraInfoEntry] = StampedHistory(history)
        # (message, transport, received, seq, arrival) of the image held for its CameraInfo
        self._held: tuple[Any, Transport, float, int, float] | None = None
        self._messages: list[str] = []
        self._warnings: list[str] = []
        self.max_input_pixels = max_input_pixels
        self.dropped = 0

    # ---------------------------------------------------------------- settings
    @property
    def settings(self) -> FocalSettings:
        return self._settings

    def configure(self, settings: FocalSettings) -> None:
        """Apply new settings from the next frame; a new focal policy restarts the EMA."""
        with self._lock:
            old, self._settings = self._settings, settings
            if (old.focal_source, old.fixed_focal_px, old.focal_ema_alpha,
                    old.camera_info_timeout) != (settings.focal_source, settings.fixed_focal_px,
                                                 settings.focal_ema_alpha,
                                                 settings.camera_info_timeout):
                self._tracker = settings.tracker()
                for entry in self._entries:  # the CameraInfo period is still known
                    self._tracker.camera_info_arrived(entry.stamp_ns, entry.received)

    def focal_state(self, width: int) -> dict[str, Any]:
        """The current focal source and the EMA of the estimates (px at ``width``)."""
        with self._lock:
            current = self._tracker.current_source
            return {
                "source": current.value if current is not None else None,
                "ema_px": self._tracker.ema.value_px(width),
                "estimates": self._tracker.ema.count,
            }

    @property
    def max_input_pixels(self) -> int | None:
        """The bound on an image's width * height (None: none); may be changed any time."""
        return self._max_input_pixels

    @max_input_pixels.setter
    def max_input_pixels(self, value: int | None) -> None:
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1
        ):
            raise ValueError(f"max_input_pixels must be a positive integer or None, got {value!r}")
        self._max_input_pixels = None if value is None else int(value)

    def pop_messages(self) -> list[str]:
        """Focal source switches since the last call (log each once)."""
        with self._lock:
            out, self._messages = self._messages, []
            return out

    def pop_warnings(self) -> list[str]:
        """What the codecs printed while decoding images since the last call (libjpeg's
        "Corrupt JPEG data ...", libpng and OpenCV warnings), oldest first; kept off
        stderr so the caller can log them throttled. Only the last 100 are kept."""
        with self._lock:
            out, self._warnings = self._warnings, []
            return out

    # ---------------------------------------------------------------- input
    def add_camera_info(self, msg: Any, received: float) -> list[Frame]:
        """Record a CameraInfo; return the held frame it completes, if any.

        Raises:
            FrameSkipped: the CameraInfo was recorded, but the held frame it completes
                cannot be processed (see :meth:`prepare`). Catch it before ValueError.
            ValueError: the CameraInfo is unusable (K all zero, zero size, wrong K
                length ...); it is ignored and earlier ones stay in use.
        """
        try:
            k, width, height, _ = camera_info_values(msg)
            intrinsics = intrinsics_from_camera_info(k, width, height)
            stamp_ns = stamp_to_nanoseconds(msg.header.stamp)
        except (AttributeError, TypeError, ValueError) as exc:
            raise ValueError(f"camera_info ignored: {exc}") from None
        entry = _CameraInfoEntry(stamp_ns, float(received), msg, intrinsics)
        with self._lock:
            self._entries.add(entry.stamp_ns, entry.received, entry)
            self._tracker.camera_info_arrived(entry.stamp_ns, entry.received)
            held, self._held = self._held, None
        if held is None:
            return []
        frame = self._prepare(*held)
        return [] if frame is None else [frame]

    def prepare(self, msg: Any, transport: Transport | str, received: float) -> Frame | None:
        """Decode an image message of ``transport`` and pick its focal: a :class:`Frame`
        for the engine, with a :class:`FrameContext` as its ``meta``.

        Returns None when the image is held for its CameraInfo (``hold_unpaired``).

        Codec warnings printed while decoding are kept for :meth:`pop_warnings`.

        Raises:
            FrameSkipped: the image cannot be decoded (reason ``decode``) or declares more
                than ``max_input_pixels`` pixels (``too_large``), its CameraInfo does not
                fit it, or ``focal_source`` is ``camera_info`` and none pairs with it.
        """
        with self._lock:
            seq, self._seq = self._seq, self._seq + 1
        return self._prepare(msg, Transport(transport), received, seq, time.monotonic())

    def _prepare(self, msg: Any, transport: Transport, received: float, seq: int,
                 arrival: float) -> Frame | None:
        warnings: list[str] = []
        limit = self._max_input_pixels
        try:
            header = msg.header
            stamp_ns = stamp_to_nanoseconds(header.stamp)
            pixels, order = transport_of(transport).decode(msg, limit, warnings)
        except ImageTooLargeError as exc:
            raise FrameSkipped(str(exc), "too_large", exc.kind) from None
        except ImageDecodeError as exc:
            raise FrameSkipped(str(exc), "decode", exc.kind) from None
        except (AttributeError, TypeError, ValueError) as exc:
            raise FrameSkipped(f"malformed image message: {exc}", "decode", "malformed") from None
        finally:
            if warnings:
                with self._lock:
                    self._warnings = (self._warnings + warnings)[-_MAX_WARNINGS:]
        height, width = pixels.shape[:2]
        with self._lock:
            # fov_head / fixed never use a CameraInfo, so none may skip their frames.
            uses_info = self._settings.focal_source in ("auto", "camera_info")
            entry = self._entries.pair(self._settings.camera_info_sync, stamp_ns, received,
                                       self._settings.sync_slop) if uses_info else None
            if entry is None and self._should_hold(stamp_ns, received):
                if self._held is not None:
                    self.dropped += 1
                self._held = (msg, transport, received, seq, arrival)
                return None
            if entry is not None:
                _check_fits(entry.intrinsics, width, height)
                self._tracker.set_camera_info(entry.intrinsics, entry.received, entry.stamp_ns)
            else:
                self._tracker.forget_camera_info()
            known = self._tracker.known_focal(width, height, received, stamp_ns)
            estimate = known is None and self._tracker.needs_estimate(width, height, received,
                                                                      stamp_ns)
            while (message := self._tracker.pop_switch_message()) is not None:
                self._messages.append(message)
            from_info = known is not None and (
                self._tracker.current_source is FocalSource.CAMERA_INFO)
        if known is None and not estimate:
            raise FrameSkipped(
                "focal_source is camera_info but no CameraInfo pairs with this image "
                f"(camera_info_sync {self._settings.camera_info_sync})", "no_camera_info")
        used_info = entry.msg if from_info else None
        return Frame(
            image=pixels,
            channel_order=order,
            intrinsics=known,
            focal_source=FocalSource.CAMERA_INFO if from_info else FocalSource.FIXED,
            meta=FrameContext(self.name, seq, header, stamp_ns, received, arrival, used_info),
            focal_filter=self._observe,
        )

    # ---------------------------------------------------------------- internals
    def _observe(self, f_px: float, width: int, height: int) -> Intrinsics | None:
        with self._lock:  # called on the engine's worker thread
            return self._tracker.observe_estimate(f_px, width, height)

    def _should_hold(self, stamp_ns: int, received: float) -> bool:
        """Hold an unpaired image while CameraInfo is flowing and pairing is by stamp."""
        s = self._settings
        if not self._hold_unpaired or s.camera_info_sync == "latest" or not self._entries:
            return False
        if s.focal_source == "camera_info":
            return True
        newest = self._entries.newest
        return s.focal_source == "auto" and self._tracker.camera_info_fresh(
            newest.stamp_ns, newest.received, stamp_ns, received)


def _check_fits(intr: Intrinsics, width: int, height: int) -> None:
    """Skip the frame unless ``intr`` scales to a usable K at the image's size."""
    if intr.width == width and intr.height == height:
        return
    if abs(intr.width * height - intr.height * width) > _ASPECT_TOLERANCE * intr.width * height:
        raise FrameSkipped(
            f"camera_info size {intr.width}x{intr.height} does not fit the image size "
            f"{width}x{height} (different aspect ratio); is it the right camera_info topic?",
            "camera_info_mismatch",
        )
    try:  # a K valid at its own size can still under- or overflow when scaled
        intr.scaled_to(width, height)
    except ValueError as exc:
        raise FrameSkipped(
            f"camera_info K (fx={intr.fx:g}, fy={intr.fy:g}) for {intr.width}x{intr.height} "
            f"is unusable at the image size {width}x{height}: {exc}",
            "camera_info_mismatch",
        ) from None
