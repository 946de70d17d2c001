"""What /diagnostics says about a camera and about the shared engine, without ROS.

:class:`CameraHealth` counts one camera's frames (in, out, skipped by reason, failed),
keeps its recent rates and latencies and judges its health; :func:`engine_values`
summarizes the batches of the engine that the cameras share. The node turns both into
``DiagnosticStatus`` messages.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from depth_pro_ros.engine import DepthResult, EngineStats

__all__ = ["STATS_WINDOW_S", "CameraHealth", "RateWindow", "anchor_values", "engine_values"]

#: Seconds of history behind the rates and latencies in /diagnostics.
STATS_WINDOW_S = 10.0


class RateWindow:
    """Event times (and optional values) over the last ``STATS_WINDOW_S`` seconds."""

    def __init__(self) -> None:
        self._items: deque[tuple[float, float]] = deque()
        self._lock = threading.Lock()

    def add(self, value: float = 0.0) -> None:
        with self._lock:
            self._items.append((time.monotonic(), value))

    def snapshot(self) -> tuple[float, list[float]]:
        """(events per second, values) over the window."""
        cutoff = time.monotonic() - STATS_WINDOW_S
        with self._lock:
            while self._items and self._items[0][0] < cutoff:
                self._items.popleft()
            values = [v for _, v in self._items]
        return len(values) / STATS_WINDOW_S, values


class CameraHealth:
    """One camera's counters and health. Thread-safe (the engine reports from its worker).

    The node calls :meth:`image_in` for every image message, :meth:`skipped`,
    :meth:`failed` or :meth:`camera_info_error` for what it could not use, and
    :meth:`published` for every depth it published.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = {"frames_in": 0, "frames_out": 0, "failed": 0, "lazy_skipped": 0,
                        "camera_info_errors": 0}
        self._skips: dict[str, int] = {}
        self._last: dict[str, Any] = {}
        self._inputs, self._outputs, self._latency = RateWindow(), RateWindow(), RateWindow()
        # Monotonic times of the last image in and of the oldest image still waiting for a
        # depth to be published (None while none waits): what the health is judged by.
        self._last_input: float | None = None
        self._waiting_since: float | None = None

    def image_in(self) -> None:
        self._inputs.add()
        now = time.monotonic()
        with self._lock:
            self._counts["frames_in"] += 1
            self._last_input = now
            if self._waiting_since is None:
                self._waiting_since = now

    def lazy_skipped(self) -> None:
        with self._lock:
            self._counts["lazy_skipped"] += 1
            self._waiting_since = None  # idle by request, not stalled

    def skipped(self, reason: str) -> None:
        with self._lock:
            self._skips[reason] = self._skips.get(reason, 0) + 1

    def failed(self) -> None:
        with self._lock:
            self._counts["failed"] += 1

    def camera_info_error(self) -> None:
        with self._lock:
            self._counts["camera_info_errors"] += 1

    def published(self, result: DepthResult, received: float) -> None:
        """A depth was published for the image taken in at monotonic time ``received``."""
        self._outputs.add()
        self._latency.add(1e3 * (time.monotonic() - received))
        with self._lock:
            self._counts["frames_out"] += 1
            self._waiting_since = None
            image = result.depth if result.depth is not None else result.relative
            known = result.intrinsics is not None
            self._last = {"focal_source": result.focal_source.value if known else "none",
                          "focal_px": result.intrinsics.fx if known else None,
                          "focal_estimate_px": result.focal_estimate_px,
                          "width": image.shape[1]}

    @property
    def last_width(self) -> int:
        """Width of the last published depth (0 before the first)."""
        with self._lock:
            return self._last.get("width", 0)

    def values(self, dropped: int, focal_ema_px: float | None) -> dict[str, str]:
        """The camera's /diagnostics key-values; ``dropped`` counts the frames replaced
        by newer ones (engine and stream), ``focal_ema_px`` is the EMA of the estimates."""
        in_rate, _ = self._inputs.snapshot()
        out_rate, _ = self._outputs.snapshot()
        _, latencies = self._latency.snapshot()
        with self._lock:
            counts, skips, last = dict(self._counts), dict(self._skips), dict(self._last)
        values = {
            "input_rate_hz": f"{in_rate:.2f}",
            "output_rate_hz": f"{out_rate:.2f}",
            "latency_median_ms": f"{statistics.median(latencies):.1f}" if latencies else "",
            "latency_max_ms": f"{max(latencies):.1f}" if latencies else "",
            "frames_in": counts["frames_in"],
            "frames_out": counts["frames_out"],
            "dropped_frames": dropped,
            "decode_errors": skips.get("decode", 0),
            "skipped_frames": sum(skips.values()),
            "failed_frames": counts["failed"],
            "camera_info_errors": counts["camera_info_errors"],
            "lazy_skipped": counts["lazy_skipped"],
            "focal_source": last.get("focal_source", ""),
            "focal_px": f"{last['focal_px']:.2f}" if last.get("focal_px") else "",
            "focal_estimate_px": f"{last['focal_estimate_px']:.2f}"
            if last.get("focal_estimate_px") is not None else "",
            "focal_ema_px": f"{focal_ema_px:.2f}" if focal_ema_px else "",
        }
        return {k: str(v) for k, v in values.items()}

    def health(self, stall_timeout: float) -> tuple[str, str]:
        """Level (``OK``, ``WARN`` or ``ERROR``) and message: silence after input flowed is
        a warning, images that keep arriving while no depth comes out for
        ``stall_timeout`` seconds an error."""
        now = time.monotonic()
        with self._lock:
            last_input, waiting_since = self._last_input, self._waiting_since
            errors = (sum(self._skips.values()) + self._counts["failed"]
                      + self._counts["camera_info_errors"])
        if last_input is None:
            return "WARN", "no images received yet"
        if now - last_input > stall_timeout:
            return "WARN", f"no input for {now - last_input:.0f} s"
        if waiting_since is not None and now - waiting_since > stall_timeout:
            what = f"{errors} frames skipped or failed" if errors else "none skipped"
            return ("ERROR", f"images arrive but no depth was published for "
                    f"{now - waiting_since:.0f} s ({what})")
        if errors:
            return "OK", f"running ({errors} frames skipped or failed)"
        return "OK", "running"


