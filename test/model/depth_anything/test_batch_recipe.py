"""The streaming engine with Depth Anything V2 (metric, relative) and Prompt Depth Anything
against their recipe (``model.infer_depth_anything``, itself checked against the
originals' OpenCV preprocessing and transformers in test/model).

The engine runs the recipe's preprocessing on batches, on the engine's device, and
resizes the output once to the output size. Batches and other kernels change the last
float bits only: RTOL bounds the relative difference of the outputs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from harness.engine import process_one
from model_factories import tiny_depth_anything, tiny_model

from depth_pro_ros.engine import DepthEngine, EngineConfig, Frame, Intrinsics
from depth_pro_ros.engine.anchor import AnchorInput, AnchorSettings, AnchorTracker, apply_anchor
from depth_pro_ros.model import depth_anything_input_size, infer_depth_anything, recipe_for

# Float rounding of other kernels (batched convolutions, other CPUs) stays far below this.
RTOL = 1e-4
INPUT = 56  # the tests' input_size: 4x4 patches at the shorter side keep passes fast
H, W = 42, 70


@pytest.fixture(scope="module")
def models():
    return {"metric": tiny_depth_anything("metric"), "relative": tiny_depth_anything("relative"),
            "prompt": tiny_depth_anything("metric", prompt=True)}


def _rgb(seed: int, h: int = H, w: int = W) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 200, w, dtype=np.float32)[None, :, None] + rng.integers(0, 55, (h, w, 3))
    return base.clip(0, 255).astype(np.uint8)


def _prompt(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (1.0 + 4.0 * rng.random((6, 8))).astype(np.float32)


def _engine(model, **config) -> DepthEngine:
    return DepthEngine(model, EngineConfig(device="cpu", policy="all", input_size=INPUT,
                                           **config))


def _reference(model, rgb, prompt=None) -> np.ndarray:
    return infer_depth_anything(model, rgb, INPUT, prompt).numpy()


def test_model_info_names_family_variant_and_kind(models):
    assert recipe_for(models["metric"], INPUT).info.description == \
        "Depth Anything V2 (custom, metric up to 20 m, input 56)"
    relative = recipe_for(models["relative"]).info
    assert (relative.kind, relative.family, relative.needs_focal) == \
        ("relative", "depth_anything", False)
    prompt = recipe_for(models["prompt"], INPUT).info
    assert prompt.needs_prompt and prompt.family == "depth_anything"
    assert recipe_for(tiny_model()).info.description.startswith("Depth Pro (custom, 384x384")


def test_input_size_must_suit_the_family(models):
    with pytest.raises(ValueError, match="multiple of 14"):
        recipe_for(models["metric"], 60)
    with pytest.raises(ValueError, match="fixed at 384 for Depth Pro"):
        recipe_for(tiny_model(), 518)
    with pytest.raises(ValueError, match="input_size must be >= 0"):
        EngineConfig(input_size=-14)


def test_metric_depth_matches_the_reference_recipe_without_a_focal(models):
    rgb = _rgb(1)
    with _engine(models["metric"], points=True) as engine:
        result = process_one(engine, Frame(rgb))
    assert result.ok, result.error
    assert result.intrinsics is None and result.points is None and result.focal_source is None
    reference = _reference(models["metric"], rgb)
    assert reference.shape == (H, W) and 0 < reference.min() < reference.max() < 20
    np.testing.assert_allclose(result.depth, reference, rtol=RTOL)


def test_metric_depth_with_a_focal_gives_points_and_bgr_channel_order(models):
    rgb = _rgb(2)
    known = Intrinsics.from_focal(60.0, W, H)
    with _engine(models["metric"], points=True) as engine:
        result = process_one(engine, Frame(np.ascontiguousarray(rgb[..., ::-1]), "bgr",
                                      intrinsics=known))
    np.testing.assert_allclose(result.depth, _reference(models["metric"], rgb), rtol=RTOL)
    assert result.intrinsics.fx == 60.0
    np.testing.assert_allclose(result.points["z"].reshape(H, W), result.depth, rtol=1e-6)


def test_output_scale_resizes_the_output_directly(models):
    rgb = _rgb(3)
    with _engine(models["metric"], output_scale=0.5) as engine:
        result = process_one(engine, Frame(rgb))
    assert result.depth.shape == (H // 2, W // 2)
    # The output is resized once, from the network's size to the output size.
    raw = torch.nn.functional.interpolate(
        torch.from_numpy(_reference(models["metric"], rgb))[None, None], (H // 2, W // 2),
        mode="bilinear", align_corners=True)[0, 0].numpy()
    assert np.median(np.abs(result.depth / raw - 1)) < 0.05  # same picture, not the same bits


def test_relative_model_unanchored_gives_relative_inverse_depth(models):
    rgb = _rgb(4)
    with _engine(models["relative"]) as engine:
        result = process_one(engine, Frame(rgb))
    assert result.ok and result.depth is None
    reference = _reference(models["relative"], rgb)
    assert (reference > 0).mean() > 0.9
    np.testing.assert_allclose(result.relative, reference, rtol=RTOL, atol=1e-6)


def _affine_anchor(models, rgb: np.ndarray, scale: float,
                   shift: float) -> tuple[np.ndarray, AnchorInput]:
    """The metric depth a known affine map in inverse depth makes of the relative model's
    output for ``rgb``, and a scale_shift anchor holding every third pixel of it."""
    relative = _reference(models["relative"], rgb)
    truth = apply_anchor(np.where(relative > 0, 1.0 / relative, np.nan), scale, shift)
    target = np.full(truth.shape, np.nan, np.float32)
    target[::3, ::3] = truth[::3, ::3]
    return truth, AnchorInput(AnchorSettings(fit="scale_shift", ema_alpha=1.0),
                              AnchorTracker(ema_alpha=1.0), now=0.0, depth=target)


def test_relative_model_anchored_with_scale_and_shift_gives_metric_depth(models):
    """Anchors made from the relative output by a known affine map in inverse depth: the
    scale_shift fit recovers it and the engine publishes the metric depth."""
    rgb = _rgb(5)
    scale, shift = 0.8, 0.05
    truth, anchor = _affine_anchor(models, rgb, scale, shift)
    with _engine(models["relative"]) as engine:
        result = process_one(engine, Frame(rgb, anchor=anchor))
    assert result.anchor.fit.ok, result.anchor.fit.reason
    assert result.anchor.fit.kind == "scale_shift"  # a relative model: no fallback
    assert result.relative is None
    assert result.anchor.scale == pytest.approx(scale, rel=1e-3)
    np.testing.assert_allclose(result.depth, truth, rtol=1e-3)


def test_prompt_model_uses_each_frames_prompt(models):
    rgbs, prompts = [_rgb(6), _rgb(7)], [_prompt(1), _prompt(2)]
    with _engine(models["prompt"], batch_size=2) as engine:
        assert engine.submit_batch([Frame(r, prompt=p) for r, p in zip(rgbs, prompts)])
        results = [engine.get(60), engine.get(60)]
    assert [r.batch_size for r in results] == [2, 2]
    for result, rgb, prompt in zip(results, rgbs, prompts):
        reference = _reference(models["prompt"], rgb, prompt)
        np.testing.assert_allclose(result.depth, reference, rtol=RTOL)
        # Denormalised to the prompt's range.
        assert prompt.min() - 1e-4 <= result.depth.min() <= result.depth.max() <= \
            prompt.max() + 1e-4


def test_prompt_model_fails_a_frame_without_prompt_and_goes_on(models):
    with _engine(models["prompt"]) as engine:
        failed = process_one(engine, Frame(_rgb(8)))
        good = process_one(engine, Frame(_rgb(8), prompt=_prompt(3)))
    assert "no prompt depth" in failed.error
    assert good.ok


@pytest.mark.parametrize("prompt, message", [
    (np.full((4, 4), 2.0, np.float32), "constant"),
    (np.array([[1.0, np.nan]], np.float32), "finite depths > 0"),
    (np.ones((4, 4), np.float64), "float32"),
])
def test_bad_prompts_are_refused_at_submit(models, prompt, message):
    with _engine(models["prompt"]) as engine, pytest.raises(ValueError, match=message):
        engine.submit(Frame(_rgb(9), prompt=prompt))


def test_frames_of_one_size_share_a_batch_and_match_single_frames(models):
    rgbs = [_rgb(10), _rgb(11)]
    with _engine(models["metric"], batch_size=2) as engine:
        assert engine.submit_batch([Frame(r) for r in rgbs])
        batched = [engine.get(60), engine.get(60)]
    assert [r.batch_size for r in batched] == [2, 2]
    for result, rgb in zip(batched, rgbs):
        np.testing.assert_allclose(result.depth, _reference(models["metric"], rgb), rtol=RTOL)


def test_larger_input_size_gives_a_larger_network_input(models):
    assert depth_anything_input_size(H, W, 56, 14) == (56, 98)
    assert depth_anything_input_size(H, W, 112, 14) == (112, 182)
    rgb = _rgb(12)
    engine = DepthEngine(models["metric"], EngineConfig(device="cpu", input_size=112))
    with engine:
        result = process_one(engine, Frame(rgb))
    np.testing.assert_allclose(result.depth,
                               infer_depth_anything(models["metric"], rgb, 112).numpy(),
                               rtol=RTOL)


@pytest.fixture
def no_tf32(monkeypatch):
    """fp32 convolutions and matmuls in full fp32 (global flags, read by the engine's
    worker): TF32's ~1e-3 error is not what a GPU-against-CPU-recipe comparison checks."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)


