"""Shared by the ROS node and the bag tool: messages -> frames -> output messages.

:class:`~depth_pro_ros.stream.session.CameraSession` is the per-camera entry point of
both; the tables :data:`~depth_pro_ros.stream.outputs.OUTPUT_TOPICS` and
:data:`~depth_pro_ros.stream.transport.INPUT_TRANSPORTS` say what goes out and comes in.
"""

from depth_pro_ros.stream.camera import (
    CAMERA_INFO_SYNC,
    RECORDED_FOCAL,
    CameraStream,
    FocalSettings,
    FrameContext,
)
from depth_pro_ros.stream.errors import FrameSkipped
from depth_pro_ros.stream.outputs import OutputMessage, OutputOptions, build_outputs
from depth_pro_ros.stream.transport import INPUT_TRANSPORTS, Transport

__all__ = [
    "CAMERA_INFO_SYNC",
    "CameraStream",
    "FocalSettings",
    "FrameContext",
    "FrameSkipped",
    "INPUT_TRANSPORTS",
    "OutputMessage",
    "OutputOptions",
    "RECORDED_FOCAL",
    "Transport",
    "build_outputs",
]
