"""Anchor fits over time: per-camera smoothing with a fallback, and the fit settings.

:class:`AnchorTracker` smooths a camera's :func:`~depth_pro_ros.engine.anchor.fit.
fit_anchor` results over frames and falls back to unanchored depth when anchors stop;
:class:`AnchorSettings` holds one camera's fit limits and smoothing and builds both.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from depth_pro_ros.engine.anchor.fit import (
    DEFAULT_MAX_RESIDUAL,
    DEFAULT_MIN_INLIER_FRACTION,
    AnchorFit,
    check_fit_args,
    fit_anchor,
)

__all__ = ["DEFAULT_ANCHOR_EMA_ALPHA", "DEFAULT_ANCHOR_TIMEOUT_S", "AnchorSettings",
           "AnchorTracker"]

#: Weight of each new fit in the tracker's EMA.
DEFAULT_ANCHOR_EMA_ALPHA = 0.5
#: Seconds after the last good fit at which the tracker falls back to unanchored depth.
DEFAULT_ANCHOR_TIMEOUT_S = 1.0
#: Problems a tracker keeps for pop_problems() when nobody collects them.
MAX_PROBLEMS = 100


class AnchorTracker:
    """Smooth anchor fits over frames for one camera; fall back when anchors stop.

    The EMA runs on ``log(scale)`` (a scale is a ratio: the log makes 2x and 0.5x
    symmetric, and the average stays positive) and on ``shift`` linearly. The first good
    fit, and the first good fit after a timeout, (re)start it. A rejected fit leaves the
    EMA and the last anchor time alone and is counted. The anchored value holds while the
    last good fit is at most ``timeout`` seconds old (a fit from the future counts as
    fresh); time is passed in explicitly. Thread-safe: the engine's worker feeds it
    (:meth:`step`), the front end reads it (:meth:`snapshot`, the pop methods).
    """

    def __init__(self, ema_alpha: float = DEFAULT_ANCHOR_EMA_ALPHA,
                 timeout: float = DEFAULT_ANCHOR_TIMEOUT_S) -> None:
        if not (math.isfinite(ema_alpha) and 0.0 < ema_alpha <= 1.0):
            raise ValueError(f"anchor ema_alpha must be in (0, 1], got {ema_alpha}")
        if not (math.isfinite(timeout) and timeout > 0.0):
            raise ValueError(f"anchor timeout must be a finite number of seconds > 0, "
                             f"got {timeout}")
        self._alpha = float(ema_alpha)
        self._timeout = float(timeout)
        self._log_scale: float | None = None
        self._shift = 0.0
        self._last_ok_time: float | None = None
        self._last_fit: AnchorFit | None = None
        self._fits_ok = 0
        self._fits_rejected = 0
        self._anchored = False
        self._messages: deque[str] = deque()
        self._problems: deque[str] = deque(maxlen=MAX_PROBLEMS)
        self._lock = threading.RLock()

    @property
    def ema_alpha(self) -> float:
        return self._alpha

    @property
    def timeout(self) -> float:
        return self._timeout

    @property
    def last_fit(self) -> AnchorFit | None:
        """The last fit observed, good or rejected."""
        return self._last_fit

    @property
    def fits_ok(self) -> int:
        return self._fits_ok

    @property
    def fits_rejected(self) -> int:
        return self._fits_rejected

    @property
    def value(self) -> tuple[float, float] | None:
        """The smoothed ``(scale, shift)``, fresh or not (None before the first good fit)."""
        return None if self._log_scale is None else (math.exp(self._log_scale), self._shift)

    def age(self, now: float) -> float | None:
        """Seconds since the last good fit, or None before the first."""
        return None if self._last_ok_time is None else now - self._last_ok_time

    def step(self, fit: AnchorFit | None, now: float, problem: str | None = None,
             ) -> tuple[tuple[float, float] | None, float | None]:
        """One frame: feed its fit (None: no anchor of its own) and keep its ``problem``
        for :meth:`pop_problems`; ``((scale, shift) or None, age of the last good fit)``."""
        with self._lock:
            applied = self.observe(fit, now) if fit is not None else self.current(now)
            if problem is not None:
                self._problems.append(problem)
            return applied, self.age(now)

    def pop_problems(self) -> list[str]:
        """Problems of the frames since the last call (the last ``MAX_PROBLEMS``)."""
        with self._lock:
            out = list(self._problems)
            self._problems.clear()
            return out

    def snapshot(self, now: float) -> dict[str, Any]:
        """Whether anchored now, the smoothed value, the last fit, its age and counts,
        read together."""
        with self._lock:
            return {"anchored": self.current(now) is not None, "value": self.value,
                    "last_fit": self._last_fit, "age_s": self.age(now),
                    "fits_ok": self._fits_ok, "fits_rejected": self._fits_rejected}

    def observe(self, fit: AnchorFit, now: float) -> tuple[float, float] | None:
        """Feed one frame's fit; return ``(scale, shift)`` to apply now, or None."""
        with self._lock:
            return self._observe(fit, now)

    def _observe(self, fit: AnchorFit, now: float) -> tuple[float, float] | None:
        self._last_fit = fit
        if fit.ok:
            if self._log_scale is None or not self._fresh(now):
                self._log_scale = math.log(fit.scale)
                self._shift = fit.shift
            else:
                a = self._alpha
                self._log_scale = a * math.log(fit.scale) + (1.0 - a) * self._log_scale
                self._shift = a * fit.shift + (1.0 - a) * self._shift
            self._last_ok_time = float(now)
            self._fits_ok += 1
        else:
            self._fits_rejected += 1
        return self._current(now)

    def current(self, now: float) -> tuple[float, float] | None:
        """The smoothed ``(scale, shift)`` while anchors are fresh, else None."""
        with self._lock:
            return self._current(now)

    def _current(self, now: float) -> tuple[float, float] | None:
        fresh = self._fresh(now)
        if fresh != self._anchored:
            self._anchored = fresh
            self._messages.append(self._switch_message(now))
        if not fresh:
            return None
        assert self._log_scale is not None  # fresh implies a good fit was seen
        return (math.exp(self._log_scale), self._shift)

    def pop_switch_message(self) -> str | None:
        """Return the oldest unread anchored / unanchored switch message, or None."""
        with self._lock:
            return self._messages.popleft() if self._messages else None

    def _fresh(self, now: float) -> bool:
        return self._last_ok_time is not None and now - self._last_ok_time <= self._timeout

    def _switch_message(self, now: float) -> str:
        if self._anchored:
            assert self._log_scale is not None
            message = (f"anchored: scale {math.exp(self._log_scale):.4f}, "
                       f"shift {self._shift:.4f} 1/m")
            fit = self._last_fit
            if fit is not None and fit.ok:
                message += f" ({fit.inliers} inliers of {fit.points} anchor points)"
            return message
        age = self.age(now)
        message = (f"anchors stopped for {age:.1f} s (timeout {self._timeout:.1f} s): "
                   f"publishing unanchored depth")
        fit = self._last_fit
        if fit is not None and not fit.ok:
            message += f"; last fit rejected: {fit.reason}"
        return message


