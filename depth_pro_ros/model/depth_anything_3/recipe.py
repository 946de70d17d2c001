"""Depth Anything 3's batch recipe: the released package's input processor and output
rules, on batches on the engine's device, one view per frame.

* Input (``InputProcessor``, ``process_res`` 504, ``upper_bound_resize``): the longer side
  scaled to ``input_size`` (sides rounded half to even), then each side rounded to the
  nearest multiple of 14 (a tie goes up); each of the two resizes is cv2 ``INTER_CUBIC``
  when it enlarges (either side) and ``INTER_AREA`` otherwise, on uint8 pixels (so the
  image is rounded to uint8 after each), then /255 and ImageNet mean / std.
* Output: the depth (larger = farther) resized to the output size (bilinear,
  ``align_corners=True``). DA3MONO's is relative: published as the project's relative
  kind, inverse depth (1 / depth). DA3METRIC's is canonical: metres = focal x depth / 300,
  the focal in pixels *at the network input*, the mean of fx and fy scaled there from the
  frame's (``apply_metric_scaling`` on the intrinsics the input processor rescaled). The
  any-view presets (one view per frame here) give relative depth like DA3MONO, and their
  camera decoder's intrinsics stand in for a FoV head (horizontal FoV = 2 atan(w / 2 fx)).
* Sky (DPT presets): where the sky head's output is >= 0.3 the depth is NaN (REP 118: no
  measurement) unless ``sky_mask`` is off; then, as DA3's own post-processing does, the
  sky takes the 0.99 quantile of the non-sky depth when both parts have over 10 pixels
  (the exact quantile; the reference samples 100,000 pixels beyond that many).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..common.pixels import area_weights, imagenet_normalisation, to_rgb
from ..common.recipe import BatchRecipe, ModelInfo
from .heads import SKY_THRESHOLD
from .hf_layout import mode, variant

__all__ = ["METRIC_FOCAL", "PROCESS_RES", "DepthAnything3Recipe", "input_sizes",
           "make_recipe", "prepare_input"]

PROCESS_RES = 504  # the input processor's default process_res (longer side)
METRIC_FOCAL = 300.0  # DA3METRIC's canonical focal: metres = focal_px x output / 300
_SKY_MIN_PIXELS = 10  # DA3 fills the sky only when sky and non-sky each have more
_SKY_QUANTILE = 0.99


def input_sizes(height: int, width: int, size: int = PROCESS_RES,
                multiple: int = 14) -> tuple[tuple[int, int], tuple[int, int]]:
    """The two resizes of the input processor for a ``height`` x ``width`` image: the
    longer side to ``size``, then each side to the nearest multiple of ``multiple``
    (never below one patch). Returns ((h1, w1), (h2, w2)); (h2, w2) is the network input.
    """
    if height <= 0 or width <= 0 or size <= 0 or multiple <= 0:
        raise ValueError(f"sizes must be positive, got {height}x{width}, size {size}, "
                         f"multiple {multiple}")
    longest = max(height, width)
    if longest == size:
        first = (height, width)
    else:
        scale = size / longest
        first = (max(1, round(height * scale)), max(1, round(width * scale)))

    def nearest(x: int) -> int:
        down = x // multiple * multiple
        return max(multiple, down + multiple if down + multiple - x <= x - down else down)

    return first, (nearest(first[0]), nearest(first[1]))


def _resize_u8(x: torch.Tensor, size: tuple[int, int], enlarge: bool) -> torch.Tensor:
    """(B, 3, H, W) float in [0, 1] at uint8 levels -> ``size``, rounded to uint8 levels
    as cv2 on a uint8 image: bicubic (cv2's a = -0.75 kernel) when enlarging, area else."""
    if tuple(x.shape[-2:]) == size:
        return x
    if enlarge:
        x = F.interpolate(x, size=size, mode="bicubic", align_corners=False)
    else:
        rows = area_weights(x.shape[-2], size[0], x.device)
        cols = area_weights(x.shape[-1], size[1], x.device)
        x = torch.einsum("hH,bcHW,wW->bchw", rows, x, cols)
    return (x * 255.0).round_().clamp_(0.0, 255.0) / 255.0


def prepare_input(rgb: torch.Tensor, size: int = PROCESS_RES,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(B, H, W, 3) uint8 RGB on any device -> the (B, 3, h, w) network input in ``dtype``
    (see the module docstring)."""
    if rgb.ndim != 4 or rgb.shape[-1] != 3 or rgb.dtype != torch.uint8:
        raise ValueError(f"expected uint8 (B, H, W, 3) RGB, got {rgb.dtype} {tuple(rgb.shape)}")
    height, width = rgb.shape[1:3]
    first, second = input_sizes(height, width, size)
    x = rgb.permute(0, 3, 1, 2).float() / 255.0
    x = _resize_u8(x, first, size > max(height, width))
    x = _resize_u8(x, second, second[0] > first[0] or second[1] > first[1])
    mean, std = imagenet_normalisation(x.device)
    return ((x - mean) / std).to(dtype)


class DepthAnything3Recipe(BatchRecipe):
    """Depth Anything 3 on batches of single views; see the module docstring."""

    def __init__(self, model: torch.nn.Module, input_size: int = 0,
                 sky_mask: bool = True) -> None:
        config = model.config
        size = input_size or PROCESS_RES
        if size % config.patch_size or size < config.patch_size:
            raise ValueError(f"input_size must be a positive multiple of {config.patch_size} "
                             f"for Depth Anything 3, got {size}")
        self.patch = config.patch_size
        self.sky = config.sky
        self.sky_mask = sky_mask
        self.metric = config.metric
        self.info = ModelInfo(
            family="depth_anything_3", variant=variant(config),
            kind="metric" if config.metric else "relative",
            has_fov_head=config.camera, needs_focal=config.metric, needs_prompt=False,
            input_size=size,
            description=f"Depth Anything 3 ({variant(config)}, {mode(config)}, input {size})")

    def network_size(self, height: int, width: int) -> tuple[int, int]:
        return input_sizes(height, width, self.info.input_size, self.patch)[1]

    def prepare(self, images, channel_order, dtype):
        return prepare_input(to_rgb(images, channel_order), self.info.input_size, dtype)

    def run(self, network, x, estimate_fov, prompt):
        if prompt is not None:
            raise ValueError("Depth Anything 3 takes no prompt depth")
        out = network(x[:, None])  # one view per frame: (B, V=1, 3, h, w)
        return self.views_output(out, x.shape[-1], estimate_fov)

    def views_output(self, out: dict[str, torch.Tensor], width: int, estimate_fov: bool
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The network's (B, V, ...) outputs -> the raw output of each of the B x V views
        (B V, C, h, w): depth, then sky where the model has it; and, when asked and the
        model has a camera decoder, each view's horizontal FoV in degrees from its fx at
        the network input ``width``. One view per frame and rig mode's joint forward both
        read their views here."""
        channels = [out["depth"].flatten(0, 1)]
        if self.sky:
            channels.append(out["sky"].flatten(0, 1))
        fov = None
        if estimate_fov and "intrinsics" in out:
            fx = out["intrinsics"][..., 0, 0].flatten(0, 1).float()
            fov = torch.rad2deg(2.0 * torch.atan(width / (2.0 * fx)))
        return torch.stack(channels, dim=1), fov

    def output(self, raw, width, height, f_px, out_size):
        raw = raw.float()
        if self.sky and not self.sky_mask:
            raw = torch.cat([_sky_filled(raw[:, 0], raw[:, 1])[:, None], raw[:, 1:]], dim=1)
        if self.metric:
            if f_px is None:
                raise ValueError("DA3METRIC's depth needs a focal length")
            net_h, net_w = raw.shape[-2:]
            focal = f_px.float() * (net_w / width + net_h / height) / 2.0
            raw = torch.cat([raw[:, :1] * (focal / METRIC_FOCAL), raw[:, 1:]], dim=1)
        out = F.interpolate(raw, size=out_size, mode="bilinear", align_corners=True)[0]
        value = out[0] if self.metric else 1.0 / out[0]  # relative: inverse depth
        if self.sky and self.sky_mask:
            value = torch.where(out[1] >= SKY_THRESHOLD, torch.nan, value)
        return value


def _sky_filled(depth: torch.Tensor, sky: torch.Tensor) -> torch.Tensor:
    """DA3's far value for the sky (B, h, w): the non-sky depth's 0.99 quantile where both
    sky and non-sky have over 10 pixels (computed without a host synchronisation)."""
    is_sky = sky >= SKY_THRESHOLD
    ground = torch.where(is_sky, torch.nan, depth).flatten(1)
    far = torch.nanquantile(ground, _SKY_QUANTILE, dim=1).view(-1, 1, 1)
    n_sky = is_sky.flatten(1).sum(1).view(-1, 1, 1)
    enough = (n_sky > _SKY_MIN_PIXELS) & (is_sky[0].numel() - n_sky > _SKY_MIN_PIXELS)
    return torch.where(is_sky & enough, far, depth)


def make_recipe(model: torch.nn.Module, input_size: int = 0,
                sky_mask: bool = True) -> DepthAnything3Recipe:
    """The batch recipe of a Depth Anything 3 network; ``input_size`` (0: 504) bounds the
    longer side, ``sky_mask`` makes sky NaN (else DA3's far value).

    Raises:
        ValueError: an ``input_size`` that is not a positive multiple of the patch size.
    """
    return DepthAnything3Recipe(model, input_size, sky_mask)
