"""The original Depth Anything releases' files: plain state dicts with ``pretrained.*`` and
``depth_head.*`` keys (``depth_anything_v2_vits.pth``,
``depth_anything_v2_metric_hypersim_vitl.pth`` ...), and Prompt Depth Anything's Lightning
``.ckpt`` (``{"state_dict": {"pipeline.pretrained...": ...}}``, unwrapped by the checkpoint
reader). The variant comes from the tensor shapes; relative or metric from the file name or
the ``model_type``."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..common.errors import CheckpointError
from ..common.family import ModelType, StateDict
from .config import (
    MAX_DEPTH_INDOOR,
    MAX_DEPTH_OUTDOOR,
    RELEASED,
    RELEASED_HEADS,
    DepthAnythingConfig,
)
from .hf_layout import has_hf_tensors
from .preprocess import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["describe", "describe_arch", "plain_config", "read_state"]

_PREFIXES = ("pretrained.", "depth_head.")
_ANCHOR = "pretrained.cls_token"  # a key every original Depth Anything file has
_NORM_BUFFERS = {"_mean": IMAGENET_MEAN, "_std": IMAGENET_STD}  # Prompt DA's .ckpt


def describe(config: DepthAnythingConfig) -> str:
    """What ``config`` is, for messages: "Depth Anything V2, relative (vits)"."""
    if config.prompt:
        return f"Prompt Depth Anything ({config.variant})"
    if config.head == "metric":
        return f"Depth Anything V2, metric up to {config.max_depth:g} m ({config.variant})"
    return f"Depth Anything V2, relative ({config.variant})"


def describe_arch(config: DepthAnythingConfig) -> str:
    """The model and the sizes that decide its tensor names and shapes, for messages."""
    return (f"the {describe(config)} model (embed_dim={config.embed_dim}, "
            f"depth={config.depth}, prompt={config.prompt})")


def read_state(path: Path, state: StateDict) -> StateDict | None:
    """An original release's weights in the network's names; None for another family's.

    Raises:
        CheckpointError: Hugging Face tensors without their config.json, or a prompt
            normalisation that is not ImageNet's.
    """
    state = _strip_prefix(state)
    if not any(k.startswith(_PREFIXES) for k in state):
        if has_hf_tensors(state):
            raise CheckpointError(
                f"checkpoint {path}: Hugging Face Depth Anything weights need their "
                "config.json; load the folder saved by save_pretrained (model.safetensors + "
                "config.json)"
            )
        return None
    return _drop_norm_buffers(path, state)


def _strip_prefix(state: StateDict) -> StateDict:
    """Drop a wrapper's prefix (Prompt Depth Anything's Lightning module stores the network
    as ``pipeline``) from an original Depth Anything state dict; others are unchanged."""
    anchor = next((k for k in state if k.endswith(_ANCHOR)), None)
    if anchor is None or anchor == _ANCHOR:
        return state
    prefix = anchor[: -len(_ANCHOR)]
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}


def _drop_norm_buffers(path: Path, state: StateDict) -> StateDict:
    """Prompt Depth Anything stores its input normalisation as buffers ``_mean`` / ``_std``;
    the network here takes normalised input, so they go once checked to be ImageNet's."""
    for name, expected in _NORM_BUFFERS.items():
        if name in state:
            value = state[name].float().flatten()
            if value.shape != (3,) or not torch.allclose(value, torch.tensor(expected),
                                                          atol=1e-6):
                raise CheckpointError(
                    f"checkpoint {path}: {name} = {value.tolist()} is not the ImageNet "
                    f"normalisation {list(expected)} that this network's input uses"
                )
    return {k: v for k, v in state.items() if k not in _NORM_BUFFERS}


