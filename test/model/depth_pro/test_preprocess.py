"""Depth Pro's batched input preparation against its reference's normalise + resize."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from depth_pro_ros.model import normalize_image, to_rgb
from depth_pro_ros.model.depth_pro.preprocess import prepare_input, resize_to

SIZE = 96  # small network side: the arithmetic is the same at 1536


def _images(batch: int, height: int, width: int, channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (batch, height, width, channels), dtype=np.uint8)


def _reference(rgb: np.ndarray, size: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One (H, W, 3) RGB image by the reference -> (1, 3, size, size)."""
    return resize_to(normalize_image(rgb, torch.device("cpu")), size).to(dtype)


@pytest.mark.parametrize("shape", [(48, 64), (61, 37), (96, 96), (200, 150)])
def test_rgb_matches_reference_bitwise(shape):
    images = _images(3, *shape, 3)
    out = prepare_input(torch.from_numpy(images), "rgb", SIZE, torch.float32)
    assert out.shape == (3, 3, SIZE, SIZE) and out.dtype == torch.float32
    for i in range(3):
        assert torch.equal(out[i : i + 1], _reference(images[i], SIZE))


def test_same_size_is_not_resized():
    images = _images(1, SIZE, SIZE, 3, seed=1)
    out = prepare_input(torch.from_numpy(images), "rgb", SIZE, torch.float32)
    expected = torch.from_numpy(images[0]).permute(2, 0, 1).float() / 255.0 * 2.0 - 1.0
    assert torch.equal(out[0], expected)
    assert float(out.min()) >= -1.0 and float(out.max()) <= 1.0


def test_bgr_equals_flipped_rgb():
    rgb = _images(2, 48, 64, 3, seed=2)
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    from_bgr = prepare_input(torch.from_numpy(bgr), "bgr", SIZE, torch.float32)
    from_rgb = prepare_input(torch.from_numpy(rgb), "rgb", SIZE, torch.float32)
    assert torch.equal(from_bgr, from_rgb)
    # The channel order really matters (the image is not grey).
    assert not torch.equal(prepare_input(torch.from_numpy(bgr), "rgb", SIZE, torch.float32),
                           from_rgb)


def test_mono_is_three_identical_channels():
    mono = _images(2, 40, 56, 1, seed=3)
    out = prepare_input(torch.from_numpy(mono), "mono", SIZE, torch.float32)
    assert out.shape == (2, 3, SIZE, SIZE)
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    grey_rgb = np.repeat(mono, 3, axis=-1)
    for i in range(2):
        assert torch.equal(out[i : i + 1], _reference(grey_rgb[i], SIZE))


def test_to_rgb_orders():
    img = torch.from_numpy(_images(1, 4, 5, 3, seed=4))
    assert torch.equal(to_rgb(img, "rgb"), img)
    assert torch.equal(to_rgb(img, "bgr"), img[..., [2, 1, 0]])
    mono = img[..., :1]
    assert torch.equal(to_rgb(mono, "mono"), mono.repeat(1, 1, 1, 3))
    with pytest.raises(ValueError, match="channel order"):
        to_rgb(img, "rgba")
    with pytest.raises(ValueError):
        prepare_input(img, "yuv", SIZE, torch.float32)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reduced_precision_output(dtype):
    images = _images(2, 48, 64, 3, seed=5)
    out = prepare_input(torch.from_numpy(images), "rgb", SIZE, dtype)
    assert out.dtype == dtype and out.shape == (2, 3, SIZE, SIZE)
    # Normalised and resized in fp32, then cast once: exactly the fp32 result rounded.
    full = prepare_input(torch.from_numpy(images), "rgb", SIZE, torch.float32)
    assert torch.equal(out, full.to(dtype))
    for i in range(2):
        assert torch.equal(out[i : i + 1], _reference(images[i], SIZE, dtype))
