"""Metric anchoring: fit the network's depth to a sparse metric sensor
(:mod:`~depth_pro_ros.engine.anchor.fit`: the method, its rejection rules and how a fit
is applied) and smooth the fits over frames (:mod:`~depth_pro_ros.engine.anchor.tracker`).
"""

from depth_pro_ros.engine.anchor.fit import (
    ANCHOR_FITS,
    DEFAULT_MAX_RESIDUAL,
    DEFAULT_MIN_INLIER_FRACTION,
    AnchorFit,
    apply_anchor,
    fit_anchor,
)
from depth_pro_ros.engine.anchor.tracker import (
    DEFAULT_ANCHOR_EMA_ALPHA,
    DEFAULT_ANCHOR_TIMEOUT_S,
    AnchorSettings,
    AnchorTracker,
)

__all__ = [
    "ANCHOR_FITS",
    "DEFAULT_ANCHOR_EMA_ALPHA",
    "DEFAULT_ANCHOR_TIMEOUT_S",
    "DEFAULT_MAX_RESIDUAL",
    "DEFAULT_MIN_INLIER_FRACTION",
    "AnchorFit",
    "AnchorSettings",
    "AnchorTracker",
    "apply_anchor",
    "fit_anchor",
]
