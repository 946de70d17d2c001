"""Architecture description of a Depth Pro network."""

from __future__ import annotations

from dataclasses import dataclass

from ..common.config import DictConfig
from ..common.limits import check_fields, check_parameters, vit_parameters

# Depth Pro tiles its pyramid into ViT inputs whose token grid is 24x24; the merge padding
# (3 and 6 cells) and the 6x6 FoV head kernel are tied to that grid.
TOKEN_GRID = 24


@dataclass(frozen=True)
class DepthProConfig(DictConfig):
    """Size of every part of the network.

    ``encoder_dims`` is Apple's ``dims_encoder``: channels of the latent1, x0, x1 and
    fused low-resolution encoder outputs. The network input side is
    ``4 * vit_image_size`` (1536 for the released model).
    """

    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    patch_size: int = 16
    vit_image_size: int = 384
    hook_block_ids: tuple[int, int] = (5, 11)
    encoder_dims: tuple[int, int, int, int] = (256, 512, 1024, 1024)
    decoder_features: int = 256
    use_fov_head: bool = True

    def __post_init__(self) -> None:
        # Types and sizes first (a checkpoint's config is untrusted): nothing below may
        # multiply or build from an unchecked value.
        check_fields(vars(self), ints=("embed_dim", "depth", "num_heads", "patch_size",
                                       "vit_image_size", "decoder_features"),
                     floats=("mlp_ratio",),
                     int_tuples={"hook_block_ids": 2, "encoder_dims": 4},
                     bools=("use_fov_head",))
        # Normalise lists (from JSON) to tuples so configs compare and hash cleanly.
        object.__setattr__(self, "hook_block_ids", tuple(self.hook_block_ids))
        object.__setattr__(self, "encoder_dims", tuple(self.encoder_dims))
        object.__setattr__(self, "mlp_ratio", float(self.mlp_ratio))
        problems = self._problems()
        if problems:
            raise ValueError("invalid DepthProConfig: " + "; ".join(problems))
        check_parameters("DepthProConfig", self.parameter_estimate())

    def parameter_estimate(self) -> int:
        """About how many parameters the network has (within a factor of 2), from the
        sizes alone: its ViTs (patch, image and FoV encoders), projections and decoder."""
        vits = 3 if self.use_fov_head else 2
        vit = vit_parameters(self.embed_dim, self.depth, self.mlp_hidden, self.patch_size,
                             TOKEN_GRID * TOKEN_GRID)
        dims, f = self.encoder_dims, self.decoder_features
        decoder = (sum(self.embed_dim * d + 12 * d * d + 9 * f * d for d in dims)
                   + len(dims) * 41 * f * f + 6 * dims[-1] * dims[-1])
        return vits * vit + decoder

    def _problems(self) -> list[str]:
        out = []
        if min(self.embed_dim, self.depth, self.num_heads, self.patch_size) <= 0:
            out.append("embed_dim, depth, num_heads and patch_size must be positive")
        elif self.embed_dim % self.num_heads:
            out.append(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.vit_image_size != TOKEN_GRID * self.patch_size:
            out.append(
                f"vit_image_size must be {TOKEN_GRID} * patch_size "
                f"(= {TOKEN_GRID * self.patch_size}), got {self.vit_image_size}"
            )
        if len(self.hook_block_ids) != 2 or not all(
            0 <= i < self.depth for i in self.hook_block_ids
        ):
            out.append(f"hook_block_ids must be 2 block indices below depth {self.depth}")
        if len(self.encoder_dims) != 4 or min(self.encoder_dims, default=0) <= 0:
            out.append("encoder_dims must be 4 positive ints")
        if self.decoder_features <= 0 or self.decoder_features % 8:
            out.append("decoder_features must be a positive multiple of 8")
        elif self.encoder_dims and self.encoder_dims[0] != self.decoder_features:
            # The latent0 branch feeds the decoder's first level unprojected.
            out.append(
                f"encoder_dims[0] ({self.encoder_dims[0]}) must equal decoder_features "
                f"({self.decoder_features})"
            )
        if self.mlp_ratio <= 0:
            out.append("mlp_ratio must be positive")
        return out

    @property
    def input_size(self) -> int:
        """Side of the square network input in pixels (1536 for the released model)."""
        return 4 * self.vit_image_size

    @property
    def mlp_hidden(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)

    @classmethod
    def depth_pro(cls) -> DepthProConfig:
        """The released Depth Pro (ViT-L/16 at 384, 1536 input, FoV head)."""
        return cls()

    @classmethod
    def tiny(cls, use_fov_head: bool = True) -> DepthProConfig:
        """A few-kB model with a 384 input, for fast tests."""
        return cls(
            embed_dim=32, depth=3, num_heads=2, patch_size=4, vit_image_size=96,
            hook_block_ids=(0, 1), encoder_dims=(16, 24, 32, 40), decoder_features=16,
            use_fov_head=use_fov_head,
        )

    @classmethod
    def small(cls, use_fov_head: bool = True) -> DepthProConfig:
        """A small model with a 768 input and a different shape from ``tiny``."""
        return cls(
            embed_dim=48, depth=4, num_heads=3, patch_size=8, vit_image_size=192,
            hook_block_ids=(1, 3), encoder_dims=(24, 32, 48, 64), decoder_features=24,
            use_fov_head=use_fov_head,
        )
