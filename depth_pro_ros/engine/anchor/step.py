"""One frame's anchoring on the engine's worker, from plain per-frame values.

The front end (``stream.AnchorStream.input_for``) pairs an anchor message with the
image and hands the engine an :class:`AnchorInput`: the anchor's depth image or points
(already in the camera's frame), the fit settings, the camera's
:class:`~depth_pro_ros.engine.anchor.tracker.AnchorTracker` and the frame's time.
:func:`anchor_step` brings the anchor to the depth's pixels, fits it, feeds the tracker
and says what to apply (:class:`AnchorOutcome`). A bad anchor never fails the frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from depth_pro_ros.engine.anchor.fit import AnchorFit
from depth_pro_ros.engine.anchor.project import project_points, resize_nearest, transformed
from depth_pro_ros.engine.anchor.tracker import AnchorSettings, AnchorTracker
from depth_pro_ros.engine.focal import Intrinsics

__all__ = ["AnchorInput", "AnchorOutcome", "anchor_step"]


@dataclass
class AnchorInput:
    """One frame's anchor as plain values.

    ``depth`` is the paired anchor image ((h, w) float32 metres, NaN = none, any size) or
    ``points`` the paired cloud ((N, 3) float32, in the camera's optical frame once
    ``transform`` = (x, y, z, qx, qy, qz, qw) is applied, when given); neither when no
    anchor paired. ``problem`` says why a paired anchor cannot be used. The
    ``tracker`` is the camera's (it smooths the fits in frame order); ``now`` is the
    frame's time on the tracker's clock.
    """

    settings: AnchorSettings
    tracker: AnchorTracker
    now: float
    depth: np.ndarray | None = None
    points: np.ndarray | None = None
    transform: tuple[float, ...] | None = None
    problem: str | None = None


@dataclass
class AnchorOutcome:
    """What metric anchoring did to one frame.

    ``scale`` / ``shift`` were applied to the depth (anchored inverse depth = inverse /
    scale + shift); ``scale`` None means the depth was left unanchored (no fit yet, or
    anchors older than the timeout). ``fit`` is this frame's own fit (None when no
    anchor paired with the frame), ``age_s`` the age of the last accepted fit,
    ``problem`` why this frame's anchor was not used (or was used with a fallback).
    """

    scale: float | None = None
    shift: float = 0.0
    fit: AnchorFit | None = None
    age_s: float | None = None
    problem: str | None = None


def anchor_step(anchor: AnchorInput, depth: torch.Tensor, intrinsics: Intrinsics | None,
                relative: bool = False) -> AnchorOutcome:
    """Fit ``anchor`` to the frame's ``depth`` (a device tensor at the output size, with
    ``intrinsics``), feed the camera's tracker, and return what to apply. A ``relative``
    model's depth takes ``scale_shift`` only (no fallback to ``scale``)."""
    fit, problem = None, anchor.problem
    try:
        target = _target(anchor, intrinsics, tuple(depth.shape), depth.device)
        if target is not None:
            fit = anchor.settings.fit_anchor(depth, target, relative)
            if not fit.ok:
                problem = f"anchor fit rejected: {fit.reason}"
            elif fit.fallback is not None:
                # Used, but not the fit asked for: say why, like a rejection.
                problem = f"anchor fit fell back to scale: {fit.fallback}"
    except Exception as exc:  # noqa: BLE001 -- a bad anchor must not fail the frame
        problem, fit = f"anchor unusable: {type(exc).__name__}: {exc}", None
    applied, age = anchor.tracker.step(fit, anchor.now, problem)
    scale, shift = applied if applied is not None else (None, 0.0)
    return AnchorOutcome(scale=scale, shift=shift, fit=fit, age_s=age, problem=problem)


def _target(anchor: AnchorInput, intrinsics: Intrinsics | None, size: tuple[int, int],
            device: torch.device) -> torch.Tensor | None:
    """The anchor as a depth image of ``size`` on ``device`` (None: no anchor)."""
    if anchor.depth is not None:
        return resize_nearest(torch.from_numpy(anchor.depth).to(device), size)
    if anchor.points is None:
        return None
    if intrinsics is None:
        raise ValueError("a point-cloud anchor needs the camera's focal (CameraInfo or "
                         "fixed_focal_px) to project the cloud")
    points = torch.from_numpy(anchor.points).to(device)
    if anchor.transform is not None:
        points = transformed(points, anchor.transform)
    return project_points(points, intrinsics, size)
