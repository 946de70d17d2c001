"""The Depth Anything family: Depth Anything V2 (relative and metric) and Prompt Depth Anything.

A DINOv2 ViT (patch 14) feeds four of its blocks to a DPT decoder: reassemble (1x1
projection, then 4x / 2x transposed convolutions, identity, stride-2 convolution), 3x3
projections to ``fusion_features``, four fusion blocks from coarse to fine, and a head.
Prompt Depth Anything adds a small convolutional branch per fusion block that injects a
low-resolution metric depth (the *prompt*).

Module and parameter names are those of the original releases (``pretrained.*`` for the
ViT, ``depth_head.*`` for the decoder, ``depth_head.scratch.refinenetN.resConfUnit_depth``
for the prompt branches), so ``depth_anything_v2_vits.pth`` loads with
``load_state_dict(strict=True)``; see docs/depth_anything.md.

The input preparation is :mod:`.preprocess`, the reference implementation for one image
:mod:`.reference`, the engine's batch recipe :mod:`.recipe`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..common.config import build_network
from ..common.dpt import FusionBlock, ResidualConvUnit
from ..common.vit import VisionTransformer
from .config import DepthAnythingConfig

__all__ = ["DPTHead", "DepthAnything", "FusionBlock", "ResidualConvUnit",
           "create_depth_anything"]


class DPTHead(nn.Module):
    """The decoder of the original release (``depth_head``): reassemble, fuse, predict."""

    def __init__(self, config: DepthAnythingConfig) -> None:
        super().__init__()
        dims, f = config.neck_dims, config.fusion_features
        self.patch_size = config.patch_size
        self.projects = nn.ModuleList(nn.Conv2d(config.embed_dim, d, 1) for d in dims)
        self.resize_layers = nn.ModuleList([
            nn.ConvTranspose2d(dims[0], dims[0], 4, stride=4),
            nn.ConvTranspose2d(dims[1], dims[1], 2, stride=2),
            nn.Identity(),
            nn.Conv2d(dims[3], dims[3], 3, stride=2, padding=1),
        ])
        scratch = nn.Module()
        for i, d in enumerate(dims, start=1):
            setattr(scratch, f"layer{i}_rn", nn.Conv2d(d, f, 3, padding=1, bias=False))
        for i in range(1, 5):
            setattr(scratch, f"refinenet{i}", FusionBlock(f, config.prompt))
        scratch.output_conv1 = nn.Conv2d(f, f // 2, 3, padding=1)
        scratch.output_conv2 = nn.Sequential(
            nn.Conv2d(f // 2, config.head_features, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(config.head_features, 1, 1),
            nn.Sigmoid() if config.head == "metric" else nn.ReLU(),
        )
        self.scratch = scratch

    def forward(
        self, tokens: list[torch.Tensor], grid_h: int, grid_w: int,
        prompt: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Normed hook tokens (B, 1+h*w, C) -> the head's activation output (B, 1, H, W)."""
        s = self.scratch
        levels = []
        for i, t in enumerate(tokens):
            grid = t[:, 1:].transpose(1, 2).reshape(t.shape[0], t.shape[-1], grid_h, grid_w)
            levels.append(self.resize_layers[i](self.projects[i](grid)))
        rn = [getattr(s, f"layer{i}_rn")(x) for i, x in enumerate(levels, start=1)]
        del levels  # only their projections are used from here on
        path = s.refinenet4(rn[3], None, rn[2].shape[-2:], prompt)
        path = s.refinenet3(path, rn[2], rn[1].shape[-2:], prompt)
        path = s.refinenet2(path, rn[1], rn[0].shape[-2:], prompt)
        path = s.refinenet1(path, rn[0], None, prompt)
        out = s.output_conv1(path)
        size = (grid_h * self.patch_size, grid_w * self.patch_size)
        out = F.interpolate(out, size=size, mode="bilinear", align_corners=True)
        return s.output_conv2(out)


class DepthAnything(nn.Module):
    """ImageNet-normalised image -> relative inverse depth or metres; see the module doc."""

    def __init__(self, config: DepthAnythingConfig) -> None:
        super().__init__()
        self.config = config
        self.pretrained = VisionTransformer(
            config.embed_dim, config.depth, config.num_heads, config.mlp_hidden,
            config.patch_size, config.pos_grid * config.patch_size, mask_token=True,
        )
        self.depth_head = DPTHead(config)

    def forward(self, x: torch.Tensor, prompt: torch.Tensor | None = None) -> torch.Tensor:
        """Return (B, 1, H, W): relative inverse depth, or metres.

        ``x`` (B, 3, H, W) is ImageNet-normalised RGB, H and W multiples of the patch size.
        ``prompt`` (B, 1, h, w), any size, is the metric depth prompt that a Prompt Depth
        Anything model requires (and others refuse): it is normalised per image by its
        min / max (computed in fp32) and the output denormalised with them. A constant
        prompt (max = min) gives that constant depth everywhere.
        """
        c = self.config
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected an input (B, 3, H, W), got {tuple(x.shape)}")
        height, width = x.shape[-2:]
        if height % c.patch_size or width % c.patch_size or height == 0 or width == 0:
            raise ValueError(f"input height and width must be positive multiples of the "
                             f"patch size {c.patch_size}, got {height}x{width}")
        low = scale = None
        if c.prompt:
            if prompt is None:
                raise ValueError("Prompt Depth Anything needs a prompt: a (B, 1, h, w) metric "
                                 "depth (e.g. a low-resolution LiDAR depth map)")
            if prompt.ndim != 4 or prompt.shape[1] != 1 or prompt.shape[0] != x.shape[0]:
                raise ValueError(f"expected a prompt ({x.shape[0]}, 1, h, w), "
                                 f"got {tuple(prompt.shape)}")
            p = prompt.float().flatten(1)
            low, high = p.min(dim=1).values, p.max(dim=1).values
            low, scale = low.view(-1, 1, 1, 1), (high - low).view(-1, 1, 1, 1)
            safe = torch.where(scale > 0, scale, torch.ones_like(scale))
            prompt = ((prompt.float() - low) / safe).to(x.dtype)
        elif prompt is not None:
            raise ValueError("this Depth Anything model takes no prompt (it is not a Prompt "
                             "Depth Anything model)")
        grid_h, grid_w = height // c.patch_size, width // c.patch_size
        tokens = self.pretrained.intermediate_layers(x, c.hook_block_ids)
        out = self.depth_head(tokens, grid_h, grid_w, prompt)
        if c.prompt:
            return (out.float() * scale + low).to(out.dtype)
        return out * c.max_depth if c.max_depth != 1.0 else out


def create_depth_anything(
    config: DepthAnythingConfig,
    device: str | torch.device = "cpu",
    precision: str | torch.dtype = torch.float32,
) -> DepthAnything:
    """Build a Depth Anything network in eval mode on ``device`` with parameters in
    ``precision`` (PyTorch's default initialisation; ``device="meta"`` allocates nothing)."""
    return build_network(DepthAnything, config, device, precision)
