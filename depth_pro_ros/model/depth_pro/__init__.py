"""Depth Pro (Apple): a multi-scale ViT encoder, a convolutional decoder, depth and FoV
heads; metric depth from the focal length. Reached through :mod:`..registry`; the public
names are re-exported by :mod:`depth_pro_ros.model`."""

from .config import DepthProConfig
from .network import DepthPro, create_model
from .preprocess import normalize_image
from .recipe import focal_from_fov, metric_depth
from .reference import DepthPrediction, infer

__all__ = ["DepthPrediction", "DepthPro", "DepthProConfig", "create_model", "focal_from_fov",
           "infer", "metric_depth", "normalize_image"]
