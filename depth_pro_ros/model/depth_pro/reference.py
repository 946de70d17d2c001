"""Depth Pro's reference implementation: one image -> normalised network input -> metres.

This is the definition of correct output that the streaming engine (its batch recipe,
:mod:`.recipe`) is tested against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .network import DepthPro
from .preprocess import normalize_image, resize_to
from .recipe import focal_from_fov, metric_depth

__all__ = ["DepthPrediction", "infer"]


@dataclass
class DepthPrediction:
    """Metric depth of one image and the focal length that produced it."""

    depth: torch.Tensor  # (H, W) float32 metres, on the model's device
    focal_px: float
    fov_deg: float | None  # the FoV head's estimate, when it ran
    focal_source: str  # "fixed" (f_px given by the caller) or "fov_head"


@torch.inference_mode()
def infer(
    model: DepthPro,
    image: np.ndarray | torch.Tensor,
    f_px: float | None = None,
) -> DepthPrediction:
    """Metric depth of one image by the reference arithmetic (docs/network.md).

    ``image`` is a uint8 (H, W, 3) RGB array or tensor, or a float tensor (3, H, W) already
    normalised to [-1, 1]. ``f_px`` is the known focal length in pixels; without it the
    model's FoV head estimates it.
    """
    param = next(model.parameters())
    if isinstance(image, torch.Tensor) and image.is_floating_point():
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"expected a float (3, H, W) tensor, got {tuple(image.shape)}")
        x = image.to(param.device, torch.float32).unsqueeze(0)
    else:
        x = normalize_image(image, param.device)
    height, width = x.shape[-2:]
    if f_px is not None and not (math.isfinite(f_px) and f_px > 0):
        raise ValueError(f"focal length must be a positive finite number, got {f_px}")
    if f_px is None and model.fov is None:
        raise ValueError("this model has no FoV head: a focal length (f_px) must be given")

    x = resize_to(x, model.config.input_size).to(param.dtype)
    inverse_depth, fov = model(x, estimate_fov=f_px is None)
    if f_px is None:
        focal = focal_from_fov(fov.reshape(-1), width)
        source = "fov_head"
    else:
        focal = torch.tensor([float(f_px)], device=param.device)
        source = "fixed"
    depth = metric_depth(inverse_depth, width, height, focal)[0]
    return DepthPrediction(
        depth=depth,
        focal_px=float(focal[0]),
        fov_deg=float(fov.reshape(-1)[0]) if fov is not None else None,
        focal_source=source,
    )
