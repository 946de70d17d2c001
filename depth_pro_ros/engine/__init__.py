"""Streaming inference engine: pipeline, backends, focal tracking, anchoring, point clouds."""

from depth_pro_ros.engine.backends import BACKEND_CHOICES, BACKENDS
from depth_pro_ros.engine.device import PRECISION_CHOICES, resolve_device, resolve_precision
from depth_pro_ros.engine.focal import (
    FocalEMA,
    FocalSource,
    FocalTracker,
    Intrinsics,
    intrinsics_from_camera_info,
)
from depth_pro_ros.engine.loading import LoadedModel, create_engine, load_model
from depth_pro_ros.engine.pipeline import DepthEngine
from depth_pro_ros.engine.pointcloud import (
    PointCloudArrays,
    depth_to_points,
    pack_rgb,
    record_dtype,
    to_numpy_record,
)
from depth_pro_ros.engine.types import (
    BatchRecord,
    DepthResult,
    EngineConfig,
    EngineStats,
    Frame,
)

__all__ = [
    "BACKEND_CHOICES",
    "BACKENDS",
    "BatchRecord",
    "DepthEngine",
    "DepthResult",
    "EngineConfig",
    "EngineStats",
    "Frame",
    "create_engine",
    "LoadedModel",
    "load_model",
    "PRECISION_CHOICES",
    "resolve_precision",
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
