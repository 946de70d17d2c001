"""Frame preprocessing on the device: uint8 pixels -> normalised network input.

The arithmetic is the reference recipe's (``model.inference``): normalise in fp32 to
[-1, 1], bilinear resize to the network side, then cast to the model's precision.
"""

from __future__ import annotations

import torch

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
