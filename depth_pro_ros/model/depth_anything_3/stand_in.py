"""Depth Anything 3's random-weight stand-ins (``depth-pro-ros checkpoint --random``): the
sizes, and the biases that make their outputs look plausible."""

from __future__ import annotations

import math

import torch

from ..common.family import ModelType
from .config import DepthAnything3Config

__all__ = ["SEED", "SIZES", "plausible", "stand_in_config"]

SIZES = ("tiny", "small", "base", "large", "giant")
SEED = 3
_PLAUSIBLE_DEPTH = 3.0  # the depth (exp of the last bias) a stand-in's output centres on
_PLAUSIBLE_FOV = math.radians(60.0)  # the camera decoder's FoV (a usable focal estimate)
# tiny: 5 blocks of width 48 (4 heads of 12: RoPE needs multiples of 4), the last 4
# hooked, any-view layers from block 3, a 4 x 4 stored position grid, a small head.
_TINY = dict(embed_dim=48, depth=5, num_heads=4, pos_grid=4, hook_block_ids=(1, 2, 3, 4),
             neck_dims=(8, 12, 16, 24), fusion_features=16, camera_depth=1, camera_heads=4)
_TINY_ANY_VIEW = dict(alt_start=3, rope_start=3, qknorm_start=3)


def stand_in_config(size: str, model_type: ModelType) -> DepthAnything3Config:
    """The architecture of the stand-in ``size`` (one of :data:`SIZES`) of ``model_type``:
    a released preset, or its tiny version. DA3MONO / DA3METRIC are released as large only.

    Raises:
        ValueError: a size the model type has no release of.
    """
    if model_type.fields["head"] == "dualdpt":
        name = "da3-large" if size == "tiny" else f"da3-{size}"
    elif size in ("tiny", "large"):
        name = "da3metric-large" if model_type.fields["metric"] else "da3mono-large"
    else:
        raise ValueError(f"{model_type.text} is released in size large only, not {size!r}")
    if size != "tiny":
        return DepthAnything3Config.from_preset(name)
    extra = _TINY_ANY_VIEW if model_type.fields["head"] == "dualdpt" else {}
    return DepthAnything3Config.from_preset(name, **_TINY, **extra)


@torch.no_grad()
def plausible(model: torch.nn.Module, tiny: bool) -> None:
    """The depth channel's last bias at log 3 (depth around 3, its ``exp`` neither tiny
    nor huge) with its weights doubled (so that it varies), the sky head's bias negative
    (little sky: the depth stays visible), the camera decoder's FoV near 60 degrees."""
    scratch = model.head.scratch
    depth = scratch.output_conv2[-1]
    depth.weight[0].mul_(2.0)
    depth.bias[0] = math.log(_PLAUSIBLE_DEPTH)
    if hasattr(scratch, "sky_output_conv2"):
        scratch.sky_output_conv2[-1].bias.fill_(-1.0)
    if model.config.camera:
        fov = model.cam_dec.fc_fov[0]
        fov.weight.mul_(0.01)
        fov.bias.fill_(_PLAUSIBLE_FOV)