@dataclass(frozen=True)
class AnchorSettings:
    """How a camera's depth is anchored: the fit, its limits and the smoothing."""

    fit: str = "scale"
    ema_alpha: float = DEFAULT_ANCHOR_EMA_ALPHA
    timeout: float = DEFAULT_ANCHOR_TIMEOUT_S  # seconds without a good fit -> unanchored
    min_points: int = 20
    min_depth: float = 0.0  # anchor depths outside [min_depth, max_depth] are ignored
    max_depth: float = math.inf
    min_inlier_fraction: float = DEFAULT_MIN_INLIER_FRACTION
    max_residual: float = DEFAULT_MAX_RESIDUAL

    def __post_init__(self) -> None:
        problems = check_fit_args(self.fit, self.min_points, self.min_depth,
                                   self.max_depth, self.min_inlier_fraction,
                                   self.max_residual)
        if not (math.isfinite(self.ema_alpha) and 0.0 < self.ema_alpha <= 1.0):
            problems.append(f"ema_alpha must be in (0, 1], got {self.ema_alpha}")
        if not (math.isfinite(self.timeout) and self.timeout > 0.0):
            problems.append(f"timeout must be a finite number of seconds > 0, "
                            f"got {self.timeout}")
        if problems:
            raise ValueError("invalid AnchorSettings: " + "; ".join(problems))

    def fit_anchor(self, depth: torch.Tensor | np.ndarray,
                   anchor: torch.Tensor | np.ndarray, relative: bool = False) -> AnchorFit:
        """:func:`fit_anchor` with these settings. A metric ``depth`` falls back to a
        ``scale`` fit when the anchor does not determine ``scale_shift``; a ``relative``
        model's depth has no metric scale, so its undetermined fit is rejected."""
        return fit_anchor(depth, anchor, self.fit, min_points=self.min_points,
                          min_depth=self.min_depth, max_depth=self.max_depth,
                          min_inlier_fraction=self.min_inlier_fraction,
                          max_residual=self.max_residual, fallback_to_scale=not relative)

    def tracker(self) -> AnchorTracker:
        """A fresh :class:`AnchorTracker` with these settings' smoothing and timeout."""
        return AnchorTracker(self.ema_alpha, self.timeout)
