"""Hugging Face Depth Anything files, translated to the original release's layout.

``DepthAnythingForDepthEstimation`` and ``PromptDepthAnythingForDepthEstimation`` store
``backbone.*`` (transformers' DINOv2, both generations of its attention naming),
``neck.*`` and ``head.*``; the original releases (and :class:`DepthAnything`) use
``pretrained.*`` and ``depth_head.*``. The rules are listed in docs/depth_anything.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..common.errors import CheckpointError, ConfigLimitError
from ..common.family import StateDict
from ..common.hf_vit import rename_vit_key, translate
from ..common.limits import hf_named
from .config import DepthAnythingConfig

HF_MODEL_TYPES = ("depth_anything", "prompt_depth_anything")
_BACKBONE = "backbone."
_SHOWN = 5  # unknown keys listed in a message

_RULES = [
    (r"neck\.reassemble_stage\.layers\.(\d+)\.projection\.", r"depth_head.projects.\1."),
    (r"neck\.reassemble_stage\.layers\.(\d+)\.resize\.", r"depth_head.resize_layers.\1."),
    (r"head\.conv1\.", "depth_head.scratch.output_conv1."),
    (r"head\.conv2\.", "depth_head.scratch.output_conv2.0."),
    (r"head\.conv3\.", "depth_head.scratch.output_conv2.2."),
]
_NECK_CONV = re.compile(r"neck\.convs\.(\d+)\.(.+)")
_FUSION = re.compile(r"neck\.fusion_stage\.layers\.(\d+)\.(.+)")
_FUSION_INNER = [
    (r"projection\.", "out_conv."),
    (r"residual_layer([12])\.convolution([12])\.", r"resConfUnit\1.conv\2."),
    (r"prompt_depth_layer\.convolution1\.", "resConfUnit_depth.0."),
    (r"prompt_depth_layer\.convolution2\.", "resConfUnit_depth.2."),
    (r"prompt_depth_layer\.convolution3\.", "resConfUnit_depth.4."),
]


def _rename(key: str) -> str | None:
    if key.startswith(_BACKBONE):
        rest = key[len(_BACKBONE):]
        if rest == "embeddings.mask_token":
            return "pretrained.mask_token"
        new = rename_vit_key(rest)
        return None if new is None else "pretrained." + new
    m = _NECK_CONV.fullmatch(key)
    if m:
        return f"depth_head.scratch.layer{int(m.group(1)) + 1}_rn.{m.group(2)}"
    m = _FUSION.fullmatch(key)
    if m:
        # HF orders the fusion layers coarse to fine: layers.j is refinenet{4 - j}.
        inner = m.group(2)
        for pattern, repl in _FUSION_INNER:
            new, n = re.subn("^" + pattern, repl, inner)
            if n:
                return f"depth_head.scratch.refinenet{4 - int(m.group(1))}.{new}"
        return None
    for pattern, repl in _RULES:
        new, n = re.subn("^" + pattern, repl, key)
        if n:
            return new
    return None


def has_hf_tensors(state: StateDict) -> bool:
    """Whether the tensors are in the transformers layout (``backbone.*`` and ``neck.*``)."""
    return (any(k.startswith(_BACKBONE) for k in state)
            and any(k.startswith("neck.") for k in state))


def claims_hf(hf_state: StateDict, hf_config: Mapping[str, Any]) -> bool:
    """A Hugging Face folder is this family's by its tensors or its config's model_type
    (:func:`read_hf` refuses the two disagreeing)."""
    return has_hf_tensors(hf_state) or hf_config.get("model_type") in HF_MODEL_TYPES


def read_hf(path: Path, config_file: Path, hf_state: StateDict,
            hf_config: Mapping[str, Any]) -> tuple[StateDict, DepthAnythingConfig]:
    """A (Prompt)DepthAnythingForDepthEstimation folder's weights in the original names
    and its config."""
    is_da = has_hf_tensors(hf_state)
    model_type = hf_config.get("model_type")
    if not is_da or model_type not in (None, *HF_MODEL_TYPES):
        tensors = "Depth Anything's" if is_da else "not Depth Anything's (no backbone.*, neck.*)"
        raise CheckpointError(
            f"checkpoint {path}: config.json says model_type {model_type!r} but the tensors "
            f"are {tensors}"
        )
    if model_type is None:
        prompt = any(".prompt_depth_layer." in k for k in hf_state)
        hf_config = {**hf_config,
                     "model_type": "prompt_depth_anything" if prompt else "depth_anything"}
    state, unknown = hf_to_original_state_dict(hf_state, join_qkv=False)
    if unknown:
        raise CheckpointError(
            f"checkpoint {path}: not a (Prompt)DepthAnythingForDepthEstimation file; unknown "
            f"tensors: {unknown[:_SHOWN]}"
        )
    try:
        config = config_from_hf(hf_config)
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {config_file}: config cannot be built: {exc}") from None
    return state, config


def hf_to_original_state_dict(
    hf_state: Mapping[str, torch.Tensor], join_qkv: bool = True,
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename a transformers Depth Anything / Prompt Depth Anything state dict to the
    original names (q, k, v concatenated into ``qkv``; ``join_qkv`` False: apart under the
    network's names, uncopied). Returns the new state dict and the keys that no rule
    knows (reported by the caller)."""
    return translate(hf_state, _vit_of, _rename, join_qkv)


