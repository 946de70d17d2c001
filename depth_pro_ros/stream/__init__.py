"""Shared by the ROS node and the bag tool: messages -> frames -> output messages."""

from depth_pro_ros.stream.camera import (
    CAMERA_INFO_SYNC,
    RECORDED_FOCAL,
    CameraStream,
    FocalSettings,
    FrameSkipped,
    StreamFrame,
)
from depth_pro_ros.stream.outputs import OutputMessage, OutputOptions, build_outputs

__all__ = [
    "CAMERA_INFO_SYNC",
    "CameraStream",
    "FocalSettings",
    "FrameSkipped",
    "OutputMessage",
    "OutputOptions",
    "RECORDED_FOCAL",
    "StreamFrame",
    "build_outputs",
]
