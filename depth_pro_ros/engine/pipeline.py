"""The streaming depth engine shared by the ROS node and the bag tool.

A worker thread takes frames from a small inbox and runs them through three steps:

* stage: copy the uint8 image into one of two pinned host buffers (used alternately),
  upload it and preprocess it on a copy stream;
* launch: run the network on the compute stream once the stage's event has fired;
* finish: turn canonical inverse depth into metric depth (and points) with the frame's
  focal, copy the results into pinned host memory and deliver them.

On CUDA with ``overlap`` the worker stages frame N+1 and launches it behind frame N's
post-processing before it waits for N, so the GPU never idles on uploads or Python.
Elsewhere the same steps run one after the other.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from depth_pro_ros.engine.focal import Intrinsics
from depth_pro_ros.engine.pointcloud import depth_to_points, pack_words, words_to_record
from depth_pro_ros.engine.preprocess import prepare_input, to_rgb
from depth_pro_ros.engine.types import DepthResult, EngineConfig, EngineStats, Frame
from depth_pro_ros.model import DepthPro, focal_from_fov
from depth_pro_ros.model.inference import metric_depth

_log = logging.getLogger(__name__)

ResultCallback = Callable[[DepthResult], None]


@dataclass
class _Work:
    """One batch on its way through the pipeline."""

    frames: list[Frame]
    submitted: list[float]
    started: float
    images: torch.Tensor | None = None  # (B, H, W, C) uint8 on the device
    x: torch.Tensor | None = None
    inverse_depth: torch.Tensor | None = None
    fov_host: torch.Tensor | None = None
    outputs: list[dict] = field(default_factory=list)
    events: dict[str, torch.cuda.Event] = field(default_factory=dict)
    cpu_ms: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_batch(cls, batch: list[tuple[Frame, float]]) -> _Work:
        return cls([f for f, _ in batch], [t for _, t in batch], time.perf_counter())


class _PinnedSlot:
    """A reusable pinned host buffer; its event marks when the last upload from it is done."""

    def __init__(self) -> None:
        self.buffer = torch.empty(0, dtype=torch.uint8, pin_memory=True)
        self.uploaded: torch.cuda.Event | None = None

    def view(self, shape: tuple[int, ...]) -> torch.Tensor:
        if self.uploaded is not None:
            self.uploaded.synchronize()  # normally long done: it was two frames ago
        n = int(np.prod(shape))
        if self.buffer.numel() < n:
            self.buffer = torch.empty(n, dtype=torch.uint8, pin_memory=True)
        return self.buffer[:n].view(shape)


class _GraphedNetwork:
    """Replays the network as CUDA graphs, one per (batch, estimate_fov) shape."""

    def __init__(self, model: DepthPro) -> None:
        self.model = model
        self.graphs: dict[tuple, tuple] = {}

    def __call__(self, x: torch.Tensor, estimate_fov: bool):
        key = (tuple(x.shape), x.dtype, estimate_fov)
        if key not in self.graphs:
            static_in = x.clone()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):  # warm up kernels and allocator outside the capture
                    self.model(static_in, estimate_fov=estimate_fov)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self.model(static_in, estimate_fov=estimate_fov)
            self.graphs[key] = (graph, static_in, static_out)
        graph, static_in, static_out = self.graphs[key]
        static_in.copy_(x)
        graph.replay()
        return static_out


class DepthEngine:
    """Runs Depth Pro on a stream of frames; see the module docstring for the pipeline."""

    def __init__(
        self,
        model: DepthPro,
        config: EngineConfig = EngineConfig(),
        on_result: ResultCallback | None = None,
    ) -> None:
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
            self._network = _GraphedNetwork(model)
        self._on_result = on_result
        self.stats = EngineStats()

        self._lock = threading.Condition()
        self._inbox: deque[tuple[Frame, float]] = deque()
        self._results: deque[DepthResult] = deque()
        self._in_flight = 0
        self._closing = False
        if self._cuda:
            self._copy_stream = torch.cuda.Stream(self.device)
            self._compute_stream = torch.cuda.Stream(self.device)
            self._slots = [_PinnedSlot(), _PinnedSlot()]
            self._next_slot = 0
        self._thread = threading.Thread(target=self._run, name="depth_engine", daemon=True)
        self._thread.start()

    # ----------------------------------------------------------------- public API
    def submit(self, frame: Frame, timeout: float | None = None) -> bool:
        """Queue ``frame``; see :class:`EngineConfig` ``policy`` for what happens when busy."""
        frame.validate()
        now = time.perf_counter()
        with self._lock:
            if self._closing:
                raise RuntimeError("the engine is closed")
            if self.config.policy == "latest":
                while self._inbox:  # keep only the newest frame waiting
                    self._inbox.popleft()
                    self.stats.dropped += 1
                    self._in_flight -= 1
            elif not self._lock.wait_for(
                lambda: len(self._inbox) < self.config.queue_size or self._closing, timeout
            ):
                return False
            if self._closing:  # closed while this call waited for room
                raise RuntimeError("the engine is closed")
            self._inbox.append((frame, now))
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
            self._inbox.extend((frame, now) for frame in frames)
            self.stats.submitted += len(frames)
            self._in_flight += len(frames)
            self._lock.notify_all()
        return True

    @property
    def waiting(self) -> int:
        """Frames submitted but not yet taken by the worker."""
        with self._lock:
            return len(self._inbox)

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
        fixed = {"device", "precision", "policy", "queue_size", "compile", "cuda_graphs"}
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
    def _take_batch(self, block: bool) -> list[tuple[Frame, float]] | None:
        with self._lock:
            if block:
                self._lock.wait_for(lambda: self._inbox or self._closing)
            if not self._inbox:
                return None
            batch = [self._inbox.popleft()]
            first = batch[0][0]
            while (
                self.config.policy == "all"
                and len(batch) < self.config.batch_size
                and self._inbox
                and self._inbox[0][0].image.shape == first.image.shape
                and self._inbox[0][0].channel_order == first.channel_order
            ):
                batch.append(self._inbox.popleft())
            self._lock.notify_all()  # room in the inbox for a blocked submit
            return batch

    def _run(self) -> None:
        pending: _Work | None = None
        while True:
            batch = self._take_batch(block=pending is None)
            if batch is None and pending is None:
                if self._closing:
                    return
                continue
            work = self._step(self._stage, _Work.from_batch(batch)) if batch else None
            if not self._overlap:
                for step in (self._launch, self._post, self._deliver):
                    work = self._step(step, work)
                continue
            # Overlapped: frame N+1 is staged and queued on the GPU before we wait for N.
            pending = self._step(self._post, pending)
            work = self._step(self._launch, work)
            self._step(self._deliver, pending)
            pending = work

    def _step(self, step: Callable[[_Work], None], work: _Work | None) -> _Work | None:
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

    def _stage(self, work: _Work) -> None:
        first = work.frames[0]
        pixels = np.stack([_hwc(f.image) for f in work.frames])
        size = self.model.config.input_size
        if not self._cuda:
            t0 = time.perf_counter()
            work.images = torch.from_numpy(pixels)
            work.x = prepare_input(work.images, first.channel_order, size, self.dtype)
            work.cpu_ms["preprocess"] = 1e3 * (time.perf_counter() - t0)
            return
        slot = self._slots[self._next_slot]
        self._next_slot ^= 1
        host = slot.view(pixels.shape)
        host.numpy()[...] = pixels
        stream = self._copy_stream if self._overlap else torch.cuda.current_stream(self.device)
        ev = {name: torch.cuda.Event(enable_timing=True) for name in ("stage0", "staged")}
        with torch.cuda.stream(stream):
            ev["stage0"].record(stream)
            work.images = host.to(self.device, non_blocking=True)
            slot.uploaded = torch.cuda.Event()
            slot.uploaded.record(stream)
            work.x = prepare_input(work.images, first.channel_order, size, self.dtype)
            ev["staged"].record(stream)
        if self._overlap:
            # Tensors made on the copy stream are used on the compute stream.
            work.images.record_stream(self._compute_stream)
            work.x.record_stream(self._compute_stream)
        work.events.update(ev)

    def _stream(self):
        return self._compute_stream if self._overlap else torch.cuda.current_stream(self.device)

    def _launch(self, work: _Work) -> None:
        estimate = any(f.intrinsics is None or f.estimate_fov for f in work.frames)
        if estimate and self.model.fov is None:
            raise ValueError("the model has no FoV head: frames need known intrinsics")
        if not self._cuda:
            t0 = time.perf_counter()
            with torch.inference_mode():
                work.inverse_depth, fov = self._network(work.x, estimate_fov=estimate)
            work.fov_host = None if fov is None else fov.reshape(-1).float()
            work.cpu_ms["inference"] = 1e3 * (time.perf_counter() - t0)
            return
        stream = self._stream()
        ev = {name: torch.cuda.Event(enable_timing=True) for name in ("net0", "net1")}
        with torch.cuda.stream(stream), torch.inference_mode():
            stream.wait_event(work.events["staged"])
            ev["net0"].record(stream)
            work.inverse_depth, fov = self._network(work.x, estimate_fov=estimate)
            ev["net1"].record(stream)
            if fov is not None:
                work.fov_host = torch.empty(fov.numel(), pin_memory=True)
                work.fov_host.copy_(fov.reshape(-1), non_blocking=True)
                ev["fov_copied"] = torch.cuda.Event()
                ev["fov_copied"].record(stream)
        work.events.update(ev)

    def _resolve_intrinsics(self, work: _Work) -> None:
        """Pick each frame's intrinsics: known ones, else the (filtered) FoV estimate."""
        if "fov_copied" in work.events:
            work.events["fov_copied"].synchronize()  # the FoV estimate is needed on the host
        for i, frame in enumerate(work.frames):
            h, w = frame.image.shape[:2]
            out = {"fov_deg": None, "focal_estimate_px": None}
            if work.fov_host is not None and (frame.intrinsics is None or frame.estimate_fov):
                fov = work.fov_host[i : i + 1]
                out["fov_deg"] = float(fov[0])
                out["focal_estimate_px"] = float(focal_from_fov(fov, w)[0])
            if frame.intrinsics is not None:
                out["intrinsics"], out["focal_source"] = frame.intrinsics.scaled_to(w, h), "given"
            else:
                raw = out["focal_estimate_px"]
                chosen = frame.focal_filter(raw, w, h) if frame.focal_filter else (
                    Intrinsics.from_focal(raw, w, h) if raw > 0 else None
                )
                if chosen is None:
                    out["error"] = f"focal estimate rejected ({raw:.6g} px from FoV " \
                                   f"{out['fov_deg']:.4g} deg)"
                out["intrinsics"], out["focal_source"] = chosen, "fov_head"
            work.outputs.append(out)

    def _post(self, work: _Work) -> None:
        t0 = time.perf_counter()
        self._resolve_intrinsics(work)
        cfg = self.config
        stream = self._stream() if self._cuda else None
        ctx = torch.cuda.stream(stream) if stream is not None else nullcontext()
        with ctx, torch.inference_mode():
            for i, (frame, out) in enumerate(zip(work.frames, work.outputs)):
                if "error" in out:
                    continue
                h, w = frame.image.shape[:2]
                oh, ow = max(1, round(h * cfg.output_scale)), max(1, round(w * cfg.output_scale))
                intr = out["intrinsics"]
                f_px = torch.tensor([intr.fx], dtype=torch.float32)
                if self._cuda:
                    f_px = f_px.pin_memory().to(self.device, non_blocking=True)
                depth = metric_depth(work.inverse_depth[i : i + 1], w, h, f_px, (oh, ow))[0]
                out["intrinsics"] = intr = intr.scaled_to(ow, oh)
                out["depth"] = self._to_host(depth)
                if cfg.points:
                    rgb = None
                    if cfg.points_rgb:
                        rgb = _rgb_at(work.images[i], frame.channel_order, (oh, ow))
                    cloud = depth_to_points(
                        depth, intr, min_depth=cfg.min_depth, max_depth=cfg.max_depth,
                        decimation=cfg.points_decimation, rgb=rgb,
                    )
                    out["points"] = self._to_host(pack_words(cloud))
                    out["points_shape"] = (cloud.height, cloud.width)
            if self._cuda:
                work.events["done"] = torch.cuda.Event(enable_timing=True)
                work.events["done"].record(stream)
        work.cpu_ms["postprocess"] = 1e3 * (time.perf_counter() - t0)

    def _to_host(self, t: torch.Tensor) -> torch.Tensor:
        if not self._cuda:
            return t
        host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        host.copy_(t, non_blocking=True)
        return host

    def _deliver(self, work: _Work) -> None:
        if self._cuda:
            work.events["done"].synchronize()
            ev = work.events
            timings = {
                "preprocess": ev["stage0"].elapsed_time(ev["staged"]),
                "inference": ev["net0"].elapsed_time(ev["net1"]),
                "postprocess": ev["net1"].elapsed_time(ev["done"]),
            }
        else:
            timings = dict(work.cpu_ms)
        now = time.perf_counter()
        for frame, submitted, out in zip(work.frames, work.submitted, work.outputs):
            result = DepthResult(
                meta=frame.meta,
                intrinsics=out.get("intrinsics"),
                focal_source=out.get("focal_source"),
                fov_deg=out.get("fov_deg"),
                focal_estimate_px=out.get("focal_estimate_px"),
                error=out.get("error"),
                timings_ms={
                    **timings,
                    "queue": 1e3 * (work.started - submitted),
                    "total": 1e3 * (now - submitted),
                },
            )
            if result.ok:
                # Copy out of pinned memory so consumers may keep results indefinitely.
                result.depth = out["depth"].numpy().copy()
                if "points" in out:
                    result.points = words_to_record(out["points"].numpy()).copy()
                    result.points_shape = out["points_shape"]
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


def _rgb_at(image: torch.Tensor, channel_order: str, size: tuple[int, int]) -> torch.Tensor:
    """(H, W, C) uint8 device image -> (h, w, 3) uint8 RGB at the depth's size."""
    rgb = to_rgb(image[None], channel_order)[0]
    if tuple(rgb.shape[:2]) == size:
        return rgb
    x = rgb.permute(2, 0, 1)[None].float()
    return F.interpolate(x, size=size, mode="area")[0].permute(1, 2, 0).round().to(torch.uint8)
