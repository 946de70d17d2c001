"""The TensorRT backend: an exported file (:mod:`.onnx_file`) built into a TensorRT engine.

Why TensorRT's own Python API and not torch-tensorrt: the engine is built from the same
self-describing ``.onnx`` file that ONNX Runtime runs, which is what robots deploy (the
ROS depth nodes and Isaac ROS all go ONNX -> TensorRT engine) and needs neither the
torch checkpoint nor a torch-tensorrt wheel matched to the exact torch release (each
torch-tensorrt pins one); Jetson's JetPack ships the ``tensorrt`` bindings; the
serialized engine is a byte string the cache (:mod:`.tensorrt_cache`) keeps as is; and
``execute_async_v3`` takes raw device pointers and a CUDA stream, so the engine reads the
pipeline's prepared input and writes torch tensors on the pipeline's compute stream (its
pinned buffers, copy stream and overlap still apply, and nothing synchronises the host).

Build: the ONNX parser reads the file (with its external weights beside it), one
optimization profile covers batches 1 to ``EngineConfig.batch_size`` (larger batches run
in chunks) at one input shape, and the precision is the engine's: ``fp16`` (the default,
``precision: auto``) or ``bf16`` let TensorRT 10 pick reduced-precision kernels
(``BuilderFlag.FP16`` / ``BF16``), ``fp32`` keeps fp32 with TF32 off so it meets the fp32
gate. TensorRT 11 removed those flags (reduced precision there needs a mixed-precision
graph, ModelOpt AutoCast, which export does not make yet): with it only ``fp32`` builds.
An engine holds one input shape, so each new shape (a camera of another aspect ratio for
Depth Anything; Depth Pro's is fixed) gets its own engine, read from the cache or built
(once, logged) on its first batch; the accuracy gate's shape is built at start.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from depth_pro_ros.engine.backends.base import RawOutput
from depth_pro_ros.engine.backends.onnx_file import OnnxModel
from depth_pro_ros.engine.backends.tensorrt_cache import (
    EngineKey,
    engine_path,
    read_engine,
    write_engine,
)
from depth_pro_ros.engine.device import resolve_device
from depth_pro_ros.engine.errors import BackendUnavailableError
from depth_pro_ros.model.weights import checkpoint_sha256

if TYPE_CHECKING:
    from depth_pro_ros.engine.types import EngineConfig
    from depth_pro_ros.model import BatchRecipe

__all__ = ["INSTALL", "PRECISIONS", "TensorRTBackend", "require_tensorrt"]

INSTALL = ("pip install 'depth_pro_ros[tensorrt]' (TensorRT 10 for CUDA 12; for CUDA 13: "
           "pip install 'tensorrt-cu13>=10.13,<11')")
#: What the backend builds engines in; ``auto`` is fp16.
PRECISIONS = ("fp16", "bf16", "fp32")
_WORKSPACE = 4 << 30  # bytes of scratch memory a layer may take while building

_log = logging.getLogger(__name__)


def require_tensorrt(device: torch.device):
    """The ``tensorrt`` module, where ``device`` is a CUDA GPU and TensorRT is installed.

    Raises:
        BackendUnavailableError: naming everything that is missing (the GPU, the package).
    """
    missing = []
    if device.type != "cuda" or not torch.cuda.is_available():
        found = "this machine has none" if not torch.cuda.is_available() else \
            f"device is {device}"
        missing.append(f"an NVIDIA GPU ({found}; set device cuda)")
    try:
        import tensorrt
    except ImportError:
        tensorrt = None
        missing.append(f"the tensorrt package ({INSTALL})")
    if missing:
        raise BackendUnavailableError("backend tensorrt needs " + " and ".join(missing))
    return tensorrt


class _Engine:
    """One deserialized engine and its execution context, with its outputs' dtypes."""

    def __init__(self, trt, logger, plan: bytes, outputs: list[str]) -> None:
        self.runtime = trt.Runtime(logger)
        self.engine = self.runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise ValueError("TensorRT could not deserialize it")
        self.context = self.engine.create_execution_context()
        types = {trt.float32: torch.float32, trt.float16: torch.float16}
        self.dtypes = {name: types[self.engine.get_tensor_dtype(name)] for name in outputs}


