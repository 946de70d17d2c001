"""DA3's heads against the released package's (``depth_anything_3.model.dpt.DPT``,
``dualdpt.DualDPT``) on random tokens, with the same random weights loaded strictly."""

from __future__ import annotations

import pytest
import torch

from depth_pro_ros.model.depth_anything_3.heads import DPTHead, DualDPTHead

dpt = pytest.importorskip("depth_anything_3.model.dpt")
dualdpt = pytest.importorskip("depth_anything_3.model.dualdpt")

TOLERANCE = 1e-5  # fp32, same operations in the same order up to conv algorithm choice
DIM, FEATURES, OUT = 48, 16, (8, 16, 24, 32)  # tiny: the structure, not the width, matters


def _max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def _tokens(views: int, height: int, width: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n = (height // 14) * (width // 14)
    return [torch.randn(views, n, DIM, generator=g) for _ in range(4)]


def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Every parameter random (PyTorch's default init leaves LayerNorm at 1 / 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def _run_reference(ref, tokens, height, width):
    feats = [(t[None], None) for t in tokens]  # (B=1, S=views, N, C)
    with torch.no_grad():
        out = ref(feats, height, width, patch_start_idx=0)
    return {k: v[0] for k, v in out.items()}


@pytest.mark.parametrize("shape", [(42, 56), (56, 42)])
def test_dpt_head_matches_reference(shape):
    ref = dpt.DPT(DIM, output_dim=1, features=FEATURES, out_channels=OUT).eval()
    _randomise(ref, 1)
    tokens = _tokens(2, *shape, seed=2)
    with torch.no_grad():  # sky's median moved to the 0.3 threshold: both sides compared
        sky = _run_reference(ref, tokens, *shape)["sky"]
        ref.scratch.sky_output_conv2[2].bias.add_(0.3 - sky.median())
    ours = DPTHead(DIM, FEATURES, OUT).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    expected = _run_reference(ref, tokens, *shape)
    with torch.no_grad():
        got = ours(tokens, *shape)
    assert set(got) == set(expected) == {"depth", "sky"}
    for key in got:
        assert got[key].shape == expected[key].shape == (2, *shape)
        assert _max_rel(got[key], expected[key]) <= TOLERANCE, key
    assert 0 < (expected["sky"] >= 0.3).float().mean() < 1


@pytest.mark.parametrize("views", [1, 3])
def test_dual_dpt_head_matches_reference(views):
    shape = (42, 56)
    ref = dualdpt.DualDPT(DIM, output_dim=2, features=FEATURES, out_channels=OUT).eval()
    _randomise(ref, 3)
    ours = DualDPTHead(DIM, FEATURES, OUT).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    tokens = _tokens(views, *shape, seed=4)
    expected = _run_reference(ref, tokens, *shape)
    with torch.no_grad():
        got = ours(tokens, *shape)
    assert set(got) == set(expected) == {"depth", "depth_conf", "ray", "ray_conf"}
    ray_size = (shape[0] // 14 * 8, shape[1] // 14 * 8)
    assert got["ray"].shape == (views, *ray_size, 6)
    assert got["ray_conf"].shape == (views, *ray_size)
    for key in got:
        assert got[key].shape == expected[key].shape, key
        assert _max_rel(got[key], expected[key]) <= TOLERANCE, key


def test_heads_refuse_tokens_of_another_size():
    head = DPTHead(DIM, FEATURES, OUT)
    with pytest.raises(ValueError, match="patch tokens"):
        head(_tokens(1, 42, 56, seed=0), 56, 56)
