"""Depth Anything's input sizes and the device-side input preparation (pure torch) that
the reference and the engine's batch recipe share; the rules are the originals' (see
:mod:`.reference`)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..common.pixels import IMAGENET_MEAN, IMAGENET_STD, area_weights, imagenet_normalisation
from .config import PATCH_SIZE

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "PROMPT_MAX_SIZE", "V2_INPUT_SIZE", "area_weights",
           "depth_anything_input_size", "imagenet_normalisation", "prepare_depth_anything_input",
           "prompt_depth_anything_input_size"]

V2_INPUT_SIZE = 518  # Depth Anything V2's training size: its shorter-side lower bound
PROMPT_MAX_SIZE = 1008  # Prompt Depth Anything's longer-side limit (load_image's max_size)


def depth_anything_input_size(
    height: int, width: int, input_size: int = V2_INPUT_SIZE,
    multiple: int = PATCH_SIZE
) -> tuple[int, int]:
    """Depth Anything V2's network input (h, w) for a height x width image.

    The original ``Resize(keep_aspect_ratio=True, ensure_multiple_of=14,
    resize_method="lower_bound")``: one scale for both sides, chosen so that both reach
    ``input_size``; each side is rounded to the nearest multiple (half to even, as
    ``np.round``) and rounded up instead when that falls below ``input_size``.
    """
    if height <= 0 or width <= 0 or input_size <= 0 or multiple <= 0:
        raise ValueError(f"sizes must be positive, got {height}x{width}, input_size "
                         f"{input_size}, multiple {multiple}")
    scale_h, scale_w = input_size / height, input_size / width
    scale = scale_w if scale_w > scale_h else scale_h  # the larger: both sides reach it

    def constrain(x: float) -> int:
        y = round(x / multiple) * multiple
        return math.ceil(x / multiple) * multiple if y < input_size else int(y)

    return constrain(scale * height), constrain(scale * width)


def prompt_depth_anything_input_size(
    height: int, width: int, max_size: int = PROMPT_MAX_SIZE,
    multiple: int = PATCH_SIZE
) -> tuple[int, int]:
    """Prompt Depth Anything's network input (h, w) for a height x width image.

    PromptDA's ``load_image``: when the longer side exceeds ``max_size`` (floored to a
    multiple, 1008), scale it down to ``max_size`` keeping the aspect, and floor both sides
    to multiples of 14. A smaller image keeps its size there (the network then refuses
    sides that are not multiples of 14); here its sides are floored to multiples too.
    """
    if height <= 0 or width <= 0 or max_size < multiple or multiple <= 0:
        raise ValueError(f"sizes must be positive, got {height}x{width}, max_size "
                         f"{max_size}, multiple {multiple}")
    max_size = max_size // multiple * multiple
    scale = max_size / max(height, width) if max(height, width) > max_size else 1.0
    h, w = int(height * scale // multiple * multiple), int(width * scale // multiple * multiple)
    if h == 0 or w == 0:
        raise ValueError(f"image {height}x{width} is too small for {multiple}-pixel patches")
    return h, w


def prepare_depth_anything_input(
    rgb: torch.Tensor, size: tuple[int, int], dtype: torch.dtype = torch.float32,
    interpolation: str = "bicubic",
) -> torch.Tensor:
    """(B, H, W, 3) uint8 RGB on any device -> the (B, 3, h, w) network input in ``dtype``.

    The original preprocessing, on any device: x / 255 in fp32, resize to ``size``, ImageNet
    normalisation, then the cast. ``interpolation``: ``bicubic`` (V2: ``align_corners=False``,
    no antialias; cv2's ``INTER_CUBIC`` uses the same a = -0.75 kernel) or ``area``
    (Prompt Depth Anything, which only shrinks: cv2's ``INTER_AREA``, see
    :func:`area_weights`).
    """
    if rgb.ndim != 4 or rgb.shape[-1] != 3 or rgb.dtype != torch.uint8:
        raise ValueError(f"expected uint8 (B, H, W, 3) RGB, got {rgb.dtype} {tuple(rgb.shape)}")
    if interpolation not in ("bicubic", "area"):
        raise ValueError(f"interpolation must be bicubic or area, got {interpolation!r}")
    x = rgb.permute(0, 3, 1, 2).float() / 255.0
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) != size and interpolation == "area":
        rows = area_weights(x.shape[-2], size[0], x.device)
        cols = area_weights(x.shape[-1], size[1], x.device)
        x = torch.einsum("hH,bcHW,wW->bchw", rows, x, cols)
    elif tuple(x.shape[-2:]) != size:
        x = F.interpolate(x, size=size, mode="bicubic", align_corners=False)
    mean, std = imagenet_normalisation(x.device)
    return ((x - mean) / std).to(dtype)
