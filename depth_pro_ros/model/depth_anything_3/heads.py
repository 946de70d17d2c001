"""Depth Anything 3's dense heads: the monocular DPT head (depth and sky) and the any-view
DualDPT head (depth and confidence, plus a ray map and its confidence).

Both are the DPT decoder of Depth Anything V2 (reassemble, 3x3 projections, four fusion
blocks from coarse to fine; its blocks are :mod:`..common.dpt`'s)
with DA3's outputs. Facts taken from the released ``depth-anything-3`` package (0.1.1):

* Monocular ``DPT`` (da3mono / da3metric): no token norm, no position embedding; one
  output channel through ``exp`` (depth, larger = farther) and a one-channel sky head
  (``sky_output_conv2``, the same stack) through ReLU; sky is where it is >= 0.3.
* ``DualDPT`` (any-view): a LayerNorm on the tokens, a sine-cosine UV embedding (x 0.1)
  added after each projection and before each output stack; two output channels (depth
  through ``exp``, confidence through ``exp + 1``); a second fusion chain of its own
  (``refinenet*_aux``) whose finest level, after five 3x3 convolutions, gives 7 channels:
  a 6-channel ray map (linear) and its confidence (``exp + 1``), at 8 / 14 of the input
  size. The release stores four levels of that stack; only the last one is ever used,
  so only it runs here (the others are kept so that the release's keys load). The four
  share one LayerNorm (the release builds it once).

Parameter names are the release's (``head.*`` without the leading ``model.``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..common.dpt import FusionBlock

__all__ = ["SKY_THRESHOLD", "DPTHead", "DualDPTHead", "uv_embedding"]

SKY_THRESHOLD = 0.3  # compute_sky_mask: sky where the sky head's output is >= 0.3
_HEAD_FEATURES = 32  # the output stacks' hidden width (fixed in the release)
_AUX_LEVELS = 4  # DualDPT's stored ray stacks, one per fusion level; the last is used
_RAY_CHANNELS = 7  # 6 ray components + 1 confidence
_POS_RATIO = 0.1  # the UV embedding's weight
_OMEGA_0 = 100.0  # the UV embedding's base frequency


class _ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map (the release permutes around it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _output_stack(f_in: int, out: int, norm: nn.Module | None = None) -> nn.Sequential:
    """3x3 conv to 32, (``norm``), ReLU, 1x1 conv to ``out``. With ``norm`` the release's
    indices are conv 0, norm 2, conv 5 (its Permute modules sit at 1 and 3)."""
    conv = nn.Conv2d(f_in, _HEAD_FEATURES, 3, padding=1)
    last = nn.Conv2d(_HEAD_FEATURES, out, 1)
    if norm is not None:
        return nn.Sequential(conv, nn.Identity(), norm, nn.Identity(), nn.ReLU(), last)
    return nn.Sequential(conv, nn.ReLU(), last)


def _fusion_chain(owner: nn.Module, features: int, suffix: str = "") -> None:
    """refinenet1..4 (+ ``suffix``) on ``owner``. refinenet4 has no lateral input: the
    release stores no ``resConfUnit1`` for it."""
    for i in range(1, 5):
        setattr(owner, f"refinenet{i}{suffix}", FusionBlock(features, prompt=False,
                                                            lateral=i != 4))


def uv_embedding(height: int, width: int, channels: int, image_hw: tuple[int, int],
                 device: torch.device) -> torch.Tensor:
    """DA3's UV position embedding (1, channels, height, width), float32, times 0.1.

    For an image of ``image_hw`` = (H, W) the grid spans (-a, a) x (-b, b) with
    a = W / sqrt(W^2 + H^2), b = H / sqrt(W^2 + H^2) (the reference's aspect / sqrt(aspect^2
    + 1)), sampled at pixel centres ((n - 1) / n of the span at the ends); x and y each get
    ``channels / 2`` sine-cosine channels with frequencies 100^(-k / (channels / 4)). Cached
    per size and device (the same for every frame; never modify it in place); sizes that
    are symbolic (an ONNX export's dynamic shapes) are computed with tensor operations.
    """
    if all(type(v) is int for v in (height, width, *image_hw)):
        return _cached_uv_embedding(height, width, channels, tuple(image_hw), device)
    return _uv_embedding(height, width, channels, image_hw, device)


@functools.lru_cache(maxsize=16)
def _cached_uv_embedding(height: int, width: int, channels: int, image_hw: tuple[int, int],
                         device: torch.device) -> torch.Tensor:
    return _uv_embedding(height, width, channels, image_hw, device)


def _uv_embedding(height: int, width: int, channels: int, image_hw: tuple[int, int],
                  device: torch.device) -> torch.Tensor:
    image_h, image_w = image_hw
    diag = torch.full((), image_w * image_w + image_h * image_h, dtype=torch.float32,
                      device=device).sqrt()

    def axis(n: int, extent: int) -> torch.Tensor:
        # linspace(-s (n - 1) / n, s (n - 1) / n, n) with s = extent / diag
        steps = torch.arange(n, dtype=torch.float32, device=device) * 2 - (n - 1)
        return steps * (extent / n) / diag

    quarter = channels // 4
    omega = 1.0 / _OMEGA_0 ** (torch.arange(quarter, dtype=torch.float32, device=device)
                               / quarter)

    def sincos(pos: torch.Tensor) -> torch.Tensor:
        angles = pos[:, None] * omega[None]
        return torch.cat([angles.sin(), angles.cos()], dim=1)  # (n, channels / 2)

    ex = sincos(axis(width, image_w))[None, :, :].expand(height, width, -1)
    ey = sincos(axis(height, image_h))[:, None, :].expand(height, width, -1)
    return (torch.cat([ex, ey], dim=-1) * _POS_RATIO).permute(2, 0, 1)[None].contiguous()


class _DPTBase(nn.Module):
    """Reassemble (1x1 projection, x4 / x2 / x1 / x0.5) and the 3x3 projections to
    ``features``; the subclasses add their fusion chains and outputs."""

    def __init__(self, dim_in: int, features: int, out_channels: Sequence[int],
                 patch_size: int, pos_embed: bool) -> None:
        super().__init__()
        if len(out_channels) != 4:
            raise ValueError(f"a DPT head takes 4 levels, got out_channels {out_channels}")
        self.patch_size = patch_size
        self.pos_embed = pos_embed
        self.projects = nn.ModuleList(nn.Conv2d(dim_in, c, 1) for c in out_channels)
        self.resize_layers = nn.ModuleList([
            nn.ConvTranspose2d(out_channels[0], out_channels[0], 4, stride=4),
            nn.ConvTranspose2d(out_channels[1], out_channels[1], 2, stride=2),
            nn.Identity(),
            nn.Conv2d(out_channels[3], out_channels[3], 3, stride=2, padding=1),
        ])
        self.scratch = nn.Module()
        for i, c in enumerate(out_channels, start=1):
            setattr(self.scratch, f"layer{i}_rn", nn.Conv2d(c, features, 3, padding=1,
                                                           bias=False))

    def _add_pos(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        if not self.pos_embed:
            return x
        pe = uv_embedding(x.shape[-2], x.shape[-1], x.shape[1], (height, width), x.device)
        return x + pe.to(x.dtype)

    def _levels(self, feats: Sequence[torch.Tensor], height: int,
                width: int) -> list[torch.Tensor]:
        """Patch tokens (B, h*w, C) of 4 layers -> the 4 levels after layerN_rn."""
        if len(feats) != 4:
            raise ValueError(f"a DPT head takes 4 layers' tokens, got {len(feats)}")
        gh, gw = height // self.patch_size, width // self.patch_size
        levels = []
        for i, tokens in enumerate(feats):
            if tokens.ndim != 3 or tokens.shape[1] != gh * gw:
                raise ValueError(f"expected patch tokens (B, {gh * gw}, C) for a {height}x"
                                 f"{width} input, got {tuple(tokens.shape)}")
            x = self._norm(tokens).transpose(1, 2).reshape(tokens.shape[0], -1, gh, gw)
            x = self._add_pos(self.projects[i](x), height, width)
            x = self.resize_layers[i](x)
            levels.append(getattr(self.scratch, f"layer{i + 1}_rn")(x))
        return levels

    def _norm(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens

    def _fuse(self, rn: list[torch.Tensor], suffix: str = "") -> torch.Tensor:
        """The fusion chain ``refinenet*{suffix}`` from coarse to fine."""
        s = self.scratch
        path = getattr(s, f"refinenet4{suffix}")(rn[3], None, rn[2].shape[-2:])
        path = getattr(s, f"refinenet3{suffix}")(path, rn[2], rn[1].shape[-2:])
        path = getattr(s, f"refinenet2{suffix}")(path, rn[1], rn[0].shape[-2:])
        return getattr(s, f"refinenet1{suffix}")(path, rn[0], None)

    def _upsample(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        size = (height // self.patch_size * self.patch_size,
                width // self.patch_size * self.patch_size)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


class DPTHead(_DPTBase):
    """The monocular head: ``{"depth": (B, H, W), "sky": (B, H, W)}``; see the module doc."""

    def __init__(self, dim_in: int, features: int, out_channels: Sequence[int],
                 patch_size: int = 14) -> None:
        super().__init__(dim_in, features, out_channels, patch_size, pos_embed=False)
        _fusion_chain(self.scratch, features)
        self.scratch.output_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
        self.scratch.output_conv2 = _output_stack(features // 2, 1)
        self.scratch.sky_output_conv2 = _output_stack(features // 2, 1)

    def forward(self, feats: Sequence[torch.Tensor], height: int,
                width: int) -> dict[str, torch.Tensor]:
        """Patch tokens (B, h*w, C) of the 4 hooked layers of a ``height`` x ``width``
        input -> depth (``exp``) and sky (ReLU), each (B, H, W)."""
        s = self.scratch
        fused = self._fuse(self._levels(feats, height, width))
        neck = self._upsample(s.output_conv1(fused), height, width)
        return {"depth": s.output_conv2(neck)[:, 0].exp(),
                "sky": F.relu(s.sky_output_conv2(neck)[:, 0])}


class DualDPTHead(_DPTBase):
    """The any-view head: ``{"depth", "depth_conf": (B, H, W), "ray": (B, h, w, 6),
    "ray_conf": (B, h, w)}`` with h, w = 8 / 14 of H, W; see the module doc."""

    def __init__(self, dim_in: int, features: int, out_channels: Sequence[int],
                 patch_size: int = 14) -> None:
        super().__init__(dim_in, features, out_channels, patch_size, pos_embed=True)
        self.norm = nn.LayerNorm(dim_in)
        s, half = self.scratch, features // 2
        _fusion_chain(s, features)
        s.output_conv1 = nn.Conv2d(features, half, 3, padding=1)
        s.output_conv2 = _output_stack(half, 2)
        _fusion_chain(s, features, "_aux")
        s.output_conv1_aux = nn.ModuleList(
            nn.Sequential(nn.Conv2d(features, half, 3, padding=1),
                          nn.Conv2d(half, features, 3, padding=1),
                          nn.Conv2d(features, half, 3, padding=1),
                          nn.Conv2d(half, features, 3, padding=1),
                          nn.Conv2d(features, half, 3, padding=1))
            for _ in range(_AUX_LEVELS))
        # One LayerNorm in all four stacks, as in the release: its file (safetensors'
        # save_model) stores it once, as output_conv2_aux.0.2.
        shared = _ChannelNorm(_HEAD_FEATURES)
        s.output_conv2_aux = nn.ModuleList(
            _output_stack(half, _RAY_CHANNELS, norm=shared) for _ in range(_AUX_LEVELS))

    def _norm(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.norm(tokens)

    def forward(self, feats: Sequence[torch.Tensor], height: int,
                width: int, rays: bool = True) -> dict[str, torch.Tensor]:
        """Patch tokens (B, h*w, C) of the 4 hooked layers -> depth and confidence at the
        input size, and with ``rays`` the ray map and its confidence at the finest fusion
        level (the network, which takes cameras from its decoder, skips them: about a
        fifth of DA3-SMALL's CPU forward)."""
        s = self.scratch
        rn = self._levels(feats, height, width)
        main = self._upsample(s.output_conv1(self._fuse(rn)), height, width)
        logits = s.output_conv2(self._add_pos(main, height, width))
        if not rays:
            return {"depth": logits[:, 0].exp(), "depth_conf": logits[:, 1].exp() + 1.0}
        aux = s.output_conv1_aux[-1](self._fuse(rn, "_aux"))
        rays = s.output_conv2_aux[-1](self._add_pos(aux, height, width))
        return {"depth": logits[:, 0].exp(), "depth_conf": logits[:, 1].exp() + 1.0,
                "ray": rays[:, :-1].permute(0, 2, 3, 1), "ray_conf": rays[:, -1].exp() + 1.0}