@pytest.mark.cuda
@pytest.mark.parametrize("name", ["metric", "relative", "prompt"])
@pytest.mark.parametrize("graphs", [False, True])
def test_cuda_overlap_and_graphs_match_the_cpu_recipe(models, name, graphs, no_tf32):
    """On the GPU (fp32 without TF32, copy/compute streams, optionally CUDA graphs with the
    prompt as a graph input): the same output as the recipe on the CPU. cuDNN's fp32
    kernels differ from the CPU's in the last bits: rtol 1e-3 for depth; the relative
    model's inverse depth nears 0 far away, hence its atol (1e-5, 1e-3 of its range)."""
    import copy

    cuda = copy.deepcopy(models[name]).to("cuda")
    rgbs = [_rgb(20 + i) for i in range(4)]
    prompts = [_prompt(20 + i) if name == "prompt" else None for i in range(4)]
    config = EngineConfig(device="cuda", precision="fp32", policy="all", input_size=INPUT,
                          cuda_graphs=graphs)
    with DepthEngine(cuda, config) as engine:
        for i, (rgb, prompt) in enumerate(zip(rgbs, prompts)):
            engine.submit(Frame(rgb, prompt=prompt, meta=i))
        results = sorted((engine.get(120) for _ in rgbs), key=lambda r: r.meta)
    for result, rgb, prompt in zip(results, rgbs, prompts):
        assert result.ok, result.error
        reference = _reference(models[name], rgb, prompt)
        if name == "relative":
            assert result.depth is None
            atol = 1e-3 * float(np.ptp(reference))
            np.testing.assert_allclose(result.relative, reference, rtol=1e-3, atol=atol)
        else:
            np.testing.assert_allclose(result.depth, reference, rtol=1e-3)


@pytest.mark.cuda
def test_cuda_engine_side_anchoring_recovers_the_affine_map(models, no_tf32):
    """The scale_shift anchor fit on the GPU: as on the CPU (the test above it)."""
    import copy

    rgb = _rgb(5)
    scale, shift = 0.8, 0.05
    truth, anchor = _affine_anchor(models, rgb, scale, shift)
    cuda = copy.deepcopy(models["relative"]).to("cuda")
    config = EngineConfig(device="cuda", precision="fp32", policy="all", input_size=INPUT)
    with DepthEngine(cuda, config) as engine:
        result = process_one(engine, Frame(rgb, anchor=anchor))
    assert result.anchor.fit.ok, result.anchor.fit.reason
    assert result.anchor.scale == pytest.approx(scale, rel=1e-3)
    np.testing.assert_allclose(result.depth, truth, rtol=2e-3)
