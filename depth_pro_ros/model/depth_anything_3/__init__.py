"""The Depth Anything 3 family: the any-view presets (DA3-SMALL ... GIANT, DualDPT head)
and the monocular ones (DA3MONO-LARGE, DA3METRIC-LARGE, DPT head with sky). Reached
through :mod:`..registry`; the public names are re-exported by :mod:`depth_pro_ros.model`
(see docs/depth_anything_3.md)."""

from .config import PRESETS, DepthAnything3Config
from .network import DepthAnything3, create_depth_anything_3

__all__ = ["PRESETS", "DepthAnything3", "DepthAnything3Config", "create_depth_anything_3"]
