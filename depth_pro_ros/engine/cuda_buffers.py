"""CUDA-only plumbing of the engine's pipeline: pinned host buffers and timing events.

The pipeline (:mod:`depth_pro_ros.engine.pipeline`) creates these objects only when its
device is a CUDA device; the CPU path never touches them. Graph replay is the torch
backend's (:mod:`depth_pro_ros.engine.backends.torch_backend`).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["PinnedSlots", "gpu_stage_ms", "timing_events", "to_pinned_host"]


class _PinnedSlot:
    """A reusable pinned host buffer; its event marks when the last upload from it is done."""

    def __init__(self) -> None:
        self.buffer = torch.empty(0, dtype=torch.uint8, pin_memory=True)
        self.uploaded: torch.cuda.Event | None = None
        self._view: torch.Tensor | None = None

    def write(self, pixels: np.ndarray) -> None:
        """Copy ``pixels`` (uint8) in, once the previous upload from this buffer is done."""
        if self.uploaded is not None:
            self.uploaded.synchronize()  # normally long done: it was two frames ago
        n = int(np.prod(pixels.shape))
        if self.buffer.numel() < n:
            self.buffer = torch.empty(n, dtype=torch.uint8, pin_memory=True)
        self._view = self.buffer[:n].view(pixels.shape)
        self._view.numpy()[...] = pixels

    def upload(self, device: torch.device, stream: torch.cuda.Stream) -> torch.Tensor:
        """Non-blocking copy of the written pixels to ``device``, queued on ``stream``."""
        assert self._view is not None, "write() before upload()"
        with torch.cuda.stream(stream):
            on_device = self._view.to(device, non_blocking=True)
            self.uploaded = torch.cuda.Event()
            self.uploaded.record(stream)
        return on_device


class PinnedSlots:
    """Pinned input buffers used in turn (double buffering with two): frame N+1 is
    written into one while frame N's upload from the other may still be running."""

    def __init__(self, count: int = 2) -> None:
        self._slots = [_PinnedSlot() for _ in range(count)]
        self._next = 0

    def take(self) -> _PinnedSlot:
        """The buffer to fill next."""
        slot = self._slots[self._next]
        self._next = (self._next + 1) % len(self._slots)
        return slot


def to_pinned_host(t: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A new pinned host tensor that ``t`` is copied into asynchronously (current stream).

    Read it only after an event recorded behind the copy has completed.
    """
    host = torch.empty(t.shape, dtype=dtype or t.dtype, pin_memory=True)
    host.copy_(t, non_blocking=True)
    return host


def timing_events(*names: str) -> dict[str, torch.cuda.Event]:
    """One timing-enabled CUDA event per name."""
    return {name: torch.cuda.Event(enable_timing=True) for name in names}


def gpu_stage_ms(events: dict[str, torch.cuda.Event]) -> dict[str, float]:
    """GPU time of the pipeline's stages from its events (all of them must have completed)."""
    return {
        "preprocess": events["stage0"].elapsed_time(events["staged"]),
        "inference": events["net0"].elapsed_time(events["net1"]),
        "postprocess": events["net1"].elapsed_time(events["done"]),
    }
