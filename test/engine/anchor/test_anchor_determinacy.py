"""An anchor that cannot determine a scale_shift fit is refused, or falls back to a
scale fit on a metric network (``engine.anchor.determinacy``; issue 24).

Synthetic data only: the smooth 0.5-20 m 'network' depth of test_anchor_fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_anchor_fit import DEPTH, H, W, affine_truth

from depth_pro_ros.engine.anchor import apply_anchor, fit_anchor
from depth_pro_ros.engine.anchor.determinacy import UNDETERMINED

RNG_SEED = 24


def _anchor(values, where: np.ndarray) -> np.ndarray:
    out = np.full((H, W), np.nan, np.float32)
    out[where] = values
    return out


def _some(fraction: float, seed: int = RNG_SEED, band: tuple[float, float] | None = None):
    """A random ``fraction`` of the pixels (only where the network's depth is in
    ``band``, when given)."""
    pick = np.random.default_rng(seed).random((H, W)) < fraction
    if band is not None:
        pick &= (DEPTH >= band[0]) & (DEPTH <= band[1])
    return pick


def _noisy(truth: np.ndarray, rel: float, seed: int = RNG_SEED) -> np.ndarray:
    return truth * (1.0 + rel * np.random.default_rng(seed + 1).standard_normal(truth.shape))


def _nearly_constant():
    """The issue's anchor: 5 m +- 0.1 % on 20 % of the pixels."""
    pick = _some(0.2)
    return _anchor(_noisy(np.full(int(pick.sum()), 5.0), 1e-3), pick)


def _constant():
    pick = _some(0.2)
    return _anchor(5.0, pick)


def _two_depths():
    """Only two distinct depths (a 2 m and an 8 m plane where the network agrees)."""
    pick = _some(0.2) & ((DEPTH < 3.0) | (DEPTH > 6.0))
    return _anchor(np.where(DEPTH[pick] < 3.0, 2.0, 8.0), pick)


def _single_cluster():
    """A true affine anchor with 1 % noise, but only where the scene is at 4.9-5.1 m."""
    pick = _some(0.5, band=(4.9, 5.1))
    return _anchor(_noisy(affine_truth(DEPTH[pick].astype(np.float64)), 0.01), pick)


def _unrelated_band():
    """Depths of 4-6 m that have nothing to do with the image: they span 40 % and stay
    within the residual limit, but the line that fits them is flat (fitted to noise)."""
    pick = _some(0.2)
    rng = np.random.default_rng(RNG_SEED + 2)
    return _anchor(rng.uniform(4.0, 6.0, int(pick.sum())), pick)


UNDETERMINED_ANCHORS = {
    "nearly_constant": (_nearly_constant, "spans 0.[0-9]+ %"),
    "constant": (_constant, "1 distinct anchor depth"),
    "two_depths": (_two_depths, "2 distinct anchor depth"),
    "single_cluster": (_single_cluster, "times its noise"),
    "unrelated_band": (_unrelated_band, "times its noise"),
}


@pytest.mark.parametrize("case", list(UNDETERMINED_ANCHORS))
def test_an_anchor_that_does_not_determine_scale_shift_is_refused(case):
    make, why = UNDETERMINED_ANCHORS[case]
    fit = fit_anchor(DEPTH, make(), "scale_shift")
    assert not fit.ok, fit
    assert fit.reason.startswith(UNDETERMINED) and fit.kind == "scale_shift"
    assert __import__("re").search(why, fit.reason), fit.reason


def test_the_issues_anchor_no_longer_flattens_the_depth():
    """Before: scale ~ 3000, every point an inlier, the anchored depth a flat 5.00 m."""
    fit = fit_anchor(torch.from_numpy(DEPTH), _nearly_constant(), "scale_shift")
    assert not fit.ok and "nearly constant anchor" in fit.reason
    # Falling back to a scale does not help here: 5 m everywhere is not a scaled network.
    fallback = fit_anchor(DEPTH, _nearly_constant(), "scale_shift", fallback_to_scale=True)
    assert not fallback.ok and fallback.kind == "scale"
    assert "residual too large" in fallback.reason and UNDETERMINED in fallback.reason


def test_a_metric_network_falls_back_to_scale_when_only_the_scale_is_determined():
    """A LiDAR (1 % noise) that sees one wall: a pure scale of the network, at 4.9-5.1 m
    only."""
    pick = _some(0.5, band=(4.9, 5.1))
    anchor = _anchor(_noisy(1.37 * DEPTH[pick].astype(np.float64), 0.01), pick)
    refused = fit_anchor(DEPTH, anchor, "scale_shift")
    assert not refused.ok and refused.reason.startswith(UNDETERMINED)
    fit = fit_anchor(DEPTH, anchor, "scale_shift", fallback_to_scale=True)
    assert fit.ok and fit.kind == "scale" and fit.shift == 0.0
    assert fit.fallback == refused.reason and fit.reason is None
    assert fit.scale == pytest.approx(1.37, rel=5e-3)


@pytest.mark.parametrize("band", [(0.5, 20.0), (3.0, 4.0), (1.0, 2.0)])
def test_an_anchor_spanning_enough_depth_still_fits_scale_shift(band):
    """Determinable anchors (1 % noise) keep their scale_shift fit, and no fallback."""
    pick = _some(0.1, band=band)
    truth = affine_truth(DEPTH.astype(np.float64))
    anchor = _anchor(_noisy(truth[pick], 0.01), pick)
    fit = fit_anchor(DEPTH, anchor, "scale_shift", fallback_to_scale=True)
    assert fit.ok and fit.kind == "scale_shift" and fit.fallback is None, fit
    anchored = apply_anchor(DEPTH.astype(np.float64), fit.scale, fit.shift)
    lo, hi = band
    inside = (DEPTH >= lo) & (DEPTH <= hi)
    assert np.abs(anchored[inside] / truth[inside] - 1.0).max() < 0.01


def test_an_exact_anchor_over_a_narrow_span_determines_scale_shift():
    """Determinacy is judged against the anchor's own noise: exact data over 4.9-5.1 m
    (a 4 % span) fixes the line that the same span with 1 % noise does not."""
    pick = _some(0.5, band=(4.9, 5.1))
    truth = affine_truth(DEPTH.astype(np.float64))
    fit = fit_anchor(DEPTH, _anchor(truth[pick], pick), "scale_shift")
    assert fit.ok, fit.reason
    anchored = apply_anchor(DEPTH.astype(np.float64), fit.scale, fit.shift)
    assert np.abs(anchored / truth - 1.0).max() < 1e-3
