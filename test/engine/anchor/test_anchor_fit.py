"""Metric anchoring against known truth: robust fits and applying them
(``engine.anchor.fit``).

Synthetic data only (no network). Recovery errors are printed as a table (``-s``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from depth_pro_ros.engine.anchor import ANCHOR_FITS, AnchorFit, apply_anchor, fit_anchor

H, W = 120, 160
NEAR, FAR = 0.5, 20.0
DENSITIES = (0.01, 0.02, 0.05)  # fraction of pixels with an anchor
OUTLIER_RATES = (0.1, 0.2, 0.3)  # fraction of those anchors that are gross outliers
NOISE = 0.01  # relative Gaussian noise on the good anchors
TRUE_SCALE = 1.37
AFFINE_SCALE, AFFINE_SHIFT = 1.3, 0.05  # anchor_inv = depth_inv / s + t, t in 1/m


def smooth_depth() -> np.ndarray:
    """A smooth float32 depth map spanning 0.5-20 m: ground-like ramp plus waves."""
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    f = (0.6 * (1.0 - v / (H - 1))
         + 0.25 * (0.5 + 0.5 * np.sin(2.0 * np.pi * 1.5 * u / W))
         + 0.15 * (0.5 + 0.5 * np.cos(2.0 * np.pi * (u / W + 2.0 * v / H))))
    f = (f - f.min()) / (f.max() - f.min())
    return np.exp(math.log(NEAR) + math.log(FAR / NEAR) * f).astype(np.float32)


DEPTH = smooth_depth()


def scale_truth(z: np.ndarray) -> np.ndarray:
    return TRUE_SCALE * z


def affine_truth(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 / z / AFFINE_SCALE + AFFINE_SHIFT)


def make_anchor(truth, density: float, outlier_rate: float, seed: int,
                noise: float = NOISE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparse anchor image plus masks of its gross outliers and of its good points.

    Half the outliers are the truth scaled by 2-3x up or down; the other half are random
    depths (log-uniform over the range) at least 1.5x away from the truth, so that every
    injected outlier is unambiguously gross.
    """
    rng = np.random.default_rng(seed)
    n = DEPTH.size
    idx = rng.choice(n, int(round(density * n)), replace=False)
    true = truth(DEPTH.reshape(-1)[idx].astype(np.float64))
    meas = true * (1.0 + noise * rng.standard_normal(idx.size))
    bad = rng.choice(idx.size, int(round(outlier_rate * idx.size)), replace=False)
    half = bad.size // 2
    factor = rng.uniform(2.0, 3.0, half) ** rng.choice([-1.0, 1.0], half)
    meas[bad[:half]] = true[bad[:half]] * factor
    for j in bad[half:]:
        while True:
            r = math.exp(rng.uniform(math.log(NEAR), math.log(FAR)))
            if abs(math.log(r / true[j])) > math.log(1.5):
                break
        meas[j] = r
    anchor = np.full(n, np.nan, np.float32)
    anchor[idx] = meas
    outliers = np.zeros(n, bool)
    outliers[idx[bad]] = True
    good = np.zeros(n, bool)
    good[idx] = True
    good &= ~outliers
    return anchor.reshape(H, W), outliers.reshape(H, W), good.reshape(H, W)


def check_inlier_mask(fit: AnchorFit, outliers: np.ndarray, good: np.ndarray) -> None:
    assert fit.inlier_mask is not None and fit.inlier_mask.dtype == torch.bool
    mask = fit.inlier_mask.numpy()
    assert mask.shape == (H, W)
    assert not mask[outliers].mean() > 0.05, "fewer than 95% of gross outliers rejected"
    assert mask[good].mean() >= 0.90, "fewer than 90% of good points kept"
    assert fit.inliers == int(mask.sum())


def print_table(title: str, rows: list[tuple]) -> None:
    print(f"\n{title}")
    for row in rows:
        print("  " + "  ".join(str(c) for c in row))


# --- recovery of known parameters -------------------------------------------------------


def test_scale_fit_recovers_known_scale() -> None:
    depth = torch.from_numpy(DEPTH)
    rows, worst = [("density", "outliers", "scale err %", "inliers/points")], 0.0
    for i, density in enumerate(DENSITIES):
        for j, rate in enumerate(OUTLIER_RATES):
            anchor, outliers, good = make_anchor(scale_truth, density, rate, 10 * i + j)
            fit = fit_anchor(depth, anchor, "scale")
            assert fit.ok, fit.reason
            assert fit.shift == 0.0
            err = abs(fit.scale / TRUE_SCALE - 1.0)
            worst = max(worst, err)
            rows.append((density, rate, f"{100 * err:.3f}", f"{fit.inliers}/{fit.points}"))
            check_inlier_mask(fit, outliers, good)
            assert fit.residual < 3 * NOISE
    print_table(f"scale fit, {100 * NOISE:.0f}% noise (worst {100 * worst:.3f}%)", rows)
    assert worst < 0.005


