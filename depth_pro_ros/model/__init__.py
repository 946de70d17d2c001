"""The Depth Pro network in pure torch: configuration, modules, checkpoints, reference recipe."""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import PRECISIONS, DepthProConfig, parse_precision
from .inference import DepthPrediction, focal_from_fov, infer, metric_depth, normalize_image
from .network import DepthPro, create_model

__all__ = [
    "PRECISIONS",
    "CheckpointError",
    "DepthPrediction",
    "DepthPro",
    "DepthProConfig",
    "create_model",
    "focal_from_fov",
    "infer",
    "load_checkpoint",
    "metric_depth",
    "normalize_image",
    "parse_precision",
    "save_checkpoint",
]