def plain_config(path: Path, state: StateDict,
                 model_type: ModelType | None) -> DepthAnythingConfig:
    """The architecture of an original file: the variant from the shapes, Prompt Depth
    Anything from its prompt layers, relative / metric from ``model_type`` or else the file name.

    Raises:
        CheckpointError: a model type that contradicts the weights, an incomplete or
            unreleased architecture, a metric file whose name does not say which release.
    """
    dims = _dims(path, state)
    prompt = any(".resConfUnit_depth." in k for k in state)
    found = "Prompt Depth Anything" if prompt else "Depth Anything V2"
    if model_type is not None:
        if model_type.family != "depth_anything" or model_type.prompt != prompt:
            raise CheckpointError(
                f"checkpoint {path}: model_type {model_type.name!r} ({model_type.text}) "
                f"contradicts its weights: {found}"
                + (" (it has prompt layers, resConfUnit_depth)" if prompt else "")
            )
        head = model_type.fields.get("head")
        max_depth = model_type.fields.get("max_depth")
    elif prompt:
        head, max_depth = None, None
    else:
        head, max_depth = _head_from_name(path)
    if head is None:  # a prompt model: the release's sigmoid head
        head = "metric" if prompt else "relative"
    return DepthAnythingConfig(**dims, head=head, max_depth=max_depth or 1.0, prompt=prompt)


def _head_from_name(path: Path) -> tuple[str, float | None]:
    words = set(re.split(r"[^a-z0-9]+", path.name.lower()))
    if "metric" not in words:
        return "relative", None
    indoor = bool(words & {"hypersim", "indoor"})
    outdoor = bool(words & {"vkitti", "vkitti2", "outdoor"})
    if indoor != outdoor:
        return "metric", MAX_DEPTH_INDOOR if indoor else MAX_DEPTH_OUTDOOR
    raise CheckpointError(
        f"checkpoint {path}: a metric Depth Anything V2 file, but its name does not say which "
        "release (hypersim / indoor: 20 m, vkitti / outdoor: 80 m); pass model_type "
        "depth_anything_v2_metric_indoor or depth_anything_v2_metric_outdoor"
    )


def _dims(path: Path, state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """ViT and decoder sizes from the tensor shapes; heads and hooks from the releases."""
    try:
        embed = state[_ANCHOR].shape[-1]
        blocks = {int(m.group(1)) for k in state
                  if (m := re.match(r"pretrained\.blocks\.(\d+)\.", k))}
        depth = max(blocks) + 1 if blocks else 0
        patch = state["pretrained.patch_embed.proj.weight"].shape[-1]
        positions = state["pretrained.pos_embed"].shape[1] - 1
        mlp_hidden = state["pretrained.blocks.0.mlp.fc1.weight"].shape[0]
        neck = tuple(state[f"depth_head.projects.{i}.weight"].shape[0] for i in range(4))
        fusion = state["depth_head.scratch.layer1_rn.weight"].shape[0]
        head_features = state["depth_head.scratch.output_conv2.0.weight"].shape[0]
    except KeyError as exc:
        raise CheckpointError(
            f"checkpoint {path}: not a complete Depth Anything checkpoint: {exc} is missing"
        ) from None
    variant = next((name for name, spec in RELEASED.items()
                    if (spec["embed_dim"], spec["depth"]) == (embed, depth)), None)
    if variant is None or embed not in RELEASED_HEADS:
        raise CheckpointError(
            f"checkpoint {path}: a Depth Anything ViT of width {embed} and depth {depth} is "
            "not a released variant (vits 384/12, vitb 768/12, vitl 1024/24), so its heads "
            "and hooked blocks are unknown; pass config=DepthAnythingConfig(...)"
        )
    grid = math.isqrt(positions)
    return dict(
        embed_dim=embed, depth=depth, num_heads=RELEASED_HEADS[embed],
        mlp_ratio=mlp_hidden / embed, patch_size=patch,
        pos_grid=grid if grid * grid == positions else 1,  # not square: the key check says
        hook_block_ids=RELEASED[variant]["hook_block_ids"], neck_dims=neck,
        fusion_features=fusion, head_features=head_features,
    )