def engine_values(stats: EngineStats, max_batch_size: int,
                  cuda_graphs: bool = False) -> dict[str, str]:
    """/diagnostics key-values of the shared engine: batches run, their sizes and the
    median time per batch of each stage (GPU time on CUDA, CPU time elsewhere) over the
    last batches; with ``cuda_graphs`` also the graph captures, evictions and graphs held
    (captures that keep growing mean the input shapes cycle through more than
    graph_cache_size)."""
    recent = list(stats.recent_batches)
    sizes = dict(sorted(stats.batch_sizes.items()))
    values = {
        "max_batch_size": str(max_batch_size),
        "batches": str(sum(sizes.values())),
        "batch_sizes": " ".join(f"{size}x{count}" for size, count in sizes.items()),
        "frames_processed": str(stats.processed),
        "frames_failed": str(stats.failed),
        "frames_dropped": str(stats.dropped),
        "recent_batch_size_mean": f"{statistics.fmean(b.size for b in recent):.2f}"
        if recent else "",
    }
    if cuda_graphs:
        values.update(graph_captures=str(stats.graph_captures),
                      graph_evictions=str(stats.graph_evictions),
                      graphs_cached=str(stats.graphs_cached))
    for stage in _stages(b.timings_ms for b in recent):
        times = [b.timings_ms[stage] for b in recent if stage in b.timings_ms]
        values[f"{stage}_ms_per_batch_median"] = f"{statistics.median(times):.1f}"
    return values


def anchor_values(state: dict[str, Any]) -> dict[str, str]:
    """/diagnostics key-values of a camera's anchoring (``AnchorStream.state``): whether
    the depth is anchored now, the smoothed scale (and shift), the last fit's inliers /
    points and residual (median absolute relative error of its inliers), the age of the
    last accepted fit, the model it used and why it was rejected or fell back."""
    fit = state["last_fit"]

    def number(value: float | None, spec: str) -> str:
        return "" if value is None else format(value, spec)

    return {
        "anchor_source": state["source"],
        "anchor_fit": state["fit"],
        "anchored": str(state["anchored"]).lower(),
        "anchor_scale": number(state["scale"], ".5f"),
        "anchor_shift": number(state["shift"], ".6f") if state["fit"] == "scale_shift" else "",
        "anchor_inliers": f"{fit.inliers}/{fit.points}" if fit is not None else "",
        # The model the last fit used (scale after a fallback) and why it was rejected
        # or fell back.
        "anchor_fit_used": fit.kind if fit is not None else "",
        "anchor_fit_reason": (fit.reason or fit.fallback or "") if fit is not None else "",
        "anchor_residual": number(fit.residual if fit is not None else None, ".4f"),
        "anchor_age_s": number(state["age_s"], ".2f"),
        "anchor_fits": str(state["fits_ok"]),
        "anchor_fits_rejected": str(state["fits_rejected"]),
        "anchor_unreadable": str(state["unreadable"]),
    }


def _stages(timings: Iterable[dict[str, float]]) -> list[str]:
    seen: dict[str, None] = {}
    for t in timings:
        seen.update(dict.fromkeys(t))
    return list(seen)
