"""Metric anchoring: fit the network's depth to a sparse metric sensor, robustly.

A monocular network's metric scale drifts from frame to frame; a sparse but exact
metric sensor (LiDAR projected into the image, stereo, RGB-D) can fix it. Per frame,
:func:`fit_anchor` fits parameters that map the network's dense ``depth`` onto the
anchor's sparse metric depth, and :func:`apply_anchor` applies them to the whole image
(:mod:`~depth_pro_ros.engine.anchor.tracker` smooths them over frames). Pure torch and
Python (no ROS); the heavy maths runs in torch on the inputs' device (CPU or CUDA) and
only scalars come back to the host.

Parameterisation (``x = 1 / depth`` is the network's inverse depth, in 1/m)::

    anchored inverse depth = x / scale + shift

- ``fit="scale"``: ``shift = 0``, so the anchored depth is ``scale * depth``; it is
  applied as that multiplication, which keeps a pure scale exact. Right for metric
  networks such as Depth Pro, whose error is mostly a global scale.
- ``fit="scale_shift"``: the affine map in inverse depth, which relative-depth models
  (affine-invariant inverse depth) need. ``shift`` is in 1/m.

Method: a robust start, then IRLS with Tukey's biweight, in inverse depth.

- Start: the median of ratios ``y / x`` (``y`` = anchor inverse depth) for ``scale``;
  for ``scale_shift`` a least-median-of-squares search over lines through point pairs
  drawn with a fixed-seed generator (deterministic, no threshold to tune, 50% breakdown).
- IRLS: weighted least squares of ``y`` on ``x`` with Tukey biweights. A point's
  residual ``r = y - (x / scale + shift)`` is judged relative to its own inverse depth,
  ``u = r / (c * sigma * y)`` with ``c = 4.685`` and ``sigma`` the robust spread of
  ``r / y`` (1.4826 * median |r / y|), re-estimated every iteration; the objective is
  ``sum y * rho(u)``. So the accept / reject decision uses relative errors (a good near
  point is not cut because its absolute inverse-depth error is larger than a far
  point's: near, reliable points are kept), and the fit is weighted towards near points
  in proportion to their inverse depth. Plain least squares on inverse-depth residuals
  (weight ``y^2`` on relative errors) would let the few nearest points dominate: over
  0.5-20 m a 0.5 m point would count 1600 times a 20 m one, which with relative sensor
  and network errors wastes most anchors (about twice the scale error of weight ``y``
  in the synthetic tests); weight 1 would ignore that near anchors are the reliable ones.
- Why IRLS/Tukey rather than RANSAC alone: Tukey's redescending loss gives gross
  outliers zero weight (a Huber loss would still let them pull), it needs no inlier
  threshold in metres (the cutoff follows the data's own spread), and after a robust
  start it converges in a few cheap, fully vectorised iterations with no host sync.
- Inliers are the points inside the Tukey cutoff (``|u| < 1``) after the last iteration.

A fit is rejected (``ok=False`` with a ``reason``) when there are fewer than
``min_points`` valid pairs, fewer than ``max(min_points, min_inlier_fraction * points)``
inliers, the median relative depth error of the inliers exceeds ``max_residual`` (this
catches anchors unrelated to the image, where the spread is so wide that everything
falls inside the cutoff), the parameters are non-finite or the scale is not positive,
the anchor does not determine ``scale_shift`` (too few distinct depths, too little span,
an ill-conditioned or noise-fitted line: :mod:`~depth_pro_ros.engine.anchor.determinacy`;
with ``fallback_to_scale`` only ``scale`` is then fitted), or the anchored inverse depth
is <= 0 at an inlier.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from depth_pro_ros.engine.anchor.determinacy import UNDETERMINED, determinacy, undetermined

__all__ = [
    "ANCHOR_FITS",
    "DEFAULT_MAX_RESIDUAL",
    "DEFAULT_MIN_INLIER_FRACTION",
    "AnchorFit",
    "apply_anchor",
    "check_fit_args",
    "fit_anchor",
]

#: The fits :func:`fit_anchor` knows (node parameter / CLI choices).
ANCHOR_FITS: tuple[str, ...] = ("scale", "scale_shift")
#: Below half inliers the median-based start and spread are past their breakdown point,
#: so the fit may have locked onto the outliers: reject it.
DEFAULT_MIN_INLIER_FRACTION = 0.5
#: Median relative depth error of the inliers above which anchor and network disagree
#: about the scene itself, not only about its scale.
DEFAULT_MAX_RESIDUAL = 0.2

_TUKEY_C = 4.685  # 95% efficiency at the normal distribution
_MAD_TO_SIGMA = 1.4826
# Relative spread floor: keeps exact (synthetic) data from dividing by zero; far below
# any real sensor's noise and well above float64 rounding.
_SIGMA_FLOOR = 1e-6
_IRLS_ITERATIONS = 12
_LMEDS_CANDIDATES = 128
_LMEDS_SCORE_POINTS = 4096  # points scored per candidate line (strided subset)
# The start and the IRLS run on an evenly strided subset of at most this many points (a
# dense RGB-D anchor has two million; two parameters need far fewer); the inliers and
# the residual are still decided on every point.
_MAX_FIT_POINTS = 65536
_SEED = 20240613


@dataclass(frozen=True)
class AnchorFit:
    """Result of one :func:`fit_anchor` call.

    ``scale`` and ``shift`` map network depth to metric depth (see the module
    docstring); they are NaN when no fit could be computed. ``points`` counts the valid
    anchor pixels used (after the depth range filter), ``inliers`` those inside the
    Tukey cutoff, ``residual`` is the median ``|d_fit - d_anchor| / d_anchor`` of the
    inliers. ``inlier_mask`` is a bool tensor of the image's shape on the inputs'
    device (None when too few points to fit). ``reason`` says why ``ok`` is False.
    """

    scale: float
    shift: float
    points: int
    inliers: int
    residual: float
    ok: bool
    reason: str | None = None
    # Not compared (tensor equality is elementwise) nor shown in reprs (it is image-sized).
    inlier_mask: torch.Tensor | None = field(default=None, compare=False, repr=False)
    #: The model fitted: the one asked for, or "scale" after a fallback.
    kind: str = "scale"
    #: Why ``scale_shift`` was asked for but only ``scale`` was fitted (None: no fallback).
    fallback: str | None = None

    @property
    def params(self) -> tuple[float, float]:
        """``(scale, shift)``, as :func:`apply_anchor` takes them."""
        return (self.scale, self.shift)


def _as_tensor(value: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    raise TypeError(f"{name} must be a torch tensor or numpy array, got {type(value).__name__}")


def check_fit_args(
    fit: str,
    min_points: int,
    min_depth: float,
    max_depth: float,
    min_inlier_fraction: float,
    max_residual: float,
) -> list[str]:
    """Problems with fit settings, one string each (shared by :func:`fit_anchor` and
    :class:`~depth_pro_ros.engine.anchor.tracker.AnchorSettings`)."""
    problems = []
    if fit not in ANCHOR_FITS:
        problems.append(f"fit must be one of {ANCHOR_FITS}, got {fit!r}")
    if not (isinstance(min_points, (int, np.integer)) and min_points >= 3):
        problems.append(f"min_points must be an integer >= 3, got {min_points!r}")
    if not (min_depth >= 0.0 and min_depth < max_depth):  # False for NaN as well
        problems.append(f"need 0 <= min_depth < max_depth, got {min_depth}, {max_depth}")
    if not (0.0 < min_inlier_fraction <= 1.0):
        problems.append(f"min_inlier_fraction must be in (0, 1], got {min_inlier_fraction}")
    if not (max_residual > 0.0):
        problems.append(f"max_residual must be > 0, got {max_residual}")
    return problems


def _robust_sigma(rel: torch.Tensor) -> torch.Tensor:
    """Robust spread of relative residuals about the model (which is their zero)."""
    return torch.clamp(_MAD_TO_SIGMA * rel.abs().median(), min=_SIGMA_FLOOR)


def _tukey_weights(rel: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    u = rel / (_TUKEY_C * sigma)
    return torch.clamp(1.0 - u * u, min=0.0) ** 2


def _strided(n: int, m: int, device: torch.device) -> torch.Tensor:
    """Indices of ``min(n, m)`` points spread evenly over ``range(n)``."""
    return torch.linspace(0, n - 1, min(n, m), device=device).round().long()


def _lmeds_start(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Slope and intercept of ``y = k x + t`` by least median of relative residuals.

    Candidate lines pass through point pairs drawn by a CPU generator with a fixed seed,
    so the same pairs are drawn on every device and every call.
    """
    n = x.numel()
    gen = torch.Generator(device="cpu").manual_seed(_SEED)
    pairs = torch.randint(0, n, (2, _LMEDS_CANDIDATES), generator=gen).to(x.device)
    xi, xj = x[pairs[0]], x[pairs[1]]
    yi, yj = y[pairs[0]], y[pairs[1]]
    k = (yi - yj) / (xi - xj)  # inf / NaN for equal x: scored out below
    t = yi - k * xi
    sub = _strided(n, _LMEDS_SCORE_POINTS, x.device)
    xs, ys = x[sub], y[sub]
    rel = (ys[None, :] - (k[:, None] * xs[None, :] + t[:, None])) / ys[None, :]
    score = rel.abs().median(dim=1).values
    usable = torch.isfinite(k) & torch.isfinite(t) & (k > 0) & torch.isfinite(score)
    score = torch.where(usable, score, torch.full_like(score, math.inf))
    best = torch.argmin(score)  # first minimum: deterministic
    return k[best], t[best]


