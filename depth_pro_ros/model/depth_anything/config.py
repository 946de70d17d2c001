"""Size and output of a Depth Anything network (V2 relative and metric, Prompt Depth
Anything), and the released variants."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..common.config import DictConfig
from ..common.limits import check_fields, check_parameters, vit_parameters

__all__ = ["HEADS", "MAX_DEPTH_INDOOR", "MAX_DEPTH_OUTDOOR", "PATCH_SIZE", "RELEASED",
           "RELEASED_HEADS", "DepthAnythingConfig"]

PATCH_SIZE = 14  # DINOv2's patch: every input side is a multiple of it
HEADS = ("relative", "metric")

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
    patch_size: int = PATCH_SIZE
    pos_grid: int = 37
    hook_block_ids: tuple[int, int, int, int] = (2, 5, 8, 11)
    neck_dims: tuple[int, int, int, int] = (48, 96, 192, 384)
    fusion_features: int = 64
    head_features: int = 32
    head: str = "relative"
    max_depth: float = 1.0
    prompt: bool = False

    def __post_init__(self) -> None:
        # Types and sizes first (a checkpoint's config is untrusted): nothing below may
        # multiply or build from an unchecked value.
        check_fields(vars(self), ints=("embed_dim", "depth", "num_heads", "patch_size",
                                       "pos_grid", "fusion_features", "head_features"),
                     floats=("mlp_ratio", "max_depth"),
                     int_tuples={"hook_block_ids": 4, "neck_dims": 4}, bools=("prompt",))
        # Lists (from JSON) become tuples so configs compare and hash cleanly.
        object.__setattr__(self, "hook_block_ids", tuple(self.hook_block_ids))
        object.__setattr__(self, "neck_dims", tuple(self.neck_dims))
        object.__setattr__(self, "mlp_ratio", float(self.mlp_ratio))
        object.__setattr__(self, "max_depth", float(self.max_depth))
        problems = self._problems()
        if problems:
            raise ValueError("invalid DepthAnythingConfig: " + "; ".join(problems))
        check_parameters("DepthAnythingConfig", self.parameter_estimate())

    def parameter_estimate(self) -> int:
        """About how many parameters the network has (within a factor of 2), from the
        sizes alone: the ViT, the DPT neck and fusion blocks, and the head."""
        vit = vit_parameters(self.embed_dim, self.depth, self.mlp_hidden, self.patch_size,
                             self.pos_grid * self.pos_grid)
        d, f = self.neck_dims, self.fusion_features
        fusion = 37 + (18 if self.prompt else 0)  # two residual units (+ the prompt branch)
        neck = (sum(self.embed_dim * x + 9 * f * x for x in d) + 16 * d[0] * d[0]
                + 4 * d[1] * d[1] + 9 * d[3] * d[3] + 4 * fusion * f * f)
        return vit + neck + 5 * f * f + 5 * f * self.head_features

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
    def release(self) -> str:
        """``prompt_depth_anything`` or ``depth_anything_v2``: which release line it is."""
        return "prompt_depth_anything" if self.prompt else "depth_anything_v2"

    @property
    def variant(self) -> str:
        """``vits`` / ``vitb`` / ``vitl`` when the ViT is a released one, else ``custom``."""
        for name, spec in RELEASED.items():
            if ((self.embed_dim, self.depth, self.num_heads) ==
                    (spec["embed_dim"], spec["depth"], spec["num_heads"])
                    and self.patch_size == PATCH_SIZE and self.mlp_ratio == 4.0):
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
        """The training size (518 for the releases): Depth Anything V2's shorter-side bound."""
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
