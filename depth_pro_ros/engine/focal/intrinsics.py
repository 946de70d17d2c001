"""Pinhole intrinsics of an image, and reading them from a CameraInfo's K.

Pure Python (no torch, no ROS).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Intrinsics", "intrinsics_from_camera_info"]


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics of an image of ``width`` x ``height`` pixels.

    Pixel centres lie at integer coordinates (ROS/OpenCV convention): the pixel in
    column ``u`` and row ``v`` sees the ray ``((u - cx) / fx, (v - cy) / fy, 1)``.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def validate(self) -> Intrinsics:
        """Raise ``ValueError`` naming the first problem found; return ``self`` if valid."""
        for name in ("fx", "fy", "cx", "cy"):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise ValueError(f"intrinsics {name} is not finite ({value})")
        if self.fx <= 0.0 or self.fy <= 0.0:
            raise ValueError(f"intrinsics focal lengths must be > 0 (fx={self.fx}, fy={self.fy})")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(
                f"intrinsics image size must be > 0 (width={self.width}, height={self.height})"
            )
        return self

    def scaled_to(self, width: int, height: int) -> Intrinsics:
        """Return these intrinsics for the same view resized to ``width`` x ``height``.

        K is scaled proportionally (``fx' = fx * sx``, ``cx' = cx * sx`` and likewise in
        y), which is what ROS ``image_proc`` resize does to CameraInfo. The exact
        pixel-centre mapping would be ``cx' = (cx + 0.5) * sx - 0.5``; the difference is
        under half a pixel and we follow the ROS tools so that outputs agree with them.
        """
        if width <= 0 or height <= 0:
            raise ValueError(f"target image size must be > 0 (width={width}, height={height})")
        if width == self.width and height == self.height:
            return self
        sx = width / self.width
        sy = height / self.height
        return Intrinsics(
            fx=self.fx * sx,
            fy=self.fy * sy,
            cx=self.cx * sx,
            cy=self.cy * sy,
            width=int(width),
            height=int(height),
        ).validate()

    @classmethod
    def from_focal(cls, f_px: float, width: int, height: int) -> Intrinsics:
        """Synthesize square-pixel intrinsics from one focal length in pixels.

        The principal point is put at ``(W / 2, H / 2)``, as Apple's Depth Pro and most
        tools that synthesize intrinsics do (rather than ``(W - 1) / 2``, the exact centre
        under the integer pixel-centre convention; the two differ by half a pixel).
        """
        return cls(
            fx=float(f_px),
            fy=float(f_px),
            cx=width / 2.0,
            cy=height / 2.0,
            width=int(width),
            height=int(height),
        ).validate()


def intrinsics_from_camera_info(k: Sequence[float], width: int, height: int) -> Intrinsics:
    """Build intrinsics from a CameraInfo's row-major 3x3 ``k``, ``width`` and ``height``.

    Raises ``ValueError`` with the reason when the CameraInfo is unusable (an
    uncalibrated camera publishes K all zero). Skew (``k[1]``) is ignored.
    """
    values = [float(v) for v in k]
    if len(values) != 9:
        raise ValueError(f"CameraInfo K must have 9 elements, got {len(values)}")
    if width <= 0 or height <= 0:
        raise ValueError(f"CameraInfo image size must be > 0 (width={width}, height={height})")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"CameraInfo K contains non-finite values: {values}")
    if all(v == 0.0 for v in values):
        raise ValueError("CameraInfo K is all zero (camera not calibrated)")
    fx, fy = values[0], values[4]
    if fx <= 0.0 or fy <= 0.0:
        raise ValueError(f"CameraInfo K has non-positive focal length (fx={fx}, fy={fy})")
    return Intrinsics(
        fx=fx, fy=fy, cx=values[2], cy=values[5], width=int(width), height=int(height)
    ).validate()
