"""Camera pixels on the device: the channel orders a frame may come in, and RGB from them."""

from __future__ import annotations

import torch

__all__ = ["CHANNEL_ORDERS", "to_rgb"]

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
