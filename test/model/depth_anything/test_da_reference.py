"""The Depth Anything recipes (pure torch) against the originals' NumPy / OpenCV
preprocessing with the transformers models, the size rules against the original ones, and
the torch resizes against OpenCV's."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from depth_pro_ros.model import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DepthAnythingConfig,
    create_depth_anything,
    depth_anything_input_size,
    infer_depth_anything,
    load_checkpoint,
    prepare_depth_anything_input,
    prompt_depth_anything_input_size,
)

TOLERANCE = 1e-5


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def _v2_size_original(height: int, width: int, size: int, multiple: int = 14):
    """Depth Anything V2's Resize.get_size (keep aspect, lower bound), written out."""
    scale_h, scale_w = size / height, size / width
    if scale_w > scale_h:
        scale_h = scale_w
    else:
        scale_w = scale_h

    def constrain(x):
        y = int(np.round(x / multiple) * multiple)
        return int(np.ceil(x / multiple) * multiple) if y < size else y

    return constrain(scale_h * height), constrain(scale_w * width)


@pytest.mark.parametrize("height, width", [
    (480, 640), (1080, 1920), (1920, 1080), (518, 518), (100, 50), (37, 50), (600, 1000),
    (375, 1242), (333, 517), (4000, 3000),
])
@pytest.mark.parametrize("size", [518, 510, 364])
def test_v2_input_size_rule(height, width, size):
    expected = _v2_size_original(height, width, size)
    assert depth_anything_input_size(height, width, size) == expected
    h, w = expected
    assert h % 14 == 0 and w % 14 == 0 and min(h, w) >= size


def test_v2_input_size_examples():
    assert depth_anything_input_size(480, 640) == (518, 686)
    assert depth_anything_input_size(1080, 1920) == (518, 924)
    assert depth_anything_input_size(480, 640, 510) == (518, 686)  # 504 < 510: rounded up
    with pytest.raises(ValueError, match="must be positive"):
        depth_anything_input_size(0, 640)


def test_prompt_input_size_rule():
    assert prompt_depth_anything_input_size(1440, 1920) == (756, 1008)  # the release example
    assert prompt_depth_anything_input_size(2000, 1000) == (1008, 504)
    assert prompt_depth_anything_input_size(192 * 4, 256 * 4) == (756, 1008)
    assert prompt_depth_anything_input_size(480, 640) == (476, 630)  # small: floored only
    assert prompt_depth_anything_input_size(1000, 700, max_size=1010) == (994, 700)
    with pytest.raises(ValueError, match="too small"):
        prompt_depth_anything_input_size(10, 640)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Our models loaded from the transformers references (HF folders), with them."""
    from da_reference import DA_CONFIGS, build_hf_da_model

    out = {}
    for name, config in DA_CONFIGS.items():
        hf, _ = build_hf_da_model(config, seed=3)
        folder = tmp_path_factory.mktemp(f"recipe_{name}")
        hf.save_pretrained(folder)
        out[name] = (load_checkpoint(folder), hf)
    return out


def _hf_out(hf, x: np.ndarray, prompt=None) -> torch.Tensor:
    pixel_values = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None].float()
    with torch.no_grad():
        if prompt is None:
            return hf(pixel_values=pixel_values).predicted_depth[:, None]
        return hf(pixel_values=pixel_values, prompt_depth=prompt).predicted_depth[:, None]


@pytest.mark.parametrize("name", ["relative", "metric"])
@pytest.mark.parametrize("shape", [(40, 60), (75, 50)])
def test_v2_recipe_matches_transformers(models, name, shape):
    """RGB/255 (float64), cv2 INTER_CUBIC to the lower-bound size, ImageNet mean / std,
    network, bilinear align_corners=True back; the tiny models' training size is 56."""
    model, hf = models[name]
    height, width = shape
    img = _image(height, width, seed=height)
    h, w = _v2_size_original(height, width, 56)
    x = cv2.resize(img.astype(np.float64) / 255.0, (w, h), interpolation=cv2.INTER_CUBIC)
    x = ((x - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)).astype(np.float32)
    expected = F.interpolate(_hf_out(hf, x), size=shape, mode="bilinear", align_corners=True)
    depth = infer_depth_anything(model, img)
    assert depth.shape == shape and depth.dtype == torch.float32
    assert float((depth - expected[0, 0]).abs().max() / expected.abs().max()) <= TOLERANCE
    # A tensor image and an explicit input_size work the same way.
    again = infer_depth_anything(model, torch.from_numpy(img), input_size=56)
    assert torch.equal(again, depth)


