"""Bounds on every size a config declares, checked before any module is built.

A checkpoint's config comes from the file: ``embed_dim = 10**9`` would end in an
allocation failure and ``depth = 10**7`` would build modules for minutes. Each field has a
type and a range far above every released network (the largest, Depth Anything's ViT-G
and Depth Pro, have 1536 channels, 40 blocks and 1.3 G parameters), and the parameter
count the config implies is bounded as a whole, since fields within their ranges can
still multiply to an absurd model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .errors import ConfigLimitError

__all__ = ["FIELD_LIMITS", "MAX_PARAMETERS", "check_fields", "check_parameters", "hf_named",
           "vit_parameters"]

#: Inclusive (low, high) of each int field (tuples: of each entry) and float field.
FIELD_LIMITS: dict[str, tuple[float, float]] = {
    "embed_dim": (1, 8192),
    "depth": (1, 256),
    "num_heads": (1, 256),
    "mlp_ratio": (0.0, 16.0),  # low exclusive
    "patch_size": (1, 64),
    "vit_image_size": (1, 24 * 64),
    "pos_grid": (1, 256),
    "hook_block_ids": (0, 255),
    "encoder_dims": (1, 8192),
    "neck_dims": (1, 8192),
    "decoder_features": (1, 4096),
    "fusion_features": (1, 4096),
    "head_features": (1, 4096),
    "max_depth": (0.0, 100_000.0),  # metres, low exclusive
    # Depth Anything 3: the block from which a feature starts (-1: never), head outputs,
    # the camera encoder's trunk.
    "alt_start": (-1, 255),
    "rope_start": (-1, 255),
    "qknorm_start": (-1, 255),
    "output_dim": (1, 64),
    "camera_depth": (1, 256),
    "camera_heads": (1, 256),
}
#: Parameters a config may imply: about 7x the largest released network.
MAX_PARAMETERS = 10_000_000_000


def _bounded_int(name: str, value: Any, low: float, high: float) -> int:
    # bool is an int subclass, and JSON's 12.0 is no block count: both are refused.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigLimitError(name, value, f"must be an integer, not {type(value).__name__}")
    if not low <= value <= high:
        raise ConfigLimitError(name, value, f"must be in {low:g}..{high:g}")
    return value


def check_fields(values: Mapping[str, Any], ints: tuple[str, ...], floats: tuple[str, ...],
                 int_tuples: Mapping[str, int], bools: tuple[str, ...] = ()) -> None:
    """Refuse any field of the wrong type or out of :data:`FIELD_LIMITS` (int fields,
    float fields, int tuples of the given lengths, bools).

    Raises:
        ConfigLimitError: naming the first bad field, its value and the limit.
    """
    for name in ints:
        _bounded_int(name, values[name], *FIELD_LIMITS[name])
    for name in floats:
        value = values[name]
        low, high = FIELD_LIMITS[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigLimitError(name, value, f"must be a number, not {type(value).__name__}")
        if not (math.isfinite(value) and low < value <= high):
            raise ConfigLimitError(name, value, f"must be above {low:g} and at most {high:g}")
    for name, length in int_tuples.items():
        value = values[name]
        if not isinstance(value, (list, tuple)) or len(value) != length:
            raise ConfigLimitError(name, value, f"must be a list of {length} integers")
        for i, item in enumerate(value):
            _bounded_int(f"{name}[{i}]", item, *FIELD_LIMITS[name])
    for name in bools:
        if not isinstance(values[name], bool):
            raise ConfigLimitError(name, values[name], "must be true or false")


def vit_parameters(embed_dim: int, depth: int, mlp_hidden: int, patch_size: int,
                   tokens: int) -> int:
    """Parameters of a ViT: attention (4 E^2), MLP (2 E M), patch and position embedding."""
    block = 4 * embed_dim * embed_dim + 2 * embed_dim * mlp_hidden + 13 * embed_dim
    return depth * block + 3 * patch_size * patch_size * embed_dim + (tokens + 2) * embed_dim


def check_parameters(name: str, count: int) -> None:
    """Refuse a config that implies more than :data:`MAX_PARAMETERS` parameters."""
    if count > MAX_PARAMETERS:
        raise ConfigLimitError(
            f"{name} (all fields together)", f"{count:.3g} parameters",
            f"at most {MAX_PARAMETERS:.3g} parameters (the largest released network has "
            "1.3e+09)")


def hf_named(exc: ConfigLimitError, names: Mapping[str, str]) -> ConfigLimitError:
    """``exc`` with the config.json entry its field came from added to the field's name."""
    source = names.get(exc.field.split("[")[0].split(" ")[0])
    field = f"{exc.field} (config.json {source})" if source else exc.field
    return ConfigLimitError(field, exc.value, exc.limit)
