"""Inference backends: the table the engine picks its backend from by name.

A new backend is one module here (a class or function matching
:data:`~depth_pro_ros.engine.backends.base.BackendFactory`) plus one row in
:data:`BACKEND_FACTORIES`; ``EngineConfig.backend`` accepts its name from then on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from depth_pro_ros.engine.backends.base import Backend, BackendFactory, RawOutput
from depth_pro_ros.engine.backends.torch_backend import TorchBackend
from depth_pro_ros.engine.errors import UnknownBackendError

if TYPE_CHECKING:
    import torch

    from depth_pro_ros.engine.types import EngineConfig
    from depth_pro_ros.model import BatchRecipe

__all__ = ["BACKENDS", "BACKEND_FACTORIES", "Backend", "BackendFactory", "RawOutput",
           "create_backend"]

#: Backend name (``EngineConfig.backend``) -> what builds it.
BACKEND_FACTORIES: dict[str, BackendFactory] = {
    "torch": TorchBackend,
}
#: The backend names, in the table's order.
BACKENDS: tuple[str, ...] = tuple(BACKEND_FACTORIES)


def create_backend(model: torch.nn.Module, recipe: BatchRecipe,
                   config: EngineConfig) -> Backend:
    """The backend ``config.backend`` names, built for ``model`` and its ``recipe``.

    Raises:
        UnknownBackendError: a name that is not in :data:`BACKEND_FACTORIES`.
    """
    factory = BACKEND_FACTORIES.get(config.backend)
    if factory is None:
        raise UnknownBackendError(f"backend must be one of {BACKENDS}, got "
                                  f"{config.backend!r}")
    return factory(model, recipe, config)
