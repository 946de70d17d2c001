"""Camera pixels on the device: the channel orders a frame may come in, RGB from them, and
the pieces of input preparation several families share (ImageNet normalisation, the
shrinking area resize)."""

from __future__ import annotations

import functools

import torch

__all__ = ["CHANNEL_ORDERS", "IMAGENET_MEAN", "IMAGENET_STD", "area_weights",
           "imagenet_normalisation", "to_rgb"]

CHANNEL_ORDERS = ("rgb", "bgr", "mono")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_rgb(images: torch.Tensor, channel_order: str) -> torch.Tensor:
    """(B, H, W, C) uint8 in ``channel_order`` -> (B, H, W, 3) uint8 RGB (a view where possible)."""
    if channel_order == "rgb":
        return images
    if channel_order == "bgr":
        return images.flip(-1)
    if channel_order == "mono":
        return images.expand(*images.shape[:3], 3)
    raise ValueError(f"unknown channel order {channel_order!r}; use one of {CHANNEL_ORDERS}")


def area_weights(n_in: int, n_out: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(n_out, n_in) weights of a shrinking area resize along one axis: output pixel i is
    the mean of the input over [i, i + 1) * n_in / n_out, each input pixel weighted by the
    length it covers (what cv2 ``INTER_AREA`` computes when it shrinks by a non-integer
    factor, and a plain box average for an integer one)."""
    if not 0 < n_out <= n_in:
        raise ValueError(f"area resize shrinks: need 0 < n_out <= n_in, got {n_out}, {n_in}")
    scale = n_in / n_out
    edges = torch.arange(n_out + 1, dtype=torch.float64, device=device) * scale
    pixels = torch.arange(n_in, dtype=torch.float64, device=device)
    lo = torch.maximum(edges[:-1, None], pixels[None, :])
    hi = torch.minimum(edges[1:, None], pixels[None, :] + 1.0)
    return ((hi - lo).clamp_(min=0.0) / scale).float()


@functools.cache
def imagenet_normalisation(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The ImageNet mean and std as (1, 3, 1, 1) float32 tensors on ``device``, made once
    per device: building them per batch copied them from pageable host memory each time,
    a copy that synchronises the stream (and fails under CUDA's sync-debug mode). Never
    modify them in place."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    return mean, std
