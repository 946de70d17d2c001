"""Depth Pro's batch recipe and its output arithmetic: canonical inverse depth -> metres.

[-1, 1] input bilinearly resized to the fixed square (1536 for the released model); the
network's canonical inverse depth is scaled by ``width / f_px`` and resized to the output
size, then inverted. The focal comes from the caller or the FoV head.
"""

from __future__ import annotations

import torch

from ..common.recipe import BatchRecipe, ModelInfo
from .config import DepthProConfig
from .network import DepthPro
from .preprocess import prepare_input, resize_to

__all__ = ["DepthProRecipe", "focal_from_fov", "make_recipe", "metric_depth"]

MIN_INVERSE_DEPTH = 1e-4
MAX_INVERSE_DEPTH = 1e4


def focal_from_fov(fov_deg: torch.Tensor, width: int) -> torch.Tensor:
    """Focal length in pixels of an image ``width`` wide with horizontal FoV ``fov_deg``."""
    return 0.5 * width / torch.tan(0.5 * torch.deg2rad(fov_deg.float()))


def metric_depth(
    canonical_inverse_depth: torch.Tensor,
    width: int,
    height: int,
    f_px: torch.Tensor,
    out_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """(B, 1, S, S) canonical inverse depth -> (B, H, W) depth in metres, computed in fp32.

    ``f_px`` holds one focal length per batch item, for the original ``width``;
    ``out_size`` (h, w) resizes to another output size than (height, width).
    """
    scale = (width / f_px.float()).reshape(-1, 1, 1, 1)
    inverse_depth = resize_to(canonical_inverse_depth.float() * scale, out_size or (height, width))
    return 1.0 / inverse_depth.clamp(MIN_INVERSE_DEPTH, MAX_INVERSE_DEPTH).squeeze(1)


class DepthProRecipe(BatchRecipe):
    """Depth Pro on batches: the fixed square input, metres from the focal."""

    def __init__(self, model: DepthPro) -> None:
        config = model.config
        released = config == DepthProConfig.depth_pro() or config == DepthProConfig(
            use_fov_head=False)
        variant, size, fov = "vitl16" if released else "custom", config.input_size, model.fov
        self.info = ModelInfo(
            family="depth_pro", variant=variant, kind="metric",
            has_fov_head=fov is not None, needs_focal=True, needs_prompt=False,
            input_size=size,
            description=(f"Depth Pro ({variant}, {size}x{size} input"
                         f"{', FoV head' if fov is not None else ', no FoV head'})"))

    def network_size(self, height: int, width: int) -> tuple[int, int]:
        return self.info.input_size, self.info.input_size

    def prepare(self, images, channel_order, dtype):
        return prepare_input(images, channel_order, self.info.input_size, dtype)

    def run(self, network, x, estimate_fov, prompt):
        return network(x, estimate_fov=estimate_fov)

    def output(self, raw, width, height, f_px, out_size):
        return metric_depth(raw, width, height, f_px, out_size)[0]


def make_recipe(model: DepthPro, input_size: int = 0, sky_mask: bool = True) -> DepthProRecipe:
    """The batch recipe of ``model``; its input is fixed, so ``input_size`` must be 0 or
    that size. ``sky_mask``: unused (no sky head).

    Raises:
        ValueError: another ``input_size``.
    """
    if input_size not in (0, model.config.input_size):
        raise ValueError(f"input_size is fixed at {model.config.input_size} for Depth "
                         f"Pro (set it to 0), got {input_size}")
    return DepthProRecipe(model)
