"""False-colour previews of metric depth maps (numpy + OpenCV only).

Conventions: depth is in metres; a pixel is *valid* when it is finite and strictly
positive (REP 118 marks invalid depth with NaN). Invalid pixels are drawn black. With
``invert=True`` (the default) near surfaces get the warm end of the colour map.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

#: Percentiles of the valid depths used as the colour range when none is given.
AUTO_RANGE_PERCENTILES = (2.0, 98.0)


def valid_depth_mask(depth: np.ndarray) -> np.ndarray:
    """Boolean mask of the pixels holding a usable depth (finite and > 0)."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(depth) & (depth > 0)


def _check_bound(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite, non-negative number of metres, got {value}")
    return value


def depth_range(
    depth: np.ndarray,
    min_depth: float | None = None,
    max_depth: float | None = None,
) -> tuple[float, float]:
    """Colour range (lo, hi) in metres, lo < hi.

    Missing bounds come from robust percentiles of the valid depths. When the image has
    no valid pixel and a bound is missing, the result is ``(nan, nan)``.
    """
    lo = _check_bound("min_depth", min_depth)
    hi = _check_bound("max_depth", max_depth)
    if lo is not None and hi is not None:
        if not lo < hi:
            raise ValueError(f"min_depth ({lo}) must be smaller than max_depth ({hi})")
        return lo, hi

    values = np.asarray(depth)[valid_depth_mask(np.asarray(depth))]
    if values.size == 0:
        return math.nan, math.nan
    p_lo, p_hi = np.percentile(values.astype(np.float64), AUTO_RANGE_PERCENTILES)
    lo = float(p_lo) if lo is None else lo
    hi = float(p_hi) if hi is None else hi
    if not lo < hi:
        # Flat scene, or one given bound on the wrong side of the data: open a small
        # interval on the side of the bound that was not given.
        span = max(1e-3, 1e-3 * abs(lo if min_depth is not None else hi))
        if min_depth is not None:
            hi = lo + span
        else:
            lo = max(0.0, hi - span)
            if not lo < hi:
                hi = lo + span
    return lo, hi


def colorize_depth(
    depth: np.ndarray,
    min_depth: float | None = None,
    max_depth: float | None = None,
    colormap: int = cv2.COLORMAP_TURBO,
    invert: bool = True,
    scale: str = "inverse",
) -> tuple[np.ndarray, tuple[float, float]]:
    """Map a depth image (HxW, metres) to a BGR uint8 preview.

    Args:
        depth: HxW (or HxWx1) array of depths in metres; NaN, inf and values <= 0 are
            treated as invalid and drawn black.
        min_depth, max_depth: colour range in metres. A missing bound is taken from the
            2nd / 98th percentile of the valid depths. Depths outside the range saturate.
        colormap: an OpenCV colour map id (``cv2.COLORMAP_*``).
        invert: when true, near depths get the high (warm) end of the colour map.
        scale: ``"inverse"`` (default) spaces the colours evenly in 1/depth, which keeps
            detail in the near field the way disparity maps do; ``"linear"`` spaces them
            evenly in metres. ``"inverse"`` falls back to linear when the range starts
            at 0 m.

    Returns:
        ``(bgr, (lo, hi))``: the HxWx3 uint8 image and the colour range actually used
        (``(nan, nan)`` when there was nothing valid to derive it from).
    """
    depth = np.asarray(depth)
    if depth.ndim == 3 and depth.shape[2] == 1:
        depth = depth[:, :, 0]
    if depth.ndim != 2:
        raise ValueError(f"depth must be a 2-D HxW array, got shape {depth.shape}")

    if scale not in ("inverse", "linear"):
        raise ValueError(f"scale must be 'inverse' or 'linear', got {scale!r}")
    lo, hi = depth_range(depth, min_depth, max_depth)
    valid = valid_depth_mask(depth)
    if not valid.any() or math.isnan(lo):
        return np.zeros((*depth.shape, 3), np.uint8), (lo, hi)

    d = np.where(valid, depth, hi).astype(np.float64)
    if scale == "inverse" and lo > 0:
        near = (1.0 / d - 1.0 / hi) / (1.0 / lo - 1.0 / hi)
    else:
        near = (hi - d) / (hi - lo)
    # `near` is 1 at lo and 0 at hi; the warm (high) end of the map goes to near depths.
    t = np.clip(near if invert else 1.0 - near, 0.0, 1.0)
    index = np.round(t * 255.0).astype(np.uint8)
    bgr = cv2.applyColorMap(index, colormap)
    bgr[~valid] = 0
    return bgr, (lo, hi)


def format_metres(value: float) -> str:
    """A depth as the colour legend writes it: ``2.43 m``, ``12.4 m``, ``153 m``."""
    if value >= 100:
        return f"{value:.0f} m"
    if value >= 10:
        return f"{value:.1f} m"
    return f"{value:.2f} m"


def annotate_range(
    bgr: np.ndarray,
    lo: float,
    hi: float,
    colormap: int = cv2.COLORMAP_TURBO,
    invert: bool = True,
) -> np.ndarray:
    """Return a copy of ``bgr`` with a colour legend and its range in metres drawn on it.

    The legend sits in the bottom-left corner: a horizontal bar going from ``lo`` (left)
    to ``hi`` (right) in the same colour map as :func:`colorize_depth` (pass the same
    ``colormap`` and ``invert``), with the two bounds written above it. A NaN range is
    written as "no valid depth".
    """
    out = np.array(bgr, dtype=np.uint8, copy=True)
    if out.ndim != 3 or out.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 BGR image, got shape {out.shape}")
    h, w = out.shape[:2]
    if h < 8 or w < 8:
        return out

    font_scale = float(np.clip(min(h, w) / 900.0, 0.35, 1.5))
    thickness = 1 if font_scale < 0.8 else 2
    font = cv2.FONT_HERSHEY_SIMPLEX
    margin = max(2, int(round(8 * font_scale)))
    bar_w = max(8, min(int(0.4 * w), int(round(260 * font_scale))))
    bar_h = max(3, int(round(12 * font_scale)))
    (_, text_h), baseline = cv2.getTextSize("0", font, font_scale, thickness)

    x0 = margin
    y_bar1 = h - margin
    y_bar0 = y_bar1 - bar_h
    y_text = y_bar0 - max(2, int(round(4 * font_scale)))

    if math.isnan(lo) or math.isnan(hi):
        labels = [("no valid depth", x0)]
    else:
        left = format_metres(lo)
        right = format_metres(hi)
        (right_w, _), _ = cv2.getTextSize(right, font, font_scale, thickness)
        labels = [(left, x0), (right, max(x0, x0 + bar_w - right_w))]

    # Dark backing box so the legend stays readable on any preview.
    box_x1 = min(w, x0 + max(bar_w, 1) + margin)
    for text, _ in labels:
        (tw, _), _ = cv2.getTextSize(text, font, font_scale, thickness)
        box_x1 = min(w, max(box_x1, x0 + tw + margin))
    box_y0 = max(0, y_text - text_h - margin)
    region = out[box_y0:h, 0:box_x1]
    region[:] = (region.astype(np.uint16) * 2 // 5).astype(np.uint8)

    if not (math.isnan(lo) or math.isnan(hi)):
        ramp = np.linspace(1.0, 0.0, bar_w, dtype=np.float32)  # near (lo) on the left
        if not invert:
            ramp = 1.0 - ramp
        ramp_u8 = np.round(ramp * 255.0).astype(np.uint8)[None, :]
        bar = cv2.applyColorMap(np.repeat(ramp_u8, bar_h, axis=0), colormap)
        ys0, xs1 = max(0, y_bar0), min(w, x0 + bar_w)
        out[ys0:y_bar1, x0:xs1] = bar[ys0 - y_bar0 : bar_h, : xs1 - x0]

    for text, x in labels:
        white = (255, 255, 255)
        cv2.putText(out, text, (x, y_text), font, font_scale, white, thickness, cv2.LINE_AA)
    return out
