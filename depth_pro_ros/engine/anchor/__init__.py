"""Metric anchoring: fit the network's depth to a sparse metric sensor
(:mod:`~depth_pro_ros.engine.anchor.fit`: the method, its rejection rules and how a fit
is applied; :mod:`~depth_pro_ros.engine.anchor.determinacy`: when a ``scale_shift`` fit
is determined), smooth the fits over frames (:mod:`~depth_pro_ros.engine.anchor.tracker`)
and run one frame's anchoring from plain values (:mod:`~depth_pro_ros.engine.anchor.step`,
with :mod:`~depth_pro_ros.engine.anchor.project`).
"""

from depth_pro_ros.engine.anchor.fit import (
    ANCHOR_FITS,
    DEFAULT_MAX_RESIDUAL,
    DEFAULT_MIN_INLIER_FRACTION,
    AnchorFit,
    apply_anchor,
    fit_anchor,
)
from depth_pro_ros.engine.anchor.project import project_points, resize_nearest, transformed
from depth_pro_ros.engine.anchor.step import AnchorInput, AnchorOutcome, anchor_step
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
    "AnchorInput",
    "AnchorOutcome",
    "AnchorSettings",
    "AnchorTracker",
    "anchor_step",
    "apply_anchor",
    "fit_anchor",
    "project_points",
    "resize_nearest",
    "transformed",
]
