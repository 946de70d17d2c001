"""Random-weight stand-ins: a network of any family and size to try the tools without the
real weights (``depth-pro-ros checkpoint --random``). Their depth is meaningless.

``tiny`` is a network of about a megabyte that takes a second or so per picture on a CPU;
the released sizes (Depth Pro ``full``, Depth Anything ``vits`` / ``vitb`` / ``vitl``) have
the real architecture, for timing and memory trials. A few biases and scales are set so that the
outputs look plausible: a Depth Pro FoV near 60 degrees (a usable focal estimate), depth
that varies across the image, a Depth Anything head that is neither zero nor saturated.
The same arguments always give the same weights (a fixed seed per family).
"""

from __future__ import annotations

import torch

from .checkpoint import _TYPE_SPECS, _TYPE_TEXT, MODEL_TYPES
from .config import DepthProConfig
from .depth_anything import DepthAnything, DepthAnythingConfig, create_depth_anything
from .network import DepthPro, create_model

__all__ = ["RANDOM_SIZES", "STAND_IN_TYPES", "random_config", "random_model", "stand_in_text"]

#: The model types a stand-in can be built for (every one but ``auto``).
STAND_IN_TYPES = tuple(t for t in MODEL_TYPES if t != "auto")
#: The sizes of each family: ``tiny`` and the released architectures.
RANDOM_SIZES = {
    "depth_pro": ("tiny", "full"),
    "depth_anything": ("tiny", "vits", "vitb", "vitl"),
}
_SEEDS = {"depth_pro": 3, "depth_anything": 5}
_RELEASED_INIT_STD = 0.02  # the weight scale of a trained ViT, for the released sizes


def _family(model_type: str) -> str:
    if model_type not in STAND_IN_TYPES:
        raise ValueError(f"unknown model type {model_type!r}; use one of "
                         f"{', '.join(STAND_IN_TYPES)}")
    return _TYPE_SPECS[model_type][0]


def random_config(model_type: str = "depth_pro",
                  size: str = "tiny") -> DepthProConfig | DepthAnythingConfig:
    """The architecture of the stand-in ``size`` of ``model_type`` (one of
    :data:`STAND_IN_TYPES`).

    Raises:
        ValueError: an unknown model type, or a size its family does not have (see
            :data:`RANDOM_SIZES`).
    """
    family = _family(model_type)
    if size not in RANDOM_SIZES[family]:
        raise ValueError(f"{_TYPE_TEXT[model_type]} has no size {size!r}; use one of "
                         f"{', '.join(RANDOM_SIZES[family])}")
    if family == "depth_pro":
        return DepthProConfig.tiny() if size == "tiny" else DepthProConfig.depth_pro()
    _, prompt, head, max_depth = _TYPE_SPECS[model_type]
    return getattr(DepthAnythingConfig, size)(head=head, max_depth=max_depth or 1.0,
                                              prompt=bool(prompt))


def random_model(model_type: str = "depth_pro", size: str = "tiny",
                 seed: int | None = None) -> DepthPro | DepthAnything:
    """A stand-in network with random weights (fp32, CPU, eval mode).

    ``seed`` None: the family's fixed seed. The global torch random state is left as it
    was.

    Raises:
        ValueError: as :func:`random_config`.
    """
    config = random_config(model_type, size)
    if seed is None:
        seed = _SEEDS[_family(model_type)]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if isinstance(config, DepthProConfig):
            model = create_model(config)
        else:
            model = create_depth_anything(config)
        with torch.no_grad():
            if size != "tiny":
                for param in model.parameters():
                    if param.dim() > 1:  # weights; biases, norms and tokens keep their init
                        param.normal_(0.0, _RELEASED_INIT_STD)
            _plausible_outputs(model, tiny=size == "tiny")
    return model.eval()


@torch.no_grad()
def _plausible_outputs(model: DepthPro | DepthAnything, tiny: bool) -> None:
    if isinstance(model, DepthPro):
        # Random weights give a negative FoV and nearly constant depth: a ~60 degree FoV
        # that differs between pictures, and depth that varies across the image.
        if model.fov is not None:
            model.fov.head[-1].bias.fill_(60.0)
            if tiny:
                model.fov.head[-1].weight.mul_(30.0)
        if tiny:
            model.head[-2].weight.mul_(20.0)
        model.head[-2].bias.fill_(0.3)
        return
    # The last 1x1 convolution: scaled up, and its bias set so that the relative head's
    # ReLU keeps most pixels positive and the metric sigmoid is not saturated.
    last = [m for m in model.modules()
            if isinstance(m, torch.nn.Conv2d) and m.out_channels == 1][-1]
    last.weight.mul_(8.0)
    last.bias.fill_(0.5 if model.config.head == "metric" else 2.0)


def stand_in_text(model_type: str, size: str) -> str:
    """What the stand-in is, for messages: "Depth Anything V2, relative, tiny"."""
    _family(model_type)
    return f"{_TYPE_TEXT[model_type]}, {size}"
