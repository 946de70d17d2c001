"""What the engine's worker carries for one batch, and each frame's choice of focal.

A :class:`Batch` goes through the pipeline's steps (stage, launch, post-process,
deliver) and collects the tensors in flight; :func:`frame_outputs` decides, per frame,
which intrinsics the metric conversion uses. :func:`batch_key` says which frames may
share a batch, and :class:`BatchGrouper` forms batches across cameras for offline runs,
where the grouping must not depend on timing.
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from dataclasses import dataclass, field

import torch

from depth_pro_ros.engine.focal import FocalSource, Intrinsics
from depth_pro_ros.engine.types import AnchorOutcome, Frame
from depth_pro_ros.model import focal_from_fov

__all__ = ["Batch", "BatchGrouper", "FrameOutput", "batch_key", "frame_outputs"]


def batch_key(frame: Frame) -> Hashable:
    """Frames with equal keys (image size, channel order and prompt size) can run as one
    batch."""
    prompt = None if frame.prompt is None else frame.prompt.shape
    return frame.image.shape[:2], frame.channel_order, prompt


class BatchGrouper:
    """Groups frames of equal :func:`batch_key` (whatever their source) into batches.

    :meth:`add` returns a batch when its group reaches ``max_size`` frames, or when the
    group has waited while ``max_wait`` later frames were added (so a camera that stops
    does not hold its frames back for long). A frame whose ``source`` changed size
    releases the group holding that source's earlier frames, so each source's frames
    reach the engine in their own order (its focal EMA sees them in order).
    :meth:`flush` returns the open groups, oldest first. The grouping depends only on the
    order of the frames, never on timing, so an offline run is reproducible.
    """

    def __init__(self, max_size: int, max_wait: int) -> None:
        if max_size < 1 or max_wait < 1:
            raise ValueError(f"need max_size >= 1 and max_wait >= 1, got {max_size}, "
                             f"{max_wait}")
        self.max_size, self.max_wait = max_size, max_wait
        self._open: dict[Hashable, tuple[int, list[Frame]]] = {}  # key -> (opened at, frames)
        self._key_of: dict[Hashable, Hashable] = {}  # source -> key of its last frame
        self._added = 0

    @property
    def held(self) -> int:
        """Frames waiting in open groups."""
        return sum(len(frames) for _, frames in self._open.values())

    def add(self, frame: Frame) -> list[list[Frame]]:
        """Add ``frame``; return the batches that are complete now (oldest first)."""
        self._added += 1
        key = batch_key(frame)
        previous = self._key_of.get(frame.source, key)
        resized = previous if previous != key else None
        self._key_of[frame.source] = key
        self._open.setdefault(key, (self._added, []))[1].append(frame)
        ready = [k for k, (at, group) in self._open.items()
                 if k == resized or len(group) >= self.max_size
                 or self._added - at >= self.max_wait]
        return [self._open.pop(k)[1] for k in ready]

    def flush(self) -> list[list[Frame]]:
        """Every open group, oldest first; the grouper is empty afterwards."""
        groups = [frames for _, frames in self._open.values()]
        self._open.clear()
        return groups


@dataclass
class FrameOutput:
    """What the pipeline has worked out for one frame of a batch so far."""

    intrinsics: Intrinsics | None = None  # at the input size, then at the depth's size
    focal_source: FocalSource | None = None  # the frame's own, or FOV_HEAD
    fov_deg: float | None = None  # raw FoV-head estimate, when it ran
    focal_estimate_px: float | None = None  # focal from that estimate, input width
    error: str | None = None
    depth: torch.Tensor | None = None  # metric depth on the host (pinned on CUDA)
    points: torch.Tensor | None = None  # host int32 words, see pointcloud.pack_words
    points_shape: tuple[int, int] | None = None  # (height, width) of the organized cloud
    anchor: AnchorOutcome | None = None  # what the frame's anchor step applied
    relative: torch.Tensor | None = None  # unanchored relative inverse depth, on the host


@dataclass
class Batch:
    """One batch on its way through the pipeline."""

    frames: list[Frame]
    submitted: list[float]  # perf_counter() of each frame's submit
    started: float  # perf_counter() when the worker took the batch
    images: torch.Tensor | None = None  # (B, H, W, C) uint8 on the device
    x: torch.Tensor | None = None  # network input
    prompt: torch.Tensor | None = None  # (B, 1, h, w) prompt depths (Prompt Depth Anything)
    raw: torch.Tensor | None = None  # the network's output, see BatchRecipe.output
    fov_host: torch.Tensor | None = None  # (B,) float32 FoV estimates on the host
    outputs: list[FrameOutput] = field(default_factory=list)
    events: dict[str, torch.cuda.Event] = field(default_factory=dict)  # CUDA only
    cpu_ms: dict[str, float] = field(default_factory=dict)  # stage timings off CUDA

    @classmethod
    def from_queue(cls, queued: list[tuple]) -> Batch:
        """A batch of ``(frame, submit time, ...)`` entries taken from the engine's inbox."""
        return cls([q[0] for q in queued], [q[1] for q in queued], time.perf_counter())


def frame_outputs(frames: list[Frame], fov_host: torch.Tensor | None) -> list[FrameOutput]:
    """Each frame's intrinsics: the known ones, else its FoV estimate (through the frame's
    ``focal_filter`` when it has one). A rejected estimate sets the output's ``error``.

    ``fov_host`` holds the batch's FoV estimates (degrees) on the host, or is None when
    the FoV head did not run; a frame without intrinsics then keeps none (models whose
    depth needs no focal).
    """
    outputs = []
    for i, frame in enumerate(frames):
        h, w = frame.image.shape[:2]
        out = FrameOutput()
        if fov_host is not None and (frame.intrinsics is None or frame.estimate_fov):
            fov = fov_host[i : i + 1]
            out.fov_deg = float(fov[0])
            out.focal_estimate_px = float(focal_from_fov(fov, w)[0])
        if frame.intrinsics is not None:
            out.intrinsics = frame.intrinsics.scaled_to(w, h)
            out.focal_source = frame.focal_source
        elif fov_host is not None:
            raw = out.focal_estimate_px
            chosen = frame.focal_filter(raw, w, h) if frame.focal_filter else (
                Intrinsics.from_focal(raw, w, h) if raw > 0 else None
            )
            if chosen is None:
                out.error = (f"focal estimate rejected ({raw:.6g} px from FoV "
                             f"{out.fov_deg:.4g} deg)")
            out.intrinsics, out.focal_source = chosen, FocalSource.FOV_HEAD
        outputs.append(out)
    return outputs
