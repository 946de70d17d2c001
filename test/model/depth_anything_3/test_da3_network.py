"""The Depth Anything 3 network against the released package's ``DepthAnything3Net``
(depth-anything-3 0.1.1, fp32, its network's own forward): every preset's architecture at
test size, random weights moved through a released-layout ``model.safetensors``."""

from __future__ import annotations

import pytest
import torch
from da3_reference import (
    build_reference,
    load_into_reference,
    load_released,
    meta_parameters,
    randomise,
    reduced,
    reference_outputs,
    save_released,
)

from depth_pro_ros.model.depth_anything_3.camera import quaternion_to_rotation
from depth_pro_ros.model.depth_anything_3.config import (
    PRESETS,
    NestedDepthAnything3Config,
    preset,
)
from depth_pro_ros.model.depth_anything_3.network import create_depth_anything_3

vt = pytest.importorskip("depth_anything_3.model.dinov2.vision_transformer")

# fp32, the same operations in the same order (up to BLAS / conv algorithm choice).
TOLERANCE = 1e-5
SINGLE = [name for name, spec in PRESETS.items() if isinstance(spec, dict)]
# At test size the presets are three architectures: small, base and large differ only in
# sizes (their reduced configs are equal), mono and metric not at all; giant has SwiGLU
# and an odd layer start (test_reduced_architectures checks that these cover all).
TESTED = ["da3-small", "da3-giant", "da3mono-large"]
ANY_VIEW = [name for name in TESTED if PRESETS[name]["camera"]]
# Views and input sizes: the stored 4 x 4 position grid as it is, resampled to more
# columns, and to fewer rows and columns; four views make the reference choose a
# reference view.
CASES = [(1, (56, 56)), (2, (42, 70)), (4, (28, 42))]
SKY = 0.3  # the reference's sky threshold


def _max_rel(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got - expected).abs().max() / expected.abs().max())


def _images(views: int, shape: tuple[int, int], seed: int) -> torch.Tensor:
    return torch.randn(2, views, 3, *shape, generator=torch.Generator().manual_seed(seed))


def _cameras(views: int, shape: tuple[int, int], seed: int
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Random pinhole intrinsics of ``shape`` images and world-to-camera poses (2 items)."""
    g = torch.Generator().manual_seed(seed)
    intrinsics = torch.zeros(2, views, 3, 3)
    intrinsics[..., 0, 0] = intrinsics[..., 1, 1] = 40 + 40 * torch.rand(2, views, generator=g)
    intrinsics[..., 0, 2], intrinsics[..., 1, 2] = shape[1] / 2, shape[0] / 2
    intrinsics[..., 2, 2] = 1
    extrinsics = torch.eye(4).repeat(2, views, 1, 1)
    extrinsics[..., :3, :3] = quaternion_to_rotation(torch.randn(2, views, 4, generator=g))
    extrinsics[..., :3, 3] = torch.randn(2, views, 3, generator=g)
    return intrinsics, extrinsics


def _compare(got: dict, expected: dict) -> None:
    """Every output equal; depth only off the sky, which the reference fills itself."""
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key].shape == value.shape, key
        if key == "depth" and "sky" in expected:
            ground = expected["sky"] < SKY
            assert 0 < ground.float().mean() < 1  # both kinds of pixel are compared
            assert _max_rel(got[key][ground], value[ground]) <= TOLERANCE
        else:
            assert _max_rel(got[key], value) <= TOLERANCE, key


def _balance_sky(model: torch.nn.Module, sky: torch.Tensor) -> None:
    """The sky head's median moved to the threshold (the same module path in both
    networks), so that sky and ground pixels are both compared."""
    with torch.no_grad():
        model.head.scratch.sky_output_conv2[2].bias.add_(SKY - sky.median())


@pytest.fixture(scope="module", params=TESTED)
def pair(request, tmp_path_factory):
    """(preset, reference, ours): the reference's random weights saved as a release and
    loaded strictly into this project's network."""
    config = reduced(request.param)
    torch.manual_seed(0)
    ref = build_reference(config)
    randomise(ref, seed=TESTED.index(request.param))
    if config.sky:
        _balance_sky(ref, reference_outputs(ref, _images(2, (56, 70), seed=99))["sky"])
    path = save_released(ref, tmp_path_factory.mktemp("da3") / "model.safetensors")
    ours = create_depth_anything_3(config)
    ours.load_state_dict(load_released(path, request.param), strict=True)
    return request.param, ref, ours


@pytest.mark.parametrize(("views", "shape"), CASES)
def test_outputs_match_reference(pair, views, shape, monkeypatch):
    """Unknown cameras, and for the any-view presets known ones too."""
    name, ref, ours = pair
    chosen = []  # the reference views the package picks (its code, recorded)
    pick = vt.select_reference_view
    monkeypatch.setattr(vt, "select_reference_view",
                        lambda x, strategy: chosen.append(pick(x, strategy)) or chosen[-1])
    x = _images(views, shape, seed=views)
    with torch.no_grad():
        got = ours(x)
    _compare(got, reference_outputs(ref, x))
    keys = {"depth", "confidence", "intrinsics", "extrinsics"} if name in ANY_VIEW else {
        "depth", "sky"}
    assert set(got) == keys
    assert got["depth"].shape == (2, views, *shape)
    if name not in ANY_VIEW:
        return
    if views >= 3:  # the reordering path ran, not only view 0 first
        assert chosen and bool((chosen[0] != 0).any())
    intrinsics, extrinsics = _cameras(views, shape, seed=views)
    with torch.no_grad():
        known = ours(x, intrinsics=intrinsics, extrinsics=extrinsics)
    _compare(known, reference_outputs(ref, x, extrinsics, intrinsics))
    assert _max_rel(known["depth"], got["depth"]) > 1e-3  # the cameras were used


