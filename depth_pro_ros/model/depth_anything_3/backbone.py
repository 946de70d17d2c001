"""Depth Anything 3's DINOv2 ViT: any number of views in one pass.

Facts from the released ``depth-anything-3`` package (0.1.1), code of this project:

* Tokens: a class token and the patch tokens of each view, plus the stored 37 x 37
  position embedding resampled to other grids as DINOv2's original code does (bicubic
  with ``scale_factor = (grid + 0.1) / 37``, not transformers' ``size=``).
* Blocks are DINOv2's (pre-norm, LayerScale, eps 1e-6; ViT-G with a SwiGLU feed-forward).
  From ``alt_start`` on, odd blocks attend across all views' tokens at once, the others
  within each view; the class token of every view is replaced by a camera token at
  ``alt_start`` (a learned one for the first view and one for the rest, or the camera
  encoder's tokens of known cameras). With three or more views and no known cameras the
  view whose class token is most "balanced" is moved first before block ``alt_start - 1``
  (the learned reference-camera token goes to it) and the outputs are put back in order.
* From ``qknorm_start`` on, q and k of each head go through a LayerNorm (eps 1e-5); from
  ``rope_start`` on, a 2D RoPE (base frequency 100) rotates them: the first half of each
  head by the token's row, the second by its column (patch positions start at 1, the
  camera token is at 0); across views every patch sits at position 1.
* A hooked block's output is normed (the final LayerNorm, eps 1e-5); with ``cat_token``
  the latest within-view block's raw output is put in front of it (twice the width).

Parameter names are the release's (``backbone.pretrained.*`` in the network), q / k / v
stored joined as in :mod:`..common.vit`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..common.vit import LAYER_NORM_EPS, LayerScale, Mlp, PatchEmbed
from ..common.vit import Attention as _JoinedQKVAttention
from .config import DepthAnything3Config

__all__ = ["TORCH_EPS", "Attention", "Block", "Rope", "SwiGLU", "ViT3", "reference_view"]

ROPE_FREQUENCY = 100.0
_POS_OFFSET = 0.1  # DINOv2's position-embedding resampling offset
# The release's q / k norms, final norm and camera modules keep torch's default eps.
TORCH_EPS = 1e-5


class Rope:
    """2D rotary embedding tables for a token sequence: ``positions`` (N, 2) rows and
    columns -> cos / sin (N, head_dim), applied by :meth:`rotate`."""

    def __init__(self, positions: torch.Tensor, head_dim: int, dtype: torch.dtype) -> None:
        half = head_dim // 2
        inv_freq = 1.0 / ROPE_FREQUENCY ** (
            torch.arange(0, half, 2, device=positions.device).float() / half)
        angles = positions.float()[..., None] * inv_freq  # (N, 2, head_dim / 4)
        angles = torch.cat([angles, angles], dim=-1).flatten(-2)  # (N, head_dim)
        self.cos, self.sin = angles.cos().to(dtype), angles.sin().to(dtype)

    def rotate(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` (..., N, head_dim) rotated: each axis' half as (a, b) -> (-b, a) pairs."""
        parts = t.unflatten(-1, (2, 2, -1))  # (axis, half, head_dim / 4)
        turned = torch.stack([-parts[..., 1, :], parts[..., 0, :]], dim=-2).flatten(-3)
        return t * self.cos + turned * self.sin

    def repeat(self, times: int) -> Rope:
        """The tables for ``times`` sequences one after the other (attention across views)."""
        out = object.__new__(Rope)
        out.cos, out.sin = self.cos.repeat(times, 1), self.sin.repeat(times, 1)
        return out


