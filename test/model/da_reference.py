"""Builds the independent transformers implementations of the Depth Anything family
(``DepthAnythingForDepthEstimation``, ``PromptDepthAnythingForDepthEstimation``) for a
given :class:`DepthAnythingConfig`, and the original DINOv2 position-embedding resampling
that transformers replaced."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from depth_pro_ros.model import DepthAnythingConfig

# The reference models of the tests (test/model/conftest.py builds them in every layout).
DA_CONFIGS = {
    "relative": DepthAnythingConfig.tiny(),
    "metric": DepthAnythingConfig.tiny(head="metric", max_depth=20.0),
    "prompt": DepthAnythingConfig.tiny(prompt=True),
}
# Non-square (a 4 x 6 token grid: the stored 4 x 4 position embedding is resampled) and
# the native square size.
DA_SHAPES = {"non_square": (56, 84), "native": (56, 56)}
DA_PROMPT_SHAPE = (9, 13)  # another resolution than the image, as a LiDAR map is


def hf_da_config_dict(config: DepthAnythingConfig) -> dict:
    """The transformers config arguments that describe ``config``."""
    backbone = {
        "model_type": "dinov2",
        "hidden_size": config.embed_dim,
        "num_hidden_layers": config.depth,
        "num_attention_heads": config.num_heads,
        "mlp_ratio": int(config.mlp_ratio),
        "patch_size": config.patch_size,
        "image_size": config.pos_grid * config.patch_size,
        "out_indices": [i + 1 for i in config.hook_block_ids],
        "reshape_hidden_states": False,
        "apply_layernorm": True,
        "layerscale_value": 1.0,
    }
    return {
        "backbone_config": backbone,
        "patch_size": config.patch_size,
        "reassemble_hidden_size": config.embed_dim,
        "neck_hidden_sizes": list(config.neck_dims),
        "fusion_hidden_size": config.fusion_features,
        "head_hidden_size": config.head_features,
        "depth_estimation_type": config.head,
        # The prompt release stores None: its head ignores max_depth. transformers' strict
        # config takes an int (the releases' 20 and 80 are whole metres).
        "max_depth": None if config.prompt else int(config.max_depth),
    }


def build_hf_da_model(config: DepthAnythingConfig, seed: int = 0, device: str = "cpu"):
    """A transformers (Prompt)DepthAnythingForDepthEstimation with random, non-trivial
    weights: every parameter redrawn (LayerScale in [0.5, 1.5], biases non-zero, the
    position embedding at unit scale so that resampling it matters, the prompt branches'
    last convolutions non-zero); the relative head's last bias keeps the ReLU output
    mostly positive."""
    from transformers import (
        DepthAnythingConfig as HFConfig,
    )
    from transformers import (
        DepthAnythingForDepthEstimation,
        PromptDepthAnythingConfig,
        PromptDepthAnythingForDepthEstimation,
    )

    if config.prompt:
        hf_config = PromptDepthAnythingConfig(**hf_da_config_dict(config))
        cls = PromptDepthAnythingForDepthEstimation
    else:
        hf_config = HFConfig(**hf_da_config_dict(config))
        cls = DepthAnythingForDepthEstimation
    with torch.device(device):
        model = cls(hf_config)
    if device == "meta":
        return model.eval(), hf_config
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lambda1" in name:
                p.copy_(torch.rand(p.shape, generator=gen) + 0.5)
            elif name.endswith(("position_embeddings", "cls_token", "mask_token")):
                p.copy_(torch.randn(p.shape, generator=gen))
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif p.ndim <= 1:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) / fan_in**0.5)
        if config.head == "relative":
            model.head.conv3.bias.fill_(1.0)
    return model.eval(), hf_config


def save_original_da(state: dict, path, prompt: bool):
    """Write an original-layout state dict the way its release ships: a plain ``.pth``, or
    for Prompt Depth Anything a Lightning ``.ckpt`` whose ``state_dict`` carries the
    module's ``pipeline.`` prefix and its ImageNet ``_mean`` / ``_std`` buffers."""
    if not prompt:
        torch.save(state, path)
        return path
    wrapped = {"pipeline." + k: v for k, v in state.items()}
    wrapped["pipeline._mean"] = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    wrapped["pipeline._std"] = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.save({"epoch": 3, "global_step": 1000, "pytorch-lightning_version": "2.1.0",
                "state_dict": wrapped}, path)
    return path


def original_dinov2_position_embedding(
    pos_embed: torch.Tensor, grid_h: int, grid_w: int, offset: float = 0.1
) -> torch.Tensor:
    """The original DINOv2 ``interpolate_pos_encoding`` (Depth Anything V2's ``dinov2.py``):
    bicubic with ``scale_factor=((grid_h + 0.1) / g, (grid_w + 0.1) / g)`` in fp32, skipped
    only for the stored square grid. transformers passes ``size=(grid_h, grid_w)``."""
    n = pos_embed.shape[1] - 1
    g = math.isqrt(n)
    if (grid_h, grid_w) == (g, g):
        return pos_embed
    c = pos_embed.shape[-1]
    grid = pos_embed[:, 1:].float().reshape(1, g, g, c).permute(0, 3, 1, 2)
    scale = ((grid_h + offset) / g, (grid_w + offset) / g)
    grid = F.interpolate(grid, scale_factor=scale, mode="bicubic", align_corners=False)
    assert grid.shape[-2:] == (grid_h, grid_w)
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, c).to(pos_embed.dtype)
    return torch.cat([pos_embed[:, :1], grid], dim=1)
