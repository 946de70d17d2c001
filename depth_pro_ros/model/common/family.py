"""The shape of a registry row (:mod:`depth_pro_ros.model.registry`): a model family and the
model types that name its releases. Each family folder provides the functions a row
points to; nothing here knows a family."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import DictConfig

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .recipe import BatchRecipe

__all__ = ["Family", "ModelType", "StateDict"]

StateDict = dict[str, "torch.Tensor"]


@dataclass(frozen=True)
class ModelType:
    """One value of ``model_type``: what a user says a checkpoint is.

    ``fields``: the config values this type asserts (a file whose config differs
    contradicts it; an original file that cannot tell takes them). Capabilities: ``kind``
    (metric or relative), ``prompt`` (needs a prompt depth per frame), ``needs_focal`` (the
    depth itself needs a focal length), ``fov_head`` (the release estimates the FoV).
    """

    name: str
    family: str
    text: str  # e.g. "Depth Anything V2, metric up to 20 m (Hypersim)"
    kind: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    prompt: bool = False
    needs_focal: bool = False
    fov_head: bool = False

    def agrees(self, config: DictConfig) -> bool:
        """Whether ``config`` (of this type's family) has every value this type asserts."""
        return all(getattr(config, k) == v for k, v in self.fields.items())


@dataclass(frozen=True)
class Family:
    """One model family: its config and network, how its checkpoints are recognised, and
    its batch recipe.

    Checkpoint recognition, in registry order (the first family that claims a file reads
    it): ``read_state(path, state)`` takes a plain state dict and returns the weights in
    the network's names, or None when the file is not this family's;
    ``plain_config(path, state, model_type)`` is the architecture of such weights when no
    config is given (``model_type`` settles what the file cannot say, and a contradiction
    is a ``CheckpointError``); ``claims_hf(hf_state, hf_config)`` says whether a Hugging
    Face folder is this family's, and ``read_hf(path, config_file, hf_state, hf_config)`` reads it.
    """

    name: str  # one of the registry's FAMILIES; a project file's "model" entry
    text: str  # "Depth Pro"
    plain_files: str  # its plain-state-dict files, for messages: "Apple's depth_pro.pt"; "": none
    config_class: type[DictConfig]
    network_class: type[nn.Module]
    create: Callable[..., nn.Module]  # (config, device="cpu", precision=fp32)
    make_recipe: Callable[[Any, int, bool], BatchRecipe]  # (network, input_size, sky_mask)
    describe: Callable[[Any], str]  # config -> "Prompt Depth Anything (vitl)"
    describe_arch: Callable[[Any], str]  # config -> its sizes, for key mismatch messages
    read_state: Callable[[Path, StateDict], StateDict | None]
    plain_config: Callable[[Path, StateDict, ModelType | None], DictConfig]
    hf_model_types: tuple[str, ...]
    claims_hf: Callable[[StateDict, Mapping[str, Any]], bool]
    read_hf: Callable[[Path, Path, StateDict, Mapping[str, Any]],
                      tuple[StateDict, DictConfig]]
    stand_in_sizes: tuple[str, ...]  # "tiny" and the released architectures
    stand_in: Callable[[str, ModelType], DictConfig]  # (size, model type) -> config
    plausible: Callable[[Any, bool], None]  # (network, tiny): outputs that look real
    stand_in_seed: int  # the fixed seed of its stand-ins
    catch_all: bool = False  # reads files no other family claims: asked last
    # A lone .safetensors file without its config.json: the weights in the network's
    # names when they are this family's and their tensors can tell the architecture
    # (``plain_config`` then makes it out), else None (the missing config.json is the error).
    read_lone_safetensors: Callable[[Path, StateDict], StateDict | None] | None = None
