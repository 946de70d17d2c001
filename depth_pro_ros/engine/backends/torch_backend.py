"""The PyTorch backend: the model's own module, eager, compiled or replayed as CUDA graphs.

``EngineConfig.compile`` wraps the network in ``torch.compile``; ``cuda_graphs`` (CUDA
devices only, ignored elsewhere) captures one CUDA graph per input shape and replays it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from depth_pro_ros.engine.backends.base import RawOutput

if TYPE_CHECKING:
    from depth_pro_ros.engine.types import EngineConfig
    from depth_pro_ros.model import BatchRecipe

__all__ = ["GraphedNetwork", "TorchBackend"]


class TorchBackend:
    """Runs ``model`` with its family's ``recipe.run``, on the device and in the dtype of
    the model's parameters (the loader put it there)."""

    def __init__(self, model: torch.nn.Module, recipe: BatchRecipe,
                 config: EngineConfig) -> None:
        self._recipe = recipe
        self._model = model
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self._network: Callable = model
        if config.compile:
            self._network = torch.compile(model)
        if config.cuda_graphs and self.device.type == "cuda":
            self._network = GraphedNetwork(model)

    def run(self, x: torch.Tensor, estimate_fov: bool,
            prompt: torch.Tensor | None) -> RawOutput:
        with torch.inference_mode():
            return self._recipe.run(self._network, x, estimate_fov, prompt)


class GraphedNetwork:
    """Replays a network as CUDA graphs, one per input shape, dtype and keyword arguments
    (tensor arguments, such as a prompt depth, are graph inputs like ``x``)."""

    def __init__(self, model: Callable) -> None:
        self.model = model
        self.graphs: dict[tuple, tuple] = {}

    def __call__(self, x: torch.Tensor, **kwargs):
        tensors = {k: v for k, v in kwargs.items() if isinstance(v, torch.Tensor)}
        key = (tuple(x.shape), x.dtype,
               *sorted((k, tuple(v.shape), v.dtype) for k, v in tensors.items()),
               *sorted((k, v) for k, v in kwargs.items() if k not in tensors))
        if key not in self.graphs:
            static_in = x.clone()
            static_kw = {**kwargs, **{k: v.clone() for k, v in tensors.items()}}
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):  # warm up kernels and allocator outside the capture
                    self.model(static_in, **static_kw)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self.model(static_in, **static_kw)
            self.graphs[key] = (graph, static_in, static_kw, static_out)
        graph, static_in, static_kw, static_out = self.graphs[key]
        static_in.copy_(x)
        for k, v in tensors.items():
            static_kw[k].copy_(v)
        graph.replay()
        return static_out
