"""The reference pipeline (normalise, resize, network, metric conversion) against an
independent NumPy/OpenCV computation of the same formulas."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from model_factories import tiny_model

from depth_pro_ros.model import DepthProConfig, create_model, infer


@pytest.fixture(scope="module")
def model():
    """The tiny network: the recipe's arithmetic does not depend on the network's size
    (the network itself is checked against transformers at two sizes in test_network)."""
    return tiny_model()


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def _network_on(model, img: np.ndarray, estimate_fov: bool):
    """Preprocess with OpenCV (bilinear, half-pixel centres) and run the network."""
    size = model.config.input_size
    x = img.astype(np.float32) / 255.0 * 2.0 - 1.0
    x = cv2.resize(x, (size, size), interpolation=cv2.INTER_LINEAR)
    with torch.no_grad():
        cid, fov = model(torch.from_numpy(x).permute(2, 0, 1)[None], estimate_fov=estimate_fov)
    return cid[0, 0].numpy(), None if fov is None else float(fov.flatten()[0])


def _expected_depth(cid: np.ndarray, f_px: float, width: int, height: int) -> np.ndarray:
    inverse = cv2.resize(cid * (width / f_px), (width, height), interpolation=cv2.INTER_LINEAR)
    return 1.0 / np.clip(inverse, 1e-4, 1e4)


@pytest.mark.parametrize("shape", [(150, 260), (300, 120)])
def test_estimated_focal_non_square(model, shape):
    height, width = shape
    img = _image(height, width)
    pred = infer(model, img)
    cid, fov = _network_on(model, img, estimate_fov=True)
    f_expected = 0.5 * width / math.tan(0.5 * math.radians(fov))
    assert pred.focal_source == "fov_head"
    assert pred.fov_deg == pytest.approx(fov, rel=1e-5)
    assert pred.focal_px == pytest.approx(f_expected, rel=1e-5)
    assert pred.depth.shape == (height, width) and pred.depth.dtype == torch.float32
    expected = _expected_depth(cid, f_expected, width, height)
    np.testing.assert_allclose(pred.depth.numpy(), expected, rtol=2e-4)


def test_given_focal_scales_depth_and_skips_fov(model):
    img = _image(180, 240, seed=1)
    pred = infer(model, img, f_px=200.0)
    assert pred.focal_source == "fixed" and pred.fov_deg is None and pred.focal_px == 200.0
    cid, fov = _network_on(model, img, estimate_fov=False)
    assert fov is None
    np.testing.assert_allclose(
        pred.depth.numpy(), _expected_depth(cid, 200.0, 240, 180), rtol=2e-4
    )
    doubled = infer(model, img, f_px=400.0)
    unclamped = (pred.depth > 1e-3) & (pred.depth < 5e3)
    torch.testing.assert_close(
        doubled.depth[unclamped], 2 * pred.depth[unclamped], rtol=1e-5, atol=0
    )


def test_depth_is_clamped_to_the_metric_range(model):
    pred = infer(model, _image(64, 64, seed=2), f_px=1e-6)  # absurd focal: huge inverse depth
    assert float(pred.depth.min()) == pytest.approx(1e-4, rel=1e-4)
    pred = infer(model, _image(64, 64, seed=2), f_px=1e12)
    assert float(pred.depth.max()) == pytest.approx(1e4, rel=1e-4)


def test_float_tensor_input_matches_uint8(model):
    img = _image(100, 140, seed=3)
    x = torch.from_numpy(img).permute(2, 0, 1).float() / 255 * 2 - 1
    a = infer(model, img, f_px=120.0)
    b = infer(model, x, f_px=120.0)
    torch.testing.assert_close(a.depth, b.depth)


def test_output_at_image_size_is_not_resized(model):
    size = 1536  # the canonical inverse depth is 1536x1536 for every config
    img = _image(size, size, seed=4)
    pred = infer(model, img, f_px=300.0)
    cid, _ = _network_on(model, img, estimate_fov=False)
    np.testing.assert_allclose(pred.depth.numpy(), 1 / np.clip(cid * size / 300.0, 1e-4, 1e4),
                               rtol=1e-5)


def test_bad_arguments():
    model = create_model(DepthProConfig.tiny(use_fov_head=False))
    img = _image(32, 32)
    with pytest.raises(ValueError, match="no FoV head"):
        infer(model, img)
    with pytest.raises(ValueError, match="positive finite"):
        infer(model, img, f_px=float("nan"))
    with pytest.raises(ValueError, match="uint8 \\(H, W, 3\\)"):
        infer(model, img[:, :, 0], f_px=10.0)
