"""Depth Pro's input: RGB in [-1, 1], bilinearly resized to the network's fixed square.

The arithmetic is the reference's (:mod:`.reference`): normalise in fp32 to [-1, 1],
bilinear resize (``align_corners=False``, no antialias) to the network side, then the cast
to the model's precision. The engine runs :func:`prepare_input` on batches on its device.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..common.pixels import to_rgb

__all__ = ["normalize_image", "prepare_input", "resize_to"]


def normalize_image(image: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (H, W, 3) RGB -> float32 (1, 3, H, W) in [-1, 1] (x / 255 * 2 - 1)."""
    x = torch.as_tensor(image, device=device)
    if x.dtype != torch.uint8 or x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) RGB image, got {x.dtype} {tuple(x.shape)}")
    return (x.permute(2, 0, 1).unsqueeze(0).float() / 255.0) * 2.0 - 1.0


def resize_to(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinear resize (align_corners=False, no antialias); a no-op at the same size."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def prepare_input(
    images: torch.Tensor, channel_order: str, size: int, dtype: torch.dtype
) -> torch.Tensor:
    """(B, H, W, C) uint8 -> (B, 3, size, size) network input in ``dtype``."""
    rgb = to_rgb(images, channel_order)
    x = rgb.permute(0, 3, 1, 2).float().div_(255.0).mul_(2.0).sub_(1.0)
    return resize_to(x, size).to(dtype)
