"""The networks in pure torch (Depth Pro, the Depth Anything family): configurations,
modules, checkpoints, reference recipes."""

from .checkpoint import MODEL_TYPES, CheckpointError, load_checkpoint, save_checkpoint
from .config import PRECISIONS, DepthProConfig, parse_precision
from .depth_anything import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DepthAnything,
    DepthAnythingConfig,
    create_depth_anything,
    depth_anything_input_size,
    prepare_depth_anything_input,
    prompt_depth_anything_input_size,
)
from .depth_anything_recipe import infer_depth_anything
from .inference import DepthPrediction, focal_from_fov, infer, metric_depth, normalize_image
from .network import DepthPro, create_model

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MODEL_TYPES",
    "PRECISIONS",
    "CheckpointError",
    "DepthAnything",
    "DepthAnythingConfig",
    "DepthPrediction",
    "DepthPro",
    "DepthProConfig",
    "create_depth_anything",
    "create_model",
    "depth_anything_input_size",
    "focal_from_fov",
    "infer",
    "infer_depth_anything",
    "load_checkpoint",
    "metric_depth",
    "normalize_image",
    "parse_precision",
    "prepare_depth_anything_input",
    "prompt_depth_anything_input_size",
    "save_checkpoint",
]
