"""What the engine does differently for each model family: input, forward pass, output.

The engine's pipeline (stage, launch, post-process) is the same for every network; a
:class:`BatchRecipe` supplies the family's own steps, on batches and on the engine's
device, with the arithmetic of that family's reference recipe:

* Depth Pro (:mod:`depth_pro_ros.model.inference`): [-1, 1] input bilinearly resized to
  the fixed 1536x1536 square; canonical inverse depth turned into metres with the focal.
* Depth Anything V2 (:mod:`depth_pro_ros.model.depth_anything_recipe`): aspect kept,
  shorter side at least ``input_size`` (518) and both sides multiples of 14, bicubic,
  ImageNet normalisation; the output (metres, or unitless relative inverse depth) is
  resized back with bilinear ``align_corners=True``.
* Prompt Depth Anything: the same, except that the image keeps its size up to a longer
  side of ``input_size`` (1008), is shrunk by area averaging beyond it and floored to
  multiples of 14; it also takes a metric prompt depth (any resolution) per frame.

No focal is needed for a Depth Anything depth itself, only for points and CameraInfo.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from depth_pro_ros.engine.preprocess import prepare_input, to_rgb
from depth_pro_ros.model import DepthAnything, DepthPro, DepthProConfig
from depth_pro_ros.model.depth_anything import (
    depth_anything_input_size,
    prepare_depth_anything_input,
    prompt_depth_anything_input_size,
)
from depth_pro_ros.model.depth_anything_recipe import PROMPT_MAX_SIZE
from depth_pro_ros.model.inference import metric_depth

__all__ = ["BatchRecipe", "ModelInfo", "recipe_for"]

#: Output kinds: depth in metres, or unitless affine-invariant inverse depth.
KINDS = ("metric", "relative")


@dataclass(frozen=True)
class ModelInfo:
    """What a loaded network is and needs (diagnostics, summaries, start-up checks).

    ``needs_focal``: the depth itself needs a focal length (Depth Pro); the others need
    one only for points and ``depth/camera_info``. ``input_size``: Depth Pro's fixed
    square side, Depth Anything V2's lower bound on the shorter side, or Prompt Depth
    Anything's upper bound on the longer side.
    """

    family: str  # depth_pro, depth_anything_v2, prompt_depth_anything
    variant: str  # vitl16 (Depth Pro) or vits / vitb / vitl; "custom" for other sizes
    kind: str  # metric or relative
    has_fov_head: bool
    needs_focal: bool
    needs_prompt: bool
    input_size: int
    max_depth: float | None = None  # metric Depth Anything: the sigmoid's range, metres

    @property
    def description(self) -> str:
        """e.g. ``Depth Anything V2 (vits, metric up to 20 m, input 518)``."""
        name = {"depth_pro": "Depth Pro", "depth_anything_v2": "Depth Anything V2",
                "prompt_depth_anything": "Prompt Depth Anything"}[self.family]
        if self.family == "depth_pro":
            return (f"{name} ({self.variant}, {self.input_size}x{self.input_size} input"
                    f"{', FoV head' if self.has_fov_head else ', no FoV head'})")
        kind = self.kind
        if self.family == "depth_anything_v2" and self.max_depth is not None:
            kind += f" up to {self.max_depth:g} m"
        if self.needs_prompt:
            kind += " from a prompt depth"
        return f"{name} ({self.variant}, {kind}, input {self.input_size})"


class BatchRecipe:
    """One family's steps on a batch; see the module docstring."""

    info: ModelInfo

    def network_size(self, height: int, width: int) -> tuple[int, int]:
        """The network input size (h, w) for an image of ``height`` x ``width``."""
        raise NotImplementedError

    def prepare(self, images: torch.Tensor, channel_order: str,
                dtype: torch.dtype) -> torch.Tensor:
        """(B, H, W, C) uint8 on the device -> the network input in ``dtype``."""
        raise NotImplementedError

    def run(self, network, x: torch.Tensor, estimate_fov: bool,
            prompt: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The forward pass: (raw output (B, 1, h, w), FoV in degrees (B, ...) or None)."""
        raise NotImplementedError

    def output(self, raw: torch.Tensor, width: int, height: int,
               f_px: torch.Tensor | None, out_size: tuple[int, int]) -> torch.Tensor:
        """One frame's raw output (1, 1, h, w) -> (oh, ow) float32 at ``out_size``: metres
        (``info.kind`` metric) or relative inverse depth. ``f_px`` (1,) is the focal at
        ``width``; only families with ``info.needs_focal`` use it."""
        raise NotImplementedError


class DepthProRecipe(BatchRecipe):
    def __init__(self, model: DepthPro) -> None:
        config = model.config
        released = config == DepthProConfig.depth_pro() or config == DepthProConfig(
            use_fov_head=False)
        self.info = ModelInfo(
            family="depth_pro", variant="vitl16" if released else "custom", kind="metric",
            has_fov_head=model.fov is not None, needs_focal=True, needs_prompt=False,
            input_size=config.input_size)

    def network_size(self, height: int, width: int) -> tuple[int, int]:
        return self.info.input_size, self.info.input_size

    def prepare(self, images, channel_order, dtype):
        return prepare_input(images, channel_order, self.info.input_size, dtype)

    def run(self, network, x, estimate_fov, prompt):
        return network(x, estimate_fov=estimate_fov)

    def output(self, raw, width, height, f_px, out_size):
        return metric_depth(raw, width, height, f_px, out_size)[0]


class DepthAnythingRecipe(BatchRecipe):
    def __init__(self, model: DepthAnything, input_size: int = 0) -> None:
        config = model.config
        default = PROMPT_MAX_SIZE if config.prompt else config.default_input_size
        size = input_size or default
        if size % config.patch_size or size < config.patch_size:
            raise ValueError(f"input_size must be a positive multiple of "
                             f"{config.patch_size} for {config.family}, got {size}")
        self.patch = config.patch_size
        self.info = ModelInfo(
            family=config.family, variant=config.variant, kind=config.kind,
            has_fov_head=False, needs_focal=False, needs_prompt=config.prompt,
            input_size=size,
            max_depth=float(config.max_depth) if config.head == "metric" else None)

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


def recipe_for(model: torch.nn.Module, input_size: int = 0) -> BatchRecipe:
    """The batch recipe of ``model``'s family. ``input_size`` (0 = the family's default)
    is Depth Anything's shorter-side bound; Depth Pro's input is fixed.

    Raises:
        ValueError: an ``input_size`` the family cannot use.
    """
    if isinstance(model, DepthAnything):
        return DepthAnythingRecipe(model, input_size)
    if isinstance(model, DepthPro):
        if input_size not in (0, model.config.input_size):
            raise ValueError(f"input_size is fixed at {model.config.input_size} for Depth "
                             f"Pro (set it to 0), got {input_size}")
        return DepthProRecipe(model)
    raise TypeError(f"not a depth network of this project: {type(model).__name__}")
