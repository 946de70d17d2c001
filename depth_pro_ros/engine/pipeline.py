"""The streaming depth engine shared by the ROS node and the bag tool.

A worker thread takes frames from a small inbox and runs them through three steps:

* stage: copy the uint8 image into one of two pinned host buffers (used alternately),
  upload it and preprocess it on a copy stream;
* launch: run the network on the compute stream once the stage's event has fired;
* finish: turn canonical inverse depth into metric depth (and points) with the frame's
  focal, copy the results into pinned host memory and deliver them.

On CUDA with ``overlap`` the worker stages frame N+1 and launches it behind frame N's
post-processing before it waits for N, so the GPU never idles on uploads or Python.
Elsewhere the same steps run one after the other. The CUDA buffers, events and graph
replay live in :mod:`~depth_pro_ros.engine.cuda_buffers`; a batch's bookkeeping and each
frame's focal choice in :mod:`~depth_pro_ros.engine.batch`.

Several cameras share one engine through ``Frame.source``. With policy ``latest`` each
source has one waiting slot: a new frame replaces only its own source's waiting frame,
so a fast camera never pushes a slow one's frames out. When the worker is free it
serves the sources in turn (round robin: the first source with a waiting frame after the
one served last leads the batch) and adds the waiting frames of the other sources that
have the leader's size and channel order, up to ``batch_size``. It never waits for a
batch to fill: a batch holds what is waiting when the worker gets to it, so a lone
camera sees no extra latency, and cameras of different sizes take turns.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from contextlib import nullcontext

import numpy as np
import torch

from depth_pro_ros.engine.anchor import apply_anchor
from depth_pro_ros.engine.batch import Batch, batch_key, frame_outputs
from depth_pro_ros.engine.cuda_buffers import (
    GraphedNetwork,
    PinnedSlots,
    gpu_stage_ms,
    timing_events,
    to_pinned_host,
)
from depth_pro_ros.engine.pointcloud import depth_to_points, pack_words, words_to_record
from depth_pro_ros.engine.preprocess import rgb_at_size
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
# A waiting frame: (frame, perf_counter() at submit, submit_batch group or None).
_Queued = tuple[Frame, float, "int | None"]


class DepthEngine:
    """Runs a depth network (Depth Pro or Depth Anything) on a stream of frames; see the
    module docstring for the pipeline and :mod:`~depth_pro_ros.model.registry` for what
    differs between families.

    Raises:
        ValueError: a ``config.input_size`` the model's family cannot use.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        config: EngineConfig = EngineConfig(),
        on_result: ResultCallback | None = None,
    ) -> None:
        self.recipe = recipe_for(model, config.input_size)
        self.config = config
        self.model = model
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self._cuda = self.device.type == "cuda"
        self._overlap = self._cuda and config.overlap
        self._network: Callable = model
        if config.compile:
            self._network = torch.compile(model)
        if config.cuda_graphs and self._cuda:
            self._network = GraphedNetwork(model)
        self._on_result = on_result
        self.stats = EngineStats()

        self._lock = threading.Condition()
        self._inbox: deque[_Queued] = deque()  # policy "all", in submission order
        # Policy "latest": the waiting frame of each source, and the sources' turn order.
        self._latest: dict[Hashable, _Queued] = {}
        self._sources: dict[Hashable, None] = {}
        self._turn = 0
        self._groups = 0  # submit_batch calls so far
        self._results: deque[DepthResult] = deque()
        self._in_flight = 0
        self._closing = False
        if self._cuda:
            self._copy_stream = torch.cuda.Stream(self.device)
            self._compute_stream = torch.cuda.Stream(self.device)
            self._slots = PinnedSlots(2)
        self._thread = threading.Thread(target=self._run, name="depth_engine", daemon=True)
        self._thread.start()

    # ----------------------------------------------------------------- public API
    def submit(self, frame: Frame, timeout: float | None = None) -> bool:
        """Queue ``frame``; see :class:`EngineConfig` ``policy`` for what happens when busy
        (policy ``latest`` never blocks; ``all`` waits up to ``timeout`` for room and
        returns False when there is none)."""
        frame.validate()
        now = time.perf_counter()
        with self._lock:
            if self._closing:
                raise RuntimeError("the engine is closed")
            if self.config.policy == "latest":
                if self._latest.pop(frame.source, None) is not None:
                    self.stats.dropped += 1  # replaced: keep only the newest of a source
                    self.stats.dropped_by_source[frame.source] += 1
                    self._in_flight -= 1
                self._sources.setdefault(frame.source)
                self._latest[frame.source] = (frame, now, None)
            else:
                if not self._lock.wait_for(
                    lambda: len(self._inbox) < self.config.queue_size or self._closing, timeout
                ):
                    return False
                if self._closing:  # closed while this call waited for room
                    raise RuntimeError("the engine is closed")
                self._inbox.append((frame, now, None))
            self.stats.submitted += 1
            self._in_flight += 1
            self._lock.notify_all()
        return True

    def submit_batch(self, frames: list[Frame], timeout: float | None = None) -> bool:
        """Queue ``frames`` at once (policy ``all``): equal-size frames, up to ``batch_size``,
        then run as one batch whatever the timing, so results are reproducible (batched and
        single runs may differ in the last bits). Waits for room for all of them."""
        if self.config.policy != "all":
            raise ValueError("submit_batch needs policy 'all'")
        for frame in frames:
            frame.validate()
        now, room = time.perf_counter(), max(self.config.queue_size, len(frames))
        with self._lock:
            if not self._lock.wait_for(
                lambda: len(self._inbox) + len(frames) <= room or self._closing, timeout
            ):
                return False
            if self._closing:
                raise RuntimeError("the engine is closed")
            self._groups += 1
            self._inbox.extend((frame, now, self._groups) for frame in frames)
            self.stats.submitted += len(frames)
            self._in_flight += len(frames)
            self._lock.notify_all()
        return True

    @property
    def waiting(self) -> int:
        """Frames submitted but not yet taken by the worker."""
        with self._lock:
            return len(self._inbox) + len(self._latest)

    def get(self, timeout: float | None = None) -> DepthResult | None:
        """Next result (only when no ``on_result`` callback was given); None on timeout."""
        with self._lock:
            if not self._lock.wait_for(lambda: self._results, timeout):
                return None
            return self._results.popleft()

    def process(self, frame: Frame) -> DepthResult:
        """Submit one frame and wait for its result (for scripts and tests)."""
        if self._on_result is not None:
            raise RuntimeError("process() cannot be used with an on_result callback")
        self.drain()
        with self._lock:
            self._results.clear()
        self.submit(frame)
        result = self.get()
        assert result is not None
        return result

    def reconfigure(self, **changes) -> EngineConfig:
        """Change output settings (points, depth range, ``output_scale``) from the next frame.

        Settings fixed when the engine was built (device, precision, policy, queue,
        compile, CUDA graphs) cannot change. Raises ``ValueError`` for invalid values.
        """
        fixed = {"device", "precision", "policy", "queue_size", "compile", "cuda_graphs",
                 "input_size"}
        if fixed & changes.keys():
            raise ValueError(f"cannot change {sorted(fixed & changes.keys())} while running")
        # One reference assignment: the worker reads self.config once per batch.
        self.config = dataclasses.replace(self.config, **changes)
        return self.config

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every submitted frame has been delivered or dropped."""
        with self._lock:
            return self._lock.wait_for(lambda: self._in_flight == 0, timeout)

    def close(self) -> None:
        """Finish the frames in flight, then stop and join the worker thread."""
        with self._lock:
            self._closing = True
            self._lock.notify_all()
        self._thread.join()

    def __enter__(self) -> DepthEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ----------------------------------------------------------------- worker
    def _take_batch(self, block: bool) -> list[_Queued] | None:
        with self._lock:
            if block:
                self._lock.wait_for(lambda: self._inbox or self._latest or self._closing)
            if self._latest:
                return self._take_turn()
            if not self._inbox:
                return None
            batch = [self._inbox.popleft()]
            key, group = batch_key(batch[0][0]), batch[0][2]
            # Frames of one submit_batch call run together and with no others.
            while (
                len(batch) < self.config.batch_size
                and self._inbox
                and self._inbox[0][2] == group
                and batch_key(self._inbox[0][0]) == key
            ):
                batch.append(self._inbox.popleft())
            self._lock.notify_all()  # room in the inbox for a blocked submit
            return batch

    def _take_turn(self) -> list[_Queued]:
        """Policy "latest": the next source in turn with a waiting frame, plus the waiting
        frames of the sources after it that share its batch key (caller holds the lock)."""
        sources = list(self._sources)
        turn = [sources[(self._turn + i) % len(sources)] for i in range(len(sources))]
        ready = [s for s in turn if s in self._latest]
        leader = ready[0]
        batch = [self._latest.pop(leader)]
        key = batch_key(batch[0][0])
        for source in ready[1:]:
            if len(batch) >= self.config.batch_size:
                break
            if batch_key(self._latest[source][0]) == key:
                batch.append(self._latest.pop(source))
        self._turn = sources.index(leader) + 1  # not mod len: a new source is next
        return batch

    def _run(self) -> None:
        pending: Batch | None = None
        while True:
            batch = self._take_batch(block=pending is None)
            if batch is None and pending is None:
                if self._closing:
                    return
                continue
            work = self._step(self._stage, Batch.from_queue(batch)) if batch else None
            if not self._overlap:
                for step in (self._launch, self._post, self._deliver):
                    work = self._step(step, work)
                continue
            # Overlapped: frame N+1 is staged and queued on the GPU before we wait for N.
            pending = self._step(self._post, pending)
            work = self._step(self._launch, work)
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

    def _stage(self, work: Batch) -> None:
        first = work.frames[0]
        pixels = np.stack([_hwc(f.image) for f in work.frames])
        prompts = None
        if self.recipe.info.needs_prompt:
            if any(f.prompt is None for f in work.frames):
                raise ValueError("no prompt depth for this frame (Prompt Depth Anything "
                                 "takes it from the anchor input)")
            prompts = torch.from_numpy(np.stack([f.prompt for f in work.frames])[:, None])
        if not self._cuda:
            t0 = time.perf_counter()
            work.images = torch.from_numpy(pixels)
            work.x = self.recipe.prepare(work.images, first.channel_order, self.dtype)
            work.prompt = prompts
            work.cpu_ms["preprocess"] = 1e3 * (time.perf_counter() - t0)
            return
        slot = self._slots.take()
        slot.write(pixels)
        stream = self._copy_stream if self._overlap else torch.cuda.current_stream(self.device)
        ev = timing_events("stage0", "staged")
        with torch.cuda.stream(stream):
            ev["stage0"].record(stream)
            work.images = slot.upload(self.device, stream)
            work.x = self.recipe.prepare(work.images, first.channel_order, self.dtype)
            if prompts is not None:
                work.prompt = prompts.to(self.device)
            ev["staged"].record(stream)
        if self._overlap:
            # Tensors made on the copy stream are used on the compute stream.
            for t in (work.images, work.x, work.prompt):
                if t is not None:
                    t.record_stream(self._compute_stream)
        work.events.update(ev)

    def _stream(self):
        return self._compute_stream if self._overlap else torch.cuda.current_stream(self.device)

    def _launch(self, work: Batch) -> None:
        info = self.recipe.info
        estimate = info.has_fov_head and any(
            f.intrinsics is None or f.estimate_fov for f in work.frames)
        if info.needs_focal and not info.has_fov_head and any(
                f.intrinsics is None for f in work.frames):
            raise ValueError("the model has no FoV head: frames need known intrinsics")
        if not self._cuda:
            t0 = time.perf_counter()
            with torch.inference_mode():
                work.raw, fov = self.recipe.run(self._network, work.x, estimate, work.prompt)
            work.fov_host = None if fov is None else fov.reshape(-1).float()
            work.cpu_ms["inference"] = 1e3 * (time.perf_counter() - t0)
            return
        stream = self._stream()
        ev = timing_events("net0", "net1")
        with torch.cuda.stream(stream), torch.inference_mode():
            stream.wait_event(work.events["staged"])
            ev["net0"].record(stream)
            work.raw, fov = self.recipe.run(self._network, work.x, estimate, work.prompt)
            ev["net1"].record(stream)
            if fov is not None:
                work.fov_host = to_pinned_host(fov.reshape(-1), dtype=torch.float32)
                ev["fov_copied"] = torch.cuda.Event()
                ev["fov_copied"].record(stream)
        work.events.update(ev)

    def _post(self, work: Batch) -> None:
        t0 = time.perf_counter()
        if "fov_copied" in work.events:
            work.events["fov_copied"].synchronize()  # the FoV estimate is needed on the host
        work.outputs = frame_outputs(work.frames, work.fov_host)
        cfg = self.config
        stream = self._stream() if self._cuda else None
        ctx = torch.cuda.stream(stream) if stream is not None else nullcontext()
        with ctx, torch.inference_mode():
            for i, (frame, out) in enumerate(zip(work.frames, work.outputs)):
                if out.error is not None:
                    continue
                h, w = frame.image.shape[:2]
                oh, ow = max(1, round(h * cfg.output_scale)), max(1, round(w * cfg.output_scale))
                f_px = None
                if out.intrinsics is not None:
                    f_px = torch.tensor([out.intrinsics.fx], dtype=torch.float32)
                    if self._cuda:
                        f_px = f_px.pin_memory().to(self.device, non_blocking=True)
                    out.intrinsics = out.intrinsics.scaled_to(ow, oh)
                value = self.recipe.output(work.raw[i : i + 1], w, h, f_px, (oh, ow))
                relative = self.recipe.info.kind == "relative"
                # A relative model's inverse depth as a depth up to an affine map in
                # inverse depth, which is what a scale_shift anchor fit recovers.
                depth = torch.where(value > 0, 1.0 / value, torch.nan) if relative else value
                anchored = False
                if frame.anchor_filter is not None:
                    out.anchor = frame.anchor_filter(depth, out.intrinsics)
                    if out.anchor.scale is not None:
                        depth = apply_anchor(depth, out.anchor.scale, out.anchor.shift)
                        anchored = True
                if relative and not anchored:
                    out.relative = self._to_host(value)
                    continue
                out.depth = self._to_host(depth)
                if cfg.points and out.intrinsics is not None:
                    rgb = None
                    if cfg.points_rgb:
                        rgb = rgb_at_size(work.images[i], frame.channel_order, (oh, ow))
                    cloud = depth_to_points(
                        depth, out.intrinsics, min_depth=cfg.min_depth,
                        max_depth=cfg.max_depth, decimation=cfg.points_decimation, rgb=rgb,
                    )
                    out.points = self._to_host(pack_words(cloud))
                    out.points_shape = (cloud.height, cloud.width)
            if self._cuda:
                work.events.update(timing_events("done"))
                work.events["done"].record(stream)
        work.cpu_ms["postprocess"] = 1e3 * (time.perf_counter() - t0)

    def _to_host(self, t: torch.Tensor) -> torch.Tensor:
        return to_pinned_host(t) if self._cuda else t

    def _deliver(self, work: Batch) -> None:
        if self._cuda:
            work.events["done"].synchronize()
            timings = gpu_stage_ms(work.events)
        else:
            timings = dict(work.cpu_ms)
        size = len(work.frames)
        with self._lock:
            self.stats.batch_sizes[size] += 1
            self.stats.recent_batches.append(BatchRecord(size, dict(timings)))
        now = time.perf_counter()
        for frame, submitted, out in zip(work.frames, work.submitted, work.outputs):
            result = DepthResult(
                meta=frame.meta,
                intrinsics=out.intrinsics,
                focal_source=out.focal_source,
                fov_deg=out.fov_deg,
                focal_estimate_px=out.focal_estimate_px,
                error=out.error,
                batch_size=size,
                anchor=out.anchor,
                timings_ms={
                    **timings,
                    "queue": 1e3 * (work.started - submitted),
                    "total": 1e3 * (now - submitted),
                },
            )
            if result.ok and out.relative is not None:
                result.relative = out.relative.numpy().copy()
            elif result.ok:
                # Copy out of pinned memory so consumers may keep results indefinitely.
                result.depth = out.depth.numpy().copy()
                if out.points is not None:
                    result.points = words_to_record(out.points.numpy()).copy()
                    result.points_shape = out.points_shape
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
            with self._lock:
                self._in_flight -= 1
                self._lock.notify_all()


def _hwc(image: np.ndarray) -> np.ndarray:
    return image[:, :, None] if image.ndim == 2 else image