@pytest.mark.parametrize("shape", [(60, 90), (42, 56)])
def test_prompt_recipe_matches_transformers(models, shape):
    """RGB/255 (float32), cv2 INTER_AREA down to the longer-side limit (56 here; both sides
    floored to multiples of 14), ImageNet mean / std, the prompt in metres as is."""
    model, hf = models["prompt"]
    height, width = shape
    img = _image(height, width, seed=width)
    prompt = np.random.default_rng(1).uniform(0.3, 5.0, (7, 11)).astype(np.float32)
    h, w = prompt_depth_anything_input_size(height, width, 56)
    x = img.astype(np.float32) / 255.0
    if (h, w) != shape:
        x = cv2.resize(x, (w, h), interpolation=cv2.INTER_AREA)
    x = (x - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    ref = _hf_out(hf, x, torch.from_numpy(prompt)[None, None])
    expected = F.interpolate(ref, size=shape, mode="bilinear", align_corners=True)
    depth = infer_depth_anything(model, img, input_size=56, prompt=prompt)
    assert depth.shape == shape
    assert float((depth - expected[0, 0]).abs().max() / expected.abs().max()) <= TOLERANCE
    assert 0.3 <= float(depth.min()) and float(depth.max()) <= 5.0


def test_recipe_arguments(models):
    img = _image(40, 60)
    with pytest.raises(ValueError, match="needs a prompt depth"):
        infer_depth_anything(models["prompt"][0], img)
    with pytest.raises(ValueError, match="takes no prompt"):
        infer_depth_anything(models["relative"][0], img, prompt=np.ones((4, 4)))
    with pytest.raises(ValueError, match=r"uint8 \(H, W, 3\)"):
        infer_depth_anything(models["relative"][0], img[:, :, 0])
    with pytest.raises(ValueError, match=r"prompt depth \(h, w\)"):
        infer_depth_anything(models["prompt"][0], img, prompt=np.ones((2, 4, 4)))


# The torch preprocessing against cv2. Both use the a = -0.75 cubic kernel with half-pixel
# centres and clamped borders; they differ by rounding. Measured on uniform random images
# (the worst case: neighbouring pixels differ by up to 1), as max |difference| on the [0, 1]
# scale: 120x160 -> 518x686: 2.4e-5; 1000x800 -> 644x518: 1.2e-4; 518x700 unchanged:
# 8e-8. The bound is set by the fp32 source coordinate (dst + 0.5) * in / out - 0.5 that
# torch computes for fp32 images (cv2 also in float): its rounding, ~|src| * 6e-8 (up to
# 6e-5 at src ~ 1000), times the interpolant's slope (up to ~2 per pixel on noise). Natural
# images have smaller slopes, hence the tight mean. After ImageNet normalisation (/ std,
# std >= 0.224) the differences grow by up to 4.5x.
PREP_MAX_01 = 2.5e-4
PREP_MEAN_01 = 1e-5


@pytest.mark.parametrize("height, width", [(120, 160), (1000, 800), (518, 700)])
def test_torch_preprocessing_matches_cv2_recipe(height, width):
    rng = np.random.default_rng(height)
    images = rng.integers(0, 256, (2, height, width, 3), dtype=np.uint8)
    size = depth_anything_input_size(height, width)
    x = prepare_depth_anything_input(torch.from_numpy(images), size)
    assert x.shape == (2, 3, *size) and x.dtype == torch.float32
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    for i in range(2):
        ref = cv2.resize(images[i].astype(np.float64) / 255.0, (size[1], size[0]),
                         interpolation=cv2.INTER_CUBIC)
        ours = x[i].numpy().transpose(1, 2, 0).astype(np.float64) * std + mean
        diff = np.abs(ours - ref)
        print(f"{height}x{width} -> {size}: max {diff.max():.2e}, mean {diff.mean():.2e}")
        assert diff.max() <= PREP_MAX_01 and diff.mean() <= PREP_MEAN_01
        normalised = np.abs(x[i].numpy().transpose(1, 2, 0) - (ref - mean) / std)
        assert normalised.max() <= PREP_MAX_01 / min(IMAGENET_STD)
    half = prepare_depth_anything_input(torch.from_numpy(images), size, torch.float16)
    assert half.dtype == torch.float16 and torch.allclose(half.float(), x, atol=5e-3)


@pytest.mark.parametrize("height, width, size", [
    (1440, 1920, (756, 1008)), (480, 640, (476, 630)), (100, 90, (50, 45)),
    (300, 200, (97, 61)),
])
def test_area_preprocessing_matches_cv2_inter_area(height, width, size):
    """Prompt Depth Anything's shrink: the coverage weights are cv2's INTER_AREA; the
    results differ by fp32 rounding (measured max 1.8e-7 on [0, 1] noise)."""
    image = np.random.default_rng(width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    x = prepare_depth_anything_input(torch.from_numpy(image)[None], size,
                                     interpolation="area")
    ref = cv2.resize(image.astype(np.float32) / 255.0, (size[1], size[0]),
                     interpolation=cv2.INTER_AREA)
    ours = x[0].numpy().transpose(1, 2, 0) * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)
    assert np.abs(ours - ref).max() <= 1e-6


def test_torch_preprocessing_arguments():
    with pytest.raises(ValueError, match=r"uint8 \(B, H, W, 3\)"):
        prepare_depth_anything_input(torch.zeros(1, 8, 8, 3), (14, 14))
    model = create_depth_anything(DepthAnythingConfig.tiny())
    assert model.config.default_input_size == 56
