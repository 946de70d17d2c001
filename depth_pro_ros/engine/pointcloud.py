"""Depth image -> organized point cloud, computed on the depth tensor's device.

On the host a cloud is a row-major structured array of ``height * width`` records
(:func:`record_dtype`: float32 ``x``, ``y``, ``z`` and optionally ``rgb``, native byte
order): the layout message writers (``io.pointcloud_msg``) describe field by field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from depth_pro_ros.engine.focal import Intrinsics

__all__ = [
    "PointCloudArrays",
    "depth_to_points",
    "pack_rgb",
    "pack_words",
    "record_dtype",
    "to_numpy_record",
    "words_to_record",
]


@dataclass(frozen=True)
class PointCloudArrays:
    """An organized cloud: ``xyz`` is (height, width, 3) float32, NaN where invalid.

    ``rgb_packed`` (height, width) float32 holds ``0x00RRGGBB`` bit patterns, or is None.
    ``intrinsics`` describe the (possibly decimated) grid of the cloud.
    """

    xyz: torch.Tensor
    rgb_packed: torch.Tensor | None
    height: int
    width: int
    intrinsics: Intrinsics


def _validate(
    depth: torch.Tensor,
    intrinsics: Intrinsics,
    min_depth: float,
    max_depth: float,
    decimation: int,
    rgb: torch.Tensor | None,
) -> None:
    if depth.dim() != 2:
        raise ValueError(f"depth must be 2-D (H, W), got shape {tuple(depth.shape)}")
    if not depth.dtype.is_floating_point:
        raise ValueError(f"depth must be a floating-point tensor, got {depth.dtype}")
    intrinsics.validate()
    height, width = depth.shape
    if (width, height) != (intrinsics.width, intrinsics.height):
        raise ValueError(
            f"depth is {width}x{height} but the intrinsics are for "
            f"{intrinsics.width}x{intrinsics.height}; scale them with Intrinsics.scaled_to"
        )
    if isinstance(decimation, bool) or not isinstance(decimation, int) or decimation < 1:
        raise ValueError(f"decimation must be an integer >= 1, got {decimation!r}")
    if math.isnan(min_depth) or math.isnan(max_depth) or min_depth >= max_depth:
        raise ValueError(f"need min_depth < max_depth, got {min_depth} and {max_depth}")
    if rgb is not None:
        if tuple(rgb.shape) != (height, width, 3):
            raise ValueError(
                f"rgb must have shape {(height, width, 3)} to match depth, got {tuple(rgb.shape)}"
            )
        if rgb.dtype != torch.uint8:
            raise ValueError(f"rgb must be uint8, got {rgb.dtype}")


def pack_rgb(rgb: torch.Tensor) -> torch.Tensor:
    """Pack (..., 3) uint8 RGB into float32 carrying the bits ``0x00RRGGBB`` (ROS style)."""
    channels = rgb.to(torch.int32)
    packed = (channels[..., 0] << 16) | (channels[..., 1] << 8) | channels[..., 2]
    # Reinterpret, never convert: the float value is meaningless, only the bits matter.
    return packed.contiguous().view(torch.float32)


def depth_to_points(
    depth: torch.Tensor,
    intrinsics: Intrinsics,
    *,
    min_depth: float = 0.0,
    max_depth: float = math.inf,
    decimation: int = 1,
    rgb: torch.Tensor | None = None,
) -> PointCloudArrays:
    """Back-project a metric depth image through ``intrinsics`` into an organized cloud.

    Pixel ``(u, v)`` = (column, row) has its centre at integer coordinates, so
    ``X = (u - cx) Z / fx``, ``Y = (v - cy) Z / fy``, ``Z = depth[v, u]``. Depth that is
    NaN, infinite, ``<= 0`` or outside ``[min_depth, max_depth]`` gives NaN in x, y and z.

    ``decimation = k`` keeps rows and columns ``0, k, 2k, ...``; decimated pixel ``j``
    is original pixel ``k j``, so the returned intrinsics are ``fx/k, fy/k, cx/k, cy/k``
    with size ``ceil(W/k) x ceil(H/k)``. Points are computed from the original pixel
    coordinates, hence identical to the undecimated cloud at the kept pixels.

    ``rgb`` is (H, W, 3) uint8 in RGB order; it is moved to the depth's device if needed.
    """
    _validate(depth, intrinsics, min_depth, max_depth, decimation, rgb)
    k = decimation
    z = depth[::k, ::k].to(torch.float32)
    h, w = z.shape
    device = z.device

    valid = torch.isfinite(z) & (z > 0.0) & (z >= min_depth) & (z <= max_depth)
    z = torch.where(valid, z, torch.full_like(z, math.nan))

    u = torch.arange(0, intrinsics.width, k, device=device, dtype=torch.float32)
    v = torch.arange(0, intrinsics.height, k, device=device, dtype=torch.float32)
    # NaN in z propagates to x and y, so invalid pixels need no further masking.
    x = (u - intrinsics.cx).unsqueeze(0) * z / intrinsics.fx
    y = (v - intrinsics.cy).unsqueeze(1) * z / intrinsics.fy
    xyz = torch.stack((x, y, z), dim=-1)

    rgb_packed = None
    if rgb is not None:
        rgb_packed = pack_rgb(rgb[::k, ::k].to(device))

    if k == 1:
        out_intrinsics = intrinsics
    else:
        out_intrinsics = Intrinsics(
            fx=intrinsics.fx / k,
            fy=intrinsics.fy / k,
            cx=intrinsics.cx / k,
            cy=intrinsics.cy / k,
            width=w,
            height=h,
        )
    return PointCloudArrays(
        xyz=xyz, rgb_packed=rgb_packed, height=h, width=w, intrinsics=out_intrinsics
    )


def record_dtype(with_rgb: bool) -> np.dtype:
    """Structured dtype of one point: float32 ``x``, ``y``, ``z`` (and ``rgb``) at offsets
    0, 4, 8 (12), 12 bytes a point (16 with ``rgb``, whose float holds the packed bits)."""
    names = ["x", "y", "z", "rgb"] if with_rgb else ["x", "y", "z"]
    return np.dtype(
        {
            "names": names,
            "formats": [np.float32] * len(names),
            "offsets": [4 * i for i in range(len(names))],
            "itemsize": 4 * len(names),
        }
    )


def pack_words(arrays: PointCloudArrays) -> torch.Tensor:
    """(h, w, 3 or 4) int32 tensor on the cloud's device holding each point's field bits.

    Working in int32 keeps float bit patterns (NaN, packed colours) verbatim, and one
    tensor means a single device-to-host transfer.
    """
    parts = [arrays.xyz.view(torch.int32)]
    if arrays.rgb_packed is not None:
        parts.append(arrays.rgb_packed.view(torch.int32).unsqueeze(-1))
    return torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]


def words_to_record(words: np.ndarray) -> np.ndarray:
    """Host (h, w, 3 or 4) int32 words -> structured (h*w,) array (a view where possible)."""
    with_rgb = words.shape[-1] == 4
    return np.ascontiguousarray(words).reshape(-1).view(record_dtype(with_rgb))


def to_numpy_record(arrays: PointCloudArrays) -> np.ndarray:
    """Return a C-contiguous structured array of shape (h*w,), row-major, on the host.

    Its dtype is :func:`record_dtype`; its bytes (``.tobytes()`` or a memoryview) are
    the points one after the other, e.g. a point-cloud message's ``data``.
    """
    return words_to_record(pack_words(arrays).detach().cpu().numpy())
