"""The Depth Anything family's batch recipe: the reference's arithmetic on batches.

* Depth Anything V2: aspect kept, shorter side at least ``input_size`` (518) and both
  sides multiples of 14, bicubic, ImageNet normalisation; the output (metres, or unitless
  relative inverse depth) is resized back with bilinear ``align_corners=True``.
* Prompt Depth Anything: the same, except that the image keeps its size up to a longer
  side of ``input_size`` (1008), is shrunk by area averaging beyond it and floored to
  multiples of 14; it also takes a metric prompt depth (any resolution) per frame.

No focal is needed for a Depth Anything depth itself, only for points and CameraInfo.
"""

from __future__ import annotations

import torch.nn.functional as F

from ..common.pixels import to_rgb
from ..common.recipe import BatchRecipe, ModelInfo
from .network import DepthAnything
from .preprocess import (
    PROMPT_MAX_SIZE,
    depth_anything_input_size,
    prepare_depth_anything_input,
    prompt_depth_anything_input_size,
)

__all__ = ["DepthAnythingRecipe", "make_recipe"]


class DepthAnythingRecipe(BatchRecipe):
    """Depth Anything V2 or Prompt Depth Anything on batches; see the module docstring."""

    def __init__(self, model: DepthAnything, input_size: int = 0) -> None:
        config = model.config
        default = PROMPT_MAX_SIZE if config.prompt else config.default_input_size
        size = input_size or default
        if size % config.patch_size or size < config.patch_size:
            raise ValueError(f"input_size must be a positive multiple of "
                             f"{config.patch_size} for {config.release}, got {size}")
        self.patch = config.patch_size
        max_depth = float(config.max_depth) if config.head == "metric" else None
        self.info = ModelInfo(
            family="depth_anything", variant=config.variant, kind=config.kind,
            has_fov_head=False, needs_focal=False, needs_prompt=config.prompt,
            input_size=size, max_depth=max_depth,
            description=_description(config.prompt, config.variant, config.kind,
                                     max_depth, size))

    def network_size(self, height: int, width: int) -> tuple[int, int]:
        if self.info.needs_prompt:
            return prompt_depth_anything_input_size(height, width, self.info.input_size,
                                                    self.patch)
        return depth_anything_input_size(height, width, self.info.input_size, self.patch)

    def prepare(self, images, channel_order, dtype):
        rgb = to_rgb(images, channel_order)
        return prepare_depth_anything_input(
            rgb, self.network_size(*rgb.shape[1:3]), dtype,
            interpolation="area" if self.info.needs_prompt else "bicubic")

    def run(self, network, x, estimate_fov, prompt):
        if not self.info.needs_prompt:
            return network(x), None
        if prompt is None:
            raise ValueError("Prompt Depth Anything needs a prompt depth for every frame")
        return network(x, prompt=prompt), None  # fp32: the network normalises it in fp32

    def output(self, raw, width, height, f_px, out_size):
        return F.interpolate(raw.float(), size=out_size, mode="bilinear",
                             align_corners=True)[0, 0]


def _description(prompt: bool, variant: str, kind: str, max_depth: float | None,
                 size: int) -> str:
    """e.g. ``Depth Anything V2 (vits, metric up to 20 m, input 518)``."""
    if prompt:
        return f"Prompt Depth Anything ({variant}, {kind} from a prompt depth, input {size})"
    if max_depth is not None:
        kind += f" up to {max_depth:g} m"
    return f"Depth Anything V2 ({variant}, {kind}, input {size})"


def make_recipe(model: DepthAnything, input_size: int = 0,
                sky_mask: bool = True) -> DepthAnythingRecipe:
    """The batch recipe of ``model``; ``input_size`` (0: the release's) is V2's
    shorter-side bound or Prompt Depth Anything's longer-side limit. ``sky_mask``: unused
    (no sky head).

    Raises:
        ValueError: an ``input_size`` that is not a positive multiple of the patch size.
    """
    return DepthAnythingRecipe(model, input_size)
