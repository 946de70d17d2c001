"""Random-weight stand-ins: a network of any family and size to try the tools without the
real weights (``depth-pro-ros checkpoint --random``). Their depth is meaningless.

``tiny`` is a network of about a megabyte that takes a second or so per picture on a CPU;
the released sizes (Depth Pro ``full``, Depth Anything ``vits`` / ``vitb`` / ``vitl``) have
the real architecture, for timing and memory trials. A few biases and scales are set (each
family's ``stand_in.plausible``) so that the outputs look plausible: a Depth Pro FoV near
60 degrees (a usable focal estimate), depth that varies across the image, a Depth
Anything head that is neither zero nor saturated. The same arguments always give the
same weights (a fixed seed per family).
"""

from __future__ import annotations

import torch
from torch import nn

from . import registry
from .common.config import DictConfig
from .common.family import Family, ModelType

__all__ = ["RANDOM_SIZES", "STAND_IN_TYPES", "random_config", "random_model", "stand_in_text"]

#: The model types a stand-in can be built for (every one but ``auto``).
STAND_IN_TYPES = tuple(t for t in registry.MODEL_TYPES if t != "auto")
#: The sizes of each family: ``tiny`` and the released architectures.
RANDOM_SIZES = {f.name: f.stand_in_sizes for f in registry.families()}
_RELEASED_INIT_STD = 0.02  # the weight scale of a trained ViT, for the released sizes


def _type(model_type: str) -> tuple[ModelType, Family]:
    row = registry.model_type(model_type) if model_type in STAND_IN_TYPES else None
    if row is None:
        raise ValueError(f"unknown model type {model_type!r}; use one of "
                         f"{', '.join(STAND_IN_TYPES)}")
    return row, registry.family(row.family)


def random_config(model_type: str = "depth_pro", size: str = "tiny") -> DictConfig:
    """The architecture of the stand-in ``size`` of ``model_type`` (one of
    :data:`STAND_IN_TYPES`): a config of the type's family.

    Raises:
        ValueError: an unknown model type, or a size its family does not have (see
            :data:`RANDOM_SIZES`).
    """
    row, family = _type(model_type)
    if size not in family.stand_in_sizes:
        raise ValueError(f"{row.text} has no size {size!r}; use one of "
                         f"{', '.join(family.stand_in_sizes)}")
    return family.stand_in(size, row)


def random_model(model_type: str = "depth_pro", size: str = "tiny",
                 seed: int | None = None) -> nn.Module:
    """A stand-in network with random weights (fp32, CPU, eval mode).

    ``seed`` None: the family's fixed seed. The global torch random state is left as it
    was.

    Raises:
        ValueError: as :func:`random_config`.
    """
    config = random_config(model_type, size)
    family = _type(model_type)[1]
    if seed is None:
        seed = family.stand_in_seed
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = family.create(config)
        with torch.no_grad():
            if size != "tiny":
                for param in model.parameters():
                    if param.dim() > 1:  # weights; biases, norms and tokens keep their init
                        param.normal_(0.0, _RELEASED_INIT_STD)
            family.plausible(model, size == "tiny")
    return model.eval()


def stand_in_text(model_type: str, size: str) -> str:
    """What the stand-in is, for messages: "Depth Anything V2, relative, tiny"."""
    return f"{_type(model_type)[0].text}, {size}"
