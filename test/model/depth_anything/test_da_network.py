"""The Depth Anything family against the independent transformers implementations, the
released architectures on the meta device, and the ViT changes Depth Pro must not see."""

from __future__ import annotations

import pytest
import torch
from da_reference import DA_SHAPES, build_hf_da_model, original_dinov2_position_embedding

from depth_pro_ros.model import (
    DepthAnythingConfig,
    DepthProConfig,
    create_depth_anything,
    create_model,
    load_checkpoint,
)
from depth_pro_ros.model.depth_anything.hf_layout import hf_to_original_state_dict

TOLERANCE = 1e-5


def _max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("shape", sorted(DA_SHAPES))
@pytest.mark.parametrize("layout", ["original", "hf_older", "hf_newer"])
def test_matches_transformers(da_reference, layout, shape):
    config = da_reference["config"] if layout == "original" else None
    model = load_checkpoint(da_reference["paths"][layout], config=config)
    assert model.config == da_reference["config"]
    x, prompt = da_reference["inputs"][shape]
    ref = da_reference["outputs"][shape]
    with torch.no_grad():
        out = model(x, prompt) if prompt is not None else model(x)
    assert out.shape == (2, 1, *DA_SHAPES[shape])
    assert ref.std() > 0.1 and ref.min() > 0  # non-trivial, mostly unclipped outputs
    rel = _max_rel(out[:, 0], ref)
    print(f"{da_reference['name']}/{layout}/{shape}: max rel {rel:.2e}")
    assert rel <= TOLERANCE


def test_outputs_have_the_family_meaning(da_reference):
    """Metric output is sigmoid x 20 m; a prompt model's lies in its prompt's range."""
    x, prompt = da_reference["inputs"]["non_square"]
    ref = da_reference["outputs"]["non_square"]
    name = da_reference["name"]
    if name == "metric":
        assert 0 < ref.min() and ref.max() < 20
    if name == "prompt":
        low = prompt.flatten(1).min(1).values.view(2, 1, 1)
        high = prompt.flatten(1).max(1).values.view(2, 1, 1)
        assert (ref >= low - 1e-5).all() and (ref <= high + 1e-5).all()
        model = create_depth_anything(da_reference["config"])
        model.load_state_dict(da_reference["original_state"])
        with torch.no_grad():
            doubled = model(x, 2 * prompt)[:, 0]
        # Scaling the prompt scales the metric output (normalisation by min / max).
        assert _max_rel(doubled, 2 * ref) <= TOLERANCE


def test_batch_equals_single_images(da_reference):
    model = create_depth_anything(da_reference["config"])
    model.load_state_dict(da_reference["original_state"])
    x, prompt = da_reference["inputs"]["non_square"]
    with torch.no_grad():
        batch = model(x, prompt)
        for i in range(2):
            p = prompt[i : i + 1] if prompt is not None else None
            assert _max_rel(model(x[i : i + 1], p)[0], batch[i]) <= TOLERANCE


def test_prompt_is_required_and_checked():
    prompt_model = create_depth_anything(DepthAnythingConfig.tiny(prompt=True))
    plain = create_depth_anything(DepthAnythingConfig.tiny())
    x = torch.zeros(1, 3, 56, 56)
    with pytest.raises(ValueError, match="needs a prompt"):
        prompt_model(x)
    with pytest.raises(ValueError, match=r"expected a prompt \(1, 1, h, w\)"):
        prompt_model(x, torch.ones(1, 2, 8, 8))
    with pytest.raises(ValueError, match="takes no prompt"):
        plain(x, torch.ones(1, 1, 8, 8))
    with pytest.raises(ValueError, match="multiples of the patch size 14"):
        plain(torch.zeros(1, 3, 56, 60))
    # A constant prompt (LiDAR all at one range) gives that depth, not NaN.
    with torch.no_grad():
        out = prompt_model(x, torch.full((1, 1, 8, 8), 2.5))
    assert torch.allclose(out, torch.full_like(out, 2.5))


