"""Inference backends: the table the engine picks its backend from by name.

A new backend is one module here (a class or function matching
:data:`~depth_pro_ros.engine.backends.base.BackendFactory`) plus one row in
:data:`BACKEND_FACTORIES`; ``EngineConfig.backend`` accepts its name from then on.
``auto`` (:data:`AUTO`) picks the backend from what was loaded: an exported ONNX file
(:class:`~.onnx_file.OnnxModel`) runs on onnxruntime, a torch network on torch; tensorrt
(an engine built from an exported file) runs only when asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from depth_pro_ros.engine.backends.base import Backend, BackendFactory, RawOutput
from depth_pro_ros.engine.backends.onnx_file import OnnxModel
from depth_pro_ros.engine.backends.onnxruntime_backend import OnnxRuntimeBackend
from depth_pro_ros.engine.backends.tensorrt_backend import TensorRTBackend
from depth_pro_ros.engine.backends.torch_backend import TorchBackend
from depth_pro_ros.engine.errors import BackendUnavailableError, UnknownBackendError

if TYPE_CHECKING:
    import torch

    from depth_pro_ros.engine.types import EngineConfig
    from depth_pro_ros.model import BatchRecipe

__all__ = ["AUTO", "BACKENDS", "BACKEND_CHOICES", "BACKEND_FACTORIES", "Backend",
           "BackendFactory", "OnnxModel", "RawOutput", "create_backend", "resolve_backend"]

#: Backend name (``EngineConfig.backend``) -> what builds it.
BACKEND_FACTORIES: dict[str, BackendFactory] = {
    "torch": TorchBackend,
    "onnxruntime": OnnxRuntimeBackend,
    "tensorrt": TensorRTBackend,
}
#: The backend names, in the table's order.
BACKENDS: tuple[str, ...] = tuple(BACKEND_FACTORIES)
AUTO = "auto"
#: What ``EngineConfig.backend`` (and the node parameter, the CLI option) accepts.
BACKEND_CHOICES: tuple[str, ...] = (AUTO, *BACKENDS)


def resolve_backend(name: str, model: torch.nn.Module | OnnxModel) -> str:
    """``name``, or for ``auto`` the backend of what was loaded (ONNX file: onnxruntime).

    Raises:
        BackendUnavailableError: the torch backend asked for an exported ONNX file, or
            an ONNX backend for a torch checkpoint.
    """
    onnx = isinstance(model, OnnxModel)
    if name == AUTO:
        return "onnxruntime" if onnx else "torch"
    if onnx and name == "torch":
        raise BackendUnavailableError(
            f"{model.path} is an exported ONNX file: the torch backend runs torch "
            "checkpoints; use backend auto or onnxruntime")
    if not onnx and name in ("onnxruntime", "tensorrt"):
        raise BackendUnavailableError(
            f"backend {name} runs exported ONNX files: export the checkpoint first "
            "(depth-pro-ros export --checkpoint CKPT -o model.onnx) and pass model.onnx, "
            "or use backend torch")
    return name


def create_backend(model: torch.nn.Module | OnnxModel, recipe: BatchRecipe,
                   config: EngineConfig) -> Backend:
    """The backend ``config.backend`` names (``auto`` resolved), built for ``model`` and
    its ``recipe``.

    Raises:
        UnknownBackendError: a name that is not in :data:`BACKEND_FACTORIES`.
        BackendUnavailableError: a backend that cannot run ``model`` here.
    """
    factory = BACKEND_FACTORIES.get(resolve_backend(config.backend, model))
    if factory is None:
        raise UnknownBackendError(f"backend must be one of {BACKENDS}, got "
                                  f"{config.backend!r}")
    return factory(model, recipe, config)
