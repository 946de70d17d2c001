"""Size and outputs of a Depth Anything 3 network, and the released presets.

The presets are the facts of the reference package's ``configs/*.yaml`` (depth-anything-3
0.1.1), named as the checkpoints' ``config.json`` names them. The yaml's names map to the
fields here as follows (the DPT names are the ones the Depth Anything V2 family uses):

==========================  ===============================================
yaml                        here
==========================  ===============================================
``net.name``                ``embed_dim``, ``depth``, ``num_heads``, ``ffn``
``net.out_layers``          ``hook_block_ids``
``net.alt_start`` ...       ``alt_start``, ``rope_start``, ``qknorm_start``
``net.cat_token``           ``cat_token``
``head.__object__``         ``head`` (``dpt`` or ``dualdpt``), ``sky`` (DPT's sky head)
``head.dim_in``             :attr:`DepthAnything3Config.head_dim_in` (derived)
``head.features``           ``fusion_features``
``head.out_channels``       ``neck_dims``
``head.output_dim``         ``output_dim``
``cam_enc`` / ``cam_dec``   ``camera`` (their dims are derived from the ViT's)
==========================  ===============================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..common.config import DictConfig
from ..common.limits import check_fields, check_parameters, vit_parameters

__all__ = ["FFNS", "HEADS", "PATCH_SIZE", "PRESETS", "VITS", "DepthAnything3Config",
           "NestedDepthAnything3Config", "preset"]

PATCH_SIZE = 14
HEADS = ("dpt", "dualdpt")
FFNS = ("mlp", "swiglu")

# The DINOv2 ViTs DA3 builds on (ViT-G: 1536 wide, 24 heads of 64, SwiGLU feed-forward).
VITS = {
    "vits": dict(embed_dim=384, depth=12, num_heads=6, ffn="mlp"),
    "vitb": dict(embed_dim=768, depth=12, num_heads=12, ffn="mlp"),
    "vitl": dict(embed_dim=1024, depth=24, num_heads=16, ffn="mlp"),
    "vitg": dict(embed_dim=1536, depth=40, num_heads=24, ffn="swiglu"),
}


@dataclass(frozen=True)
class DepthAnything3Config(DictConfig):
    """One Depth Anything 3 network (an any-view or a monocular preset).

    ``pos_grid`` is the side of the stored position-embedding grid (518 / 14 = 37 for the
    releases). ``hook_block_ids`` are the 0-based blocks whose outputs feed the head. From
    block ``alt_start`` on, odd blocks attend across all views (even ones within each
    view), and a camera token replaces the class token; ``rope_start`` / ``qknorm_start``
    switch on 2D RoPE and QK-norm from that block; -1 switches a feature off.
    ``cat_token`` gives the head each hooked block's tokens beside the latest within-view
    block's (twice the width). ``head`` is ``dualdpt`` (depth + confidence, and a ray
    branch) or ``dpt`` (``output_dim`` channels; ``sky`` adds its one-channel sky head).
    ``camera`` adds the camera encoder (known cameras -> camera tokens) and decoder
    (camera token -> pose encoding); the encoder's trunk is ``camera_depth`` blocks of
    ``camera_heads`` heads. ``metric``: the depth is canonical metric depth (metres =
    focal_px x depth / 300, DA3METRIC), not relative depth; the weights cannot tell (the
    mono and metric releases share one architecture), the preset name does.
    """

    embed_dim: int = 384
    depth: int = 12
    num_heads: int = 6
    mlp_ratio: float = 4.0
    ffn: str = "mlp"
    patch_size: int = PATCH_SIZE
    pos_grid: int = 37
    hook_block_ids: tuple[int, int, int, int] = (5, 7, 9, 11)
    alt_start: int = 4
    rope_start: int = 4
    qknorm_start: int = 4
    cat_token: bool = True
    head: str = "dualdpt"
    neck_dims: tuple[int, int, int, int] = (48, 96, 192, 384)
    fusion_features: int = 64
    output_dim: int = 2
    sky: bool = False
    camera: bool = True
    camera_depth: int = 4
    camera_heads: int = 16
    metric: bool = False

    def __post_init__(self) -> None:
        # Types and ranges first (a checkpoint's config is untrusted).
        check_fields(vars(self),
                     ints=("embed_dim", "depth", "num_heads", "patch_size", "pos_grid",
                           "alt_start", "rope_start", "qknorm_start", "fusion_features",
                           "output_dim", "camera_depth", "camera_heads"),
                     floats=("mlp_ratio",), int_tuples={"hook_block_ids": 4, "neck_dims": 4},
                     bools=("cat_token", "sky", "camera", "metric"))
        object.__setattr__(self, "hook_block_ids", tuple(self.hook_block_ids))
        object.__setattr__(self, "neck_dims", tuple(self.neck_dims))
        object.__setattr__(self, "mlp_ratio", float(self.mlp_ratio))
        problems = self._problems()
        if problems:
            raise ValueError("invalid DepthAnything3Config: " + "; ".join(problems))
        check_parameters("DepthAnything3Config", self.parameter_estimate())

    def _problems(self) -> list[str]:
        out = []
        if self.embed_dim % self.num_heads:
            out.append(f"embed_dim {self.embed_dim} is not divisible by num_heads "
                       f"{self.num_heads}")
        elif self.rope_start >= 0 and (self.embed_dim // self.num_heads) % 4:
            out.append("2D RoPE rotates two halves of each head in pairs: the head width "
                       f"{self.embed_dim // self.num_heads} must be a multiple of 4")
        hooks = self.hook_block_ids
        if any(b <= a for a, b in zip(hooks, hooks[1:])) or hooks[-1] >= self.depth:
            out.append(f"hook_block_ids must be 4 increasing block indices below depth "
                       f"{self.depth}, got {hooks}")
        for name in ("alt_start", "rope_start", "qknorm_start"):
            if getattr(self, name) >= self.depth:
                out.append(f"{name} {getattr(self, name)} is not below depth {self.depth} "
                           "(-1 switches it off)")
        if self.alt_start == 0:
            # The reference picks the reference view from the block before alt_start.
            out.append("alt_start must be -1 (off) or at least 1")
        if self.ffn not in FFNS:
            out.append(f"ffn must be one of {FFNS}, got {self.ffn!r}")
        if self.head not in HEADS:
            out.append(f"head must be one of {HEADS}, got {self.head!r}")
        elif self.head == "dualdpt" and (self.output_dim != 2 or self.sky):
            out.append("the dualdpt head gives depth and confidence (output_dim 2) and has no "
                       f"sky head, got output_dim {self.output_dim}, sky {self.sky}")
        if self.metric and self.head != "dpt":
            out.append("only the dpt head gives metric depth (DA3METRIC)")
        if self.camera and self.alt_start < 0:
            out.append("camera needs alt_start (the camera token enters at that block)")
        if self.camera and self.embed_dim % self.camera_heads:
            out.append(f"embed_dim {self.embed_dim} is not divisible by camera_heads "
                       f"{self.camera_heads}")
        return out

    def parameter_estimate(self) -> int:
        """About how many parameters the network has (within a factor of 2), from the
        sizes alone: the ViT, the DPT neck and fusion (twice for DualDPT), the camera."""
        e, f, d = self.embed_dim, self.fusion_features, self.neck_dims
        vit = vit_parameters(e, self.depth, 3 * self.mlp_hidden // 2 if self.ffn == "swiglu"
                             else self.mlp_hidden, self.patch_size, self.pos_grid ** 2)
        branches = 2 if self.head == "dualdpt" else 1
        neck = (sum(self.head_dim_in * x + 9 * f * x for x in d) + 16 * d[0] * d[0]
                + 4 * d[1] * d[1] + 9 * d[3] * d[3] + branches * 37 * 4 * f * f)
        camera = self.camera_depth * 12 * e * e + 2 * self.head_dim_in ** 2 if self.camera else 0
        return vit + neck + camera

    @property
    def mlp_hidden(self) -> int:
        """The feed-forward width: ``embed_dim x mlp_ratio``, for SwiGLU two thirds of it
        rounded up to a multiple of 8 (DINOv2's fused SwiGLU)."""
        hidden = int(self.embed_dim * self.mlp_ratio)
        return (int(hidden * 2 / 3) + 7) // 8 * 8 if self.ffn == "swiglu" else hidden

    @property
    def head_dim_in(self) -> int:
        """The width of the tokens the head and the camera decoder get (twice the ViT's
        with ``cat_token``)."""
        return self.embed_dim * (2 if self.cat_token else 1)

    @property
    def any_view(self) -> bool:
        """Whether views attend to each other (any number of views is one joint pass)."""
        return self.alt_start >= 0

    @property
    def default_input_size(self) -> int:
        """The training size (518 for the releases)."""
        return self.pos_grid * self.patch_size

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> DepthAnything3Config:
        """A released preset's config (``da3-small`` ...), fields replaced by ``overrides``
        (for reduced test sizes)."""
        spec = PRESETS[name]
        if not isinstance(spec, dict):
            raise ValueError(f"{name} is two networks: use NestedDepthAnything3Config")
        return cls(**{**spec, **overrides})


@dataclass(frozen=True)
class NestedDepthAnything3Config:
    """DA3NESTED: an any-view network and a metric monocular one run side by side (the
    metric one scales the any-view depth); the reference names them ``da3`` and
    ``da3_metric``."""

    anyview: DepthAnything3Config
    metric: DepthAnything3Config

    def to_dict(self) -> dict[str, Any]:
        return {"anyview": self.anyview.to_dict(), "metric": self.metric.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NestedDepthAnything3Config:
        if not isinstance(data, dict) or sorted(data) != ["anyview", "metric"]:
            raise ValueError("a nested config is a dict of exactly 'anyview' and 'metric'")
        return cls(DepthAnything3Config.from_dict(data["anyview"]),
                   DepthAnything3Config.from_dict(data["metric"]))


def _any_view(vit: str, hooks: tuple[int, ...], start: int, features: int,
              neck: tuple[int, ...]) -> dict[str, Any]:
    return dict(**VITS[vit], hook_block_ids=hooks, alt_start=start, rope_start=start,
                qknorm_start=start, cat_token=True, head="dualdpt", neck_dims=neck,
                fusion_features=features, output_dim=2, sky=False, camera=True)


_MONO = dict(**VITS["vitl"], hook_block_ids=(4, 11, 17, 23), alt_start=-1, rope_start=-1,
             qknorm_start=-1, cat_token=False, head="dpt", neck_dims=(256, 512, 1024, 1024),
             fusion_features=256, output_dim=1, sky=True, camera=False)

#: The released presets, by the name their config.json gives: config fields, or for the
#: nested one the names of its two presets.
PRESETS: dict[str, dict[str, Any] | tuple[str, str]] = {
    "da3-small": _any_view("vits", (5, 7, 9, 11), 4, 64, (48, 96, 192, 384)),
    "da3-base": _any_view("vitb", (5, 7, 9, 11), 4, 128, (96, 192, 384, 768)),
    "da3-large": _any_view("vitl", (11, 15, 19, 23), 8, 256, (256, 512, 1024, 1024)),
    "da3-giant": _any_view("vitg", (19, 27, 33, 39), 13, 256, (256, 512, 1024, 1024)),
    "da3mono-large": _MONO,
    "da3metric-large": {**_MONO, "metric": True},
    "da3nested-giant-large": ("da3-giant", "da3metric-large"),
}


def preset(name: str) -> DepthAnything3Config | NestedDepthAnything3Config:
    """The config of a released preset by its config.json name.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    if name not in PRESETS:
        raise ValueError(f"unknown Depth Anything 3 preset {name!r}; known: "
                         f"{', '.join(PRESETS)}")
    spec = PRESETS[name]
    if isinstance(spec, tuple):
        return NestedDepthAnything3Config(*(DepthAnything3Config.from_preset(n) for n in spec))
    return DepthAnything3Config.from_preset(name)
