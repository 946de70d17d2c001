"""Builds the independent transformers implementation of Depth Pro for a given config."""

from __future__ import annotations

import torch

from depth_pro_ros.model import DepthProConfig


def hf_config_dict(config: DepthProConfig) -> dict:
    """The transformers ``DepthProConfig`` arguments that describe ``config``."""
    vit = {
        "model_type": "dinov2",
        "hidden_size": config.embed_dim,
        "num_hidden_layers": config.depth,
        "num_attention_heads": config.num_heads,
        "mlp_ratio": int(config.mlp_ratio),
        "patch_size": config.patch_size,
        "image_size": config.vit_image_size,
        "layerscale_value": 1.0,
    }
    d0, d1, d2, d3 = config.encoder_dims
    return {
        "patch_size": config.vit_image_size,
        "fusion_hidden_size": config.decoder_features,
        "intermediate_hook_ids": list(reversed(config.hook_block_ids)),
        "intermediate_feature_dims": [d0, config.decoder_features],
        "scaled_images_feature_dims": [d3, d2, d1],
        "use_fov_model": config.use_fov_head,
        "patch_model_config": dict(vit),
        "image_model_config": dict(vit),
        "fov_model_config": dict(vit),
    }


def build_hf_model(config: DepthProConfig, seed: int = 0, device: str = "cpu"):
    """A transformers DepthProForDepthEstimation with random, non-trivial weights.

    Every parameter is redrawn so that no weight sits at a degenerate initial value
    (LayerScale in [0.5, 1.5], biases non-zero); the last depth bias keeps the ReLU output
    mostly positive and the FoV head is scaled to give plausible angles (tens of degrees).
    """
    from transformers import DepthProConfig as HFConfig
    from transformers import DepthProForDepthEstimation

    hf_config = HFConfig(**hf_config_dict(config))
    with torch.device(device):
        model = DepthProForDepthEstimation(hf_config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lambda1" in name:
                p.copy_(torch.rand(p.shape, generator=gen) + 0.5)
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif p.ndim <= 1:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            else:
                fan_in = p[0].numel() if p.ndim > 1 else p.numel()
                p.copy_(torch.randn(p.shape, generator=gen) / fan_in**0.5)
        model.head.layers[4].bias.fill_(1.0)
        if model.fov_model is not None:
            model.fov_model.head.layers[-1].weight.mul_(30.0)
            model.fov_model.head.layers[-1].bias.fill_(50.0)
    return model.eval(), hf_config
