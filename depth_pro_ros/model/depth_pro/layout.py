"""Depth Pro's checkpoint layouts: Apple's ``depth_pro.pt`` and Hugging Face
``DepthProForDepthEstimation`` files (translated to Apple's names).

The rules are listed in docs/checkpoints.md; both generations of the transformers ViT naming
(``attention.attention.query`` and ``attention.q_proj``) are understood. The registry
calls :func:`read_state`, :func:`claims_hf` and :func:`read_hf` (see ``common.family``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..common.errors import CheckpointError, ConfigLimitError
from ..common.family import ModelType, StateDict
from ..common.hf_vit import rename_vit_key, translate
from ..common.limits import hf_named
from .config import DepthProConfig

HF_MODEL_TYPES = ("depth_pro",)
_SHOWN = 5  # unknown keys listed in a message

_VIT_PREFIXES = {
    "depth_pro.encoder.patch_encoder.model.": "encoder.patch_encoder.",
    "depth_pro.encoder.image_encoder.model.": "encoder.image_encoder.",
    "fov_model.fov_encoder.model.": "fov.encoder.0.",
}

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


def _rename(key: str) -> str | None:
    for prefix, target in _VIT_PREFIXES.items():
        if key.startswith(prefix):
            rest = key[len(prefix):]
            if _UNUSED.match(rest):
                return ""  # dropped
            new = rename_vit_key(rest)
            return None if new is None else target + new
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
    hf_state: Mapping[str, torch.Tensor], join_qkv: bool = True,
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename a transformers state dict to Apple's names (``join_qkv`` False: q, k and v
    stay apart under the network's names, the file's tensors uncopied).

    Returns the new state dict and the keys that no rule knows (reported by the caller).
    """
    return translate(hf_state, _vit_of, _rename, join_qkv)


def _vit_of(key: str) -> tuple[str, str] | None:
    prefix = next((p for p in _VIT_PREFIXES if key.startswith(p)), None)
    return None if prefix is None else (_VIT_PREFIXES[prefix], key[len(prefix):])


# The config.json entries each DepthProConfig field comes from, for messages.
_HF_NAMES = {"embed_dim": "patch_model_config.hidden_size",
             "depth": "patch_model_config.num_hidden_layers",
             "num_heads": "patch_model_config.num_attention_heads",
             "mlp_ratio": "patch_model_config.intermediate_size / hidden_size",
             "patch_size": "patch_model_config.patch_size", "vit_image_size": "patch_size",
             "hook_block_ids": "intermediate_hook_ids",
             "encoder_dims": "intermediate_feature_dims / scaled_images_feature_dims",
             "decoder_features": "fusion_hidden_size", "use_fov_head": "use_fov_model"}


def _ratio(intermediate: Any, hidden: Any) -> Any:
    """``intermediate_size / hidden_size`` (4 when absent); non-numbers pass through for
    the config to name."""
    if intermediate is None:
        return 4.0
    numbers = all(isinstance(v, int) and not isinstance(v, bool) for v in (intermediate, hidden))
    return intermediate / hidden if numbers and hidden > 0 else intermediate


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
        # Values go to the config as they are: it checks their types and sizes (int()
        # would pass 12.7, true or "12").
        hidden = vit["hidden_size"]
        mlp = vit.get("mlp_ratio") or _ratio(vit.get("intermediate_size"), hidden)
        inter = hf_config["intermediate_feature_dims"]
        scaled = hf_config["scaled_images_feature_dims"]
        use_fov = hf_config.get("use_fov_model")
        return DepthProConfig(
            embed_dim=hidden,
            depth=vit["num_hidden_layers"],
            num_heads=vit["num_attention_heads"],
            mlp_ratio=mlp,
            patch_size=vit.get("patch_size", 16),
            vit_image_size=hf_config.get("patch_size", vit.get("image_size", 384)),
            hook_block_ids=tuple(reversed(hf_config["intermediate_hook_ids"])),
            encoder_dims=(inter[0], scaled[2], scaled[1], scaled[0]),
            decoder_features=hf_config["fusion_hidden_size"],
            # A config without the flag says nothing; trust the weights then.
            use_fov_head=use_fov if use_fov is not None else has_fov_weights,
        )
    except ConfigLimitError as exc:
        raise hf_named(exc, _HF_NAMES) from None
    except (KeyError, TypeError, IndexError, AttributeError) as exc:
        raise ValueError(f"missing or malformed entry {exc}") from None


def describe(config: DepthProConfig) -> str:
    """What ``config`` is, for messages."""
    return "Depth Pro"


def describe_arch(config: DepthProConfig) -> str:
    """The model and the sizes that decide its tensor names and shapes, for messages."""
    return (f"the Depth Pro model (embed_dim={config.embed_dim}, depth={config.depth}, "
            f"use_fov_head={config.use_fov_head})")


def read_state(path: Path, state: StateDict) -> StateDict:
    """Apple's plain state dict, as it is (any other plain state dict ends here too, last
    in the registry, and gets the key check's message)."""
    return state


def plain_config(path: Path, state: StateDict, model_type: ModelType | None) -> DepthProConfig:
    """A plain state dict is the released architecture (the caller checks ``model_type``)."""
    return DepthProConfig.depth_pro()


def claims_hf(hf_state: StateDict, hf_config: Mapping[str, Any]) -> bool:
    """A Hugging Face folder is Depth Pro's when its config says so or says nothing."""
    return hf_config.get("model_type") in (None, *HF_MODEL_TYPES)


def read_hf(path: Path, config_file: Path, hf_state: StateDict,
            hf_config: Mapping[str, Any]) -> tuple[StateDict, DepthProConfig]:
    """A ``DepthProForDepthEstimation`` folder's weights in Apple's names and its config."""
    state, unknown = hf_to_apple_state_dict(hf_state, join_qkv=False)
    if unknown:
        raise CheckpointError(
            f"checkpoint {path}: not a DepthProForDepthEstimation file; unknown tensors: "
            f"{unknown[:_SHOWN]}"
        )
    has_fov = any(k.startswith("fov.") for k in state)
    try:
        config = config_from_hf(hf_config, has_fov)
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {config_file}: config cannot be built: {exc}") from None
    if not config.use_fov_head:
        state = {k: v for k, v in state.items() if not k.startswith("fov.")}
    return state, config
