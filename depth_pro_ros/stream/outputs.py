"""A depth result -> the messages published beside it (node) or written with it (bag tool).

:data:`OUTPUT_TOPICS` is the one table of outputs, relative to the camera namespace:
name, message type, builder, the model kinds that produce it and the option that turns
it on. It drives the node's publishers, the bag writer's connections, the messages of a
result (:func:`build_outputs`) and the topic table of docs/node.md (test_docs checks
it). A new output topic is one row here and one builder. The messages are field dicts
(see :mod:`depth_pro_ros.io.messages`); the caller builds rclpy or rosbags messages from
them and copies the source image's header.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from depth_pro_ros.engine import DepthResult
from depth_pro_ros.io.colorize import colorize_depth
from depth_pro_ros.io.messages import (
    DEPTH_ENCODINGS,
    camera_info_fields_scaled,
    colorized_image_fields,
    depth_image_fields,
    relative_image_fields,
    synthesized_camera_info_fields,
)
from depth_pro_ros.io.pointcloud_msg import pointcloud2_fields

__all__ = ["OUTPUT_TOPICS", "OutputMessage", "OutputOptions", "OutputTopic",
           "build_outputs", "topics_for"]


@dataclass(frozen=True)
class OutputOptions:
    """Which optional outputs to build and how.

    ``colorize_min`` / ``colorize_max`` fix the preview's colour range in metres; 0
    takes that bound from the frame (2nd / 98th percentile of the valid depth).
    """

    depth_encoding: str = "32FC1"
    points: bool = False
    colorized: bool = False
    colorize_min: float = 0.0
    colorize_max: float = 0.0
    # Unanchored frames of a relative model go to depth/relative (allow_relative);
    # without it they are refused (CameraSession.outputs).
    relative: bool = False

    def __post_init__(self) -> None:
        if self.depth_encoding not in DEPTH_ENCODINGS:
            raise ValueError(f"depth_encoding must be one of {', '.join(DEPTH_ENCODINGS)}, "
                             f"got {self.depth_encoding!r}")
        if not (self.colorize_min >= 0.0 and self.colorize_max >= 0.0):
            raise ValueError("colorize_min and colorize_max must be >= 0 (0 = automatic)")
        if 0.0 < self.colorize_max <= self.colorize_min:
            raise ValueError(f"colorize_max ({self.colorize_max}) must exceed colorize_min "
                             f"({self.colorize_min})")


@dataclass
class OutputMessage:
    """One message to publish: relative topic, type name and fields (header excluded)."""

    topic: str
    msgtype: str
    fields: dict[str, Any]


# (result, options, the CameraInfo message whose focal was used or None) -> the fields of
# the topic's message, or None when this result gives none on the topic.
Builder = Callable[[DepthResult, "OutputOptions", Any], "dict[str, Any] | None"]


@dataclass(frozen=True)
class OutputTopic:
    """One output: relative name, message type, builder, the model kinds that produce it
    (``metric``, ``relative``: a relative model's anchored depth is metric too) and the
    :class:`OutputOptions` flag that turns it on (None: always on)."""

    name: str
    msgtype: str
    build: Builder
    kinds: tuple[str, ...] = ("metric", "relative")
    switch: str | None = None


def _depth(result: DepthResult, options: OutputOptions, camera_info: Any) -> dict | None:
    if result.depth is None:
        return None
    return depth_image_fields(result.depth, options.depth_encoding)


def _camera_info(result: DepthResult, options: OutputOptions, camera_info: Any) -> dict | None:
    """The CameraInfo whose focal was used, rescaled to the depth's size; else a pinhole
    one synthesized from the intrinsics the depth was computed with (estimated or
    fixed focal); none for a result without intrinsics."""
    if result.depth is None:
        return None
    height, width = result.depth.shape
    if camera_info is not None:
        return camera_info_fields_scaled(camera_info, width, height)
    k = result.intrinsics
    if k is None:
        return None
    return synthesized_camera_info_fields(k.fx, k.fy, k.cx, k.cy, width, height)


def _points(result: DepthResult, options: OutputOptions, camera_info: Any) -> dict | None:
    if result.depth is None or result.points is None or result.points_shape is None:
        return None
    return pointcloud2_fields(result.points, *result.points_shape)


def _colorized(result: DepthResult, options: OutputOptions, camera_info: Any) -> dict | None:
    if result.depth is None:
        return None
    bgr, _ = colorize_depth(result.depth, options.colorize_min or None,
                            options.colorize_max or None)
    return colorized_image_fields(bgr)


def _relative(result: DepthResult, options: OutputOptions, camera_info: Any) -> dict | None:
    return None if result.relative is None else relative_image_fields(result.relative)


#: Relative output topic -> its row, in publishing order.
OUTPUT_TOPICS: dict[str, OutputTopic] = {row.name: row for row in (
    OutputTopic("depth", "sensor_msgs/msg/Image", _depth),
    OutputTopic("depth/camera_info", "sensor_msgs/msg/CameraInfo", _camera_info),
    OutputTopic("points", "sensor_msgs/msg/PointCloud2", _points, switch="points"),
    OutputTopic("depth/colorized", "sensor_msgs/msg/Image", _colorized, switch="colorized"),
    OutputTopic("depth/relative", "sensor_msgs/msg/Image", _relative, kinds=("relative",),
                switch="relative"),
)}


def topics_for(kind: str, options: OutputOptions | None = None) -> list[OutputTopic]:
    """The outputs a model of ``kind`` can produce; with ``options``, only those they turn
    on (the node passes none: its options change at run time)."""
    return [row for row in OUTPUT_TOPICS.values() if kind in row.kinds and (
        options is None or row.switch is None or getattr(options, row.switch))]


def build_outputs(
    result: DepthResult, options: OutputOptions, camera_info: Any = None
) -> list[OutputMessage]:
    """The output messages of a successful result, in table order.

    ``camera_info`` is the CameraInfo message whose focal was used (see
    ``_camera_info``). A result without intrinsics (a model that needs no focal, and
    none was known) gives the depth and its preview only; an unanchored relative result
    gives ``depth/relative`` only (32FC1, unitless inverse depth) with
    ``options.relative``, else nothing.
    """
    if not result.ok:
        raise ValueError(f"no outputs for a failed result: {result.error}")
    if result.relative is None and result.depth is None:
        raise ValueError("no outputs for a result without depth")
    out = []
    for row in OUTPUT_TOPICS.values():
        if row.switch is None or getattr(options, row.switch):
            fields = row.build(result, options, camera_info)
            if fields is not None:
                out.append(OutputMessage(row.name, row.msgtype, fields))
    return out
