"""What the engine's worker carries for one batch, and each frame's choice of focal.

A :class:`Batch` goes through the pipeline's steps (stage, launch, post-process,
deliver) and collects the tensors in flight; :func:`frame_outputs` decides, per frame,
which intrinsics the metric conversion uses.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from depth_pro_ros.engine.focal import FocalSource, Intrinsics
from depth_pro_ros.engine.types import Frame
from depth_pro_ros.model import focal_from_fov

__all__ = ["Batch", "FrameOutput", "frame_outputs"]


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


@dataclass
class Batch:
    """One batch on its way through the pipeline."""

    frames: list[Frame]
    submitted: list[float]  # perf_counter() of each frame's submit
    started: float  # perf_counter() when the worker took the batch
    images: torch.Tensor | None = None  # (B, H, W, C) uint8 on the device
    x: torch.Tensor | None = None  # network input
    inverse_depth: torch.Tensor | None = None  # canonical inverse depth
    fov_host: torch.Tensor | None = None  # (B,) float32 FoV estimates on the host
    outputs: list[FrameOutput] = field(default_factory=list)
    events: dict[str, torch.cuda.Event] = field(default_factory=dict)  # CUDA only
    cpu_ms: dict[str, float] = field(default_factory=dict)  # stage timings off CUDA

    @classmethod
    def from_queue(cls, queued: list[tuple[Frame, float]]) -> Batch:
        """A batch of ``(frame, submit time)`` pairs taken from the engine's inbox."""
        return cls([f for f, _ in queued], [t for _, t in queued], time.perf_counter())


def frame_outputs(frames: list[Frame], fov_host: torch.Tensor | None) -> list[FrameOutput]:
    """Each frame's intrinsics: the known ones, else its FoV estimate (through the frame's
    ``focal_filter`` when it has one). A rejected estimate sets the output's ``error``.

    ``fov_host`` holds the batch's FoV estimates (degrees) on the host, or is None when
    the FoV head did not run.
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
        else:
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
