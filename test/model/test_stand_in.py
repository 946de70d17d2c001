"""Random-weight stand-ins (model/stand_in.py): every family and size, what loads them, and
outputs that vary across the image and stay in range."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from da3_recipe_reference import reference_depth

from depth_pro_ros.model import (
    DepthAnythingConfig,
    DepthProConfig,
    infer,
    infer_depth_anything,
    load_checkpoint,
    save_checkpoint,
)
from depth_pro_ros.model.depth_anything_3.config import preset
from depth_pro_ros.model.stand_in import (
    RANDOM_SIZES,
    STAND_IN_TYPES,
    random_config,
    random_model,
    stand_in_text,
)

RGB = np.random.default_rng(4).integers(0, 256, (40, 56, 3), dtype=np.uint8)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("model_type", STAND_IN_TYPES)
def test_tiny_stand_in_saves_and_loads_as_its_model_type(model_type, tmp_path):
    model = random_model(model_type, "tiny")
    path = save_checkpoint(model, tmp_path / "stand_in.pt")
    for asked in (None, model_type):  # detected from the file, and the type asserted
        loaded = load_checkpoint(path, model_type=asked)
        assert loaded.config == model.config and _same_weights(loaded, model)
    assert path.stat().st_size < 2_000_000
    if model_type == "depth_pro":
        prediction = infer(loaded, RGB)
        assert 30.0 < prediction.fov_deg < 90.0  # a usable focal estimate
        depth = prediction.depth.numpy()
    elif model_type.startswith("depth_anything_3"):
        depth = reference_depth(loaded, RGB, f_px=50.0, size=56)
    else:
        prompt = None
        if loaded.config.prompt:
            prompt = torch.linspace(1.0, 4.0, 12 * 16).reshape(12, 16)
        depth = infer_depth_anything(loaded, RGB, 56, prompt).numpy()
    assert depth.shape == RGB.shape[:2] and np.isfinite(depth).all() and (depth > 0).all()
    assert np.ptp(depth) > 1e-4 * float(np.median(depth))  # varies across the image
    if model_type.startswith("depth_anything_v2_metric"):
        assert depth.max() < loaded.config.max_depth


def test_the_same_arguments_give_the_same_weights_and_leave_torch_random_alone():
    torch.manual_seed(11)
    before = torch.random.get_rng_state()
    a = random_model("depth_anything_v2", "tiny")
    assert torch.equal(torch.random.get_rng_state(), before)
    assert _same_weights(a, random_model("depth_anything_v2", "tiny"))
    assert not _same_weights(a, random_model("depth_anything_v2", "tiny", seed=6))


def test_sizes_are_the_released_architectures():
    assert random_config("depth_pro", "tiny") == DepthProConfig.tiny()
    assert random_config("depth_pro", "full") == DepthProConfig.depth_pro()
    for size in ("vits", "vitb", "vitl"):
        outdoor = random_config("depth_anything_v2_metric_outdoor", size)
        assert outdoor == getattr(DepthAnythingConfig, size)(head="metric", max_depth=80.0)
        assert outdoor.variant == size
        prompt = random_config("prompt_depth_anything", size)
        assert prompt.prompt and prompt.head == "metric" and prompt.variant == size
    assert random_config("depth_anything_v2", "tiny").head == "relative"
    assert random_config("depth_anything_v2_metric_indoor", "tiny").max_depth == 20.0
    assert RANDOM_SIZES == {"depth_pro": ("tiny", "full"),
                            "depth_anything": ("tiny", "vits", "vitb", "vitl"),
                            "depth_anything_3": ("tiny", "small", "base", "large", "giant")}
    assert random_config("depth_anything_3", "small") == preset("da3-small")
    assert random_config("depth_anything_3_metric", "large") == preset("da3metric-large")
    assert stand_in_text("depth_anything_v2", "vits") == "Depth Anything V2, relative, vits"


def test_a_released_size_has_plausible_outputs():
    model = random_model("depth_anything_v2_metric_indoor", "vits")
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(24.8e6, rel=0.01)
    depth = infer_depth_anything(model, RGB, 140).numpy()
    assert np.isfinite(depth).all() and 0.0 < depth.min() and depth.max() < 20.0
    assert np.ptp(depth) > 0.0


@pytest.mark.parametrize(("model_type", "size", "message"), [
    ("depth_pro", "vits", "Depth Pro has no size 'vits'; use one of tiny, full"),
    ("prompt_depth_anything", "full", "has no size 'full'; use one of tiny, vits"),
    ("depth_anything_3_mono", "small", "is released in size large only, not 'small'"),
    ("auto", "tiny", "unknown model type 'auto'"),
])
def test_unknown_sizes_and_types_are_refused(model_type, size, message):
    with pytest.raises(ValueError, match=message):
        random_model(model_type, size)
