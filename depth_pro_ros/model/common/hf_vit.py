"""The Hugging Face transformers ViT / DINOv2 key names -> the timm-style names of
:class:`.vit.VisionTransformer`, in both generations of the transformers naming
(``attention.attention.query`` and ``attention.q_proj``). q, k and v become the network's
separate ``attn.q`` / ``attn.k`` / ``attn.v`` (the file's tensors as they are: no copy), or
for writing the released layout are joined into one ``attn.qkv`` tensor."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import torch

__all__ = ["qkv_part", "rename_vit_key", "translate"]

# Inside one ViT; qkv is handled apart because three tensors become one.
_VIT_RULES = [
    (r"embeddings\.cls_token", "cls_token"),
    (r"embeddings\.position_embeddings", "pos_embed"),
    (r"embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"encoder\.layer\.(\d+)\.norm([12])\.", r"blocks.\1.norm\2."),
    (r"encoder\.layer\.(\d+)\.attention\.(?:output\.dense|o_proj)\.", r"blocks.\1.attn.proj."),
    (r"encoder\.layer\.(\d+)\.layer_scale([12])\.lambda1", r"blocks.\1.ls\2.gamma"),
    (r"encoder\.layer\.(\d+)\.mlp\.fc([12])\.", r"blocks.\1.mlp.fc\2."),
    (r"layernorm\.", "norm."),
]
_QKV = re.compile(
    r"encoder\.layer\.(\d+)\.attention\.(?:attention\.(query|key|value)|(q|k|v)_proj)\.(weight|bias)"
)
_QKV_ORDER = {"query": 0, "key": 1, "value": 2, "q": 0, "k": 1, "v": 2}


def rename_vit_key(key: str) -> str | None:
    """A transformers ViT key (relative to the ViT) -> the name here; None when no rule
    knows it (q / k / v parts go through :func:`qkv_part`)."""
    for pattern, repl in _VIT_RULES:
        new, n = re.subn("^" + pattern, repl, key)
        if n:
            return new
    return None


def qkv_part(key: str) -> tuple[str, int] | None:
    """For a transformers ViT key of a query, key or value projection (relative to the ViT,
    either naming generation): the fused name ``blocks.N.attn.qkv.weight|bias`` and the
    part's index (0 q, 1 k, 2 v); None for any other key."""
    m = _QKV.fullmatch(key)
    if m is None:
        return None
    return f"blocks.{m.group(1)}.attn.qkv.{m.group(4)}", _QKV_ORDER[m.group(2) or m.group(3)]


def translate(
    hf_state: Mapping[str, torch.Tensor],
    vit_of: Callable[[str], tuple[str, str] | None],
    rename: Callable[[str], str | None],
    join_qkv: bool = True,
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename a transformers state dict: ``vit_of(key)`` says whether a key is inside a ViT
    (its new prefix, the key relative to the ViT), whose q / k / v parts are joined
    (``join_qkv``: the released layout) or kept apart under the network's names;
    ``rename(key)`` names every other key (None: no rule knows it, ``""``: dropped).

    Returns the new state dict and the keys that no rule knows (reported by the caller).
    """
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    qkv_parts: dict[str, dict[int, torch.Tensor]] = {}
    for key, tensor in hf_state.items():
        vit = vit_of(key)
        part = qkv_part(vit[1]) if vit is not None else None
        if part is not None and not join_qkv:
            name, index = part
            head, _, kind = name.rpartition(".qkv.")
            out[f"{vit[0]}{head}.{'qkv'[index]}.{kind}"] = tensor
            continue
        if part is not None:
            name, index = part
            qkv_parts.setdefault(vit[0] + name, {})[index] = tensor
            continue
        new = rename(key)
        if new is None:
            unknown.append(key)
        elif new:
            out[new] = tensor
    _join_qkv(qkv_parts, out, unknown)
    return out, unknown


def _join_qkv(parts: Mapping[str, Mapping[int, torch.Tensor]], out: dict[str, torch.Tensor],
              unknown: list[str]) -> None:
    """Concatenate each fused name's q, k, v parts into ``out``; an incomplete set goes to
    ``unknown``."""
    for name, by_index in parts.items():
        if sorted(by_index) != [0, 1, 2]:
            unknown.append(f"{name} (incomplete q/k/v)")
            continue
        out[name] = torch.cat([by_index[0], by_index[1], by_index[2]], dim=0)
