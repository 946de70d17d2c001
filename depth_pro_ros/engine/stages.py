"""The steps one batch goes through on the engine's worker.

* stage: copy the uint8 images into one of two pinned host buffers (used alternately),
  upload them and prepare the network input with the model's recipe, on a copy stream;
* launch: hand the prepared batch to the backend on the compute stream, once the
  stage's event has fired;
* post-process: turn the raw output into metric depth (and points) with each frame's
  focal and anchor, and copy the results into pinned host memory;
* finish: wait for the copies and build the frames' results.

On CUDA each step only queues work on its stream, so the worker can stage and launch
batch N+1 before it post-processes batch N; elsewhere the steps run one after the other
and are timed on the CPU. The order of the steps is the worker's
(:mod:`~depth_pro_ros.engine.pipeline`).
"""

from __future__ import annotations

import time
from contextlib import nullcontext

import numpy as np
import torch

from depth_pro_ros.engine.anchor import anchor_step, apply_anchor
from depth_pro_ros.engine.backends import Backend
from depth_pro_ros.engine.batch import Batch, frame_outputs
from depth_pro_ros.engine.cuda_buffers import (
    PinnedSlots,
    gpu_stage_ms,
    host_wait_event,
    timing_events,
    to_pinned_host,
)
from depth_pro_ros.engine.errors import FrameInputError
from depth_pro_ros.engine.pointcloud import depth_to_points, pack_words, words_to_record
from depth_pro_ros.engine.preprocess import rgb_at_size
from depth_pro_ros.engine.types import DepthResult, EngineConfig, Frame
from depth_pro_ros.model import BatchRecipe

__all__ = ["Stages"]


