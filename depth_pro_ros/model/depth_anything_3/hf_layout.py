"""Depth Anything 3's released checkpoints: Hugging Face folders as the ``depth-anything-3``
package's ``DepthAnything3`` (a ``PyTorchModelHubMixin``) saves them.

``config.json`` holds the init arguments: ``{"model_name": "da3-small"}`` (any further
keyword arguments, which the package ignores, are ignored here too); the preset named is
the architecture (:data:`.config.PRESETS`). ``model.safetensors`` holds the
``DepthAnything3Net`` under ``model.``; the network here has the same names without it.
Tensors no depth output uses (DA3-GIANT's 3D-Gaussian head ``gs_head.*`` /
``gs_adapter.*``) are dropped; the LayerNorm DualDPT's four ray stacks share, stored
under one of its four names, is given all four. The key and shape check against the preset is the
loader's (:mod:`..checkpoint`). A lone ``model.safetensors`` is read with the
``config.json`` beside it: the mono and metric releases have the same tensors, so the
weights alone cannot tell them apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..common.errors import CheckpointError
from ..common.family import ModelType, StateDict
from .config import PRESETS, DepthAnything3Config, preset

__all__ = ["HF_MODEL_TYPES", "PREFIX", "claims_hf", "describe", "describe_arch", "mode",
           "plain_config", "read_hf", "read_state", "variant"]

#: What a DA3 config.json names (its ``model_name``), for messages listing the known ones.
HF_MODEL_TYPES = tuple(f"model_name {name}" for name in PRESETS)
PREFIX = "model."
_UNUSED = ("gs_head.", "gs_adapter.")  # the 3D-Gaussian branch: no depth output uses it
# DualDPT's four ray stacks share one LayerNorm; safetensors' save_model (the mixin's)
# writes shared tensors under one name only (the first in sorted order).
_SHARED = tuple(tuple(f"head.scratch.output_conv2_aux.{i}.2.{p}" for i in range(4))
                for p in ("weight", "bias"))
_SHOWN = 5  # keys listed in a message
_NAMES = {384: "small", 768: "base", 1024: "large", 1536: "giant"}


def claims_hf(hf_state: StateDict, hf_config: Mapping[str, Any]) -> bool:
    """A folder is DA3's when its config.json has a ``model_name`` (the mixin's init
    argument) or its tensors are a ``DepthAnything3Net``'s (``model.backbone.*`` and
    ``model.head.*``); :func:`read_hf` refuses what does not fit."""
    return "model_name" in hf_config or (
        any(k.startswith("model.backbone.") for k in hf_state)
        and any(k.startswith("model.head.") for k in hf_state))


def read_hf(path: Path, config_file: Path, hf_state: StateDict,
            hf_config: Mapping[str, Any]) -> tuple[StateDict, DepthAnything3Config]:
    """A released DA3 folder's weights in the network's names and its preset's config.

    Raises:
        CheckpointError: no or an unknown ``model_name``, the nested preset (two networks,
            not run by this project yet), or tensors outside ``model.``.
    """
    name = hf_config.get("model_name")
    known = ", ".join(n for n in PRESETS if not isinstance(PRESETS[n], tuple))
    if not isinstance(name, str) or name not in PRESETS:
        raise CheckpointError(
            f"checkpoint {config_file}: model_name {name!r} is not a Depth Anything 3 "
            f"preset; config.json must name one of {known}")
    config = preset(name)
    if not isinstance(config, DepthAnything3Config):
        raise CheckpointError(
            f"checkpoint {path}: {name} is two networks (any-view + metric); this project "
            f"runs one Depth Anything 3 network: use one of {known}")
    foreign = [k for k in hf_state if not k.startswith(PREFIX)]
    if foreign:
        raise CheckpointError(
            f"checkpoint {path}: not a released Depth Anything 3 model.safetensors (its "
            f"tensors are all under {PREFIX!r}); other tensors: {foreign[:_SHOWN]}")
    state = {k[len(PREFIX):]: v for k, v in hf_state.items()
             if not k[len(PREFIX):].startswith(_UNUSED)}
    for names in _SHARED:
        stored = [state[n] for n in names if n in state]
        if stored:
            for n in names:
                state.setdefault(n, stored[0])
    return state, config


def read_state(path: Path, state: StateDict) -> StateDict | None:
    """Plain state dicts: DA3 releases none (its weights come as Hugging Face folders)."""
    return None


def plain_config(path: Path, state: StateDict,
                 model_type: ModelType | None) -> DepthAnything3Config:
    """Never reached (:func:`read_state` claims no plain file)."""
    raise CheckpointError(f"checkpoint {path}: Depth Anything 3 weights come with their "
                          "config.json (a Hugging Face folder)")


def variant(config: DepthAnything3Config) -> str:
    """The released size its ViT has (small / base / large / giant), else "custom"."""
    return _NAMES.get(config.embed_dim, "custom")


def mode(config: DepthAnything3Config) -> str:
    """any-view, monocular (relative) or metric."""
    return "metric" if config.metric else "any-view" if config.any_view else "monocular"


def describe(config: DepthAnything3Config) -> str:
    """What ``config`` is, for messages: "Depth Anything 3 (small, any-view)"."""
    return f"Depth Anything 3 ({variant(config)}, {mode(config)})"


def describe_arch(config: DepthAnything3Config) -> str:
    """The model and the sizes that decide its tensor names and shapes, for messages."""
    return (f"the {describe(config)} model (embed_dim={config.embed_dim}, depth="
            f"{config.depth}, head={config.head}, camera={config.camera})")