class TensorRTBackend:
    """Runs an :class:`OnnxModel` as TensorRT engines; see the module docstring.

    ``builds`` and ``loads`` count the engines built and those read from the cache;
    ``entries`` are the cache files of the engines in use.

    Raises:
        BackendUnavailableError: no CUDA device or no TensorRT, a precision TensorRT
            cannot build here, or a graph it cannot parse or build (the message says
            why).
    """

    def __init__(self, model: OnnxModel, recipe: BatchRecipe, config: EngineConfig) -> None:
        device = resolve_device(config.device) if config.device else torch.device("cuda")
        self._trt = require_tensorrt(device)
        self.precision = "fp16" if config.precision == "auto" else config.precision
        if self.precision not in PRECISIONS:
            raise BackendUnavailableError(f"backend tensorrt builds {PRECISIONS}, not "
                                          f"{config.precision!r}")
        if self.precision != "fp32" and not hasattr(self._trt.BuilderFlag, "FP16"):
            raise BackendUnavailableError(
                f"TensorRT {self._trt.__version__} builds {self.precision} only from a "
                "mixed-precision graph (strong typing), which export does not make yet: "
                f"use TensorRT 10 ({INSTALL}) or precision fp32")
        index = device.index if device.index is not None else torch.cuda.current_device()
        self.device = torch.device("cuda", index)
        self.dtype = torch.float32  # the graph's inputs; the engine casts inside
        self.model = model
        self.max_batch = config.batch_size
        self.builds = self.loads = 0
        self.entries: list[Path] = []
        self._logger = self._trt.Logger(self._trt.Logger.WARNING)
        self._sha256 = checkpoint_sha256(model.path)
        self._engines: dict[tuple, _Engine] = {}

    def run(self, x: torch.Tensor, estimate_fov: bool,
            prompt: torch.Tensor | None) -> RawOutput:
        if "prompt" in self.model.inputs and prompt is None:
            raise ValueError("Prompt Depth Anything needs a prompt depth for every frame")
        feeds = {"image": x.float().contiguous()}
        if "prompt" in self.model.inputs:
            feeds["prompt"] = prompt.float().contiguous()
        step = self.max_batch
        parts = [self._run_chunk({k: v[i:i + step] for k, v in feeds.items()})
                 for i in range(0, len(x), step)]
        outputs = parts[0] if len(parts) == 1 else [torch.cat(p) for p in zip(*parts)]
        fov = outputs[1] if estimate_fov and len(outputs) > 1 else None
        return outputs[0], fov

    def _run_chunk(self, feeds: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """One batch of at most ``max_batch``, queued on the current stream of the device:
        the engine reads ``feeds`` and writes new torch tensors there."""
        engine = self.engine_for({name: tuple(t.shape[1:]) for name, t in feeds.items()})
        context = engine.context
        for name, tensor in feeds.items():
            context.set_input_shape(name, tuple(tensor.shape))
            context.set_tensor_address(name, tensor.data_ptr())
        outputs = []
        for name in self.model.outputs:
            out = torch.empty(tuple(context.get_tensor_shape(name)),
                              dtype=engine.dtypes[name], device=self.device)
            context.set_tensor_address(name, out.data_ptr())
            outputs.append(out)
        # Same stream as the pipeline: the input is ready when the engine starts, and the
        # caching allocator may reuse these tensors only after the engine's kernels.
        stream = torch.cuda.current_stream(self.device)
        with torch.cuda.device(self.device):
            if not context.execute_async_v3(stream.cuda_stream):
                raise RuntimeError(f"TensorRT failed to run {self.model.path.name} on "
                                   f"{[tuple(t.shape) for t in feeds.values()]}")
        return [out.float() for out in outputs]

    def engine_for(self, shapes: dict[str, tuple[int, ...]]) -> _Engine:
        """The engine for inputs of these shapes (without the batch axis): in use, read
        from the cache, or built and kept there."""
        signature = tuple(shapes.items())
        engine = self._engines.get(signature)
        if engine is None:
            engine = self._engines[signature] = self._load(signature)
        return engine

    def key(self, signature: tuple) -> EngineKey:
        """The cache key of this model's engine for ``signature`` on this device."""
        major, minor = torch.cuda.get_device_capability(self.device)
        return EngineKey(self._sha256, torch.cuda.get_device_name(self.device),
                         f"{major}.{minor}", self._trt.__version__, self.precision,
                         signature, self.max_batch)

    def _load(self, signature: tuple) -> _Engine:
        key = self.key(signature)
        path = engine_path(key)
        plan = read_engine(path, key)
        with torch.cuda.device(self.device):
            if plan is not None:
                try:
                    engine = _Engine(self._trt, self._logger, plan, self.model.outputs)
                except (ValueError, RuntimeError, KeyError) as exc:
                    _log.warning("TensorRT engine cache: %s unusable (%s); building the "
                                 "engine again", path, exc)
                else:
                    self.loads += 1
                    self.entries.append(path)
                    _log.info("TensorRT engine read from %s", path)
                    return engine
            plan = self._build(signature)
            try:
                write_engine(path, key, plan)
                self.entries.append(path)
            except OSError as exc:
                _log.warning("TensorRT engine not cached (%s): it is built at each start",
                             exc)
            try:
                return _Engine(self._trt, self._logger, plan, self.model.outputs)
            except (ValueError, RuntimeError, KeyError) as exc:
                raise BackendUnavailableError(f"TensorRT built an engine for "
                                              f"{self.model.path.name} it cannot load: "
                                              f"{exc}") from None

    def _build(self, signature: tuple) -> bytes:
        """A serialized engine of the file for inputs of ``signature``'s shapes."""
        trt, name = self._trt, self.model.path.name
        what = f"{name} ({self.precision}, inputs {dict(signature)}, batch 1-{self.max_batch})"
        _log.warning("building a TensorRT engine for %s: seconds for small networks, "
                     "minutes for Depth Pro (`depth-pro-ros export --format tensorrt` "
                     "builds it ahead of time)", what)
        start = time.perf_counter()
        builder = trt.Builder(self._logger)
        network = builder.create_network(0)  # explicit batch: the only mode since 10.0
        parser = trt.OnnxParser(network, self._logger)
        if not parser.parse_from_file(str(self.model.path)):  # reads .data beside it
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BackendUnavailableError(f"TensorRT cannot parse {name}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, _WORKSPACE)
        if self.precision == "fp32":
            if hasattr(trt.BuilderFlag, "TF32"):
                config.clear_flag(trt.BuilderFlag.TF32)  # fp32 is gated at 1e-4
        else:
            config.set_flag(getattr(trt.BuilderFlag, self.precision.upper()))
        profile = builder.create_optimization_profile()
        for input_name, shape in signature:
            profile.set_shape(input_name, (1, *shape), (self.max_batch, *shape),
                              (self.max_batch, *shape))
        config.add_optimization_profile(profile)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise BackendUnavailableError(f"TensorRT could not build an engine for "
                                          f"{what}; its log above says why")
        self.builds += 1
        _log.info("TensorRT engine for %s built in %.0f s", what,
                  time.perf_counter() - start)
        return bytes(plan)
