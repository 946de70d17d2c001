"""Depth Anything 3's batch recipe against the released package's rules
(test/da3_recipe_reference.py): the input processor's sizes and pixels, and the output
post-processing (sky fill or NaN, metric scaling, inverse depth for relative models)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from da3_recipe_reference import MEAN, STD, reference_input, reference_post

from depth_pro_ros.model import recipe_for
from depth_pro_ros.model.depth_anything_3.recipe import input_sizes, prepare_input
from depth_pro_ros.model.stand_in import random_model

pytest.importorskip("depth_anything_3.utils.alignment")


def _image(h: int, w: int, seed: int) -> np.ndarray:
    """A gradient with noise: resizes of it exercise both smooth and sharp content."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 180, w)[None, :, None] + np.linspace(0, 40, h)[:, None, None]
    return (ramp + rng.integers(0, 60, (h, w, 3))).clip(0, 255).astype(np.uint8)


# (image h, w, process_res): enlarged; shrunk, then one side enlarged to its multiple
# (cubic for both, as the reference); the longer side already at size (the shorter shrunk
# to its multiple); exact (no resize); shrunk, then the shorter side enlarged.
CASES = [(30, 50, 140), (300, 170, 140), (140, 100, 140), (126, 168, 168), (100, 151, 140)]


@pytest.mark.parametrize(("h", "w", "size"), CASES)
def test_input_matches_the_input_processor(h, w, size):
    rgb = _image(h, w, seed=h)
    expected = reference_input(rgb, size)
    assert input_sizes(h, w, size)[1] == expected.shape[:2]
    x = prepare_input(torch.from_numpy(rgb)[None], size)[0].permute(1, 2, 0).numpy()
    ours = (x * STD + MEAN) * 255.0
    diff = np.abs(ours - expected.astype(np.float32))
    # Exact where nothing is resized; else cv2's uint8 resizes round fixed-point weights
    # (11 bits for cubic): at most 1 grey level, and rarely (measured: at most 0.54 % of
    # values in these cases).
    if (h, w) == expected.shape[:2]:
        assert diff.max() < 1e-3
    else:
        assert diff.max() <= 1.0 + 1e-3 and (diff > 0.5).mean() < 0.02


def _raw(seed: int, h: int = 42, w: int = 56) -> torch.Tensor:
    """A network output (1, 2, h, w): positive depth, and a sky map whose top third is
    over the threshold (and a few pixels around it)."""
    g = torch.Generator().manual_seed(seed)
    depth = torch.rand(h, w, generator=g) * 4 + 0.5
    sky = torch.rand(h, w, generator=g) * 0.25
    sky[: h // 3] += 0.3
    return torch.stack([depth, sky])[None]


@pytest.mark.parametrize("model_type", ["depth_anything_3_metric", "depth_anything_3_mono"])
@pytest.mark.parametrize("sky_mask", [True, False])
def test_output_matches_the_post_processing(model_type, sky_mask):
    model = random_model(model_type, "tiny")
    recipe = recipe_for(model, 56, sky_mask=sky_mask)
    raw, width, height, f_px, out_size = _raw(1), 60, 45, 50.0, (45, 60)
    got = recipe.output(raw, width, height, torch.tensor([f_px]), out_size).numpy()
    metric = model_type.endswith("metric")
    expected = reference_post(raw[0, 0], raw[0, 1], width, height, f_px, metric, sky_mask,
                              out_size)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    assert np.isnan(got).any() == sky_mask
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_input_size_must_be_a_multiple_of_the_patch():
    with pytest.raises(ValueError, match="input_size must be a positive multiple of 14"):
        recipe_for(random_model("depth_anything_3_mono", "tiny"), 100)


def test_any_view_engine_takes_the_focal_from_its_camera_decoder():
    """A frame without intrinsics: the engine's FoV path gets the horizontal FoV of the
    camera decoder's intrinsics, and the relative output is the network's inverse depth."""
    from depth_pro_ros.engine import DepthEngine, EngineConfig, FocalSource, Frame

    model = random_model("depth_anything_3", "tiny")
    recipe = recipe_for(model, 56)
    assert (recipe.info.kind, recipe.info.has_fov_head, recipe.info.needs_focal) == (
        "relative", True, False)
    rgb = _image(42, 56, 5)
    x = prepare_input(torch.from_numpy(rgb)[None], 56)
    with torch.no_grad():
        out = model(x[:, None])
    fx = float(out["intrinsics"][0, 0, 0, 0])  # at the 56-pixel-wide network input
    with DepthEngine(model, EngineConfig(device="cpu", input_size=56)) as engine:
        engine.submit(Frame(rgb))
        result = engine.get(timeout=60.0)
    assert result.ok and result.focal_source == FocalSource.FOV_HEAD
    assert result.fov_deg == pytest.approx(np.degrees(2 * np.arctan(28 / fx)), rel=1e-5)
    assert result.intrinsics.fx == pytest.approx(fx, rel=1e-5)  # the image is 56 wide too
    np.testing.assert_allclose(result.relative, 1.0 / out["depth"][0, 0].numpy(), rtol=1e-5)


def test_metric_frame_without_a_focal_gets_one_actionable_error():
    from depth_pro_ros.engine import DepthEngine, EngineConfig, Frame

    model = random_model("depth_anything_3_metric", "tiny")
    with DepthEngine(model, EngineConfig(device="cpu", input_size=56)) as engine:
        engine.submit(Frame(_image(42, 56, 6)))
        result = engine.get(timeout=60.0)
    assert not result.ok and result.depth is None
    assert ("Depth Anything 3 (custom, metric, input 56) needs a focal length and has no FoV "
            "head: give the frames known intrinsics (a CameraInfo, or a fixed focal)"
            in result.error)


def test_a_frame_without_a_focal_fails_alone_in_a_mixed_batch():
    """Two cameras in one batch, one without a focal: only its frame fails; the other's
    depth is what it is alone."""
    from depth_pro_ros.engine import DepthEngine, EngineConfig, Frame, Intrinsics

    model = random_model("depth_anything_3_metric", "tiny")
    rgb = _image(42, 56, 7)
    known = Intrinsics.from_focal(40.0, 56, 42)
    config = EngineConfig(device="cpu", input_size=56, policy="all", batch_size=2)
    with DepthEngine(model, config) as engine:
        engine.submit_batch([Frame(rgb, intrinsics=known, source="a", meta="a"),
                             Frame(rgb, source="b", meta="b")])
        results = {r.meta: r for r in (engine.get(timeout=60.0), engine.get(timeout=60.0))}
        engine.submit(Frame(rgb, intrinsics=known, meta="alone"))
        alone = engine.get(timeout=60.0)
    assert results["a"].ok and results["a"].batch_size == 2
    assert not results["b"].ok and "needs a focal length" in results["b"].error
    # Batched and single runs may differ in the last bits (DepthEngine.submit_batch).
    np.testing.assert_allclose(results["a"].depth, alone.depth, rtol=1e-5)
