"""The table of model families and model types: the one place that knows them all.

A family is a folder (``depth_pro/``, ``depth_anything/``, ``depth_anything_3/``) that
provides its config, network, checkpoint layouts, batch recipe and stand-ins; its row here
points to them.
A model type is a name ``model_type`` accepts, with the family it belongs to, what it
asserts about the config, and its capabilities. Everything outside ``model/`` (the engine,
the node, the bag tool, the CLI) asks this table or the :class:`ModelInfo` of a recipe,
never a family folder. A new family is one new folder and one row in each table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from .common.config import DictConfig
from .common.family import Family, ModelType
from .common.recipe import KINDS, BatchRecipe, ModelInfo
from .depth_anything import hf_layout as da_hf
from .depth_anything import original as da_original
from .depth_anything import recipe as da_recipe
from .depth_anything import stand_in as da_stand_in
from .depth_anything.config import MAX_DEPTH_INDOOR, MAX_DEPTH_OUTDOOR, DepthAnythingConfig
from .depth_anything.network import DepthAnything, create_depth_anything
from .depth_anything_3 import hf_layout as da3_hf
from .depth_anything_3 import recipe as da3_recipe
from .depth_anything_3 import stand_in as da3_stand_in
from .depth_anything_3.config import DepthAnything3Config
from .depth_anything_3.network import DepthAnything3, create_depth_anything_3
from .depth_pro import layout as dp_layout
from .depth_pro import recipe as dp_recipe
from .depth_pro import stand_in as dp_stand_in
from .depth_pro.config import DepthProConfig
from .depth_pro.network import DepthPro, create_model

if TYPE_CHECKING:
    from torch import nn

__all__ = ["FAMILIES", "KINDS", "MODEL_TYPES", "BatchRecipe", "Family", "ModelInfo",
           "ModelType", "config_classes", "describe", "families", "families_in_order",
           "family", "family_of", "hf_model_types", "model_type", "recipe_for"]

# Depth Pro is the catch-all: any plain state dict (or Hugging Face folder without a
# model_type) that no other family claims is taken for Apple's and gets the key check's
# message.
_FAMILY_ROWS = (
    Family(
        name="depth_pro", text="Depth Pro", plain_files="Apple's depth_pro.pt",
        config_class=DepthProConfig, network_class=DepthPro,
        create=create_model, make_recipe=dp_recipe.make_recipe,
        describe=dp_layout.describe, describe_arch=dp_layout.describe_arch,
        read_state=dp_layout.read_state, plain_config=dp_layout.plain_config,
        hf_model_types=dp_layout.HF_MODEL_TYPES,
        claims_hf=dp_layout.claims_hf, read_hf=dp_layout.read_hf,
        stand_in_sizes=dp_stand_in.SIZES, stand_in=dp_stand_in.stand_in_config,
        plausible=dp_stand_in.plausible, stand_in_seed=dp_stand_in.SEED,
        catch_all=True,
    ),
    Family(
        name="depth_anything", text="Depth Anything",
        plain_files="a Depth Anything .pth / .ckpt",
        config_class=DepthAnythingConfig, network_class=DepthAnything,
        create=create_depth_anything, make_recipe=da_recipe.make_recipe,
        describe=da_original.describe, describe_arch=da_original.describe_arch,
        read_state=da_original.read_state, plain_config=da_original.plain_config,
        hf_model_types=da_hf.HF_MODEL_TYPES,
        claims_hf=da_hf.claims_hf, read_hf=da_hf.read_hf,
        stand_in_sizes=da_stand_in.SIZES, stand_in=da_stand_in.stand_in_config,
        plausible=da_stand_in.plausible, stand_in_seed=da_stand_in.SEED,
    ),
    Family(
        name="depth_anything_3", text="Depth Anything 3",
        plain_files="",  # its releases are Hugging Face folders only
        config_class=DepthAnything3Config, network_class=DepthAnything3,
        create=create_depth_anything_3, make_recipe=da3_recipe.make_recipe,
        describe=da3_hf.describe, describe_arch=da3_hf.describe_arch,
        read_state=da3_hf.read_state, plain_config=da3_hf.preset_of_tensors,
        hf_model_types=da3_hf.HF_MODEL_TYPES,
        claims_hf=da3_hf.claims_hf, read_hf=da3_hf.read_hf,
        stand_in_sizes=da3_stand_in.SIZES, stand_in=da3_stand_in.stand_in_config,
        plausible=da3_stand_in.plausible, stand_in_seed=da3_stand_in.SEED,
        read_lone_safetensors=da3_hf.read_lone_safetensors,
    ),
)
_FAMILIES: dict[str, Family] = {f.name: f for f in _FAMILY_ROWS}
_RECOGNITION = tuple(sorted(_FAMILY_ROWS, key=lambda f: f.catch_all))

_TYPE_ROWS = (
    ModelType("depth_pro", "depth_pro", "Depth Pro", "metric",
              needs_focal=True, fov_head=True),
    ModelType("depth_anything_v2", "depth_anything", "Depth Anything V2, relative",
              "relative", {"prompt": False, "head": "relative"}),
    ModelType("depth_anything_v2_metric_indoor", "depth_anything",
              "Depth Anything V2, metric up to 20 m (Hypersim)", "metric",
              {"prompt": False, "head": "metric", "max_depth": MAX_DEPTH_INDOOR}),
    ModelType("depth_anything_v2_metric_outdoor", "depth_anything",
              "Depth Anything V2, metric up to 80 m (Virtual KITTI)", "metric",
              {"prompt": False, "head": "metric", "max_depth": MAX_DEPTH_OUTDOOR}),
    ModelType("prompt_depth_anything", "depth_anything", "Prompt Depth Anything", "metric",
              {"prompt": True}, prompt=True),
    # DA3's size is the preset its config.json names; a type asserts only the kind.
    ModelType("depth_anything_3", "depth_anything_3",
              "Depth Anything 3, any-view (DA3-SMALL ... GIANT, one view per frame)",
              "relative", {"head": "dualdpt"}, fov_head=True),
    ModelType("depth_anything_3_mono", "depth_anything_3",
              "Depth Anything 3, monocular relative (DA3MONO-LARGE)", "relative",
              {"head": "dpt", "metric": False}),
    ModelType("depth_anything_3_metric", "depth_anything_3",
              "Depth Anything 3, metric (DA3METRIC-LARGE: focal x output / 300)", "metric",
              {"head": "dpt", "metric": True}, needs_focal=True),
)
_TYPES: dict[str, ModelType] = {t.name: t for t in _TYPE_ROWS}

#: The model families, by the name their folder, project files and ModelInfo use.
FAMILIES = tuple(_FAMILIES)
#: ``model_type`` values: ``auto`` (or None) detects; the others say what the file is. For
#: original Depth Anything V2 files, which cannot tell relative from metric, they replace
#: the file-name guess; anywhere else they must agree with what the file says.
MODEL_TYPES = ("auto", *_TYPES)


def families_in_order() -> tuple[Family, ...]:
    """Every family's row, in the order of the table (:data:`FAMILIES`)."""
    return _FAMILY_ROWS