def test_scale_shift_fit_recovers_known_affine() -> None:
    """Scale within 1%; shift within 2e-3 1/m; anchored depth within 1.5% everywhere.

    1% of 0.05 1/m would be 5e-4 1/m, below what about 190 anchors with 1% noise can
    pin down: the shift is set by the far points, where 1% depth noise is already about
    1e-3 1/m per point. 2e-3 1/m moves a 10 m depth by 2%; the depth map check bounds
    what actually matters, the anchored depth.
    """
    depth = torch.from_numpy(DEPTH)
    truth = affine_truth(DEPTH.astype(np.float64))
    rows = [("density", "outliers", "scale err %", "shift err 1/m", "depth err max %")]
    worst = [0.0, 0.0, 0.0]
    for i, density in enumerate(DENSITIES):
        for j, rate in enumerate(OUTLIER_RATES):
            anchor, outliers, good = make_anchor(affine_truth, density, rate, 10 * i + j)
            fit = fit_anchor(depth, anchor, "scale_shift")
            assert fit.ok, fit.reason
            anchored = apply_anchor(depth.double(), fit.scale, fit.shift).numpy()
            errs = (abs(fit.scale / AFFINE_SCALE - 1.0), abs(fit.shift - AFFINE_SHIFT),
                    float(np.abs(anchored / truth - 1.0).max()))
            worst = [max(w, e) for w, e in zip(worst, errs)]
            rows.append((density, rate, f"{100 * errs[0]:.3f}", f"{errs[1]:.5f}",
                         f"{100 * errs[2]:.3f}"))
            check_inlier_mask(fit, outliers, good)
    print_table(f"scale_shift fit, {100 * NOISE:.0f}% noise (worst scale "
                f"{100 * worst[0]:.3f}%, shift {worst[1]:.5f} 1/m, depth "
                f"{100 * worst[2]:.3f}%)", rows)
    assert worst[0] < 0.01
    assert worst[1] < 2e-3
    assert worst[2] < 0.015


def test_exact_anchor_gives_exact_scale() -> None:
    depth = torch.from_numpy(DEPTH)
    anchor, _, _ = make_anchor(scale_truth, 0.02, 0.2, 7, noise=0.0)
    fit = fit_anchor(depth, anchor)
    assert fit.ok
    assert fit.scale == pytest.approx(TRUE_SCALE, rel=1e-6)


def test_numpy_and_torch_inputs_agree() -> None:
    anchor, _, _ = make_anchor(scale_truth, 0.02, 0.2, 3)
    a = fit_anchor(DEPTH, anchor)
    b = fit_anchor(torch.from_numpy(DEPTH), torch.from_numpy(anchor))
    assert (a.scale, a.shift, a.inliers) == (b.scale, b.shift, b.inliers)


# --- rejections -------------------------------------------------------------------------


@pytest.mark.parametrize("fit", ANCHOR_FITS)
def test_too_few_points_rejected(fit: str) -> None:
    anchor = np.full((H, W), np.nan, np.float32)
    anchor[5, :10] = TRUE_SCALE * DEPTH[5, :10]
    result = fit_anchor(DEPTH, anchor, fit, min_points=20)
    assert not result.ok
    assert result.points == 10
    assert "too few anchor points" in result.reason and "min_points 20" in result.reason
    assert result.inlier_mask is None


@pytest.mark.parametrize("fit", ANCHOR_FITS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unrelated_anchors_rejected(fit: str, seed: int) -> None:
    """Anchors of random depths (no relation to the image) never give a fit."""
    rng = np.random.default_rng(seed)
    anchor = np.full(H * W, np.nan, np.float32)
    idx = rng.choice(H * W, 400, replace=False)
    anchor[idx] = np.exp(rng.uniform(math.log(NEAR), math.log(FAR), idx.size))
    result = fit_anchor(DEPTH, anchor.reshape(H, W), fit)
    assert not result.ok
    assert result.points == 400
    # Such anchors fill the Tukey cutoff (the spread is huge); the residual check or the
    # degenerate-parameter checks catch them.
    assert ("residual too large" in result.reason or "too few inliers" in result.reason
            or "degenerate" in result.reason or "not determined" in result.reason), \
        result.reason


@pytest.mark.parametrize("fill", [math.nan, math.inf, 0.0, -1.0])
def test_anchor_without_measurements_rejected(fill: float) -> None:
    anchor = np.full((H, W), fill, np.float32)
    result = fit_anchor(DEPTH, anchor)
    assert not result.ok and result.points == 0
    assert "too few anchor points" in result.reason


def test_invalid_depth_pixels_and_depth_range_are_not_used() -> None:
    anchor, _, _ = make_anchor(scale_truth, 0.05, 0.0, 4)
    depth = DEPTH.copy()
    depth[:10] = np.nan  # invalid network pixels drop out
    valid = np.isfinite(anchor) & np.isfinite(depth)
    result = fit_anchor(depth, anchor)
    assert result.ok and result.points == int(valid.sum())
    in_range = valid & (anchor >= 2.0) & (anchor <= 10.0)
    ranged = fit_anchor(depth, anchor, min_depth=2.0, max_depth=10.0)
    assert ranged.ok and ranged.points == int(in_range.sum())
    assert not ranged.inlier_mask.numpy()[~in_range].any()


def test_constant_depth_is_degenerate_for_scale_shift() -> None:
    depth = np.full((H, W), 4.0, np.float32)
    anchor = np.full((H, W), np.nan, np.float32)
    anchor[::7, ::7] = 5.0
    assert fit_anchor(depth, anchor, "scale").ok  # a scale is still well defined
    result = fit_anchor(depth, anchor, "scale_shift")
    assert not result.ok and "degenerate" in result.reason


def test_shape_mismatch_and_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="same shape"):
        fit_anchor(DEPTH, DEPTH[:, :-1])
    with pytest.raises(ValueError, match="same shape"):
        fit_anchor(DEPTH[None], DEPTH[None])
    with pytest.raises(ValueError, match="fit must be one of"):
        fit_anchor(DEPTH, DEPTH, "affine")
    with pytest.raises(ValueError, match="min_depth"):
        fit_anchor(DEPTH, DEPTH, min_depth=5.0, max_depth=1.0)
    with pytest.raises(TypeError):
        fit_anchor(DEPTH.tolist(), DEPTH)