class Attention(_JoinedQKVAttention):
    """Self-attention with optional QK-norm and 2D RoPE (q, k, v as in :mod:`..common.vit`)."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool = False) -> None:
        super().__init__(dim, num_heads)
        self.qk_norm = qk_norm
        if qk_norm:
            self.q_norm = nn.LayerNorm(dim // num_heads, eps=TORCH_EPS)
            self.k_norm = nn.LayerNorm(dim // num_heads, eps=TORCH_EPS)

    def forward(self, x: torch.Tensor, rope: Rope | None = None) -> torch.Tensor:
        b, n, c = x.shape
        h = self.num_heads
        q, k, v = (p(x).reshape(b, n, h, c // h).transpose(1, 2) for p in (self.q, self.k, self.v))
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = rope.rotate(q), rope.rotate(k)
        x = F.scaled_dot_product_attention(q, k, v)
        del q, k, v  # not needed by the projection below
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class SwiGLU(nn.Module):
    """ViT-G's feed-forward: ``w3(silu(a) * b)`` with ``a, b`` the halves of ``w12(x)``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(a) * b)


class Block(nn.Module):
    """Pre-norm block with LayerScale on both branches (DINOv2's; the camera encoder's
    trunk uses it with torch's default LayerNorm eps)."""

    def __init__(self, dim: int, num_heads: int, mlp_hidden: int, *, ffn: str = "mlp",
                 qk_norm: bool = False, eps: float = LAYER_NORM_EPS) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, qk_norm)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = SwiGLU(dim, mlp_hidden) if ffn == "swiglu" else Mlp(dim, mlp_hidden)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor, rope: Rope | None = None) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), rope))
        return x + self.ls2(self.mlp(self.norm2(x)))


def reference_view(class_tokens: torch.Tensor) -> torch.Tensor:
    """The reference view of each item, from the views' class tokens (B, V, C): the one
    closest to the middle of the views' ranges of mean cosine similarity to the others,
    token norm and unit-token variance (the release's ``saddle_balanced``). Returns (B,)."""
    views = class_tokens.shape[1]
    unit = class_tokens / class_tokens.norm(dim=-1, keepdim=True)
    sim = unit @ unit.transpose(1, 2) - torch.eye(views, device=unit.device)
    scores = (sim.sum(dim=-1) / (views - 1), class_tokens.norm(dim=-1), unit.var(dim=-1))

    def off_middle(m: torch.Tensor) -> torch.Tensor:
        low, high = m.min(dim=1, keepdim=True).values, m.max(dim=1, keepdim=True).values
        return ((m - low) / (high - low + 1e-8) - 0.5).abs()

    return sum(off_middle(m) for m in scores).argmin(dim=1)


