"""One camera's anchor messages -> the anchoring step of its frames in the engine.

An anchor is a sparse but exact metric measurement of the scene: a depth image
registered to the camera (``sensor_msgs/Image`` 32FC1 metres or 16UC1 millimetres, any
resolution) or a point cloud (``sensor_msgs/PointCloud2`` with float32 x, y, z) in the
camera's optical frame, or in another frame with a static ``transform``. Anchors are
paired with images by stamp like CameraInfo. :meth:`AnchorStream.filter_for` returns the
frame's :data:`~depth_pro_ros.engine.types.AnchorFilter`: on the engine's worker it
brings the anchor to the depth's size (nearest pixel for images, never interpolated
across holes; projection with the depth's intrinsics for clouds), fits it
(:func:`~depth_pro_ros.engine.anchor.fit_anchor`, on the engine's device) and returns
what to apply: the camera's EMA of the accepted fits while they are fresher than the
timeout, else nothing (unanchored depth). Nothing here imports ROS.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch

from depth_pro_ros.engine.anchor import AnchorSettings
from depth_pro_ros.engine.focal import Intrinsics
from depth_pro_ros.engine.types import AnchorFilter, AnchorOutcome
from depth_pro_ros.io.image_decode import DEFAULT_MAX_INPUT_PIXELS, byte_buffer, check_layout
from depth_pro_ros.io.messages import (
    DEPTH_ENCODINGS,
    depth_image_to_array,
    stamp_to_nanoseconds,
)
from depth_pro_ros.io.pointcloud_msg import pointcloud2_xyz
from depth_pro_ros.stream.pairing import SYNC_MODES, StampedHistory

__all__ = ["ANCHOR_SOURCES", "PROMPT_CLOUD_SIDE", "AnchorOptions", "AnchorStream",
           "dense_prompt", "project_points", "resize_nearest"]

#: Where anchors come from: nowhere, a registered depth image, or a point cloud.
ANCHOR_SOURCES = ("none", "depth", "points")
#: Longer side of the grid a point-cloud prompt is projected on (Prompt Depth Anything
#: was trained with 192x256 LiDAR depth).
PROMPT_CLOUD_SIDE = 256
# Problems kept for pop_problems() when nobody collects them.
_MAX_PROBLEMS = 100


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
    """Pairs one camera's anchor messages with its images and tracks its fitted scale.

    Thread-safe: messages come in on the caller's thread, the filters run on the
    engine's worker in frame order.
    """

    def __init__(self, options: AnchorOptions, history: int | None = 16,
                 max_pixels: int | None = DEFAULT_MAX_INPUT_PIXELS) -> None:
        self._lock = threading.Lock()
        self._options = options
        #: Most pixels (depth) or points (cloud) an anchor may declare; None: no limit.
        self.max_pixels = max_pixels
        self._tracker = options.settings.tracker()
        self._anchors: StampedHistory[_Anchor] = StampedHistory(history)
        self._problems: list[str] = []
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
        """Why anchors could not be used since the last call (log them throttled); only
        the last 100 are kept."""
        with self._lock:
            out, self._problems = self._problems, []
            return out

    def pop_messages(self) -> list[str]:
        """Switches between anchored and unanchored depth since the last call (log each
        once)."""
        with self._lock:
            out = []
            while (message := self._tracker.pop_switch_message()) is not None:
                out.append(message)
            return out

    def filter_for(self, frame_id: str, stamp_ns: int, received: float) -> AnchorFilter:
        """The anchoring step of the image stamped ``stamp_ns``, in frame ``frame_id``,
        taken in at ``received`` (the clock of the anchors' ``received``)."""
        anchor, problem = self._pair(frame_id, stamp_ns, received)

        def step(depth: torch.Tensor, intrinsics: Intrinsics | None, *,
                 relative: bool = False) -> AnchorOutcome:
            return self._apply(anchor, problem, depth, intrinsics, received, relative)

        return step

    def prompt_for(self, frame_id: str, stamp_ns: int, received: float,
                   intrinsics: Intrinsics | None,
                   image_size: tuple[int, int]) -> np.ndarray:
        """The prompt depth of a Prompt Depth Anything frame: the anchor paired with the
        image (as :meth:`filter_for` pairs it) as a dense (h, w) float32 depth in metres.

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
                    points = _transformed(points, opts.transform)
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
            tracker, opts = self._tracker, self._options
            anchored = tracker.current(now) is not None
            value, fit = tracker.value, tracker.last_fit
            return {"source": opts.source, "fit": opts.settings.fit, "anchored": anchored,
                    "scale": None if value is None else value[0],
                    "shift": None if value is None else value[1],
                    "last_fit": fit, "age_s": tracker.age(now),
                    "fits_ok": tracker.fits_ok, "fits_rejected": tracker.fits_rejected,
                    "unreadable": self._unreadable}

    # ---------------------------------------------------------------- worker side
    def _apply(self, anchor: _Anchor | None, problem: str | None, depth: torch.Tensor,
               intrinsics: Intrinsics | None, now: float, relative: bool) -> AnchorOutcome:
        fit = None
        try:
            if anchor is not None:
                target = _anchor_image(anchor, self._options.transform, intrinsics,
                                       depth.shape, depth.device)
                fit = self._options.settings.fit_anchor(depth, target, relative)
                if not fit.ok:
                    problem = f"anchor fit rejected: {fit.reason}"
                elif fit.fallback is not None:
                    # Used, but not the fit asked for: say why, like a rejection.
                    problem = f"anchor fit fell back to scale: {fit.fallback}"
        except Exception as exc:  # noqa: BLE001 -- a bad anchor must not fail the frame
            problem, fit = f"anchor unusable: {type(exc).__name__}: {exc}", None
        with self._lock:
            tracker = self._tracker
            applied = tracker.observe(fit, now) if fit is not None else tracker.current(now)
            if problem is not None:
                self._problems = (self._problems + [problem])[-_MAX_PROBLEMS:]
            age = tracker.age(now)
        scale, shift = applied if applied is not None else (None, 0.0)
        return AnchorOutcome(scale=scale, shift=shift, fit=fit, age_s=age, problem=problem)


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


def resize_nearest(depth: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``depth`` (h, w) at ``size`` by nearest pixel centre: a hole stays a hole and no
    value is made up between two measurements."""
    h, w = depth.shape
    oh, ow = size
    if (h, w) == (oh, ow):
        return depth
    rows = ((torch.arange(oh, device=depth.device) + 0.5) * h / oh).long().clamp_(max=h - 1)
    cols = ((torch.arange(ow, device=depth.device) + 0.5) * w / ow).long().clamp_(max=w - 1)
    return depth[rows][:, cols]


def project_points(points: torch.Tensor, intrinsics: Intrinsics,
                   size: tuple[int, int]) -> torch.Tensor:
    """Points (N, 3) in the camera's optical frame -> a sparse (h, w) depth image: each
    point lands on its nearest pixel; where several do, the nearest point wins; NaN
    elsewhere."""
    h, w = size
    x, y, z = points.unbind(1)
    ok = torch.isfinite(points).all(1) & (z > 0)
    x, y, z = x[ok], y[ok], z[ok]
    u = torch.round(intrinsics.fx * x / z + intrinsics.cx)
    v = torch.round(intrinsics.fy * y / z + intrinsics.cy)
    inside = (u >= 0) & (u < w) & (v >= 0) & (v < h)
    index = (v[inside] * w + u[inside]).long()
    image = torch.full((h * w,), math.inf, dtype=torch.float32, device=points.device)
    image.scatter_reduce_(0, index, z[inside].float(), reduce="amin")
    image[torch.isinf(image)] = math.nan
    return image.view(h, w)


def _anchor_image(anchor: _Anchor, transform: tuple[float, ...] | None,
                  intrinsics: Intrinsics | None, size: tuple[int, int],
                  device: torch.device) -> torch.Tensor:
    """The anchor as a depth image of ``size`` on ``device``."""
    if anchor.depth is not None:
        return resize_nearest(torch.from_numpy(anchor.depth).to(device), tuple(size))
    if intrinsics is None:
        raise ValueError("a point-cloud anchor needs the camera's focal (CameraInfo or "
                         "fixed_focal_px) to project the cloud")
    points = torch.from_numpy(anchor.points).to(device)
    if transform is not None:
        points = _transformed(points, transform)
    return project_points(points, intrinsics, tuple(size))


def _transformed(points: torch.Tensor, transform: tuple[float, ...]) -> torch.Tensor:
    """``R(q) p + t`` for ``transform`` = (x, y, z, qx, qy, qz, qw)."""
    tx, ty, tz, qx, qy, qz, qw = transform
    n = math.sqrt(qx * qx + qy * qy + qz * qz + qw * qw)
    qx, qy, qz, qw = qx / n, qy / n, qz / n, qw / n
    rotation = torch.tensor([
        [1 - 2 * (qy * qy + qz * qz), 2 * (qx * qy - qz * qw), 2 * (qx * qz + qy * qw)],
        [2 * (qx * qy + qz * qw), 1 - 2 * (qx * qx + qz * qz), 2 * (qy * qz - qx * qw)],
        [2 * (qx * qz - qy * qw), 2 * (qy * qz + qx * qw), 1 - 2 * (qx * qx + qy * qy)],
    ], dtype=points.dtype, device=points.device)
    return points @ rotation.T + torch.tensor([tx, ty, tz], dtype=points.dtype,
                                              device=points.device)