# Parameters of the full-size networks. Ours and transformers' are the same set (the
# DINOv2 mask_token is stored by both; the original release has no parameter that either
# lacks; Prompt Depth Anything's _mean / _std are buffers, not parameters).
FULL_SIZE_PARAMS = {
    ("vits", False): 24_785_089,  # published: 24.8 M
    ("vitb", False): 97_470_785,  # published: 97.5 M
    ("vitl", False): 335_315_649,  # published: 335.3 M
    ("vits", True): 25_083_073,
    ("vitb", True): 98_656_577,
    ("vitl", True): 340_046_529,
}


@pytest.mark.parametrize("variant, prompt", sorted(FULL_SIZE_PARAMS))
def test_full_size_layout_equals_transformers_on_meta(variant, prompt):
    config = getattr(DepthAnythingConfig, variant)(prompt=prompt)
    assert config.variant == variant
    assert config.kind == ("metric" if prompt else "relative")
    ours = create_depth_anything(config, device="meta")
    hf, _ = build_hf_da_model(config, device="meta")
    mapped, unknown = hf_to_original_state_dict(hf.state_dict())
    assert unknown == []
    expected = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in mapped.items()} == expected
    params = sum(p.numel() for p in ours.parameters())
    assert params == FULL_SIZE_PARAMS[variant, prompt]
    assert params == sum(p.numel() for p in hf.parameters())
    # The other head differs only in its activation: same parameters.
    other = (dict(head="relative", prompt=True) if prompt
             else dict(head="metric", max_depth=20.0))
    other_model = create_depth_anything(getattr(DepthAnythingConfig, variant)(**other),
                                        device="meta")
    assert {k: tuple(v.shape) for k, v in other_model.state_dict().items()} == expected


def test_original_key_names():
    """Names written out from the original releases' dpt.py / dinov2.py / PromptDA blocks."""
    keys = set(create_depth_anything(DepthAnythingConfig.vitl(prompt=True),
                                     device="meta").state_dict())
    for name in [
        "pretrained.cls_token", "pretrained.pos_embed", "pretrained.mask_token",
        "pretrained.patch_embed.proj.weight", "pretrained.blocks.23.attn.qkv.weight",
        "pretrained.blocks.23.attn.proj.bias", "pretrained.blocks.0.ls1.gamma",
        "pretrained.blocks.0.ls2.gamma", "pretrained.blocks.5.mlp.fc2.weight",
        "pretrained.norm.weight", "depth_head.projects.3.weight",
        "depth_head.resize_layers.0.weight", "depth_head.resize_layers.1.bias",
        "depth_head.resize_layers.3.weight", "depth_head.scratch.layer4_rn.weight",
        "depth_head.scratch.refinenet1.out_conv.weight",
        "depth_head.scratch.refinenet4.resConfUnit1.conv1.weight",
        "depth_head.scratch.refinenet2.resConfUnit2.conv2.bias",
        "depth_head.scratch.refinenet3.resConfUnit_depth.0.weight",
        "depth_head.scratch.refinenet3.resConfUnit_depth.4.bias",
        "depth_head.scratch.output_conv1.weight", "depth_head.scratch.output_conv2.0.weight",
        "depth_head.scratch.output_conv2.2.bias",
    ]:
        assert name in keys, name
    # No bias on the 3x3 projections; the identity resize and activations hold nothing.
    for absent in ["depth_head.scratch.layer1_rn.bias", "depth_head.resize_layers.2.weight",
                   "depth_head.scratch.output_conv2.4.weight", "pretrained.blocks.24.norm1.weight"]:
        assert absent not in keys, absent
    assert tuple(create_depth_anything(DepthAnythingConfig.vitl(), device="meta")
                 .state_dict()["pretrained.pos_embed"].shape) == (1, 1370, 1024)


def test_depth_pro_vit_is_unchanged():
    """Depth Pro's ViT path is bit for bit the pre-interpolation computation."""
    torch.manual_seed(0)
    model = create_model(DepthProConfig.tiny())
    vit = model.encoder.patch_encoder
    assert not hasattr(vit, "mask_token")
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        tokens, hooks = vit(x, (0, 1))
        t = vit.patch_embed(x)
        t = torch.cat([vit.cls_token.expand(2, -1, -1), t], dim=1) + vit.pos_embed
        raw = []
        for block in vit.blocks:
            t = block(t)
            raw.append(t)
    assert torch.equal(tokens, vit.norm(t))
    assert torch.equal(hooks[0], raw[0]) and torch.equal(hooks[1], raw[1])
    assert vit.position_embedding(vit.grid, vit.grid) is vit.pos_embed


