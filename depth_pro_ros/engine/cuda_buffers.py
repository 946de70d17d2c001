"""CUDA-only plumbing of the engine's pipeline: pinned host buffers and events.

The pipeline (:mod:`depth_pro_ros.engine.pipeline`) creates these objects only when its
device is a CUDA device; the CPU path never touches them. Graph replay is the torch
backend's (:mod:`depth_pro_ros.engine.backends.torch_backend`).

Every event the host waits on is made with ``blocking=True``: its ``synchronize`` sleeps
in the driver instead of spinning a CPU core for the whole GPU time of a frame, so the
node's other callbacks and the robot's other processes keep that core.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["PinnedSlots", "gpu_stage_ms", "host_wait_event", "timing_events",
           "to_pinned_host"]


def host_wait_event() -> torch.cuda.Event:
    """An event the host will ``synchronize`` on (blocking: the waiting thread sleeps)."""
    return torch.cuda.Event(blocking=True)


class _PinnedSlot:
    """A reusable pinned host buffer of ``dtype``; its event marks when the last upload
    from it is done."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype
        self.buffer = torch.empty(0, dtype=dtype, pin_memory=True)
        self.uploaded: torch.cuda.Event | None = None
        self._view: torch.Tensor | None = None

    def write(self, values: np.ndarray) -> None:
        """Copy ``values`` (of the slot's dtype) in, once the previous upload from this
        buffer is done."""
        if self.uploaded is not None:
            self.uploaded.synchronize()  # normally long done: it was two batches ago
        n = int(np.prod(values.shape))
        if self.buffer.numel() < n:
            self.buffer = torch.empty(n, dtype=self.dtype, pin_memory=True)
        self._view = self.buffer[:n].view(values.shape)
        self._view.numpy()[...] = values

    def upload(self, device: torch.device, stream: torch.cuda.Stream) -> torch.Tensor:
        """Non-blocking copy of the written values to ``device``, queued on ``stream``."""
        assert self._view is not None, "write() before upload()"
        with torch.cuda.stream(stream):
            on_device = self._view.to(device, non_blocking=True)
            self.uploaded = host_wait_event()
            self.uploaded.record(stream)
        return on_device


class PinnedSlots:
    """Pinned input buffers of ``dtype`` used in turn (double buffering with two): batch
    N+1 is written into one while batch N's upload from the other may still be running."""

    def __init__(self, count: int = 2, dtype: torch.dtype = torch.uint8) -> None:
        self._slots = [_PinnedSlot(dtype) for _ in range(count)]
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


def timing_events(*names: str, blocking: bool = False) -> dict[str, torch.cuda.Event]:
    """One timing-enabled CUDA event per name; ``blocking`` for those the host waits on."""
    return {name: torch.cuda.Event(enable_timing=True, blocking=blocking) for name in names}


def gpu_stage_ms(events: dict[str, torch.cuda.Event]) -> dict[str, float]:
    """GPU time of the pipeline's stages from its events (all of them must have completed)."""
    return {
        "preprocess": events["stage0"].elapsed_time(events["staged"]),
        "inference": events["net0"].elapsed_time(events["net1"]),
        "postprocess": events["net1"].elapsed_time(events["done"]),
    }