def _vit_of(key: str) -> tuple[str, str] | None:
    return ("pretrained.", key[len(_BACKBONE):]) if key.startswith(_BACKBONE) else None


# transformers' defaults for what a config.json may leave out (saved configs omit them).
_DINOV2_DEFAULTS = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                    "mlp_ratio": 4, "patch_size": 14, "image_size": 224}
_DA_DEFAULT_BACKBONE = {"model_type": "dinov2", "image_size": 518, "hidden_size": 384,
                        "num_attention_heads": 6, "out_indices": [9, 10, 11, 12]}
# Settings the architecture (and the original layout) has fixed.
_FIXED_BACKBONE = {"hidden_act": "gelu", "qkv_bias": True, "use_swiglu_ffn": False,
                   "apply_layernorm": True, "layer_norm_eps": 1e-6, "use_mask_token": True,
                   "num_channels": 3}
_FIXED_TOP = {"reassemble_factors": [4, 2, 1, 0.5], "head_in_index": -1}


# The config.json entries each DepthAnythingConfig field comes from, for messages.
_HF_NAMES = {"embed_dim": "backbone_config.hidden_size",
             "depth": "backbone_config.num_hidden_layers",
             "num_heads": "backbone_config.num_attention_heads",
             "mlp_ratio": "backbone_config.mlp_ratio",
             "patch_size": "backbone_config.patch_size",
             "pos_grid": "backbone_config.image_size / patch_size",
             "hook_block_ids": "backbone_config.out_indices",
             "neck_dims": "neck_hidden_sizes", "fusion_features": "fusion_hidden_size",
             "head_features": "head_hidden_size", "head": "depth_estimation_type",
             "max_depth": "max_depth"}


