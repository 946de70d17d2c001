"""The PyTorch backend: the model's own module, eager, compiled or replayed as CUDA graphs.

``EngineConfig.compile`` wraps the network in ``torch.compile``; ``cuda_graphs`` (CUDA
devices only, ignored elsewhere) replays it as CUDA graphs, one per input signature, at
most ``graph_cache_size`` of them (:mod:`.graphs`). With both, the graphs are captured
from the compiled module: its warm-up calls compile outside the capture, and the capture
records the compiled kernels (compile's own ``mode="reduce-overhead"`` graphs are not
used: they keep their own memory pool and cache, unbounded by ``graph_cache_size``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from depth_pro_ros.engine.backends.base import RawOutput
from depth_pro_ros.engine.backends.graphs import GraphCache, GraphedNetwork
from depth_pro_ros.engine.device import require_precision_support

if TYPE_CHECKING:
    from depth_pro_ros.engine.types import EngineConfig
    from depth_pro_ros.model import BatchRecipe

__all__ = ["GraphedNetwork", "TorchBackend", "network_for"]


def network_for(model: torch.nn.Module, config: EngineConfig, device: torch.device,
                compiler: Callable[[torch.nn.Module], Callable] | None = None) -> Callable:
    """What runs ``model``'s forward pass under ``config``: the module itself, compiled
    (by ``compiler``, default ``torch.compile``), and/or wrapped in CUDA graph replay
    (graphs on CUDA only)."""
    network: Callable = model
    if config.compile:
        network = (compiler or torch.compile)(model)
    if config.cuda_graphs and device.type == "cuda":
        network = GraphedNetwork(network, device, config.graph_cache_size)
    return network


class TorchBackend:
    """Runs ``model`` with its family's ``recipe.run``, on the device and in the dtype of
    the model's parameters (the loader put it there).

    Raises:
        UnsupportedPrecisionError: a bf16 model on a GPU without bf16 support.
    """

    def __init__(self, model: torch.nn.Module, recipe: BatchRecipe,
                 config: EngineConfig) -> None:
        self._recipe = recipe
        self._model = model
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        require_precision_support(self.dtype, self.device)
        self._network = network_for(model, config, self.device)

    @property
    def graph_cache(self) -> GraphCache | None:
        """The CUDA graphs' cache (captures, evictions), or None without graphs."""
        return self._network.cache if isinstance(self._network, GraphedNetwork) else None

    def run(self, x: torch.Tensor, estimate_fov: bool,
            prompt: torch.Tensor | None) -> RawOutput:
        with torch.inference_mode():
            return self._recipe.run(self._network, x, estimate_fov, prompt)
