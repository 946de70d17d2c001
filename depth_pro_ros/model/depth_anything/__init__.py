"""The Depth Anything family: Depth Anything V2 (relative and metric) and Prompt Depth
Anything. Reached through :mod:`..registry`; the public names are re-exported by
:mod:`depth_pro_ros.model`."""

from .config import DepthAnythingConfig
from .network import DepthAnything, create_depth_anything
from .preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    depth_anything_input_size,
    prepare_depth_anything_input,
    prompt_depth_anything_input_size,
)
from .reference import infer_depth_anything

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "DepthAnything", "DepthAnythingConfig",
           "create_depth_anything", "depth_anything_input_size", "infer_depth_anything",
           "prepare_depth_anything_input", "prompt_depth_anything_input_size"]
