"""The streaming depth engine shared by the ROS node and the bag tool.

A worker thread takes batches of frames from the :class:`~depth_pro_ros.engine.scheduling.
Scheduler` (which frames run together, per policy and source) and runs each through the
:class:`~depth_pro_ros.engine.stages.Stages`: stage (upload, preprocess), launch (the
backend's forward pass), post-process (metric depth, anchor, points) and finish (the
frames' results), then delivers the results.

On CUDA with ``overlap`` the worker stages batch N+1 and launches it behind batch N's
post-processing before it waits for N, so the GPU never idles on uploads or Python.
Elsewhere the same steps run one after the other. The network itself belongs to the
backend (:mod:`~depth_pro_ros.engine.backends`, chosen by ``EngineConfig.backend``); the
model family's steps to its batch recipe (:mod:`~depth_pro_ros.model.registry`).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable

import torch

from depth_pro_ros.engine.backends import OnnxModel, create_backend, resolve_backend
from depth_pro_ros.engine.batch import Batch
from depth_pro_ros.engine.scheduling import Scheduler
from depth_pro_ros.engine.stages import Stages
from depth_pro_ros.engine.types import (
    BatchRecord,
    DepthResult,
    EngineConfig,
    EngineStats,
    Frame,
)
from depth_pro_ros.model import recipe_for

_log = logging.getLogger(__name__)

ResultCallback = Callable[[DepthResult], None]

#: Settings fixed when the engine is built (see :meth:`DepthEngine.reconfigure`).
FIXED_SETTINGS = frozenset({"device", "backend", "precision", "policy", "queue_size",
                            "compile", "cuda_graphs", "graph_cache_size", "input_size",
                            "sky_mask", "accuracy_gate", "ort_intra_op_threads",
                            "ort_inter_op_threads"})


class DepthEngine:
    """Runs a depth network (Depth Pro or Depth Anything) on a stream of frames; see the
    module docstring for the pipeline and :mod:`~depth_pro_ros.model.registry` for what
    differs between families.

    ``recipe`` is the model family's batch recipe (``recipe.info`` says which model
    runs), ``backend`` what runs the network. ``model`` is a torch network or an
    exported ONNX file (:class:`~depth_pro_ros.engine.backends.OnnxModel`); the engine's
    ``config.backend`` is the backend actually used (``auto`` resolved).

    Raises:
        ValueError: a ``config.input_size`` the model's family cannot use.
        UnknownBackendError: a ``config.backend`` not in the backend table.
    """

    def __init__(
        self,
        model: torch.nn.Module | OnnxModel,
        config: EngineConfig = EngineConfig(),
        on_result: ResultCallback | None = None,
    ) -> None:
        # An exported file's recipe comes from its architecture alone (no weights).
        network = model.skeleton if isinstance(model, OnnxModel) else model
        self.recipe = recipe_for(network, config.input_size, config.sky_mask)
        config = dataclasses.replace(config, backend=resolve_backend(config.backend, model))
        self.backend = create_backend(model, self.recipe, config)
        self.config = config
        self._stages = Stages(self.recipe, self.backend, config.overlap)
        self._on_result = on_result
        self.stats = EngineStats()
        self._scheduler = Scheduler(config.policy, config.queue_size, self.stats)
        # One lock for the scheduler, the results and the stats.
        self._lock = self._scheduler.lock
        self._results: deque[DepthResult] = deque()
        self._thread = threading.Thread(target=self._run, name="depth_engine", daemon=True)
        self._thread.start()

    # ----------------------------------------------------------------- public API
    def submit(self, frame: Frame, timeout: float | None = None) -> bool:
        """Queue ``frame``; see :class:`EngineConfig` ``policy`` for what happens when busy
        (policy ``latest`` never blocks; ``all`` waits up to ``timeout`` for room and
        returns False when there is none).

        Raises:
            ValueError: a malformed frame.
            EngineClosedError: the engine is closed (a ``RuntimeError``).
        """
        frame.validate()
        return self._scheduler.put(frame, time.perf_counter(), timeout)

    def submit_batch(self, frames: list[Frame], timeout: float | None = None) -> bool:
        """Queue ``frames`` at once (policy ``all``): equal-size frames, up to ``batch_size``,
        then run as one batch whatever the timing, so results are reproducible (batched and
        single runs may differ in the last bits). Waits for room for all of them."""
        if self.config.policy != "all":
            raise ValueError("submit_batch needs policy 'all'")
        for frame in frames:
            frame.validate()
        return self._scheduler.put_group(frames, time.perf_counter(), timeout)

    @property
    def waiting(self) -> int:
        """Frames submitted but not yet taken by the worker."""
        return self._scheduler.waiting

    def get(self, timeout: float | None = None) -> DepthResult | None:
        """Next result (only when no ``on_result`` callback was given); None on timeout."""
        with self._lock:
            if not self._lock.wait_for(lambda: self._results, timeout):
                return None
            return self._results.popleft()

    def reconfigure(self, **changes) -> EngineConfig:
        """Change output settings (points, depth range, ``output_scale``, ``batch_size``)
        from the next batch.

        Settings fixed when the engine was built (:data:`FIXED_SETTINGS`: device,
        backend, precision, policy, queue, compile, CUDA graphs and their cache, input
        size) cannot
        change. Raises ``ValueError`` for invalid values.
        """
        if FIXED_SETTINGS & changes.keys():
            raise ValueError(f"cannot change {sorted(FIXED_SETTINGS & changes.keys())} "
                             "while running")
        # One reference assignment: the worker reads self.config once per batch.
        self.config = dataclasses.replace(self.config, **changes)
        return self.config

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every submitted frame has been delivered or dropped."""
        return self._scheduler.wait_idle(timeout)

    def close(self) -> None:
        """Finish the frames in flight, then stop and join the worker thread."""
        self._scheduler.close()
        self._thread.join()

    def __enter__(self) -> DepthEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ----------------------------------------------------------------- worker
    def _run(self) -> None:
        stages = self._stages
        pending: Batch | None = None
        while True:
            batch = self._scheduler.take(self.config.batch_size, block=pending is None)
            if batch is None and pending is None:
                if self._scheduler.closing:
                    return
                continue
            work = self._step(stages.stage, Batch.from_queue(batch)) if batch else None
            if not stages.overlap:
                for step in (stages.launch, self._post, self._deliver):
                    work = self._step(step, work)
                continue
            # Overlapped: batch N+1 is staged and queued on the GPU before we wait for N.
            pending = self._step(self._post, pending)
            work = self._step(stages.launch, work)
            self._step(self._deliver, pending)
            pending = work

    def _step(self, step: Callable[[Batch], None], work: Batch | None) -> Batch | None:
        """Run one step; on an exception fail the batch's frames and keep serving."""
        if work is None:
            return None
        try:
            step(work)
            return work
        except Exception as exc:  # noqa: BLE001 -- any failure becomes the frames' error
            now = time.perf_counter()
            for frame, t in zip(work.frames, work.submitted):
                self._emit(DepthResult(meta=frame.meta, error=f"{type(exc).__name__}: {exc}",
                                       timings_ms={"total": 1e3 * (now - t)}))
            return None

    def _post(self, work: Batch) -> None:
        self._stages.post(work, self.config)  # the output settings of this batch

    def _deliver(self, work: Batch) -> None:
        timings, results = self._stages.finish(work)
        size = len(work.frames)
        graphs = getattr(self.backend, "graph_cache", None)  # backends without: None
        with self._lock:
            self.stats.batch_sizes[size] += 1
            self.stats.recent_batches.append(BatchRecord(size, dict(timings),
                                                         dict(work.events)))
            if graphs is not None:
                self.stats.graph_captures = graphs.captures
                self.stats.graph_evictions = graphs.evictions
                self.stats.graphs_cached = len(graphs)
        for result in results:
            self._emit(result)

    def _emit(self, result: DepthResult) -> None:
        with self._lock:
            if result.ok:
                self.stats.processed += 1
            else:
                self.stats.failed += 1
        try:
            if self._on_result is not None:
                self._on_result(result)
            else:
                with self._lock:
                    self._results.append(result)
        except Exception:  # a consumer's bug must not stop the engine or lose later frames
            self.stats.callback_errors += 1
            _log.exception("on_result callback failed for frame %r", result.meta)
        finally:
            self._scheduler.done()
