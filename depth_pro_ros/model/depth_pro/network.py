"""The Depth Pro network: multi-scale ViT encoder, convolutional decoder, depth and FoV heads.

Module and parameter names mirror Apple's release so ``depth_pro.pt`` loads with
``load_state_dict(strict=True)``; see docs/network.md for the architecture facts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..common.config import build_network
from ..common.vit import VisionTransformer, tokens_to_grid
from .config import DepthProConfig

# Cells dropped on every interior edge when merging the 24x24 token grids of overlapping
# tiles: tiles of the full-resolution level overlap by 1/4, those of the half level by 1/2.
MERGE_PAD_FULL = 3
MERGE_PAD_HALF = 6
# Rows of the head's input upsampled at a time (see DepthPro._upsampled_head): 64 of the
# 768 at 1536 x 1536 keep the band's maps near 100 MiB.
HEAD_BAND_ROWS = 64


def _resize(x: torch.Tensor, scale: float) -> torch.Tensor:
    return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)


def split_tiles(x: torch.Tensor, tile: int, stride: int) -> torch.Tensor:
    """Cut (B, C, S, S) into overlapping tiles, rows outer, columns inner, tile-major batch."""
    b, c = x.shape[:2]
    t = x.unfold(2, tile, stride).unfold(3, tile, stride)  # (B, C, rows, cols, tile, tile)
    rows, cols = t.shape[2:4]
    return t.permute(2, 3, 0, 1, 4, 5).reshape(rows * cols * b, c, tile, tile)


def merge_tiles(grids: torch.Tensor, batch: int, pad: int) -> torch.Tensor:
    """Inverse of :func:`split_tiles` on feature grids, dropping ``pad`` cells on interior edges."""
    n = int(round((grids.shape[0] // batch) ** 0.5))
    g = grids.shape[-1]
    tiles = grids.reshape(n, n, batch, *grids.shape[1:])
    rows = []
    for j in range(n):
        top, bottom = (pad if j > 0 else 0), (g - pad if j < n - 1 else g)
        row = [
            tiles[j, i, ..., top:bottom, (pad if i > 0 else 0):(g - pad if i < n - 1 else g)]
            for i in range(n)
        ]
        rows.append(torch.cat(row, dim=-1))
    return torch.cat(rows, dim=-2)


def _project_upsample(dim_in: int, dim_out: int, upsamples: int) -> nn.Sequential:
    """1x1 projection followed by ``upsamples`` 2x transposed convolutions, all without bias."""
    layers: list[nn.Module] = [nn.Conv2d(dim_in, dim_out, 1, bias=False)]
    layers += [
        nn.ConvTranspose2d(dim_out, dim_out, 2, stride=2, bias=False) for _ in range(upsamples)
    ]
    return nn.Sequential(*layers)


def _make_vit(config: DepthProConfig) -> VisionTransformer:
    return VisionTransformer(
        config.embed_dim, config.depth, config.num_heads, config.mlp_hidden,
        config.patch_size, config.vit_image_size,
    )


class Encoder(nn.Module):
    """Patch encoder over the 3-level tiled pyramid plus a global image encoder."""

    def __init__(self, config: DepthProConfig) -> None:
        super().__init__()
        self.hook_block_ids = config.hook_block_ids
        self.tile = config.vit_image_size
        dim, (d0, d1, d2, d3) = config.embed_dim, config.encoder_dims
        self.patch_encoder = _make_vit(config)
        self.image_encoder = _make_vit(config)
        self.upsample_latent0 = _project_upsample(dim, config.decoder_features, 3)
        self.upsample_latent1 = _project_upsample(dim, d0, 2)
        self.upsample0 = _project_upsample(dim, d1, 1)
        self.upsample1 = _project_upsample(dim, d2, 1)
        self.upsample2 = _project_upsample(dim, d3, 1)
        self.upsample_lowres = nn.ConvTranspose2d(dim, d3, 2, stride=2, bias=True)
        self.fuse_lowres = nn.Conv2d(2 * d3, d3, 1, bias=True)

    def forward(
        self, x0: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor
    ) -> list[torch.Tensor]:
        """Encode the pyramid (full, half, quarter resolution) into five feature maps."""
        b, t = x0.shape[0], self.tile
        tiles0 = split_tiles(x0, t, t * 3 // 4)  # 5x5 tiles, 1/4 overlap
        tiles1 = split_tiles(x1, t, t // 2)  # 3x3 tiles, 1/2 overlap
        n0, n1 = tiles0.shape[0], tiles1.shape[0]
        tokens, hooks = self.patch_encoder(torch.cat([tiles0, tiles1, x2]), self.hook_block_ids)
        grids = tokens_to_grid(tokens)
        feat0 = merge_tiles(grids[:n0], b, MERGE_PAD_FULL)
        feat1 = merge_tiles(grids[n0 : n0 + n1], b, MERGE_PAD_HALF)
        feat2 = grids[n0 + n1 :]
        latent0 = merge_tiles(tokens_to_grid(hooks[0][:n0]), b, MERGE_PAD_FULL)
        latent1 = merge_tiles(tokens_to_grid(hooks[1][:n0]), b, MERGE_PAD_FULL)

        image_tokens, _ = self.image_encoder(x2)
        lowres = self.upsample_lowres(tokens_to_grid(image_tokens))
        fused = self.fuse_lowres(torch.cat([self.upsample2(feat2), lowres], dim=1))
        return [
            self.upsample_latent0(latent0),
            self.upsample_latent1(latent1),
            self.upsample0(feat0),
            self.upsample1(feat1),
            fused,
        ]


class ResidualUnit(nn.Module):
    """Pre-activation residual unit: x + conv(relu(conv(relu(x))))."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        # The second ReLU works in place on its convolution's output and the sum goes
        # into the branch's output: two full-size maps fewer (the same numbers).
        self.residual = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(dim, dim, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(dim, dim, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x).add_(x)


class FusionBlock(nn.Module):
    def __init__(self, dim: int, upsample: bool) -> None:
        super().__init__()
        self.resnet1 = ResidualUnit(dim)
        self.resnet2 = ResidualUnit(dim)
        self.deconv = nn.ConvTranspose2d(dim, dim, 2, stride=2, bias=False) if upsample else None
        self.out_conv = nn.Conv2d(dim, dim, 1, bias=True)

    def merge(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """The coarser path plus the skip's residual unit: the input of :meth:`forward`
        (apart, so that the caller drops ``x`` and ``skip`` before the rest runs)."""
        return self.resnet1(skip).add_(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.resnet2(x)
        if self.deconv is not None:
            x = self.deconv(x)
        return self.out_conv(x)


class Decoder(nn.Module):
    """Coarse-to-fine fusion of the five encoder levels into one 256-channel map."""

    def __init__(self, config: DepthProConfig) -> None:
        super().__init__()
        f = config.decoder_features
        dims = [config.encoder_dims[0], *config.encoder_dims]
        self.convs = nn.ModuleList(
            [nn.Identity() if dims[0] == f else nn.Conv2d(dims[0], f, 1, bias=False)]
            + [nn.Conv2d(d, f, 3, padding=1, bias=False) for d in dims[1:]]
        )
        self.fusions = nn.ModuleList(FusionBlock(f, upsample=i != 0) for i in range(len(dims)))

    def forward(self, levels: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the fused features and the projected lowest level (input of the FoV head).

        ``levels`` is emptied: each level is dropped once projected (the finest is a
        full 256-channel map at half the input's resolution).
        """
        lowres = self.convs[-1](levels.pop())
        x = self.fusions[-1](lowres)
        for i in range(len(levels) - 1, -1, -1):
            x = self.fusions[i](self.fusions[i].merge(x, self.convs[i](levels.pop())))
        return x, lowres


class FovHead(nn.Module):
    """Field-of-view regressor: a third ViT on the quarter image plus the decoder's low level."""

    def __init__(self, config: DepthProConfig) -> None:
        super().__init__()
        f = config.decoder_features
        self.encoder = nn.Sequential(_make_vit(config), nn.Linear(config.embed_dim, f // 2))
        self.downsample = nn.Sequential(nn.Conv2d(f, f // 2, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Sequential(
            nn.Conv2d(f // 2, f // 4, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(f // 4, f // 8, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(f // 8, 1, 6),
        )

    def forward(self, x_quarter: torch.Tensor, lowres: torch.Tensor) -> torch.Tensor:
        vit, neck = self.encoder
        tokens, _ = vit(x_quarter)
        x = tokens_to_grid(neck(tokens)) + self.downsample(lowres)
        return self.head(x)


class DepthPro(nn.Module):
    """Image in [-1, 1] at ``config.input_size`` -> canonical inverse depth and FoV (degrees)."""

    def __init__(self, config: DepthProConfig) -> None:
        super().__init__()
        self.config = config
        f = config.decoder_features
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.head = nn.Sequential(
            nn.Conv2d(f, f // 2, 3, padding=1),
            nn.ConvTranspose2d(f // 2, f // 2, 2, stride=2, bias=True),
            nn.Conv2d(f // 2, 32, 3, padding=1),
            nn.ReLU(True),
            nn.Conv2d(32, 1, 1),
            nn.ReLU(),
        )
        self.fov = FovHead(config) if config.use_fov_head else None

    def forward(
        self, x: torch.Tensor, estimate_fov: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return ``(canonical_inverse_depth (B,1,S,S), fov_deg (B,1,1,1) or None)``.

        ``estimate_fov=False`` skips the FoV branch (a third ViT pass) when the focal is known.
        """
        size = self.config.input_size
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[-2:] != (size, size):
            raise ValueError(f"expected input (B, 3, {size}, {size}), got {tuple(x.shape)}")
        x_half, x_quarter = _resize(x, 0.5), _resize(x, 0.25)
        inverse_depth, lowres = self.decoder(self.encoder(x, x_half, x_quarter))
        del x_half
        inverse_depth = self.head[0](inverse_depth)  # the decoder's map is dropped here
        inverse_depth = self._upsampled_head(inverse_depth)
        fov = None
        if estimate_fov and self.fov is not None:
            fov = self.fov(x_quarter, lowres.detach())
        return inverse_depth, fov


    def _upsampled_head(self, x: torch.Tensor) -> torch.Tensor:
        """``self.head[1:]`` (2x transposed convolution, 3x3 convolution, ReLU, 1x1
        convolution, ReLU) on ``x`` in bands of :data:`HEAD_BAND_ROWS` rows.

        Run whole, the upsampled 128-channel map at the input's resolution (1.1 GiB at
        1536 x 1536) and its convolution's working copies are the largest memory of the
        forward pass. The transposed convolution's 2x2 kernel has stride 2, so each band
        of ``x`` gives its own output rows; the 3x3 convolution takes one more row on each
        side (zeros at the image's edges: its padding). Every output value is the same
        sum as the whole map's.
        """
        deconv, conv, relu, out, act = self.head[1:]
        h = x.shape[-2]
        bands = []
        for top in range(0, h, HEAD_BAND_ROWS):
            bottom = min(top + HEAD_BAND_ROWS, h)
            lo, hi = max(top - 1, 0), min(bottom + 1, h)
            y = deconv(x[..., lo:hi, :])  # rows 2 lo .. 2 hi of the upsampled map
            y = y[..., max(2 * top - 1, 0) - 2 * lo : min(2 * bottom + 1, 2 * h) - 2 * lo, :]
            y = F.pad(y, (0, 0, int(top == 0), int(bottom == h)))
            y = F.conv2d(y, conv.weight, conv.bias, padding=(0, 1))
            bands.append(act(out(relu(y))))
        return torch.cat(bands, dim=-2)


def create_model(
    config: DepthProConfig,
    device: str | torch.device = "cpu",
    precision: str | torch.dtype = torch.float32,
) -> DepthPro:
    """Build a Depth Pro network in eval mode on ``device`` with parameters in ``precision``.

    Weights are PyTorch's default initialisation; load a checkpoint for real use. With
    ``device="meta"`` nothing is allocated (used to check names and shapes, and to load
    large checkpoints without a second copy of the weights).
    """
    return build_network(DepthPro, config, device, precision)
