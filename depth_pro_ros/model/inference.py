"""The reference recipe: image -> normalised network input -> metric depth.

This is the definition of correct output that the streaming engine is tested against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .network import DepthPro

MIN_INVERSE_DEPTH = 1e-4
MAX_INVERSE_DEPTH = 1e4


@dataclass
class DepthPrediction:
    """Metric depth of one image and the focal length that produced it."""

    depth: torch.Tensor  # (H, W) float32 metres, on the model's device
    focal_px: float
    fov_deg: float | None  # the FoV head's estimate, when it ran
    focal_source: str  # "fixed" (f_px given by the caller) or "fov_head"


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


@torch.inference_mode()
def infer(
    model: DepthPro,
    image: np.ndarray | torch.Tensor,
    f_px: float | None = None,
) -> DepthPrediction:
    """Metric depth of one image by the reference recipe (docs/network.md).

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
