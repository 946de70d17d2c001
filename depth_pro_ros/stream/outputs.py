"""A depth result -> the messages published beside it (node) or written with it (bag tool).

Both front ends publish exactly these topics, relative to the camera namespace:
``depth``, ``depth/camera_info``, and optionally ``points`` and ``depth/colorized``; a
relative-depth model's unanchored frames go to ``depth/relative`` instead. The messages
are returned as field dicts (see :mod:`depth_pro_ros.io.messages`); the caller builds
rclpy or rosbags messages from them and copies the source image's header.
"""

from __future__ import annotations

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

__all__ = ["OUTPUT_TOPICS", "OutputMessage", "OutputOptions", "build_outputs"]

#: Relative output topic -> message type.
OUTPUT_TOPICS = {
    "depth": "sensor_msgs/msg/Image",
    "depth/camera_info": "sensor_msgs/msg/CameraInfo",
    "points": "sensor_msgs/msg/PointCloud2",
    "depth/colorized": "sensor_msgs/msg/Image",
    "depth/relative": "sensor_msgs/msg/Image",
}


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


def build_outputs(
    result: DepthResult, options: OutputOptions, camera_info: Any = None
) -> list[OutputMessage]:
    """The output messages of a successful result.

    ``camera_info`` is the CameraInfo message whose focal was used; it is passed through
    (rescaled to the depth's size). Otherwise a pinhole CameraInfo is synthesized from
    the intrinsics the depth was computed with (estimated or fixed focal). A result
    without intrinsics (a model that needs no focal, and none was known) gives the depth
    and its preview only; an unanchored relative result gives ``depth/relative`` only
    (32FC1, unitless inverse depth).
    """
    if not result.ok:
        raise ValueError(f"no outputs for a failed result: {result.error}")
    if result.relative is not None:
        return [OutputMessage("depth/relative", OUTPUT_TOPICS["depth/relative"],
                              relative_image_fields(result.relative))]
    if result.depth is None:
        raise ValueError("no outputs for a result without depth")
    depth = result.depth
    height, width = depth.shape
    out = [OutputMessage("depth", OUTPUT_TOPICS["depth"],
                         depth_image_fields(depth, options.depth_encoding))]
    if camera_info is not None:
        info = camera_info_fields_scaled(camera_info, width, height)
    elif result.intrinsics is not None:
        k = result.intrinsics
        info = synthesized_camera_info_fields(k.fx, k.fy, k.cx, k.cy, width, height)
    else:
        info = None
    if info is not None:
        out.append(OutputMessage("depth/camera_info", OUTPUT_TOPICS["depth/camera_info"],
                                 info))
    if options.points and result.points is not None and result.points_shape is not None:
        out.append(OutputMessage("points", OUTPUT_TOPICS["points"],
                                 pointcloud2_fields(result.points, *result.points_shape)))
    if options.colorized:
        bgr, _ = colorize_depth(depth, options.colorize_min or None,
                                options.colorize_max or None)
        out.append(OutputMessage("depth/colorized", OUTPUT_TOPICS["depth/colorized"],
                                 colorized_image_fields(bgr)))
    return out