def families() -> tuple[Family, ...]:
    """Every family's row, in recognition order (the catch-all last)."""
    return _RECOGNITION


def family(name: str) -> Family:
    """The row of family ``name`` (one of :data:`FAMILIES`); KeyError for another."""
    return _FAMILIES[name]


def family_of(obj: nn.Module | DictConfig) -> Family:
    """The family of a network or a config of this project.

    Raises:
        TypeError: anything else.
    """
    for row in _FAMILY_ROWS:
        if isinstance(obj, (row.network_class, row.config_class)):
            return row
    raise TypeError(f"not a model or config of this project: {type(obj).__name__}")


def model_type(name: str | None) -> ModelType | None:
    """The row of ``name``; None for ``auto`` or None (detect from the file).

    Raises:
        ValueError: an unknown name.
    """
    if name is None or name == "auto":
        return None
    if name not in _TYPES:
        raise ValueError(f"unknown model_type {name!r}; use one of {', '.join(MODEL_TYPES)}")
    return _TYPES[name]


def describe(config: DictConfig) -> str:
    """What a config of any family is, for messages: "Depth Anything V2, relative (vits)"."""
    return family_of(config).describe(config)


def config_classes() -> tuple[type, ...]:
    """The config class of every family."""
    return tuple(row.config_class for row in _FAMILY_ROWS)


def hf_model_types() -> tuple[str, ...]:
    """Every Hugging Face ``config.json`` model_type some family reads."""
    return tuple(t for row in _FAMILY_ROWS for t in row.hf_model_types)


def recipe_for(model: nn.Module, input_size: int = 0, sky_mask: bool = True) -> BatchRecipe:
    """The batch recipe of ``model``'s family. ``input_size`` (0 = the family's default)
    is the family's size bound (Depth Anything's; Depth Pro's input is fixed).
    ``sky_mask``: sky pixels are NaN (models with a sky head: Depth Anything 3's DPT).

    Raises:
        ValueError: an ``input_size`` the family cannot use.
        TypeError: not a network of this project.
    """
    return family_of(model).make_recipe(model, input_size, sky_mask)


def _check_rows(rows: Mapping[str, ModelType]) -> None:
    """Each model type names a known family and kind (a typo in a row fails at import)."""
    for row in rows.values():
        if row.family not in _FAMILIES or row.kind not in KINDS:
            raise ValueError(f"model type {row.name}: unknown family or kind")


_check_rows(_TYPES)
