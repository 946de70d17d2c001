"""Frame preprocessing on the device: uint8 pixels -> normalised network input.

The arithmetic is the reference recipe's (``model.inference``): normalise in fp32 to
[-1, 1], bilinear resize to the network side, then cast to the model's precision.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from depth_pro_ros.model.inference import resize_to

CHANNEL_ORDERS = ("rgb", "bgr", "mono")


def to_rgb(images: torch.Tensor, channel_order: str) -> torch.Tensor:
    """(B, H, W, C) uint8 in ``channel_order`` -> (B, H, W, 3) uint8 RGB (a view where possible)."""
    if channel_order == "rgb":
        return images
    if channel_order == "bgr":
        return images.flip(-1)
    if channel_order == "mono":
        return images.expand(*images.shape[:3], 3)
    raise ValueError(f"unknown channel order {channel_order!r}; use one of {CHANNEL_ORDERS}")


def prepare_input(
    images: torch.Tensor, channel_order: str, size: int, dtype: torch.dtype
) -> torch.Tensor:
    """(B, H, W, C) uint8 -> (B, 3, size, size) network input in ``dtype``."""
    rgb = to_rgb(images, channel_order)
    x = rgb.permute(0, 3, 1, 2).float().div_(255.0).mul_(2.0).sub_(1.0)
    return resize_to(x, size).to(dtype)


def rgb_at_size(image: torch.Tensor, channel_order: str, size: tuple[int, int]) -> torch.Tensor:
    """(H, W, C) uint8 image -> (h, w, 3) uint8 RGB at ``size`` = (h, w), area-averaged.

    Colours the point cloud when the depth is smaller than the input (``output_scale``).
    """
    rgb = to_rgb(image[None], channel_order)[0]
    if tuple(rgb.shape[:2]) == size:
        return rgb
    x = rgb.permute(2, 0, 1)[None].float()
    return F.interpolate(x, size=size, mode="area")[0].permute(1, 2, 0).round().to(torch.uint8)
