"""The network against the independent transformers implementation of Depth Pro."""

from __future__ import annotations

import pytest
import torch
from hf_reference import hf_config_dict

from depth_pro_ros.model import DepthProConfig, create_model, load_checkpoint
from depth_pro_ros.model.depth_pro.layout import hf_to_apple_state_dict

TOLERANCE = 1e-5


def _max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("layout", ["apple", "hf_older", "hf_newer"])
def test_matches_transformers(reference, reference_outputs, layout):
    x, ref_depth, ref_fov = reference_outputs
    config = reference["config"] if layout == "apple" else None
    model = load_checkpoint(reference["paths"][layout], config=config)
    assert model.config == reference["config"]
    with torch.no_grad():
        inverse_depth, fov = model(x)
    assert inverse_depth.shape == (2, 1, 1536, 1536)
    assert fov.shape == (2, 1, 1, 1)
    assert ref_depth.std() > 0.05 and ref_fov.abs().min() > 1e-3  # non-trivial outputs
    rel_depth = _max_rel(inverse_depth[:, 0], ref_depth)
    rel_fov = float(((fov.flatten() - ref_fov) / ref_fov).abs().max())
    print(f"{reference['name']}/{layout}: depth max rel {rel_depth:.2e}, fov max rel {rel_fov:.2e}")
    assert rel_depth <= TOLERANCE
    assert rel_fov <= TOLERANCE


def test_batch_equals_single_images(reference, reference_outputs):
    x, _, _ = reference_outputs
    model = create_model(reference["config"])
    model.load_state_dict(reference["apple_state"])
    with torch.no_grad():
        batch_depth, batch_fov = model(x)
        for i in range(2):
            depth, fov = model(x[i : i + 1])
            assert _max_rel(depth[0], batch_depth[i]) <= TOLERANCE
            assert torch.allclose(fov[0], batch_fov[i], rtol=TOLERANCE, atol=0)


def test_fov_branch_can_be_skipped(reference, reference_outputs):
    x, ref_depth, _ = reference_outputs
    model = create_model(reference["config"])
    model.load_state_dict(reference["apple_state"])
    with torch.no_grad():
        depth, fov = model(x[:1], estimate_fov=False)
    assert fov is None
    assert _max_rel(depth[0, 0], ref_depth[0]) <= TOLERANCE


def test_rejects_wrong_input_size():
    model = create_model(DepthProConfig.tiny())
    with pytest.raises(ValueError, match=r"expected input \(B, 3, 384, 384\)"):
        model(torch.zeros(1, 3, 380, 384))


def test_full_size_layout_equals_transformers_on_meta():
    """Every key and shape of the released architecture, at no memory cost."""
    from transformers import DepthProConfig as HFConfig
    from transformers import DepthProForDepthEstimation

    config = DepthProConfig.depth_pro()
    ours = create_model(config, device="meta")
    with torch.device("meta"):
        hf = DepthProForDepthEstimation(HFConfig(**hf_config_dict(config)))
    mapped, unknown = hf_to_apple_state_dict(hf.state_dict())
    assert unknown == []
    expected = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in mapped.items()} == expected
    assert "encoder.patch_encoder.blocks.23.attn.qkv.weight" in expected
    assert "fov.head.4.weight" in expected and "decoder.convs.0.weight" not in expected
    params = sum(p.numel() for p in ours.parameters())
    assert round(params / 1e6, 2) == 951.99
    assert config.input_size == 1536


def test_config_validation_names_the_problem():
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        DepthProConfig(embed_dim=30, num_heads=4)
    with pytest.raises(ValueError, match="hook_block_ids"):
        DepthProConfig(depth=4, hook_block_ids=(5, 11))
    with pytest.raises(ValueError, match="unknown config keys"):
        DepthProConfig.from_dict({"embed_dims": 3})
    round_trip = DepthProConfig.from_dict(DepthProConfig.small().to_dict())
    assert round_trip == DepthProConfig.small()
