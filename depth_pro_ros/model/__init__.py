"""The networks in pure torch, one folder per family (``depth_pro/``, ``depth_anything/``,
``depth_anything_3/``) on what they share (``common/``), with one table of families and model types
(:mod:`.registry`), checkpoint reading (:mod:`.checkpoint`), stand-ins and weights.

Code outside ``model/`` uses the names below (or :mod:`.registry`, :mod:`.checkpoint`,
:mod:`.stand_in`, :mod:`.weights`), never a family folder.
"""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .common.config import PRECISIONS, DictConfig, parse_precision
from .common.pixels import CHANNEL_ORDERS, to_rgb
from .common.recipe import BatchRecipe, ModelInfo
from .depth_anything import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DepthAnything,
    DepthAnythingConfig,
    create_depth_anything,
    depth_anything_input_size,
    infer_depth_anything,
    prepare_depth_anything_input,
    prompt_depth_anything_input_size,
)
from .depth_anything_3 import DepthAnything3, DepthAnything3Config, create_depth_anything_3
from .depth_anything_3.camera import rotation_to_quaternion  # the poses of rig mode
from .depth_pro import (
    DepthPrediction,
    DepthPro,
    DepthProConfig,
    create_model,
    focal_from_fov,
    infer,
    metric_depth,
    normalize_image,
)
from .registry import FAMILIES, KINDS, MODEL_TYPES, recipe_for

__all__ = [
    "CHANNEL_ORDERS",
    "FAMILIES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "KINDS",
    "MODEL_TYPES",
    "PRECISIONS",
    "BatchRecipe",
    "CheckpointError",
    "DepthAnything",
    "DepthAnything3",
    "DepthAnything3Config",
    "DepthAnythingConfig",
    "DepthPrediction",
    "DepthPro",
    "DepthProConfig",
    "DictConfig",
    "ModelInfo",
    "create_depth_anything",
    "create_depth_anything_3",
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
    "recipe_for",
    "rotation_to_quaternion",
    "save_checkpoint",
    "to_rgb",
]
