"""The DINOv2-style ViT: Depth Pro's ViT-L/16 (used three times) and Depth Anything's encoder.

Parameter names follow timm's / DINOv2's VisionTransformer (``patch_embed.proj``,
``blocks.N.ls1.gamma`` ...) so that Apple's and the Depth Anything checkpoints load without
renaming, but for the attention's q, k and v: stored joined (``blocks.N.attn.qkv``), held
apart (``attn.q`` / ``attn.k`` / ``attn.v``, see :class:`Attention`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LAYER_NORM_EPS = 1e-6


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, tokens, C)


class Attention(nn.Module):
    """Multi-head self-attention with separate q, k and v projections.

    The released checkpoints store them joined (``attn.qkv``, q, k, v along dim 0), and
    so does :meth:`state_dict` (a copy made when it is called). Loading splits a joined
    tensor into three views of its storage (:func:`split_qkv`), so that no layout needs
    a joined copy beside the file's memory-mapped tensors (Hugging Face folders store
    them apart).
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        # Drawn as one (3 dim, dim) layer, as the joined layout was, so that seeded
        # initial weights are the same as that layout's.
        joined = nn.Linear(dim, 3 * dim)
        parts = zip(joined.weight.detach().chunk(3), joined.bias.detach().chunk(3))
        self.q, self.k, self.v = (_linear(w.clone(), b.clone()) for w, b in parts)
        self.proj = nn.Linear(dim, dim)
        self.register_load_state_dict_pre_hook(_split_joined)
        self.register_state_dict_post_hook(_join)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        h = self.num_heads
        q, k, v = (p(x).reshape(b, n, h, c // h).transpose(1, 2) for p in (self.q, self.k, self.v))
        x = F.scaled_dot_product_attention(q, k, v)
        del q, k, v  # not needed by the projection below
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


def _linear(weight: torch.Tensor, bias: torch.Tensor) -> nn.Linear:
    """An ``nn.Linear`` holding ``weight`` and ``bias`` (built on meta: nothing drawn)."""
    layer = nn.Linear(weight.shape[1], weight.shape[0], device="meta")
    layer.weight, layer.bias = nn.Parameter(weight), nn.Parameter(bias)
    return layer


_JOINED = ("attn.qkv.weight", "attn.qkv.bias")


def split_qkv(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """Replace, in place, each joined ``<prefix>...attn.qkv.weight|bias`` of ``state`` by
    its q, k and v parts (``attn.q.weight`` ...): views, no copy. Returns ``state``."""
    for key in [k for k in state if k.startswith(prefix) and k.endswith(_JOINED)]:
        joined = state.pop(key)
        head, _, kind = key.rpartition(".qkv.")
        if joined.shape[0] % 3:  # a wrong shape: left for the key check to report
            state[key] = joined
            continue
        for name, part in zip("qkv", joined.chunk(3)):
            state[f"{head}.{name}.{kind}"] = part
    return state


def _split_joined(module: nn.Module, state: dict, prefix: str, *_) -> None:
    """Load pre-hook: a state dict in the released (joined) layout loads as it is."""
    split_qkv(state, prefix)


def _join(module: nn.Module, state: dict, prefix: str, _metadata: object) -> None:
    """State-dict post-hook: q, k and v written joined, in the released layout."""
    for kind in ("weight", "bias"):
        parts = [state.pop(f"{prefix}{name}.{kind}") for name in "qkv"]
        if parts[0].is_meta:  # a shape only; cat on meta would load torch's Python meta
            # kernels (~70 MiB resident for the process's life) when a checkpoint loads
            rows = sum(p.shape[0] for p in parts)
            state[f"{prefix}qkv.{kind}"] = parts[0].new_empty((rows, *parts[0].shape[1:]))
        else:
            state[f"{prefix}qkv.{kind}"] = torch.cat(parts)


class LayerScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block with LayerScale on both residual branches."""

    def __init__(self, dim: int, num_heads: int, mlp_hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, mlp_hidden)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class VisionTransformer(nn.Module):
    """DINOv2-style ViT with one class token and a learned absolute position embedding."""

    def __init__(
        self, embed_dim: int, depth: int, num_heads: int, mlp_hidden: int,
        patch_size: int, image_size: int, *, mask_token: bool = False,
    ) -> None:
        """``mask_token`` adds DINOv2's (unused at inference) ``mask_token`` parameter, which
        the Depth Anything checkpoints store."""
        super().__init__()
        self.grid = image_size // patch_size
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid**2, embed_dim))
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_hidden) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=LAYER_NORM_EPS)
        if mask_token:
            self.mask_token = nn.Parameter(torch.zeros(1, embed_dim))

    def position_embedding(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """The (1, 1 + grid_h*grid_w, C) position embedding for a grid_h x grid_w token grid.

        The stored grid is returned as is; another grid gets the stored one resampled as
        transformers' DINOv2 does: bicubic, ``size=(grid_h, grid_w)``, ``align_corners=False``,
        computed in fp32 and cast back (the class token's embedding is kept).
        """
        if (grid_h, grid_w) == (self.grid, self.grid):
            return self.pos_embed
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        g, c = self.grid, self.embed_dim
        grid = patch_pos.reshape(1, g, g, c).permute(0, 3, 1, 2).float()
        grid = F.interpolate(grid, size=(grid_h, grid_w), mode="bicubic", align_corners=False)
        patch_pos = grid.to(self.pos_embed.dtype).permute(0, 2, 3, 1).reshape(1, -1, c)
        return torch.cat([cls_pos, patch_pos], dim=1)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        grid_h, grid_w = x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return x + self.position_embedding(grid_h, grid_w)

    def forward(
        self, x: torch.Tensor, hook_ids: tuple[int, ...] = ()
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Return the normed output tokens (B, 1+g*g, C) and the raw outputs of ``hook_ids``."""
        x = self._embed(x)
        hooks: dict[int, torch.Tensor] = {}
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in hook_ids:
                hooks[i] = x
        return self.norm(x), [hooks[i] for i in hook_ids]

    def intermediate_layers(
        self, x: torch.Tensor, hook_ids: tuple[int, ...]
    ) -> list[torch.Tensor]:
        """The outputs of blocks ``hook_ids`` (B, 1+h*w, C), each through the final norm.

        This is DINOv2's ``get_intermediate_layers(norm=True)``; blocks after the last hook
        are not run. The input's sides must be multiples of the patch size.
        """
        x = self._embed(x)
        last = max(hook_ids)
        hooks: dict[int, torch.Tensor] = {}
        for i, block in enumerate(self.blocks[: last + 1]):
            x = block(x)
            if i in hook_ids:
                hooks[i] = self.norm(x)
        return [hooks[i] for i in hook_ids]


def tokens_to_grid(tokens: torch.Tensor) -> torch.Tensor:
    """(N, 1+g*g, C) tokens -> (N, C, g, g) feature map, class token dropped."""
    n, length, c = tokens.shape
    g = int(round((length - 1) ** 0.5))
    return tokens[:, 1:].transpose(1, 2).reshape(n, c, g, g)
