"""The seam between the engine's pipeline and whatever runs the network.

The pipeline prepares a batch with the model's :class:`~depth_pro_ros.model.
BatchRecipe` (input on ``device`` in ``dtype``), hands it to a :class:`Backend` and turns
the raw outputs into depth with the same recipe. A backend owns the network object and
everything about executing it (compilation, graph capture, another runtime); the
pipeline never touches the network itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import torch

if TYPE_CHECKING:
    from depth_pro_ros.engine.types import EngineConfig
    from depth_pro_ros.model import BatchRecipe

__all__ = ["Backend", "BackendFactory", "RawOutput"]

#: One batch's raw outputs: the network's depth output (B, 1, h, w) as the recipe's
#: ``output`` takes it, and the FoV estimates in degrees (B, ...) or None.
RawOutput = tuple[torch.Tensor, torch.Tensor | None]


class Backend(Protocol):
    """Runs one model's forward pass on prepared batches.

    ``device`` and ``dtype`` say where the pipeline puts the network input and in which
    precision it prepares it. On CUDA :meth:`run` is called inside the pipeline's compute
    stream and must queue its work there (no host synchronisation needed).
    """

    device: torch.device
    dtype: torch.dtype

    def run(self, x: torch.Tensor, estimate_fov: bool,
            prompt: torch.Tensor | None) -> RawOutput:
        """The forward pass of one prepared batch ``x`` (and its prompt depths)."""
        ...


#: Builds a backend from the loaded model, its batch recipe and the engine's config
#: (device, precision and the backend's own options such as ``compile``).
BackendFactory = Callable[[torch.nn.Module, "BatchRecipe", "EngineConfig"], Backend]