def test_fit_is_deterministic() -> None:
    anchor, _, _ = make_anchor(affine_truth, 0.02, 0.3, 11)
    for fit in ANCHOR_FITS:
        a = fit_anchor(DEPTH, anchor, fit)
        b = fit_anchor(DEPTH, anchor, fit)
        assert (a.scale, a.shift, a.points, a.inliers, a.residual, a.ok) == (
            b.scale, b.shift, b.points, b.inliers, b.residual, b.ok)
        assert torch.equal(a.inlier_mask, b.inlier_mask)
        assert a == b and "inlier_mask" not in repr(a)  # the mask is neither compared nor shown


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("fit", ANCHOR_FITS)
def test_cuda_fit_matches_cpu(fit: str) -> None:
    anchor, _, _ = make_anchor(affine_truth if fit == "scale_shift" else scale_truth,
                               0.02, 0.2, 5)
    cpu = fit_anchor(torch.from_numpy(DEPTH), torch.from_numpy(anchor), fit)
    gpu = fit_anchor(torch.from_numpy(DEPTH).cuda(), torch.from_numpy(anchor).cuda(), fit)
    assert gpu.ok and cpu.ok
    assert gpu.inlier_mask.device.type == "cuda"
    assert gpu.scale == pytest.approx(cpu.scale, rel=1e-9)
    assert gpu.shift == pytest.approx(cpu.shift, rel=1e-9, abs=1e-12)
    assert gpu.inliers == cpu.inliers
    anchored = apply_anchor(torch.from_numpy(DEPTH).cuda(), gpu.scale, gpu.shift)
    assert anchored.device.type == "cuda"


# --- apply_anchor -----------------------------------------------------------------------


def test_apply_scale_is_exact_multiplication() -> None:
    depth = torch.from_numpy(DEPTH.copy())
    depth[0, 0] = math.nan
    out = apply_anchor(depth, 1.37)
    assert out.dtype == depth.dtype and out.shape == depth.shape
    assert torch.equal(out[1:], depth[1:] * 1.37)
    assert math.isnan(out[0, 0].item())
    np_out = apply_anchor(DEPTH, 1.37)
    assert isinstance(np_out, np.ndarray) and np.array_equal(np_out, DEPTH * np.float32(1.37))


def test_apply_shift_follows_inverse_affine_and_marks_invalid() -> None:
    depth = torch.tensor([[0.5, 2.0, 10.0, 20.0], [math.nan, 0.0, -1.0, math.inf]],
                         dtype=torch.float64)
    out = apply_anchor(depth, 1.3, 0.05)
    expected = 1.0 / (1.0 / depth[0] / 1.3 + 0.05)
    assert torch.allclose(out[0], expected, rtol=1e-12)
    assert torch.isnan(out[1]).all()
    # A negative shift makes far pixels' inverse depth <= 0: NaN there, fine near.
    neg = apply_anchor(depth[:1], 1.0, -0.2)  # 1/d - 0.2 <= 0 for d >= 5 m
    assert neg[0, 0].item() == pytest.approx(1.0 / (2.0 - 0.2))
    assert neg[0, 1].item() == pytest.approx(1.0 / (0.5 - 0.2))
    assert torch.isnan(neg[0, 2:]).all()


@pytest.mark.parametrize("scale, shift", [(0.0, 0.0), (-1.0, 0.0), (math.nan, 0.0),
                                          (1.0, math.inf)])
def test_apply_rejects_bad_parameters(scale: float, shift: float) -> None:
    with pytest.raises(ValueError, match="scale"):
        apply_anchor(torch.ones(2, 2), scale, shift)