class ViT3(nn.Module):
    """The DA3 ViT; :meth:`forward` takes (B, V, 3, H, W) and gives the hooked features."""

    def __init__(self, config: DepthAnything3Config) -> None:
        super().__init__()
        c = self.config = config
        self.patch_embed = PatchEmbed(c.patch_size, c.embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.embed_dim))
        if c.any_view:  # the reference view's token, then the other views'
            self.camera_token = nn.Parameter(torch.zeros(1, 2, c.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + c.pos_grid ** 2, c.embed_dim))
        self.blocks = nn.ModuleList(
            Block(c.embed_dim, c.num_heads, c.mlp_hidden, ffn=c.ffn,
                  qk_norm=0 <= c.qknorm_start <= i)
            for i in range(c.depth))
        self.norm = nn.LayerNorm(c.embed_dim, eps=TORCH_EPS)

    def position_embedding(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """(1, 1 + grid_h*grid_w, C): the stored grid, or it resampled (fp32) to this one."""
        g = self.config.pos_grid
        if (grid_h, grid_w) == (g, g):
            return self.pos_embed
        patch = self.pos_embed[:, 1:].float().reshape(1, g, g, -1).permute(0, 3, 1, 2)
        scale = ((grid_h + _POS_OFFSET) / g, (grid_w + _POS_OFFSET) / g)
        patch = F.interpolate(patch, scale_factor=scale, mode="bicubic", align_corners=False)
        patch = patch.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, -1)
        return torch.cat([self.pos_embed[:, :1], patch.to(self.pos_embed.dtype)], dim=1)

    def _ropes(self, grid_h: int, grid_w: int, views: int,
               dtype: torch.dtype) -> tuple[Rope, Rope] | None:
        """The within-view and across-view RoPE tables, None without RoPE."""
        if self.config.rope_start < 0:
            return None
        device = self.pos_embed.device
        rows, cols = torch.meshgrid(torch.arange(grid_h, device=device),
                                    torch.arange(grid_w, device=device), indexing="ij")
        patches = torch.stack([rows.flatten(), cols.flatten()], dim=1) + 1
        special = torch.zeros(1, 2, dtype=patches.dtype, device=device)
        head_dim = self.config.embed_dim // self.config.num_heads
        local = Rope(torch.cat([special, patches]), head_dim, dtype)
        flat = Rope(torch.cat([special, torch.ones_like(patches)]), head_dim, dtype)
        return local, flat.repeat(views)

    def forward(self, x: torch.Tensor, camera_tokens: torch.Tensor | None = None
                ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``x`` (B, V, 3, H, W), sides multiples of the patch; ``camera_tokens`` (B, V, C)
        from the camera encoder, or None for the learned ones.

        Returns, per hooked block, the patch tokens (B, V, h*w, C') and the camera / class
        token (B, V, C'), C' = C or 2C with ``cat_token`` (the token unnormed, as the
        camera decoder takes it).
        """
        c = self.config
        b, v, _, height, width = x.shape
        grid_h, grid_w = height // c.patch_size, width // c.patch_size
        tokens = self.patch_embed(x.flatten(0, 1))
        tokens = torch.cat([self.cls_token.expand(b * v, -1, -1), tokens], dim=1)
        tokens = (tokens + self.position_embedding(grid_h, grid_w)).unflatten(0, (b, v))
        ropes = self._ropes(grid_h, grid_w, v, tokens.dtype)
        order = None  # the views' order when a reference view was moved first
        local = tokens
        hooked: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        for i, block in enumerate(self.blocks[: max(c.hook_block_ids) + 1]):
            if i == c.alt_start - 1 and v >= 3 and camera_tokens is None:
                order = _reference_first(reference_view(tokens[:, :, 0]), v)
                tokens = _gather_views(tokens, order)
            if c.any_view and i == c.alt_start:
                tokens = torch.cat([self._camera_tokens(b, v, camera_tokens), tokens[:, :, 1:]],
                                   dim=2)
            within, across = ropes if ropes is not None and i >= c.rope_start else (None, None)
            if c.any_view and i >= c.alt_start and i % 2 == 1:
                tokens = block(tokens.flatten(1, 2), across).unflatten(1, (v, -1))
            else:
                tokens = local = block(tokens.flatten(0, 1), within).unflatten(0, (b, v))
            if i in c.hook_block_ids:
                out, token = self.norm(tokens), tokens[:, :, 0]
                if c.cat_token:
                    out = torch.cat([local, out], dim=-1)
                    token = torch.cat([local[:, :, 0], token], dim=-1)
                if order is not None:  # back to the caller's order
                    out, token = (_gather_views(t, order.argsort(dim=1)) for t in (out, token))
                hooked[i] = out, token
        feats = [hooked[i][0][:, :, 1:] for i in c.hook_block_ids]
        return feats, [hooked[i][1] for i in c.hook_block_ids]

    def _camera_tokens(self, b: int, v: int, known: torch.Tensor | None) -> torch.Tensor:
        """(B, V, 1, C): the camera encoder's tokens, or the learned reference token for
        the first view and the other one for the rest."""
        if known is not None:
            return known.unsqueeze(2).to(self.cls_token.dtype)
        first, rest = self.camera_token[:, :1], self.camera_token[:, 1:]
        return torch.cat([first, rest.expand(1, v - 1, -1)], dim=1).expand(b, -1, -1)[:, :, None]


def _reference_first(ref: torch.Tensor, views: int) -> torch.Tensor:
    """(B, V) view order with ``ref`` first and the others in their order."""
    index = torch.arange(views, device=ref.device).expand(ref.shape[0], -1)
    before = index <= ref[:, None]
    order = torch.where(before, index - 1, index)
    order[:, 0] = ref
    return order


def _gather_views(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """``x`` (B, V, ...) with each item's views taken in ``order`` (B, V)."""
    return x[torch.arange(x.shape[0], device=x.device)[:, None], order]
