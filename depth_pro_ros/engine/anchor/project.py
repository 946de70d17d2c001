"""An anchor brought to the depth's pixels: a depth image resized by nearest pixel, a
point cloud moved by a static transform and projected with the depth's intrinsics.
Pure torch, on the depth's device."""

from __future__ import annotations

import math

import torch

from depth_pro_ros.engine.focal import Intrinsics

__all__ = ["project_points", "resize_nearest", "transformed"]


def resize_nearest(depth: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``depth`` (h, w) at ``size`` by nearest pixel centre: a hole stays a hole and no
    value is made up between two measurements."""
    h, w = depth.shape
    oh, ow = size
    if (h, w) == (oh, ow):
        return depth
    rows = ((torch.arange(oh, device=depth.device) + 0.5) * h / oh).long().clamp_(max=h - 1)
    cols = ((torch.arange(ow, device=depth.device) + 0.5) * w / ow).long().clamp_(max=w - 1)
    return depth[rows][:, cols]


def project_points(points: torch.Tensor, intrinsics: Intrinsics,
                   size: tuple[int, int]) -> torch.Tensor:
    """Points (N, 3) in the camera's optical frame -> a sparse (h, w) depth image: each
    point lands on its nearest pixel; where several do, the nearest point wins; NaN
    elsewhere."""
    h, w = size
    x, y, z = points.unbind(1)
    ok = torch.isfinite(points).all(1) & (z > 0)
    x, y, z = x[ok], y[ok], z[ok]
    u = torch.round(intrinsics.fx * x / z + intrinsics.cx)
    v = torch.round(intrinsics.fy * y / z + intrinsics.cy)
    inside = (u >= 0) & (u < w) & (v >= 0) & (v < h)
    index = (v[inside] * w + u[inside]).long()
    image = torch.full((h * w,), math.inf, dtype=torch.float32, device=points.device)
    image.scatter_reduce_(0, index, z[inside].float(), reduce="amin")
    image[torch.isinf(image)] = math.nan
    return image.view(h, w)


def transformed(points: torch.Tensor, transform: tuple[float, ...]) -> torch.Tensor:
    """``R(q) p + t`` for ``transform`` = (x, y, z, qx, qy, qz, qw)."""
    tx, ty, tz, qx, qy, qz, qw = transform
    n = math.sqrt(qx * qx + qy * qy + qz * qz + qw * qw)
    qx, qy, qz, qw = qx / n, qy / n, qz / n, qw / n
    rotation = torch.tensor([
        [1 - 2 * (qy * qy + qz * qz), 2 * (qx * qy - qz * qw), 2 * (qx * qz + qy * qw)],
        [2 * (qx * qy + qz * qw), 1 - 2 * (qx * qx + qz * qz), 2 * (qy * qz - qx * qw)],
        [2 * (qx * qz - qy * qw), 2 * (qy * qz + qx * qw), 1 - 2 * (qx * qx + qy * qy)],
    ], dtype=points.dtype, device=points.device)
    return points @ rotation.T + torch.tensor([tx, ty, tz], dtype=points.dtype,
                                              device=points.device)