def fit_anchor(
    depth: torch.Tensor | np.ndarray,
    anchor: torch.Tensor | np.ndarray,
    fit: str = "scale",
    *,
    min_points: int = 20,
    min_depth: float = 0.0,
    max_depth: float = math.inf,
    min_inlier_fraction: float = DEFAULT_MIN_INLIER_FRACTION,
    max_residual: float = DEFAULT_MAX_RESIDUAL,
    fallback_to_scale: bool = False,
) -> AnchorFit:
    """Fit network ``depth`` to sparse metric ``anchor`` depth, robustly, in inverse depth.

    ``depth`` and ``anchor`` are (H, W) depth images in metres (torch tensors on any
    device or numpy arrays) of the same shape; the anchor is moved to the depth's
    device. A pixel is used when the anchor is finite, > 0 and within ``[min_depth,
    max_depth]`` and the depth is finite and > 0 (NaN / inf / 0 mean no measurement).
    Deterministic: the same input gives the same fit. See the module docstring for the
    model, the method and the rejection rules. ``fallback_to_scale``: when the anchor
    does not determine ``scale_shift``, fit ``scale`` instead (``kind`` and
    ``fallback`` say so) rather than reject (right for metric networks only).
    """
    settings = dict(min_points=min_points, min_depth=min_depth, max_depth=max_depth,
                    min_inlier_fraction=min_inlier_fraction, max_residual=max_residual)
    result = _fit(depth, anchor, fit, **settings)
    if result.ok or fit != "scale_shift" or not fallback_to_scale or \
            not (result.reason or "").startswith(UNDETERMINED):
        return result
    scale = _fit(depth, anchor, "scale", **settings)
    if scale.ok:
        return replace(scale, fallback=result.reason)
    return replace(scale, reason=f"{scale.reason} (fitting scale alone, as {result.reason})",
                   fallback=result.reason)