def test_tested_architectures_cover_every_preset():
    """Every released single-network preset, at test size, is a tested network (the
    ``metric`` flag names the output's meaning, not a part of the network)."""
    tested = [reduced(name).to_dict() | {"metric": False} for name in TESTED]
    for name in SINGLE:
        assert reduced(name).to_dict() | {"metric": False} in tested, name


@pytest.mark.parametrize("name", ["da3-giant", "da3metric-large"])
def test_our_weights_load_into_reference(name, tmp_path):
    """The other way: this network's weights, written as a release, load strictly into
    the reference and give its outputs."""
    config = reduced(name)
    ours = create_depth_anything_3(config)
    randomise(ours, seed=7)
    x = _images(2, (56, 70), seed=3)
    if config.sky:
        with torch.no_grad():
            _balance_sky(ours, ours(x)["sky"])
    ref = build_reference(config)
    load_into_reference(ref, save_released(ours, tmp_path / "model.safetensors"))
    with torch.no_grad():
        got = ours(x)
    _compare(got, reference_outputs(ref, x))


def _reference_parameters(name: str) -> int:
    """The released preset's parameter count, built by the package from its own yaml with
    every parameter on the meta device (no memory), without DA3-GIANT's 3D-Gaussian head
    (not a depth output; its module needs packages the tests do not install)."""
    from depth_anything_3.cfg import create_object, load_config
    from depth_anything_3.registry import MODEL_REGISTRY

    cfg = load_config(MODEL_REGISTRY[name])
    for part in (cfg, cfg.get("anyview", {})):
        for key in ("gs_head", "gs_adapter"):
            part.pop(key, None)
    with meta_parameters():
        ref = create_object(cfg)
    return sum(p.numel() for p in ref.parameters())


@pytest.mark.parametrize("name", list(PRESETS))
def test_parameter_count_matches_release(name):
    config = preset(name)
    ours = sum(p.numel() for p in create_depth_anything_3(config, device="meta").parameters())
    assert ours == _reference_parameters(name)
    parts = [config] if name in SINGLE else [config.anyview, config.metric]
    estimate = sum(c.parameter_estimate() for c in parts)
    assert ours / 2 <= estimate <= ours * 2  # the config's bound before building


@pytest.mark.parametrize("views", [1, 3])
def test_nested_matches_reference(views):
    """DA3NESTED: the any-view depth and poses scaled to the metric branch as the release
    does (one item: the release fits one scale per batch, this network one per item)."""
    config = NestedDepthAnything3Config(reduced("da3-giant"), reduced("da3metric-large"))
    ref = build_reference(config)
    randomise(ref, seed=5)
    x = _images(views, (42, 56), seed=views)
    _balance_sky(ref.da3_metric, reference_outputs(ref.da3_metric, x)["sky"])
    ours = create_depth_anything_3(config)
    ours.load_state_dict(ref.state_dict(), strict=True)
    with torch.no_grad():
        got = ours(x)
        expected = ref(x[:1])
        first = ours(x[:1])
        second = ours(x[1:])
    ground = got["sky"][:1] < SKY  # the release fills the sky (depth, confidence)
    assert 0 < ground.float().mean() < 1
    for ours_key, ref_key in [("depth", "depth"), ("confidence", "depth_conf")]:
        assert _max_rel(got[ours_key][:1][ground], expected[ref_key][ground]) <= TOLERANCE
    for key in ("intrinsics", "extrinsics"):
        assert _max_rel(got[key][:1], expected[key]) <= TOLERANCE, key
    assert float(got["scale"][0]) == pytest.approx(expected.scale_factor, rel=TOLERANCE)
    for key in ("depth", "extrinsics", "scale"):  # each item its own scale
        assert _max_rel(got[key], torch.cat([first[key], second[key]])) <= TOLERANCE, key


def test_nested_all_sky_has_no_scale():
    """No ground pixel: the scale is unknown (NaN), not a crash nor a made-up number."""
    config = NestedDepthAnything3Config(reduced("da3-small"), reduced("da3metric-large"))
    ours = create_depth_anything_3(config)
    with torch.no_grad():
        ours.da3_metric.head.scratch.sky_output_conv2[2].bias.fill_(10.0)  # sky everywhere
        got = ours(_images(1, (28, 42), seed=0))
    assert got["scale"].isnan().all() and got["depth"].isnan().all()
    assert got["intrinsics"].isfinite().all()


def test_bad_input_is_refused():
    mono = create_depth_anything_3(reduced("da3mono-large"))
    any_view = create_depth_anything_3(reduced("da3-small"))
    x = torch.zeros(1, 2, 3, 56, 56)
    intrinsics, extrinsics = _cameras(2, (56, 56), seed=0)
    cases = [
        (mono, (torch.zeros(1, 3, 56, 56),), {}, "expected an input"),
        (mono, (torch.zeros(1, 1, 3, 56, 60),), {}, "multiples of the patch size"),
        (mono, (x,), {"intrinsics": intrinsics[:1], "extrinsics": extrinsics[:1]},
         "no camera encoder"),
        (any_view, (x,), {"intrinsics": intrinsics[:1]}, "both intrinsics"),
        (any_view, (x,), {"intrinsics": intrinsics, "extrinsics": extrinsics},
         "expected intrinsics"),
    ]
    for model, args, kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            model(*args, **kwargs)
