"""Inference engine: focal tracking, point clouds (more modules are added by the lead)."""

from depth_pro_ros.engine.focal import (
    FocalEMA,
    FocalSource,
    FocalTracker,
    Intrinsics,
    intrinsics_from_camera_info,
)
from depth_pro_ros.engine.pointcloud import (
    POINTFIELD_FLOAT32,
    PointCloudArrays,
    depth_to_points,
    pack_rgb,
    point_step,
    pointcloud_fields,
    to_numpy_record,
)

__all__ = [
    "POINTFIELD_FLOAT32",
    "FocalEMA",
    "FocalSource",
    "FocalTracker",
    "Intrinsics",
    "PointCloudArrays",
    "depth_to_points",
    "intrinsics_from_camera_info",
    "pack_rgb",
    "point_step",
    "pointcloud_fields",
    "to_numpy_record",
]
