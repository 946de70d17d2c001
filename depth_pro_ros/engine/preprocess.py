"""Frame pixels on the device outside the network's input: the channel orders a frame may
come in, and the colours of the point cloud.

Each family's network input is its batch recipe's job (``BatchRecipe.prepare``, next to
the family's network in ``model/``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from depth_pro_ros.model import to_rgb

__all__ = ["rgb_at_size"]


def rgb_at_size(image: torch.Tensor, channel_order: str, size: tuple[int, int]) -> torch.Tensor:
    """(H, W, C) uint8 image -> (h, w, 3) uint8 RGB at ``size`` = (h, w), area-averaged.

    Colours the point cloud when the depth is smaller than the input (``output_scale``).
    """
    rgb = to_rgb(image[None], channel_order)[0]
    if tuple(rgb.shape[:2]) == size:
        return rgb
    x = rgb.permute(2, 0, 1)[None].float()
    return F.interpolate(x, size=size, mode="area")[0].permute(1, 2, 0).round().to(torch.uint8)
