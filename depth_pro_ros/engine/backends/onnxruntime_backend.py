"""The ONNX Runtime backend: an exported file (:mod:`.onnx_file`) run by ONNX Runtime.

On the CPU the CPU execution provider runs it with ``ort_intra_op_threads`` threads
(0: every core this process may use) and ``ort_inter_op_threads`` (default 1: the graph
is one chain of layers, so parallel branches gain nothing and only compete for cores),
idle threads sleeping rather than spinning.
ONNX Runtime's own thread pool keeps its speed far better than torch's OpenMP threads
when another process takes a core (issue 25's measurement), which is this backend's
point on a robot's busy CPU. On a CUDA device the CUDA execution provider runs it with
the input and outputs bound to the pipeline's device tensors (I/O binding), so nothing
goes through host memory. The graph is fp32, and so is the CUDA provider; precision fp16
(CUDA only) runs it through ONNX Runtime's TensorRT execution provider in fp16 (its
engines cached under ``$DEPTH_PRO_ROS_CACHE/ort_tensorrt``), the CUDA provider taking
what TensorRT cannot run.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import numpy as np
import torch

from depth_pro_ros.engine.backends.base import RawOutput
from depth_pro_ros.engine.backends.gate_cache import cache_dir
from depth_pro_ros.engine.backends.onnx_file import OnnxModel
from depth_pro_ros.engine.errors import BackendUnavailableError

if TYPE_CHECKING:
    from depth_pro_ros.engine.types import EngineConfig
    from depth_pro_ros.model import BatchRecipe

__all__ = ["OnnxRuntimeBackend", "session_options"]

_log = logging.getLogger(__name__)
_INSTALL = "pip install 'depth_pro_ros[onnx]' (onnxruntime-gpu for CUDA devices)"


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise BackendUnavailableError(f"backend onnxruntime needs ONNX Runtime: {_INSTALL}"
                                      ) from None
    return onnxruntime


def session_options(config: EngineConfig):
    """ONNX Runtime session options for ``config``'s thread settings, all graph
    optimisations on."""
    ort = _onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = (config.ort_intra_op_threads
                                    or len(os.sched_getaffinity(0)))
    options.inter_op_num_threads = config.ort_inter_op_threads
    options.log_severity_level = 3  # errors only: its warnings are about node placement
    # Idle threads sleep instead of spinning: on a CPU shared with other work (a robot's)
    # spinning takes cycles from it and from this session's own busy threads (V2-Small at
    # 518, 2 cores: 0.91x the time quiet, 0.91x with another process on a core).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _tensorrt_provider(ort, index: int) -> tuple[str, dict]:
    """ONNX Runtime's TensorRT execution provider in fp16 on GPU ``index``, its engines
    kept between starts (building one takes minutes for Depth Pro)."""
    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        raise BackendUnavailableError(
            "backend onnxruntime in fp16 needs its TensorRT execution provider "
            "(onnxruntime-gpu with TensorRT installed); have "
            f"{ort.get_available_providers()}; or use precision fp32 (CUDA provider)")
    options = {"device_id": index, "trt_fp16_enable": True}
    engines = cache_dir() / "ort_tensorrt"
    try:
        engines.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # uncached, the engines are built at each start
        _log.warning("ONNX Runtime's TensorRT engines not cached: %s", exc)
        return "TensorrtExecutionProvider", options
    return "TensorrtExecutionProvider", {
        **options, "trt_engine_cache_enable": True, "trt_engine_cache_path": str(engines),
        "trt_timing_cache_enable": True, "trt_timing_cache_path": str(engines)}


class OnnxRuntimeBackend:
    """Runs an :class:`OnnxModel` with ONNX Runtime; see the module docstring.

    Raises:
        BackendUnavailableError: not an exported file (a torch model), ONNX Runtime not
            installed, a CUDA device without the CUDA execution provider, or a precision
            other than fp32.
    """

    def __init__(self, model: OnnxModel, recipe: BatchRecipe, config: EngineConfig) -> None:
        if not isinstance(model, OnnxModel):
            raise BackendUnavailableError(
                "backend onnxruntime runs exported ONNX files; export this checkpoint "
                "with `depth-pro-ros export` or use backend torch")
        self.device = torch.device(config.device or "cpu")
        fp16 = config.precision == "fp16" and self.device.type == "cuda"
        if config.precision not in ("auto", model.precision) and not fp16:
            raise BackendUnavailableError(f"backend onnxruntime runs the {model.precision} "
                                          f"graph of "
                                          f"{model.path.name} (fp16 on CUDA, through its "
                                          f"TensorRT provider), not {config.precision}")
        ort = _onnxruntime()
        self.dtype = torch.float32
        self.model = model
        providers = ["CPUExecutionProvider"]
        if self.device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise BackendUnavailableError(
                    f"backend onnxruntime on {self.device} needs the CUDA execution "
                    f"provider (onnxruntime-gpu); have {ort.get_available_providers()}")
            index = self.device.index if self.device.index is not None else 0
            self.device = torch.device("cuda", index)
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": index}))
            if fp16:
                providers.insert(0, _tensorrt_provider(ort, index))
        try:
            self.session = ort.InferenceSession(str(model.path), session_options(config),
                                                providers=providers)
        except Exception as exc:  # noqa: BLE001 -- ORT raises its own exception types
            raise BackendUnavailableError(f"ONNX Runtime cannot load {model.path}: "
                                          f"{type(exc).__name__}: {exc}") from None
        self._recipe = recipe

    @property
    def providers(self) -> list[str]:
        """The execution providers the session uses, best first."""
        return self.session.get_providers()

    def run(self, x: torch.Tensor, estimate_fov: bool,
            prompt: torch.Tensor | None) -> RawOutput:
        if self.model.inputs == ["image", "prompt"] and prompt is None:
            raise ValueError("Prompt Depth Anything needs a prompt depth for every frame")
        feeds = {"image": x.float()}
        if "prompt" in self.model.inputs:
            feeds["prompt"] = prompt.float()
        if self.device.type == "cuda":
            outputs = self._run_bound(feeds)
        else:
            arrays = self.session.run(None, {k: np.ascontiguousarray(v.numpy())
                                             for k, v in feeds.items()})
            outputs = [torch.from_numpy(a) for a in arrays]
        fov = outputs[1] if estimate_fov and len(outputs) > 1 else None
        return outputs[0], fov

    def _run_bound(self, feeds: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """CUDA: inputs and outputs bound to device tensors (no host copies). ONNX Runtime
        runs on its own stream, so the pipeline's stream is synchronised first (the
        input must be ready) and the run returns once its outputs are written."""
        binding = self.session.io_binding()
        index = self.device.index
        for name, tensor in feeds.items():
            tensor = tensor.contiguous()
            feeds[name] = tensor  # kept alive until the run returns
            binding.bind_input(name, "cuda", index, np.float32, list(tensor.shape),
                               tensor.data_ptr())
        for name in self.model.outputs:
            binding.bind_output(name, "cuda", index)
        torch.cuda.current_stream(self.device).synchronize()
        self.session.run_with_iobinding(binding)
        # DLPack: the tensors share ONNX Runtime's device memory (no copy).
        return [torch.from_dlpack(v) for v in binding.get_outputs()]