def config_from_hf(hf_config: Mapping[str, Any]) -> DepthAnythingConfig:
    """Build a :class:`DepthAnythingConfig` from a transformers ``config.json`` dict of
    model type ``depth_anything`` or ``prompt_depth_anything``.

    Raises:
        ValueError: another model type, a missing or malformed entry, or a setting this
            architecture cannot represent (the message names it).
    """
    model_type = hf_config.get("model_type")
    if model_type not in HF_MODEL_TYPES:
        raise ValueError(f"model_type {model_type!r} is not one of {HF_MODEL_TYPES}")
    prompt = model_type == "prompt_depth_anything"
    try:
        if hf_config.get("use_timm_backbone") or (
                hf_config.get("backbone") and not hf_config.get("backbone_config")):
            raise ValueError("a named (timm / hub) backbone is not supported; the "
                             "backbone must be a DINOv2 backbone_config")
        backbone = dict(hf_config.get("backbone_config") or _DA_DEFAULT_BACKBONE)
        if backbone.get("model_type", "dinov2") != "dinov2":
            raise ValueError(f"backbone model_type {backbone.get('model_type')!r} is not "
                             "supported (only dinov2, without register tokens)")
        vit = {k: backbone.get(k, v) for k, v in _DINOV2_DEFAULTS.items()}
        for k, expected in _FIXED_BACKBONE.items():
            if k in backbone and backbone[k] != expected:
                raise ValueError(f"backbone_config.{k}={backbone[k]!r} is not supported "
                                 f"(the architecture has {expected!r})")
        for k, expected in _FIXED_TOP.items():
            value = hf_config.get(k, expected)
            if (list(value) if isinstance(expected, list) else value) != expected:
                raise ValueError(f"{k}={value!r} is not supported (the architecture has "
                                 f"{expected!r})")
        # Values go to the config as they are: it checks their types and sizes (int()
        # would pass 12.7, true or "12").
        hidden = vit["hidden_size"]
        if hf_config.get("reassemble_hidden_size", hidden) != hidden:
            raise ValueError(f"reassemble_hidden_size={hf_config['reassemble_hidden_size']!r} "
                             f"differs from the backbone's hidden_size {hidden!r}")
        patch = vit["patch_size"]
        if "patch_size" in hf_config and hf_config["patch_size"] != patch:
            raise ValueError(f"patch_size={hf_config['patch_size']!r} differs from the "
                             f"backbone's patch_size {patch!r}")
        image_size = vit["image_size"]
        if not _is_int(patch) or not _is_int(image_size):
            raise ValueError("non-square patch_size / image_size are not supported")
        depth = vit["num_hidden_layers"]
        hooks = _hook_ids(backbone, depth) if _is_int(depth) and 0 < depth <= 1000 else (0,) * 4
        head = hf_config.get("depth_estimation_type", "relative")
        max_depth = hf_config.get("max_depth", 1)
        if prompt or max_depth is None:
            # transformers' prompt head ignores max_depth; a relative head with None fails.
            max_depth = 1.0
        return DepthAnythingConfig(
            embed_dim=hidden,
            depth=depth,
            num_heads=vit["num_attention_heads"],
            mlp_ratio=vit["mlp_ratio"],
            patch_size=patch,
            pos_grid=image_size // patch if patch > 0 else 0,
            hook_block_ids=hooks,
            neck_dims=tuple(hf_config.get("neck_hidden_sizes", (48, 96, 192, 384))),
            fusion_features=hf_config.get("fusion_hidden_size", 64),
            head_features=hf_config.get("head_hidden_size", 32),
            head=head,
            max_depth=max_depth,
            prompt=prompt,
        )
    except ConfigLimitError as exc:
        raise hf_named(exc, _HF_NAMES) from None
    except (KeyError, TypeError, IndexError, AttributeError, OverflowError) as exc:
        raise ValueError(f"missing or malformed entry {exc}") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _hook_ids(backbone: Mapping[str, Any], depth: int) -> tuple[int, ...]:
    """Backbone ``out_indices`` (1-based stages; 0 is the embeddings) -> 0-based blocks."""
    indices = backbone.get("out_indices")
    names = backbone.get("out_features")
    if indices is None and names is not None:
        if not isinstance(names, list) or len(names) != 4:
            raise ValueError(f"backbone out_features must list 4 stages, got {str(names)[:40]}")
        indices = []
        for name in names:
            m = re.fullmatch(r"stage(\d{1,4})", str(name)[:20])
            if not m:
                raise ValueError(f"backbone out_features entry {name!r} is not a stageN name")
            indices.append(int(m.group(1)))
    if indices is None:
        raise ValueError("backbone_config has no out_indices / out_features (the 4 hooked "
                         "stages)")
    if not isinstance(indices, list) or len(indices) != 4 or not all(map(_is_int, indices)):
        raise ValueError(f"backbone out_indices must be 4 integers, got {str(indices)[:40]}")
    indices = [i + (depth + 1 if i < 0 else 0) for i in indices]
    if any(i < 1 or i > depth for i in indices):
        raise ValueError(f"backbone out_indices must be 4 transformer stages in 1..{depth} "
                         f"(stage 0 is the embeddings), got {indices}")
    return tuple(i - 1 for i in indices)
