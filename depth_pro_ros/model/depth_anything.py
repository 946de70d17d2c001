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

This module also holds the device-side input preparation (pure torch) that the streaming
engine runs on batches; the host-side reference recipe is :mod:`.depth_anything_recipe`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import DictConfig, parse_precision
from .vit import VisionTransformer

HEADS = ("relative", "metric")
FAMILIES = ("depth_anything_v2", "prompt_depth_anything")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The released encoders: ViT dims, the hooked blocks (0-based) and the decoder widths.
RELEASED = {
    "vits": dict(embed_dim=384, depth=12, num_heads=6, hook_block_ids=(2, 5, 8, 11),
                 neck_dims=(48, 96, 192, 384), fusion_features=64),
    "vitb": dict(embed_dim=768, depth=12, num_heads=12, hook_block_ids=(2, 5, 8, 11),
                 neck_dims=(96, 192, 384, 768), fusion_features=128),
    "vitl": dict(embed_dim=1024, depth=24, num_heads=16, hook_block_ids=(4, 11, 17, 23),
                 neck_dims=(256, 512, 1024, 1024), fusion_features=256),
}
# Heads per released ViT width (the checkpoints do not store the head count).
RELEASED_HEADS = {spec["embed_dim"]: spec["num_heads"] for spec in RELEASED.values()}
# The metric releases' ranges in metres: Hypersim (indoor) and Virtual KITTI 2 (outdoor).
MAX_DEPTH_INDOOR = 20.0
MAX_DEPTH_OUTDOOR = 80.0


