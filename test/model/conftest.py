"""Fixtures shared by the model tests: reference models and their weights in each layout."""

from __future__ import annotations

import shutil

import pytest
import torch
from da_reference import (
    DA_CONFIGS,
    DA_PROMPT_SHAPE,
    DA_SHAPES,
    build_hf_da_model,
    save_original_da,
)
from hf_reference import build_hf_model
from safetensors.torch import save_file

from depth_pro_ros.model import DepthProConfig
from depth_pro_ros.model.depth_anything.hf_layout import hf_to_original_state_dict
from depth_pro_ros.model.depth_pro.layout import hf_to_apple_state_dict

CONFIGS = {"tiny": DepthProConfig.tiny(), "small": DepthProConfig.small()}


@pytest.fixture(scope="session", params=sorted(CONFIGS))
def reference(request, tmp_path_factory):
    """A random transformers model with its weights saved in every accepted layout."""
    config = CONFIGS[request.param]
    hf_model, _ = build_hf_model(config, seed=len(request.param))
    root = tmp_path_factory.mktemp(request.param)

    # save_pretrained writes the older naming (attention.attention.query ...).
    older = root / "hf_older"
    hf_model.save_pretrained(older)
    # The in-memory names are the newer generation (attention.q_proj ...).
    newer = root / "hf_newer"
    newer.mkdir()
    save_file({k: v.contiguous() for k, v in hf_model.state_dict().items()},
              newer / "model.safetensors")
    shutil.copy(older / "config.json", newer / "config.json")

    apple_state, unknown = hf_to_apple_state_dict(hf_model.state_dict())
    assert not unknown
    apple = root / "depth_pro.pt"
    torch.save(apple_state, apple)
    return {
        "name": request.param,
        "config": config,
        "hf_model": hf_model,
        "apple_state": apple_state,
        "paths": {"apple": apple, "hf_older": older, "hf_newer": newer / "model.safetensors"},
    }


@pytest.fixture(scope="session")
def reference_outputs(reference):
    """The transformers model's outputs for a fixed random batch of two images."""
    size = reference["config"].input_size
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(7)) * 2 - 1
    with torch.no_grad():
        out = reference["hf_model"](pixel_values=x)
    return x, out.predicted_depth, out.field_of_view


# --- Depth Anything family --------------------------------------------------------------



@pytest.fixture(scope="session", params=sorted(DA_CONFIGS))
def da_reference(request, tmp_path_factory):
    """A random transformers (Prompt)DepthAnything model with its weights in every layout
    (original .pth / .ckpt, Hugging Face folder from save_pretrained, newer in-memory
    names), and its outputs on a batch of two at both DA_SHAPES."""
    config = DA_CONFIGS[request.param]
    hf_model, _ = build_hf_da_model(config, seed=11 + len(request.param))
    root = tmp_path_factory.mktemp(f"da_{request.param}")
    older = root / "hf_older"
    hf_model.save_pretrained(older)  # the older naming: attention.attention.query ...
    newer = root / "hf_newer"
    newer.mkdir()
    save_file({k: v.contiguous() for k, v in hf_model.state_dict().items()},
              newer / "model.safetensors")  # the in-memory, newer naming: q_proj ...
    shutil.copy(older / "config.json", newer / "config.json")
    original_state, unknown = hf_to_original_state_dict(hf_model.state_dict())
    assert not unknown
    name = {"relative": "depth_anything_v2_tiny.pth", "prompt": "promptda_tiny.ckpt",
            "metric": "depth_anything_v2_metric_hypersim_tiny.pth"}[request.param]
    original = save_original_da(original_state, root / name, config.prompt)

    gen = torch.Generator().manual_seed(5)
    inputs, outputs = {}, {}
    for label, (h, w) in DA_SHAPES.items():
        x = torch.randn(2, 3, h, w, generator=gen)
        prompt = (0.5 + 4 * torch.rand(2, 1, *DA_PROMPT_SHAPE, generator=gen)
                  if config.prompt else None)
        kwargs = {"prompt_depth": prompt} if config.prompt else {}
        with torch.no_grad():
            outputs[label] = hf_model(pixel_values=x, **kwargs).predicted_depth
        inputs[label] = (x, prompt)
    return {
        "name": request.param,
        "config": config,
        "hf_model": hf_model,
        "original_state": original_state,
        "paths": {"original": original, "hf_older": older,
                  "hf_newer": newer / "model.safetensors"},
        "inputs": inputs,
        "outputs": outputs,
    }
