"""rclpy camera messages for the node tests: Image, CompressedImage and CameraInfo."""

from __future__ import annotations

from typing import Any

import numpy as np


def image_message(rgb: np.ndarray, sec: int, encoding: str = "rgb8", frame_id: str = "cam_optical",
                  **kwargs: Any):
    """An rclpy Image of ``rgb`` in ``encoding`` stamped ``sec`` seconds (+ 0.5 s)."""
    from message_factories import encode_image, rclpy_message
    from sensor_msgs.msg import Image

    msg = rclpy_message(Image, encode_image(rgb, encoding, **kwargs))
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, 500_000_000
    msg.header.frame_id = frame_id
    return msg


def compressed_message(rgb: np.ndarray, fmt: str, sec: int, frame_id: str = "cam_optical"):
    """An rclpy CompressedImage of ``rgb`` (``fmt``: jpg or png) stamped ``sec`` s."""
    import cv2
    from sensor_msgs.msg import CompressedImage

    ok, data = cv2.imencode(f".{fmt}", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok, fmt
    msg = CompressedImage(format=fmt, data=data.tobytes())
    msg.header.stamp.sec, msg.header.frame_id = sec, frame_id
    return msg


def camera_info_message(fx: float, width: int, height: int, sec: int, fy: float | None = None,
                        frame_id: str = "cam_optical"):
    """A calibrated rclpy CameraInfo (principal point off-centre so that scaling shows)."""
    from sensor_msgs.msg import CameraInfo

    fy = fx if fy is None else fy
    cx, cy = 0.45 * width, 0.55 * height
    msg = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
    msg.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    msg.p = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    msg.d = [0.01, -0.02, 0.0, 0.0, 0.0]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, 500_000_000
    msg.header.frame_id = frame_id
    return msg