def test_position_embedding_resampling():
    """transformers' rule: bicubic to size=(gh, gw) in fp32, the stored grid untouched."""
    model = create_depth_anything(DepthAnythingConfig.tiny(), precision="bf16")
    vit = model.pretrained
    with torch.no_grad():
        vit.pos_embed.copy_(torch.randn(vit.pos_embed.shape))
    assert vit.position_embedding(4, 4) is vit.pos_embed
    resampled = vit.position_embedding(4, 6)
    assert resampled.shape == (1, 1 + 24, 32) and resampled.dtype == torch.bfloat16
    grid = vit.pos_embed[:, 1:].float().reshape(1, 4, 4, 32).permute(0, 3, 1, 2)
    expected = torch.nn.functional.interpolate(grid, size=(4, 6), mode="bicubic",
                                               align_corners=False)
    expected = expected.to(torch.bfloat16).permute(0, 2, 3, 1).reshape(1, 24, 32)
    assert torch.equal(resampled[:, 1:], expected)
    assert torch.equal(resampled[:, :1], vit.pos_embed[:, :1])


def test_original_dinov2_resampling_differs(da_reference):
    """The original DINOv2 resampling (scale_factor with a +0.1 offset) gives measurably
    different outputs from transformers' size= rule on a non-native grid; the figure is
    in docs/depth_anything.md."""
    model = create_depth_anything(da_reference["config"])
    model.load_state_dict(da_reference["original_state"])
    vit = model.pretrained
    x, prompt = da_reference["inputs"]["non_square"]
    with torch.no_grad():
        ours = model(x, prompt)
        vit.position_embedding = lambda gh, gw: original_dinov2_position_embedding(
            vit.pos_embed, gh, gw)
        original = model(x, prompt)
    rel = _max_rel(original, ours)
    print(f"{da_reference['name']}: original DINOv2 resampling vs transformers: {rel:.3f}")
    assert 1e-3 < rel < 0.2


def test_config_validation_names_the_problem():
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        DepthAnythingConfig(embed_dim=30, num_heads=4)
    with pytest.raises(ValueError, match="hook_block_ids must be 4 increasing"):
        DepthAnythingConfig(hook_block_ids=(5, 2, 8, 11))
    with pytest.raises(ValueError, match="head must be one of"):
        DepthAnythingConfig(head="absolute")
    with pytest.raises(ValueError, match="max_depth does not apply to prompt models"):
        DepthAnythingConfig(prompt=True, head="metric", max_depth=20)
    with pytest.raises(ValueError, match="max_depth = 0: must be above 0"):
        DepthAnythingConfig(head="metric", max_depth=0)
    with pytest.raises(ValueError, match="unknown config keys"):
        DepthAnythingConfig.from_dict({"embed_dims": 3})
    config = DepthAnythingConfig.tiny(head="metric", max_depth=80.0)
    round_trip = DepthAnythingConfig.from_dict(config.to_dict())
    assert round_trip == config and isinstance(round_trip.hook_block_ids, tuple)


def test_config_properties():
    assert DepthAnythingConfig.vits().release == "depth_anything_v2"
    assert DepthAnythingConfig.vits().kind == "relative"
    assert DepthAnythingConfig.vitb(head="metric", max_depth=20.0).kind == "metric"
    prompt = DepthAnythingConfig.vitl(prompt=True)
    assert (prompt.release, prompt.kind, prompt.head, prompt.variant) == (
        "prompt_depth_anything", "metric", "metric", "vitl")
    assert DepthAnythingConfig.tiny().variant == "custom"
    assert DepthAnythingConfig.vits().default_input_size == 518
    assert DepthAnythingConfig.vitl().hook_block_ids == (4, 11, 17, 23)
    assert DepthAnythingConfig.vitb().neck_dims == (96, 192, 384, 768)
