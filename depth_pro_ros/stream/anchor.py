"""One camera's anchor messages -> the plain anchor values of its frames for the engine.

An anchor is a sparse but exact metric measurement of the scene: a depth image
registered to the camera (``sensor_msgs/Image`` 32FC1 metres or 16UC1 millimetres, any
resolution) or a point cloud (``sensor_msgs/PointCloud2`` with x, y, z) in the camera's
optical frame, or in another frame with a static ``transform``. Anchors are paired with
images by stamp like CameraInfo. :meth:`AnchorStream.input_for` returns the frame's
:class:`~depth_pro_ros.engine.anchor.AnchorInput`: the paired anchor (or why it cannot
be used), the fit settings and the camera's
:class:`~depth_pro_ros.engine.anchor.AnchorTracker`; the engine's worker brings it to
the depth's size, fits it and feeds the tracker
(:func:`~depth_pro_ros.engine.anchor.anchor_step`), and the tracker's EMA of the accepted
fits is applied while fresher than the timeout, else nothing (unanchored depth). The
stream reports what the tracker saw (:meth:`~AnchorStream.state`, the pop methods).
Nothing here imports ROS.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch

from depth_pro_ros.engine.anchor import (
    AnchorInput,
    AnchorSettings,
    project_points,
    transformed,
)
from depth_pro_ros.engine.focal import Intrinsics
from depth_pro_ros.io.image_decode import DEFAULT_MAX_INPUT_PIXELS, byte_buffer, check_layout
from depth_pro_ros.io.messages import (
    DEPTH_ENCODINGS,
    depth_image_to_array,
    stamp_to_nanoseconds,
)
from depth_pro_ros.io.pointcloud_msg import pointcloud2_xyz
from depth_pro_ros.stream.pairing import SYNC_MODES, StampedHistory

__all__ = ["ANCHOR_SOURCES", "PROMPT_CLOUD_SIDE", "AnchorOptions", "AnchorStream",
           "cloud_xyz", "dense_prompt", "depth_anchor"]

#: Where anchors come from: nowhere, a registered depth image, or a point cloud.
ANCHOR_SOURCES = ("none", "depth", "points")
#: Longer side of the grid a point-cloud prompt is projected on (Prompt Depth Anything
#: was trained with 192x256 LiDAR depth).
PROMPT_CLOUD_SIDE = 256


@dataclass(frozen=True)
class AnchorOptions:
    """Anchoring of one camera (the node's ``anchor_*`` parameters, the bag tool's
    ``--anchor-*`` options).

    ``sync`` / ``slop`` pair an anchor with an image as ``camera_info_sync`` does;
    ``transform`` is ``(x, y, z, qx, qy, qz, qw)`` from a cloud's frame to the camera's
    optical frame, for clouds in another frame (None: clouds must be in the image's frame).
    """

    source: str = "none"
    settings: AnchorSettings = field(default_factory=AnchorSettings)
    sync: str = "latest"
    slop: float = 0.05
    transform: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.source not in ANCHOR_SOURCES:
            problems.append(f"anchor source must be one of {', '.join(ANCHOR_SOURCES)}, "
                            f"got {self.source!r}")
        if self.sync not in SYNC_MODES:
            problems.append(f"anchor sync must be one of {', '.join(SYNC_MODES)}, "
                            f"got {self.sync!r}")
        if not (math.isfinite(self.slop) and self.slop >= 0.0):
            problems.append(f"anchor sync slop must be a finite number >= 0 s, got {self.slop}")
        if self.transform is not None:
            t = tuple(self.transform)
            if len(t) != 7 or not all(math.isfinite(v) for v in t) or \
                    math.hypot(*t[3:]) < 1e-9:
                problems.append("anchor transform must be [x, y, z, qx, qy, qz, qw] with a "
                                f"non-zero quaternion, got {list(t)}")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def enabled(self) -> bool:
        return self.source != "none"


@dataclass
class _Anchor:
    """A decoded anchor message."""

    frame_id: str
    received: float
    depth: np.ndarray | None = None  # (H, W) float32 metres, NaN invalid
    points: np.ndarray | None = None  # (N, 3) float32 in the message's frame


class AnchorStream:
    """Pairs one camera's anchor messages with its images; holds its fit tracker.

    Thread-safe: messages come in on the caller's thread, the tracker is fed on the
    engine's worker in frame order (it has its own lock).
    """

    def __init__(self, options: AnchorOptions, history: int | None = 16,
                 max_pixels: int | None = DEFAULT_MAX_INPUT_PIXELS) -> None:
        self._lock = threading.Lock()
        self._options = options
        #: Most pixels (depth) or points (cloud) an anchor may declare; None: no limit.
        self.max_pixels = max_pixels
        self._tracker = options.settings.tracker()
        self._anchors: StampedHistory[_Anchor] = StampedHistory(history)
        self._unreadable = 0

    @property
    def options(self) -> AnchorOptions:
        return self._options

    def configure(self, options: AnchorOptions) -> None:
        """Apply new options from the next frame; new fit settings restart the EMA."""
        with self._lock:
            if options.settings != self._options.settings:
                self._tracker = options.settings.tracker()
            self._options = options

    def add(self, msg: Any, received: float) -> None:
        """Record an anchor message (an Image or a PointCloud2 by ``options.source``).

        Raises:
            ValueError: the message cannot be read; it is ignored.
        """
        source = self._options.source
        try:
            stamp_ns = stamp_to_nanoseconds(msg.header.stamp)
            frame_id = str(msg.header.frame_id)
            if source == "depth":
                anchor = _Anchor(frame_id, float(received),
                                 depth=depth_anchor(msg, self.max_pixels))
            else:
                anchor = _Anchor(frame_id, float(received),
                                 points=cloud_xyz(msg, self.max_pixels))
        except (AttributeError, TypeError, ValueError) as exc:
            with self._lock:
                self._unreadable += 1
            raise ValueError(f"anchor ignored: {exc}") from None
        with self._lock:
            self._anchors.add(stamp_ns, float(received), anchor)

    def pop_problems(self) -> list[str]:
        """Why anchors could not be used (or fell back) since the last call (log them
        throttled); only the last 100 are kept."""
        with self._lock:
            tracker = self._tracker
        return tracker.pop_problems()

    def pop_messages(self) -> list[str]:
        """Switches between anchored and unanchored depth since the last call (log each
        once)."""
        with self._lock:
            tracker = self._tracker
        out = []
        while (message := tracker.pop_switch_message()) is not None:
            out.append(message)
        return out

    def input_for(self, frame_id: str, stamp_ns: int, received: float) -> AnchorInput:
        """The anchor values of the image stamped ``stamp_ns``, in frame ``frame_id``,
        taken in at ``received`` (the clock of the anchors' ``received``), for the
        engine's :func:`~depth_pro_ros.engine.anchor.anchor_step`."""
        anchor, problem = self._pair(frame_id, stamp_ns, received)
        with self._lock:
            opts, tracker = self._options, self._tracker
        if anchor is None:
            return AnchorInput(opts.settings, tracker, received, problem=problem)
        return AnchorInput(opts.settings, tracker, received, depth=anchor.depth,
                           points=anchor.points, transform=opts.transform)

    def prompt_for(self, frame_id: str, stamp_ns: int, received: float,
                   intrinsics: Intrinsics | None,
                   image_size: tuple[int, int]) -> np.ndarray:
        """The prompt depth of a Prompt Depth Anything frame: the anchor paired with the
        image (as :meth:`input_for` pairs it) as a dense (h, w) float32 depth in metres.

        A depth anchor keeps its own resolution; a cloud is projected with the image's
        ``intrinsics`` onto a grid of the image's aspect (longer side at most
        :data:`PROMPT_CLOUD_SIDE`). Holes take the nearest measured depth.

        Raises:
            ValueError: no usable anchor for this image; the text says why.
        """
        anchor, problem = self._pair(frame_id, stamp_ns, received)
        if problem is None and anchor is None:
            problem = (f"no anchor paired with the image (anchor_sync "
                       f"{self._options.sync}); Prompt Depth Anything needs one per frame")
        if problem is None:
            opts = self._options
            if anchor.depth is not None:
                depth = anchor.depth
            elif intrinsics is None:
                problem = ("a point-cloud prompt needs the camera's focal (CameraInfo or "
                           "fixed_focal_px) to project the cloud")
            else:
                h, w = image_size
                scale = min(1.0, PROMPT_CLOUD_SIDE / max(h, w))
                gh, gw = max(1, round(h * scale)), max(1, round(w * scale))
                points = torch.from_numpy(anchor.points)
                if opts.transform is not None:
                    points = transformed(points, opts.transform)
                depth = project_points(points, intrinsics.scaled_to(gw, gh), (gh, gw)).numpy()
            if problem is None:
                try:
                    return dense_prompt(depth, opts.settings.min_points,
                                        opts.settings.min_depth, opts.settings.max_depth)
                except ValueError as exc:
                    problem = f"prompt depth unusable: {exc}"
        raise ValueError(problem)

    def _pair(self, frame_id: str, stamp_ns: int,
              received: float) -> tuple[_Anchor | None, str | None]:
        """The anchor paired with an image, or why a paired one cannot be used."""
        with self._lock:
            opts = self._options
            anchor = self._anchors.pair(opts.sync, stamp_ns, received, opts.slop)
            if anchor is not None and opts.sync == "latest" and \
                    received - anchor.received > opts.settings.timeout:
                anchor = None  # the sensor stopped: its last anchor is not this frame's
            if anchor is None or anchor.frame_id == frame_id:
                return anchor, None
            if anchor.points is not None and opts.transform is None:
                return None, (f"anchor cloud in frame '{anchor.frame_id}' but the image is "
                              f"in '{frame_id}': set anchor_transform (the cloud frame -> "
                              "camera frame transform) or publish the cloud in the camera's "
                              "frame")
            if anchor.depth is not None:
                # A depth image holds no 3-D points to transform: it must already be
                # registered (reprojected) to the camera.
                return None, (f"anchor depth image in frame '{anchor.frame_id}' but the "
                              f"image is in '{frame_id}': publish the depth registered to "
                              "the camera (e.g. depth_image_proc/register) in the camera's "
                              "frame")
            return anchor, None

    def state(self, now: float) -> dict[str, Any]:
        """The camera's anchoring for /diagnostics and summaries."""
        with self._lock:
            tracker, opts, unreadable = self._tracker, self._options, self._unreadable
        seen = tracker.snapshot(now)
        value = seen["value"]
        return {"source": opts.source, "fit": opts.settings.fit, "anchored": seen["anchored"],
                "scale": None if value is None else value[0],
                "shift": None if value is None else value[1],
                "last_fit": seen["last_fit"], "age_s": seen["age_s"],
                "fits_ok": seen["fits_ok"], "fits_rejected": seen["fits_rejected"],
                "unreadable": unreadable}


def dense_prompt(depth: np.ndarray, min_points: int = 1, min_depth: float = 0.0,
                 max_depth: float = math.inf) -> np.ndarray:
    """A sparse or holed metric depth (h, w) -> a dense float32 prompt: every pixel that is
    not a measurement (not finite, <= 0 or outside ``[min_depth, max_depth]``) takes the
    depth of the nearest measured pixel (Euclidean distance).

    Raises:
        ValueError: fewer than ``min_points`` measured pixels, or all of one depth (the
            model normalises the prompt by its range).
    """
    d = np.asarray(depth, dtype=np.float32)
    if d.ndim != 2 or min(d.shape) < 1:
        raise ValueError(f"prompt depth must be a 2-D image, got shape {d.shape}")
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(d) & (d > 0) & (d >= min_depth) & (d <= max_depth)
    count = int(valid.sum())
    if count < max(1, min_points):
        raise ValueError(f"{count} measured pixels < anchor_min_points {min_points}")
    if count < d.size:
        # Labels of the nearest zero pixel of the mask = the nearest measurement.
        _, labels = cv2.distanceTransformWithLabels(
            (~valid).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE,
            labelType=cv2.DIST_LABEL_PIXEL)
        values = np.zeros(count + 1, dtype=np.float32)
        values[labels[valid]] = d[valid]
        d = values[labels]
    d = np.ascontiguousarray(d, dtype=np.float32)
    if not d.max() > d.min():
        raise ValueError(f"all measured depths are {float(d.min()):g} m; the prompt needs a "
                         "range of depths")
    return d


def cloud_xyz(msg: Any, max_points: int | None = DEFAULT_MAX_INPUT_PIXELS) -> np.ndarray:
    """The x, y, z fields of a PointCloud2 as (N, 3) float32 (non-finite points kept).

    Every size the cloud declares is checked against its data and ``max_points`` before
    anything is allocated, and only x, y, z are read (``io.pointcloud_msg.pointcloud2_xyz``).
    """
    return pointcloud2_xyz(msg, max_points)


def depth_anchor(msg: Any, max_pixels: int | None = DEFAULT_MAX_INPUT_PIXELS) -> np.ndarray:
    """A depth-image anchor as (H, W) float32 metres, its declared size bounded first.

    The declared width x height must be at most ``max_pixels`` and fit the data (step,
    rows) before anything is decoded: the decoded image is 4 bytes a pixel.
    """
    encoding = str(msg.encoding).strip().upper()
    if encoding in DEPTH_ENCODINGS:  # others: depth_image_to_array names the encoding
        check_layout("depth anchor", encoding, int(msg.height), int(msg.width),
                     int(msg.step), byte_buffer(msg.data).size,
                     4 if encoding == "32FC1" else 2, max_pixels)
    return depth_image_to_array(msg)
