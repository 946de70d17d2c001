"""Streaming inference engine: pipeline, preprocessing, focal tracking, point clouds."""

from depth_pro_ros.engine.device import resolve_device
from depth_pro_ros.engine.focal import (
    FocalEMA,
    FocalSource,
    FocalTracker,
    Intrinsics,
    intrinsics_from_camera_info,
)
from depth_pro_ros.engine.pipeline import DepthEngine, create_engine
from depth_pro_ros.engine.pointcloud import (
    PointCloudArrays,
    depth_to_points,
    pack_rgb,
    record_dtype,
    to_numpy_record,
)
from depth_pro_ros.engine.types import DepthResult, EngineConfig, EngineStats, Frame

__all__ = [
    "DepthEngine",
    "DepthResult",
    "EngineConfig",
    "EngineStats",
    "Frame",
    "create_engine",
    "record_dtype",
    "resolve_device",
    "FocalEMA",
    "FocalSource",
    "FocalTracker",
    "Intrinsics",
    "PointCloudArrays",
    "depth_to_points",
    "intrinsics_from_camera_info",
    "pack_rgb",
    "to_numpy_record",
]
