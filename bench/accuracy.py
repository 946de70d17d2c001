"""Agreement between two depth maps of the same frame (e.g. a fast mode against fp32).

``bench_engine.py`` reports it for each reduced precision against fp32.
"""

from __future__ import annotations

import numpy as np


def compare_depth(depth: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Standard monocular-depth agreement metrics of ``depth`` against ``reference``.

    Over pixels where both are finite and positive: ``abs_rel`` = mean |d - r| / r,
    ``delta1`` = fraction with max(d / r, r / d) < 1.25, ``max_rel`` = max |d - r| / r,
    ``max_abs`` = max |d - r| (in the depth's unit), and ``valid_fraction`` = share of
    pixels compared.
    """
    if depth.shape != reference.shape:
        raise ValueError(f"shapes differ: {depth.shape} vs {reference.shape}")
    d = depth.astype(np.float64)
    r = reference.astype(np.float64)
    valid = np.isfinite(d) & np.isfinite(r) & (d > 0) & (r > 0)
    if not valid.any():
        raise ValueError("no pixel is valid in both depth maps")
    d, r = d[valid], r[valid]
    diff = np.abs(d - r)
    rel = diff / r
    return {
        "abs_rel": float(rel.mean()),
        "max_rel": float(rel.max()),
        "max_abs": float(diff.max()),
        "delta1": float((np.maximum(d / r, r / d) < 1.25).mean()),
        "valid_fraction": float(valid.mean()),
    }


def relative_error(value: float, reference: float) -> float:
    """|value - reference| / |reference| (e.g. for focal length estimates)."""
    return abs(value - reference) / abs(reference)
