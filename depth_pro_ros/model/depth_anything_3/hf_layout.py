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
``config.json`` beside it; without one, an any-view release is told by its ViT's width,
and the mono and metric releases (the same tensors) by ``model_type``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..common.errors import CheckpointError
from ..common.family import ModelType, StateDict
from .config import PRESETS, DepthAnything3Config, preset

__all__ = ["HF_MODEL_TYPES", "PREFIX", "claims_hf", "describe", "describe_arch", "mode",
           "preset_of_tensors", "read_hf", "read_lone_safetensors", "read_state", "variant"]

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
    return _network_state(hf_state), config


def _network_state(hf_state: StateDict) -> StateDict:
    """The released tensors in the network's names (see the module docstring)."""
    state = {k[len(PREFIX):]: v for k, v in hf_state.items()
             if not k[len(PREFIX):].startswith(_UNUSED)}
    for names in _SHARED:
        stored = [state[n] for n in names if n in state]
        if stored:
            for n in names:
                state.setdefault(n, stored[0])
    return state


def read_state(path: Path, state: StateDict) -> StateDict | None:
    """Plain state dicts: DA3 releases none (its weights come as Hugging Face folders)."""
    return None


def read_lone_safetensors(path: Path, hf_state: StateDict) -> StateDict | None:
    """A released ``model.safetensors`` without its config.json: the network's weights
    (as :func:`read_hf` gives them) when the tensors are a ``DepthAnything3Net``'s, else
    None."""
    if not claims_hf(hf_state, {}) or any(not k.startswith(PREFIX) for k in hf_state):
        return None
    return _network_state(hf_state)


def preset_of_tensors(path: Path, state: StateDict,
                      model_type: ModelType | None) -> DepthAnything3Config:
    """The preset of weights without their config.json: an any-view release by its ViT's
    width; DA3MONO and DA3METRIC have the same tensors, so ``model_type`` says which.

    Raises:
        CheckpointError: a width no release has, or a DPT-head file without model_type.
    """
    token = state.get("backbone.pretrained.cls_token")
    width = int(token.shape[-1]) if token is not None and token.ndim == 3 else 0
    if "head.scratch.refinenet1_aux.out_conv.weight" in state:
        if width not in _NAMES:
            raise CheckpointError(f"checkpoint {path}: a Depth Anything 3 any-view ViT of "
                                  f"width {width} is no release; keep its config.json beside it")
        return DepthAnything3Config.from_preset(f"da3-{_NAMES[width]}")
    if model_type is None or model_type.fields.get("head") != "dpt":
        raise CheckpointError(
            f"checkpoint {path}: DA3MONO-LARGE and DA3METRIC-LARGE have the same tensors: "
            "keep config.json beside the file, or set model_type depth_anything_3_mono or "
            "depth_anything_3_metric")
    return preset("da3metric-large" if model_type.fields["metric"] else "da3mono-large")


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