@dataclass(frozen=True)
class DepthAnythingConfig(DictConfig):
    """Size and output of a Depth Anything network.

    ``pos_grid`` is the side of the stored position-embedding grid (518 / 14 = 37 for the
    releases); other input sizes get it resampled. ``hook_block_ids`` are the 0-based ViT
    blocks fed to the decoder. ``head`` is ``relative`` (ReLU: affine-invariant inverse
    depth) or ``metric`` (sigmoid times ``max_depth`` metres). ``prompt`` adds Prompt
    Depth Anything's prompt branches; such a model's output is denormalised with the
    prompt's per-image range instead of ``max_depth`` (which must stay 1).
    """

    embed_dim: int = 384
    depth: int = 12
    num_heads: int = 6
    mlp_ratio: float = 4.0
    patch_size: int = 14
    pos_grid: int = 37
    hook_block_ids: tuple[int, int, int, int] = (2, 5, 8, 11)
    neck_dims: tuple[int, int, int, int] = (48, 96, 192, 384)
    fusion_features: int = 64
    head_features: int = 32
    head: str = "relative"
    max_depth: float = 1.0
    prompt: bool = False

    def __post_init__(self) -> None:
        # Lists (from JSON) become tuples so configs compare and hash cleanly.
        object.__setattr__(self, "hook_block_ids", tuple(int(i) for i in self.hook_block_ids))
        object.__setattr__(self, "neck_dims", tuple(int(d) for d in self.neck_dims))
        object.__setattr__(self, "mlp_ratio", float(self.mlp_ratio))
        object.__setattr__(self, "max_depth", float(self.max_depth))
        object.__setattr__(self, "prompt", bool(self.prompt))
        problems = self._problems()
        if problems:
            raise ValueError("invalid DepthAnythingConfig: " + "; ".join(problems))

    def _problems(self) -> list[str]:
        out = []
        ints = ("embed_dim", "depth", "num_heads", "patch_size", "pos_grid",
                "fusion_features", "head_features")
        if any(not isinstance(getattr(self, k), int) or getattr(self, k) <= 0 for k in ints):
            out.append(f"{', '.join(ints)} must be positive ints")
        elif self.embed_dim % self.num_heads:
            out.append(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if isinstance(self.fusion_features, int) and self.fusion_features % 2:
            out.append(f"fusion_features must be even (the head halves it), "
                       f"got {self.fusion_features}")
        hooks = self.hook_block_ids
        if (len(hooks) != 4 or any(b <= a for a, b in zip(hooks, hooks[1:]))
                or not all(0 <= i < self.depth for i in hooks)):
            out.append(f"hook_block_ids must be 4 increasing block indices below depth "
                       f"{self.depth}, got {hooks}")
        if len(self.neck_dims) != 4 or min(self.neck_dims, default=0) <= 0:
            out.append(f"neck_dims must be 4 positive ints, got {self.neck_dims}")
        if not (self.mlp_ratio > 0 and int(self.embed_dim * self.mlp_ratio) > 0):
            out.append("mlp_ratio must be positive")
        if self.head not in HEADS:
            out.append(f"head must be one of {HEADS}, got {self.head!r}")
        if not (math.isfinite(self.max_depth) and self.max_depth > 0):
            out.append(f"max_depth must be a positive number of metres, got {self.max_depth}")
        elif self.prompt and self.max_depth != 1.0:
            out.append("max_depth does not apply to prompt models (their output is scaled "
                       f"by the prompt's range): leave it at 1, got {self.max_depth}")
        return out

    @property
    def family(self) -> str:
        return "prompt_depth_anything" if self.prompt else "depth_anything_v2"

    @property
    def variant(self) -> str:
        """``vits`` / ``vitb`` / ``vitl`` when the ViT is a released one, else ``custom``."""
        for name, spec in RELEASED.items():
            if ((self.embed_dim, self.depth, self.num_heads) ==
                    (spec["embed_dim"], spec["depth"], spec["num_heads"])
                    and self.patch_size == 14 and self.mlp_ratio == 4.0):
                return name
        return "custom"

    @property
    def kind(self) -> str:
        """``metric`` (metres) or ``relative`` (affine-invariant inverse depth)."""
        return "metric" if self.head == "metric" or self.prompt else "relative"

    @property
    def mlp_hidden(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)

    @property
    def default_input_size(self) -> int:
        """The training size (518 for the releases): the V2 recipe's shorter-side bound."""
        return self.pos_grid * self.patch_size

    @classmethod
    def _released(cls, name: str, head: str | None, max_depth: float,
                  prompt: bool) -> DepthAnythingConfig:
        return cls(**RELEASED[name], head=head or ("metric" if prompt else "relative"),
                   max_depth=max_depth, prompt=prompt)

    @classmethod
    def vits(cls, head: str | None = None, max_depth: float = 1.0,
             prompt: bool = False) -> DepthAnythingConfig:
        """ViT-S (24.8 M parameters). ``head`` None: ``relative``, or ``metric`` for a
        prompt model (the Prompt Depth Anything release has a sigmoid head)."""
        return cls._released("vits", head, max_depth, prompt)

    @classmethod
    def vitb(cls, head: str | None = None, max_depth: float = 1.0,
             prompt: bool = False) -> DepthAnythingConfig:
        """ViT-B (97.5 M parameters); ``head`` as for :meth:`vits`."""
        return cls._released("vitb", head, max_depth, prompt)

    @classmethod
    def vitl(cls, head: str | None = None, max_depth: float = 1.0,
             prompt: bool = False) -> DepthAnythingConfig:
        """ViT-L (335.3 M parameters); ``head`` as for :meth:`vits`."""
        return cls._released("vitl", head, max_depth, prompt)

    @classmethod
    def tiny(cls, head: str | None = None, max_depth: float = 1.0,
             prompt: bool = False) -> DepthAnythingConfig:
        """A ~0.5 MB random-weight model for fast tests (native input 56 x 56)."""
        return cls(
            embed_dim=32, depth=4, num_heads=2, pos_grid=4, hook_block_ids=(0, 1, 2, 3),
            neck_dims=(8, 12, 16, 24), fusion_features=16, head_features=8,
            head=head or ("metric" if prompt else "relative"), max_depth=max_depth,
            prompt=prompt,
        )


class ResidualConvUnit(nn.Module):
    """Pre-activation residual unit: x + conv2(relu(conv1(relu(x))))."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    """One refinenet: merge the coarser path with a skip, add the prompt, upsample, project."""

    def __init__(self, features: int, prompt: bool) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1)
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
    dtype = parse_precision(precision)
    with torch.device(device):
        model = DepthAnything(config)
    return model.to(dtype=dtype).eval()


def depth_anything_input_size(
    height: int, width: int, input_size: int = 518, multiple: int = 14
) -> tuple[int, int]:
    """The network input (h, w) of the Depth Anything V2 recipe for a height x width image.

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
    height: int, width: int, max_size: int = 1008, multiple: int = 14
) -> tuple[int, int]:
    """The network input (h, w) of the original Prompt Depth Anything recipe.

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


def area_weights(n_in: int, n_out: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(n_out, n_in) weights of a shrinking area resize along one axis: output pixel i is
    the mean of the input over [i, i + 1) * n_in / n_out, each input pixel weighted by the
    length it covers (what cv2 ``INTER_AREA`` computes when it shrinks by a non-integer
    factor, and a plain box average for an integer one)."""
    if not 0 < n_out <= n_in:
        raise ValueError(f"area resize shrinks: need 0 < n_out <= n_in, got {n_out}, {n_in}")
    scale = n_in / n_out
    edges = torch.arange(n_out + 1, dtype=torch.float64, device=device) * scale
    pixels = torch.arange(n_in, dtype=torch.float64, device=device)
    lo = torch.maximum(edges[:-1, None], pixels[None, :])
    hi = torch.minimum(edges[1:, None], pixels[None, :] + 1.0)
    return ((hi - lo).clamp_(min=0.0) / scale).float()


def prepare_depth_anything_input(
    rgb: torch.Tensor, size: tuple[int, int], dtype: torch.dtype = torch.float32,
    interpolation: str = "bicubic",
) -> torch.Tensor:
    """(B, H, W, 3) uint8 RGB on any device -> the (B, 3, h, w) network input in ``dtype``.

    The family's recipe on the device: x / 255 in fp32, resize to ``size``, ImageNet
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
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return ((x - mean) / std).to(dtype)
