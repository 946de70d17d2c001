"""The DPT decoder's blocks that the Depth Anything families share (V2, Prompt Depth
Anything, Depth Anything 3): the pre-activation residual unit and the fusion block, with
the original releases' parameter names."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FusionBlock", "ResidualConvUnit"]


class ResidualConvUnit(nn.Module):
    """Pre-activation residual unit: x + conv2(relu(conv1(relu(x))))."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The inner ReLU in place and the sum into conv2's output: two maps fewer.
        return self.conv2(F.relu(self.conv1(F.relu(x)), inplace=True)).add_(x)


class FusionBlock(nn.Module):
    """One refinenet: merge the coarser path with a skip, add the prompt, upsample, project."""

    def __init__(self, features: int, prompt: bool, lateral: bool = True) -> None:
        """``lateral`` False: no skip input, so no ``resConfUnit1`` (the coarsest block of
        Depth Anything 3, whose release stores none; V2's stores an unused one)."""
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1)
        if lateral:
            self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)
        if prompt:
            # Prompt Depth Anything: 1 -> features, ReLU, 3x3, ReLU, 3x3 (indices 0, 2, 4).
            self.resConfUnit_depth = nn.Sequential(
                nn.Conv2d(1, features, 3, padding=1), nn.ReLU(),
                nn.Conv2d(features, features, 3, padding=1), nn.ReLU(),
                nn.Conv2d(features, features, 3, padding=1),
            )

    def forward(
        self, x: torch.Tensor, skip: torch.Tensor | None, size: tuple[int, int] | None,
        prompt: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``size``: the next level's (h, w), or None to double the size (finest level)."""
        if skip is not None:
            if skip.shape[-2:] != x.shape[-2:]:  # never for multiples of the patch size
                skip = F.interpolate(skip, size=x.shape[-2:], mode="bilinear",
                                     align_corners=False)
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        if prompt is not None:
            prompt = F.interpolate(prompt, size=x.shape[-2:], mode="bilinear",
                                   align_corners=False)
            x = x + self.resConfUnit_depth(prompt)
        if size is None:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        else:
            x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)
        return self.out_conv(x)