def _fit(depth: torch.Tensor | np.ndarray, anchor: torch.Tensor | np.ndarray, fit: str, *,
         min_points: int, min_depth: float, max_depth: float, min_inlier_fraction: float,
         max_residual: float) -> AnchorFit:
    """One fit of the model ``fit`` (see :func:`fit_anchor`)."""
    problems = check_fit_args(
        fit, min_points, min_depth, max_depth, min_inlier_fraction, max_residual
    )
    if problems:
        raise ValueError("invalid anchor fit settings: " + "; ".join(problems))
    d = _as_tensor(depth, "depth")
    a = _as_tensor(anchor, "anchor")
    if d.dim() != 2 or d.shape != a.shape:
        raise ValueError(f"depth and anchor must be (H, W) images of the same shape, got "
                         f"{tuple(d.shape)} and {tuple(a.shape)}")
    a = a.to(d.device)

    valid = (
        torch.isfinite(a) & (a > 0) & (a >= min_depth) & (a <= max_depth)
        & torch.isfinite(d) & (d > 0)
    )
    # float64 for the sums of the normal equations; there are at most H * W points.
    x = 1.0 / d[valid].double()
    y = 1.0 / a[valid].double()
    n = x.numel()

    def reject(reason: str, k: float = math.nan, t: float = math.nan, inliers: int = 0,
               residual: float = math.nan, mask: torch.Tensor | None = None) -> AnchorFit:
        scale = 1.0 / k if k != 0.0 else math.inf
        return AnchorFit(scale, t, n, inliers, residual, False, reason, mask, kind=fit)

    if n < min_points:
        return reject(f"too few anchor points: {n} valid < min_points {min_points}")

    sub = _strided(n, _MAX_FIT_POINTS, x.device)
    xs, ys = (x, y) if sub.numel() == n else (x[sub], y[sub])

    # Robust start.
    if fit == "scale":
        k = (ys / xs).median()
        t = torch.zeros_like(k)
    else:
        k, t = _lmeds_start(xs, ys)

    # IRLS with Tukey biweights; fixed iteration count, so no host sync in the loop.
    w = torch.ones_like(xs)
    for _ in range(_IRLS_ITERATIONS):
        rel = (ys - (k * xs + t)) / ys
        # Tukey weight of the relative residual, times y (the near weighting) over y^2
        # (relative -> absolute inverse-depth residual): see the module docstring.
        w = _tukey_weights(rel, _robust_sigma(rel)) / ys
        if fit == "scale":
            k = (w * xs * ys).sum() / (w * xs * xs).sum()
        else:
            sw, sx, sy = w.sum(), (w * xs).sum(), (w * ys).sum()
            sxx, sxy = (w * xs * xs).sum(), (w * xs * ys).sum()
            det = sxx * sw - sx * sx
            k = (sxy * sw - sx * sy) / det
            t = (sxx * sy - sx * sxy) / det

    rel = (y - (k * x + t)) / y
    sigma = _robust_sigma(rel)
    inlier = (rel / (_TUKEY_C * sigma)).abs() < 1.0
    pred = k * x + t
    # |d_fit - d_anchor| / d_anchor = |y / pred - 1| in inverse depths.
    depth_err = torch.where(inlier, (y / pred - 1.0).abs(), torch.full_like(y, math.nan))
    min_pred = torch.where(inlier, pred, torch.full_like(pred, math.inf)).min()
    stats = torch.stack([
        k, t, inlier.sum().double(), depth_err.nanmedian(), min_pred,
        *determinacy(xs, ys, w, k, t, sigma),
    ]).tolist()  # the one host sync after the count above
    k_f, t_f, inliers_f, residual, min_pred_f, distinct, span, spread, snr = stats
    inliers = int(inliers_f)

    mask = torch.zeros(d.shape, dtype=torch.bool, device=d.device)
    mask[valid] = inlier

    def result(reason: str | None) -> AnchorFit:
        if reason is not None:
            return reject(reason, k_f, t_f, inliers, residual, mask)
        return AnchorFit(1.0 / k_f, t_f, n, inliers, residual, True, None, mask, kind=fit)

    if not (math.isfinite(k_f) and math.isfinite(t_f)):
        return result(f"degenerate fit: non-finite parameters (1/scale={k_f}, shift={t_f})")
    if fit == "scale_shift" and (why := undetermined(distinct, span, spread, snr)):
        return result(why)
    if k_f <= 0.0:
        return result(f"degenerate fit: non-positive scale (1/scale={k_f})")
    needed = max(min_points, math.ceil(min_inlier_fraction * n))
    if inliers < needed:
        return result(f"too few inliers: {inliers} of {n} points < {needed} "
                      f"(min_points {min_points}, min_inlier_fraction {min_inlier_fraction})")
    if not (residual <= max_residual):
        return result(f"residual too large: median relative error {residual:.3f} of the "
                      f"inliers > max_residual {max_residual}")
    if not (min_pred_f > 0.0):
        return result("degenerate fit: anchored inverse depth <= 0 at an inlier")
    return result(None)



def apply_anchor(
    depth: torch.Tensor | np.ndarray, scale: float, shift: float = 0.0
) -> torch.Tensor | np.ndarray:
    """Anchored depth: ``depth * scale`` when ``shift == 0``, else ``1 / (1 / depth / scale
    + shift)``.

    Torch in, torch out (same device and dtype); numpy in, numpy out. Pixels where the
    depth is invalid (not finite or <= 0) or the anchored inverse depth is <= 0 are NaN.
    """
    if not (math.isfinite(scale) and scale > 0.0 and math.isfinite(shift)):
        raise ValueError(f"anchor needs a finite scale > 0 and a finite shift, got "
                         f"scale={scale}, shift={shift}")
    is_numpy = isinstance(depth, np.ndarray)
    d = _as_tensor(depth, "depth")
    if not d.is_floating_point():
        d = d.float()
    valid = torch.isfinite(d) & (d > 0)
    if shift == 0.0:
        out = d * scale  # a pure scale stays exact
    else:
        inv = 1.0 / d / scale + shift
        valid &= inv > 0
        out = 1.0 / inv
    out = torch.where(valid, out, torch.full_like(out, math.nan))
    return out.numpy() if is_numpy else out
