"""Focal length bookkeeping: pinhole intrinsics (:mod:`~depth_pro_ros.engine.focal.
intrinsics`), CameraInfo freshness (:mod:`~depth_pro_ros.engine.focal.freshness`) and
the per-frame choice of focal with its EMA (:mod:`~depth_pro_ros.engine.focal.tracker`).

Pure Python (no torch, no ROS) so that the node, the bag tool and the tests share the
exact same policy.
"""

from depth_pro_ros.engine.focal.freshness import (
    CAMERA_INFO_PERIODS,
    DEFAULT_CAMERA_INFO_TIMEOUT_S,
    CameraInfoFreshness,
)
from depth_pro_ros.engine.focal.intrinsics import Intrinsics, intrinsics_from_camera_info
from depth_pro_ros.engine.focal.tracker import (
    DEFAULT_EMA_ALPHA,
    FOCAL_SOURCES,
    FocalEMA,
    FocalSource,
    FocalTracker,
    parse_focal_source,
)

__all__ = [
    "CAMERA_INFO_PERIODS",
    "CameraInfoFreshness",
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
