"""The batch recipe: what the engine runs differently for each model family.

The engine's pipeline (stage, launch, post-process) is the same for every network; a
:class:`BatchRecipe` supplies the family's own steps, on batches and on the engine's
device, with the arithmetic of that family's reference implementation (each family's
``reference.py``, which defines correct output for one image). Each family folder holds
its recipe (``recipe.py``); :func:`depth_pro_ros.model.registry.recipe_for` picks it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["KINDS", "BatchRecipe", "ModelInfo"]

#: Output kinds: depth in metres, or unitless affine-invariant inverse depth.
KINDS = ("metric", "relative")


@dataclass(frozen=True)
class ModelInfo:
    """What a loaded network is and needs (diagnostics, summaries, start-up checks).

    ``family``: one of the registry's ``FAMILIES``. ``needs_focal``: the depth itself needs
    a focal length (Depth Pro); the others need one only for points and
    ``depth/camera_info``. ``input_size``: the family's size bound (Depth Pro's fixed
    square side, Depth Anything V2's lower bound on the shorter side, Prompt Depth
    Anything's upper bound on the longer side). ``description``: for messages, e.g.
    ``Depth Anything V2 (vits, metric up to 20 m, input 518)``.
    """

    family: str
    variant: str  # vitl16 (Depth Pro) or vits / vitb / vitl; "custom" for other sizes
    kind: str  # one of KINDS
    has_fov_head: bool
    needs_focal: bool
    needs_prompt: bool
    input_size: int
    max_depth: float | None = None  # metric Depth Anything: the sigmoid's range, metres
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")


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

    def run(self, network: nn.Module, x: torch.Tensor, estimate_fov: bool,
            prompt: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The forward pass: (raw output (B, 1, h, w), FoV in degrees (B, ...) or None)."""
        raise NotImplementedError

    def output(self, raw: torch.Tensor, width: int, height: int,
               f_px: torch.Tensor | None, out_size: tuple[int, int]) -> torch.Tensor:
        """One frame's raw output (1, 1, h, w) -> (oh, ow) float32 at ``out_size``: metres
        (``info.kind`` metric) or relative inverse depth. ``f_px`` (1,) is the focal at
        ``width``; only families with ``info.needs_focal`` use it."""
        raise NotImplementedError
