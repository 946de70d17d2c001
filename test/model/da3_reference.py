"""Builds the released ``depth-anything-3`` package's ``DepthAnything3Net`` (the independent
reference) for a :class:`DepthAnything3Config`, at any size, and moves random weights
between it and this project's network in the released file layout."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import load_file, load_model, save_model
from torch import nn

from depth_pro_ros.model.depth_anything_3.config import (
    DepthAnything3Config,
    NestedDepthAnything3Config,
)
from depth_pro_ros.model.depth_anything_3.hf_layout import read_hf


def reduced(name: str, **overrides) -> DepthAnything3Config:
    """A released preset's architecture at test size: 5 blocks of width 64 (4 heads of
    16: RoPE needs multiples of 4), the last 4 hooked, every layer start kept where the
    preset has it, at block 2 or 3 as the preset's is even or odd (block 0 runs before the
    reference view is chosen: before it every view's class token is the same), 4 x 4
    stored position grid, small head, 2-block camera trunk."""
    base = DepthAnything3Config.from_preset(name)
    starts = {k: (2 + getattr(base, k) % 2 if getattr(base, k) >= 0 else -1)
              for k in ("alt_start", "rope_start", "qknorm_start")}
    return DepthAnything3Config.from_preset(
        name, embed_dim=64, depth=5, num_heads=4, pos_grid=4, hook_block_ids=(1, 2, 3, 4),
        neck_dims=(8, 12, 16, 24), fusion_features=16, camera_depth=2, camera_heads=4,
        **starts, **overrides)


def build_reference(config: DepthAnything3Config | NestedDepthAnything3Config) -> nn.Module:
    """The package's ``DepthAnything3Net`` (``NestedDepthAnything3Net`` of two) with
    ``config``'s sizes (its DinoV2 wrapper only knows the full-size ViTs: its inner ViT is
    built here with the same arguments the wrapper passes)."""
    from depth_anything_3.model.cam_dec import CameraDec
    from depth_anything_3.model.cam_enc import CameraEnc
    from depth_anything_3.model.da3 import DepthAnything3Net, NestedDepthAnything3Net
    from depth_anything_3.model.dinov2.dinov2 import DinoV2
    from depth_anything_3.model.dinov2.vision_transformer import DinoVisionTransformer
    from depth_anything_3.model.dpt import DPT
    from depth_anything_3.model.dualdpt import DualDPT

    if isinstance(config, NestedDepthAnything3Config):  # its init builds from yaml dicts
        nested = NestedDepthAnything3Net.__new__(NestedDepthAnything3Net)
        nn.Module.__init__(nested)
        nested.da3, nested.da3_metric = (build_reference(c)
                                         for c in (config.anyview, config.metric))
        return nested.eval()
    c = config
    backbone = DinoV2.__new__(DinoV2)
    nn.Module.__init__(backbone)
    backbone.name, backbone.out_layers = "custom", list(c.hook_block_ids)
    backbone.alt_start, backbone.qknorm_start = c.alt_start, c.qknorm_start
    backbone.rope_start, backbone.cat_token = c.rope_start, c.cat_token
    backbone.pretrained = DinoVisionTransformer(
        img_size=c.pos_grid * c.patch_size, patch_size=c.patch_size, embed_dim=c.embed_dim,
        depth=c.depth, num_heads=c.num_heads, mlp_ratio=c.mlp_ratio,
        ffn_layer="swiglufused" if c.ffn == "swiglu" else "mlp", alt_start=c.alt_start,
        qknorm_start=c.qknorm_start, rope_start=c.rope_start, cat_token=c.cat_token)
    head_kind = DualDPT if c.head == "dualdpt" else DPT
    head = head_kind(dim_in=c.head_dim_in, output_dim=c.output_dim,
                     features=c.fusion_features, out_channels=list(c.neck_dims))
    cam_enc = cam_dec = None
    if c.camera:
        cam_enc = CameraEnc(dim_out=c.embed_dim, trunk_depth=c.camera_depth,
                            num_heads=c.camera_heads, mlp_ratio=c.mlp_ratio)
        cam_dec = CameraDec(dim_in=c.head_dim_in)
    return DepthAnything3Net(backbone, head, cam_dec=cam_dec, cam_enc=cam_enc).eval()


def randomise(module: nn.Module, seed: int, scale: float = 0.1) -> None:
    """Every parameter random around its initial value (PyTorch's init leaves LayerNorms
    at 1 / 0, tokens at 0, LayerScale at 1: a test of those would pass by chance)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)


class _Release(nn.Module):
    """The package's ``DepthAnything3`` as its Hub mixin saves it: the net under ``model``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.model = net


def save_released(net: nn.Module, path: Path) -> Path:
    """``net``'s weights written as the release's ``model.safetensors`` is: safetensors'
    ``save_model`` of the net under ``model.`` (a shared tensor stored once)."""
    save_model(_Release(net), str(path))
    return path


def load_released(path: Path, preset: str) -> dict[str, torch.Tensor]:
    """A released ``model.safetensors`` as the network's state dict, read by this
    project's reader of released folders (``model.`` dropped, shared names filled)."""
    state, _ = read_hf(path, path.with_name("config.json"), load_file(path),
                       {"model_name": preset})
    return state


def load_into_reference(ref: nn.Module, path: Path) -> None:
    """A released file into the reference, as the package's ``from_pretrained`` does
    (safetensors' ``load_model``, strict)."""
    missing, unexpected = load_model(_Release(ref), str(path), strict=True)
    assert not missing and not unexpected


def reference_outputs(ref: nn.Module, x: torch.Tensor, extrinsics: torch.Tensor | None = None,
                      intrinsics: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The reference's fp32 forward (its network, not its autocast API), as a plain dict
    with this project's names."""
    with torch.no_grad():
        out = ref(x, extrinsics=extrinsics, intrinsics=intrinsics)
    names = {"depth": "depth", "depth_conf": "confidence", "sky": "sky",
             "intrinsics": "intrinsics", "extrinsics": "extrinsics"}
    return {names[k]: v for k, v in out.items() if k in names}


@contextmanager
def meta_parameters() -> Iterator[None]:
    """Every parameter registered meanwhile moved to the meta device as it is registered
    (then initialised there: no memory, no time). The reference's ViT cannot be built
    under ``torch.device("meta")``: it reads drop-path rates with ``.item()``."""
    register = nn.Module.register_parameter

    def on_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if param is not None and not param.is_meta:
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register(module, name, param)

    nn.Module.register_parameter = on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter = register