class Stages:
    """The steps of one engine: its recipe, its backend and, on CUDA, its streams and
    pinned input buffers. ``overlap`` (CUDA only) stages on a separate copy stream."""

    def __init__(self, recipe: BatchRecipe, backend: Backend, overlap: bool) -> None:
        self.recipe, self.backend = recipe, backend
        self.device = backend.device
        self.cuda = self.device.type == "cuda"
        self.overlap = self.cuda and overlap
        if self.cuda:
            self._copy_stream = torch.cuda.Stream(self.device)
            self._compute_stream = torch.cuda.Stream(self.device)
            self._slots = PinnedSlots(2)
            # Prompt depths take the same pinned, non-blocking way as the images: a copy
            # from pageable memory would stall the worker (and the copy stream) each batch.
            self._prompt_slots = PinnedSlots(2, torch.float32)

    def stage(self, work: Batch) -> None:
        """Upload the batch's images (and prompts) and prepare the network input."""
        first = work.frames[0]
        pixels = np.stack([hwc(f.image) for f in work.frames])
        prompts = None
        if self.recipe.info.needs_prompt:
            if any(f.prompt is None for f in work.frames):
                raise FrameInputError("no prompt depth for this frame (Prompt Depth "
                                      "Anything takes it from the anchor input)")
            prompts = np.stack([f.prompt for f in work.frames])[:, None]
        dtype = self.backend.dtype
        if not self.cuda:
            t0 = time.perf_counter()
            work.images = torch.from_numpy(pixels)
            work.x = self.recipe.prepare(work.images, first.channel_order, dtype)
            work.prompt = None if prompts is None else torch.from_numpy(prompts)
            work.cpu_ms["preprocess"] = 1e3 * (time.perf_counter() - t0)
            return
        slot = self._slots.take()
        slot.write(pixels)
        prompt_slot = None
        if prompts is not None:
            prompt_slot = self._prompt_slots.take()
            prompt_slot.write(prompts)
        stream = self._copy_stream if self.overlap else torch.cuda.current_stream(self.device)
        ev = timing_events("stage0", "staged")
        with torch.cuda.stream(stream):
            ev["stage0"].record(stream)
            work.images = slot.upload(self.device, stream)
            work.x = self.recipe.prepare(work.images, first.channel_order, dtype)
            if prompt_slot is not None:
                work.prompt = prompt_slot.upload(self.device, stream)
            ev["staged"].record(stream)
        if self.overlap:
            # Tensors made on the copy stream are used on the compute stream.
            for t in (work.images, work.x, work.prompt):
                if t is not None:
                    t.record_stream(self._compute_stream)
        work.events.update(ev)

    def launch(self, work: Batch) -> None:
        """Run the backend on the prepared batch (queued behind the stage on CUDA)."""
        info = self.recipe.info
        estimate = info.has_fov_head and any(
            f.intrinsics is None or f.estimate_fov for f in work.frames)
        if self._without_focal(work.frames) == len(work.frames):
            # Every frame would fail; a mixed batch runs and post fails only the frames
            # without one (another camera's frames are not its concern).
            raise FrameInputError(self._no_focal_message())
        if not self.cuda:
            t0 = time.perf_counter()
            work.raw, fov = self.backend.run(work.x, estimate, work.prompt)
            work.fov_host = None if fov is None else fov.reshape(-1).float()
            work.cpu_ms["inference"] = 1e3 * (time.perf_counter() - t0)
            return
        stream = self._stream()
        ev = timing_events("net0", "net1")
        with torch.cuda.stream(stream), torch.inference_mode():
            stream.wait_event(work.events["staged"])
            ev["net0"].record(stream)
            work.raw, fov = self.backend.run(work.x, estimate, work.prompt)
            ev["net1"].record(stream)
            if fov is not None:
                work.fov_host = to_pinned_host(fov.reshape(-1), dtype=torch.float32)
                ev["fov_copied"] = host_wait_event()
                ev["fov_copied"].record(stream)
        work.events.update(ev)

    def post(self, work: Batch, cfg: EngineConfig) -> None:
        """Each frame's focal, depth (anchored when it asks), points, copied to the host,
        with the output settings ``cfg`` of this batch."""
        t0 = time.perf_counter()
        if "fov_copied" in work.events:
            work.events["fov_copied"].synchronize()  # the FoV estimate is needed on the host
        work.outputs = frame_outputs(work.frames, work.fov_host)
        if self._without_focal(work.frames):
            for out in work.outputs:
                if out.intrinsics is None and out.error is None:
                    out.error = f"FrameInputError: {self._no_focal_message()}"
        stream = self._stream() if self.cuda else None
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
                    if self.cuda:
                        f_px = f_px.pin_memory().to(self.device, non_blocking=True)
                    out.intrinsics = out.intrinsics.scaled_to(ow, oh)
                value = self.recipe.output(work.raw[i : i + 1], w, h, f_px, (oh, ow))
                relative = self.recipe.info.kind == "relative"
                # A relative model's inverse depth as a depth up to an affine map in
                # inverse depth, which is what a scale_shift anchor fit recovers.
                depth = torch.where(value > 0, 1.0 / value, torch.nan) if relative else value
                anchored = False
                if frame.anchor is not None:
                    out.anchor = anchor_step(frame.anchor, depth, out.intrinsics, relative)
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
            if self.cuda:
                work.events.update(timing_events("done", blocking=True))  # finish waits
                work.events["done"].record(stream)
        work.cpu_ms["postprocess"] = 1e3 * (time.perf_counter() - t0)

    def finish(self, work: Batch) -> tuple[dict[str, float], list[DepthResult]]:
        """Wait for the batch's copies; its stage timings (ms) and the frames' results."""
        if self.cuda:
            work.events["done"].synchronize()
            timings = gpu_stage_ms(work.events)
        else:
            timings = dict(work.cpu_ms)
        size = len(work.frames)
        now = time.perf_counter()
        results = []
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
            results.append(result)
        return timings, results

    def _without_focal(self, frames: list[Frame]) -> int:
        """How many ``frames`` lack the focal the model's depth needs (none for models
        that need none or estimate it)."""
        info = self.recipe.info
        if not info.needs_focal or info.has_fov_head:
            return 0
        return sum(f.intrinsics is None for f in frames)

    def _no_focal_message(self) -> str:
        return (f"{self.recipe.info.description} needs a focal length and has no FoV head: "
                "give the frames known intrinsics (a CameraInfo, or a fixed focal)")

    def _stream(self) -> torch.cuda.Stream:
        return self._compute_stream if self.overlap else torch.cuda.current_stream(self.device)

    def _to_host(self, t: torch.Tensor) -> torch.Tensor:
        return to_pinned_host(t) if self.cuda else t


def hwc(image: np.ndarray) -> np.ndarray:
    """An image as (H, W, C): a mono (H, W) one gets its channel axis."""
    return image[:, :, None] if image.ndim == 2 else image
