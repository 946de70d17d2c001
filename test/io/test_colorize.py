"""depth_pro_ros.io.colorize: false-colour depth previews and their legend."""

import math

import cv2
import numpy as np
import pytest

from depth_pro_ros.io.colorize import annotate_range, colorize_depth, depth_range


def _lut(index: int, colormap: int = cv2.COLORMAP_TURBO) -> np.ndarray:
    return cv2.applyColorMap(np.array([[index]], np.uint8), colormap)[0, 0]


def _is_mid(pixel: np.ndarray) -> bool:
    """Whether a BGR pixel is the colour map's midpoint (index 127 or 128)."""
    return any(np.array_equal(pixel, _lut(i)) for i in (127, 128))


def _ramp(h: int = 20, w: int = 50, near: float = 1.0, far: float = 10.0) -> np.ndarray:
    return np.tile(np.linspace(near, far, w, dtype=np.float32), (h, 1))


def test_shape_dtype_and_auto_range_from_percentiles():
    depth = _ramp()
    bgr, (lo, hi) = colorize_depth(depth)
    assert bgr.shape == (20, 50, 3) and bgr.dtype == np.uint8
    p2, p98 = np.percentile(depth, [2, 98])
    assert lo == pytest.approx(p2) and hi == pytest.approx(p98)


def test_near_is_warm_end_and_invert_flips_it():
    depth = np.array([[1.0, 5.0, 9.0]], np.float32)
    bgr, _ = colorize_depth(depth, min_depth=1.0, max_depth=9.0)
    np.testing.assert_array_equal(bgr[0, 0], _lut(255))  # near -> top of the map (red)
    np.testing.assert_array_equal(bgr[0, 2], _lut(0))  # far -> bottom (dark blue)
    assert bgr[0, 0, 2] > bgr[0, 0, 0]  # red dominates blue for the near pixel

    flipped, _ = colorize_depth(depth, min_depth=1.0, max_depth=9.0, invert=False)
    np.testing.assert_array_equal(flipped[0, 0], _lut(0))
    np.testing.assert_array_equal(flipped[0, 2], _lut(255))


def test_invalid_pixels_are_black():
    depth = _ramp(4, 6)
    depth[0, 0] = np.nan
    depth[1, 1] = np.inf
    depth[2, 2] = -np.inf
    depth[3, 3] = 0.0
    depth[3, 4] = -2.0
    bgr, (lo, hi) = colorize_depth(depth)
    for y, x in [(0, 0), (1, 1), (2, 2), (3, 3), (3, 4)]:
        assert not bgr[y, x].any()
    assert math.isfinite(lo) and math.isfinite(hi) and lo < hi
    assert bgr[0, 1].any()


def test_given_range_is_used_and_saturates():
    depth = np.array([[0.5, 2.0, 50.0]], np.float32)
    bgr, rng = colorize_depth(depth, min_depth=1.0, max_depth=4.0)
    assert rng == (1.0, 4.0)
    np.testing.assert_array_equal(bgr[0, 0], _lut(255))
    np.testing.assert_array_equal(bgr[0, 2], _lut(0))


def test_one_given_bound_and_the_other_automatic():
    depth = _ramp()
    _, (lo, hi) = colorize_depth(depth, min_depth=0.0)
    assert lo == 0.0 and hi == pytest.approx(np.percentile(depth, 98))
    _, (lo, hi) = colorize_depth(depth, max_depth=3.0)
    assert lo == pytest.approx(np.percentile(depth, 2)) and hi == 3.0


def test_no_valid_pixel_gives_black_image_and_nan_range():
    depth = np.full((5, 7), np.nan, np.float32)
    bgr, (lo, hi) = colorize_depth(depth)
    assert bgr.shape == (5, 7, 3) and not bgr.any()
    assert math.isnan(lo) and math.isnan(hi)


def test_flat_scene_gets_a_non_empty_range():
    bgr, (lo, hi) = colorize_depth(np.full((3, 3), 2.5, np.float32))
    assert lo < hi and math.isfinite(lo) and math.isfinite(hi)
    assert bgr.any()


def test_accepts_hxwx1_and_float64():
    depth = _ramp(3, 4).astype(np.float64)[:, :, None]
    bgr, _ = colorize_depth(depth)
    assert bgr.shape == (3, 4, 3)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_depth": 5.0, "max_depth": 5.0},
        {"min_depth": 6.0, "max_depth": 5.0},
        {"min_depth": -1.0},
        {"max_depth": float("nan")},
        {"max_depth": float("inf")},
    ],
)
def test_bad_bounds_are_rejected(kwargs):
    with pytest.raises(ValueError):
        depth_range(_ramp(), **kwargs)


def test_bad_shape_is_rejected():
    with pytest.raises(ValueError, match="2-D"):
        colorize_depth(np.zeros((2, 3, 4), np.float32))


def test_other_colormap():
    depth = np.array([[1.0, 2.0]], np.float32)
    bgr, _ = colorize_depth(depth, 1.0, 2.0, colormap=cv2.COLORMAP_JET)
    np.testing.assert_array_equal(bgr[0, 0], _lut(255, cv2.COLORMAP_JET))


def test_annotate_range_draws_legend_bottom_left_on_a_copy():
    bgr, (lo, hi) = colorize_depth(_ramp(480, 640, 0.7, 12.0))
    before = bgr.copy()
    out = annotate_range(bgr, lo, hi)
    np.testing.assert_array_equal(bgr, before)  # input untouched
    assert out.shape == bgr.shape and out.dtype == np.uint8
    changed = np.any(out != bgr, axis=2)
    ys, xs = np.nonzero(changed)
    assert ys.size > 0
    assert ys.min() > 480 // 2 and xs.max() < 640 // 2 + 20  # confined to bottom-left
    assert not changed[:200, 400:].any()
    # White text pixels were drawn.
    assert np.any(np.all(out[changed] > 230, axis=1))


def test_annotate_range_handles_nan_range_and_tiny_images():
    black = np.zeros((120, 160, 3), np.uint8)
    out = annotate_range(black, math.nan, math.nan)
    assert out.any()  # "no valid depth" written
    tiny = np.zeros((4, 4, 3), np.uint8)
    np.testing.assert_array_equal(annotate_range(tiny, 1.0, 2.0), tiny)
    narrow = np.zeros((300, 20, 3), np.uint8)
    assert annotate_range(narrow, 1.0, 200.0).shape == narrow.shape


def test_annotate_range_rejects_non_bgr():
    with pytest.raises(ValueError):
        annotate_range(np.zeros((10, 10), np.uint8), 1.0, 2.0)


def test_inverse_scale_is_the_default_and_linear_is_available():
    # Over 1..4 m the midpoint in 1/depth is 1/0.625 = 1.6 m; the linear one is 2.5 m.
    depth = np.array([[1.6, 2.5]], np.float32)
    inv, _ = colorize_depth(depth, 1.0, 4.0)
    lin, _ = colorize_depth(depth, 1.0, 4.0, scale="linear")
    assert _is_mid(inv[0, 0]) and _is_mid(lin[0, 1])
    assert not _is_mid(inv[0, 1]) and not _is_mid(lin[0, 0])
    with pytest.raises(ValueError, match="scale"):
        colorize_depth(depth, scale="log")


def test_inverse_scale_with_zero_lower_bound_falls_back_to_linear():
    depth = np.array([[0.0001, 5.0, 10.0]], np.float32)
    bgr, _ = colorize_depth(depth, min_depth=0.0, max_depth=10.0)
    assert _is_mid(bgr[0, 1])
