"""Translation of Hugging Face ``DepthProForDepthEstimation`` files to Apple's layout.

The rules are listed in docs/checkpoints.md; both generations of the transformers ViT naming
(``attention.attention.query`` and ``attention.q_proj``) are understood.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from .config import DepthProConfig

_VIT_PREFIXES = {
    "depth_pro.encoder.patch_encoder.model.": "encoder.patch_encoder.",
    "depth_pro.encoder.image_encoder.model.": "encoder.image_encoder.",
    "fov_model.fov_encoder.model.": "fov.encoder.0.",
}

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
# Parameters of the transformers ViT that Depth Pro never uses.
_UNUSED = re.compile(r"embeddings\.mask_token$")

_OTHER_RULES = [
    (r"depth_pro\.neck\.fuse_image_with_low_res\.", "encoder.fuse_lowres."),
    (r"depth_pro\.neck\.feature_upsample\.image_block\.layers\.0\.", "encoder.upsample_lowres."),
    (r"fov_model\.fov_encoder\.neck\.", "fov.encoder.1."),
    (r"fov_model\.conv\.", "fov.downsample.0."),
    (r"fov_model\.head\.layers\.(\d+)\.", r"fov.head.\1."),
    (r"head\.layers\.(\d+)\.", r"head.\1."),
    (r"fusion_stage\.final\.", "decoder.fusions.0."),
]
_INDEXED_RULES = [
    # (pattern, target template, index transform)
    (r"depth_pro\.neck\.feature_upsample\.intermediate\.(\d+)\.layers\.(\d+)\.",
     "encoder.upsample_latent{i}.{j}.", lambda i: 1 - i),
    (r"depth_pro\.neck\.feature_upsample\.scaled_images\.(\d+)\.layers\.(\d+)\.",
     "encoder.upsample{i}.{j}.", lambda i: 2 - i),
    (r"depth_pro\.neck\.feature_projection\.projections\.(\d+)\.",
     "decoder.convs.{i}.", lambda i: 4 - i),
    (r"fusion_stage\.intermediate\.(\d+)\.", "decoder.fusions.{i}.", lambda i: 4 - i),
]
_FUSION_INNER = [
    (r"\.residual_layer([12])\.convolution1\.", r".resnet\1.residual.1."),
    (r"\.residual_layer([12])\.convolution2\.", r".resnet\1.residual.3."),
    (r"\.projection\.", ".out_conv."),
]


def qkv_part(key: str) -> tuple[str, int] | None:
    """For a transformers ViT key of a query, key or value projection (relative to the ViT,
    either naming generation): the fused name ``blocks.N.attn.qkv.weight|bias`` and the
    part's index (0 q, 1 k, 2 v); None for any other key."""
    m = _QKV.fullmatch(key)
    if m is None:
        return None
    return f"blocks.{m.group(1)}.attn.qkv.{m.group(4)}", _QKV_ORDER[m.group(2) or m.group(3)]


def join_qkv(parts: Mapping[str, Mapping[int, torch.Tensor]], out: dict[str, torch.Tensor],
             unknown: list[str]) -> None:
    """Concatenate each fused name's q, k, v parts into ``out``; an incomplete set goes to
    ``unknown``."""
    for name, by_index in parts.items():
        if sorted(by_index) != [0, 1, 2]:
            unknown.append(f"{name} (incomplete q/k/v)")
            continue
        out[name] = torch.cat([by_index[0], by_index[1], by_index[2]], dim=0)


def _rename(key: str) -> str | None:
    for prefix, target in _VIT_PREFIXES.items():
        if key.startswith(prefix):
            rest = key[len(prefix):]
            for pattern, repl in _VIT_RULES:
                new, n = re.subn("^" + pattern, repl, rest)
                if n:
                    return target + new
            return None
    for pattern, target, index in _INDEXED_RULES:
        m = re.match(pattern, key)
        if m:
            i = index(int(m.group(1)))
            j = m.group(2) if m.re.groups > 1 else None
            new = target.format(i=i, j=j) + key[m.end():]
            return _fusion_inner(new)
    for pattern, repl in _OTHER_RULES:
        new, n = re.subn("^" + pattern, repl, key)
        if n:
            return _fusion_inner(new)
    return None


def _fusion_inner(key: str) -> str:
    if not key.startswith("decoder.fusions."):
        return key
    for pattern, repl in _FUSION_INNER:
        key = re.sub(pattern, repl, key)
    return key


def hf_to_apple_state_dict(
    hf_state: Mapping[str, torch.Tensor], *, keep_fov: bool = True
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename a transformers state dict to Apple's names.

    Returns the new state dict and the keys that no rule knows (reported by the caller).
    """
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    qkv_parts: dict[str, dict[int, torch.Tensor]] = {}
    for key, tensor in hf_state.items():
        if not keep_fov and key.startswith("fov_model."):
            continue
        prefix = next((p for p in _VIT_PREFIXES if key.startswith(p)), None)
        if prefix is not None:
            rest = key[len(prefix):]
            if _UNUSED.match(rest):
                continue
            part = qkv_part(rest)
            if part is not None:
                name, index = part
                qkv_parts.setdefault(_VIT_PREFIXES[prefix] + name, {})[index] = tensor
                continue
        new = _rename(key)
        if new is None:
            unknown.append(key)
        else:
            out[new] = tensor
    join_qkv(qkv_parts, out, unknown)
    return out, unknown


def config_from_hf(hf_config: Mapping[str, Any], has_fov_weights: bool) -> DepthProConfig:
    """Build the Apple-style config from a transformers ``config.json`` dict."""
    try:
        vit = hf_config["patch_model_config"]
        for other in ("image_model_config", "fov_model_config"):
            sub = hf_config.get(other) or vit
            for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "patch_size"):
                if sub.get(k, vit.get(k)) != vit.get(k):
                    raise ValueError(f"{other}.{k} differs from patch_model_config.{k}")
        unsupported = {
            "scaled_images_ratios": [0.25, 0.5, 1],
            "scaled_images_overlap_ratios": [0.0, 0.5, 0.25],
            "merge_padding_value": 3,
            "use_batch_norm_in_fusion_residual": False,
            "num_fov_head_layers": 2,
        }
        for k, expected in unsupported.items():
            if k in hf_config and hf_config[k] != expected:
                raise ValueError(f"{k}={hf_config[k]} is not Depth Pro's {expected}")
        hidden = int(vit["hidden_size"])
        mlp = vit.get("mlp_ratio") or vit.get("intermediate_size", 4 * hidden) / hidden
        inter = hf_config["intermediate_feature_dims"]
        scaled = hf_config["scaled_images_feature_dims"]
        use_fov = hf_config.get("use_fov_model")
        return DepthProConfig(
            embed_dim=hidden,
            depth=int(vit["num_hidden_layers"]),
            num_heads=int(vit["num_attention_heads"]),
            mlp_ratio=float(mlp),
            patch_size=int(vit.get("patch_size", 16)),
            vit_image_size=int(hf_config.get("patch_size", vit.get("image_size", 384))),
            hook_block_ids=tuple(reversed(hf_config["intermediate_hook_ids"])),
            encoder_dims=(inter[0], scaled[2], scaled[1], scaled[0]),
            decoder_features=int(hf_config["fusion_hidden_size"]),
            # A config without the flag says nothing; trust the weights then.
            use_fov_head=bool(use_fov) if use_fov is not None else has_fov_weights,
        )
    except (KeyError, TypeError, IndexError) as exc:
        raise ValueError(f"missing or malformed entry {exc}") from None
