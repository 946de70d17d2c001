"""Loading the Depth Anything family: every layout detected from the file, model_type
overrides and contradictions, the file-name rule of the original metric releases, and one
clear error for each kind of bad checkpoint."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from da_reference import save_original_da

from depth_pro_ros.model import (
    MODEL_TYPES,
    CheckpointError,
    DepthAnything,
    DepthAnythingConfig,
    DepthPro,
    DepthProConfig,
    create_depth_anything,
    create_model,
    load_checkpoint,
    save_checkpoint,
)
from depth_pro_ros.model.depth_anything.hf_layout import config_from_hf


@pytest.mark.parametrize("layout", ["hf_older", "hf_newer"])
def test_hugging_face_layouts_need_no_flag(da_reference, layout):
    model = load_checkpoint(da_reference["paths"][layout])
    assert isinstance(model, DepthAnything) and not model.training
    assert model.config == da_reference["config"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, da_reference["original_state"][k]), k


def test_original_layout_family_needs_no_flag(da_reference):
    """Family and prompt layers come from the keys (the tiny architecture, not a released
    variant, is given as config, as for Apple's layout)."""
    path = da_reference["paths"]["original"]
    model = load_checkpoint(path, config=da_reference["config"])
    assert isinstance(model, DepthAnything)
    assert model.config.prompt == (da_reference["name"] == "prompt")
    with pytest.raises(CheckpointError, match="not a released variant .* pass config="):
        load_checkpoint(path)


def test_project_format_round_trip(da_reference, tmp_path):
    model = create_depth_anything(da_reference["config"])
    model.load_state_dict(da_reference["original_state"])
    path = save_checkpoint(model, tmp_path / "tiny_da.pt")
    assert torch.load(path, weights_only=True)["model"] == "depth_anything"
    loaded = load_checkpoint(path, precision="bf16")
    assert isinstance(loaded, DepthAnything) and loaded.config == da_reference["config"]
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v.bfloat16()), k


def test_project_format_depth_pro_and_old_files(tmp_path):
    torch.manual_seed(0)
    model = create_model(DepthProConfig.tiny())
    path = save_checkpoint(model, tmp_path / "dp.pt")
    assert torch.load(path, weights_only=True)["model"] == "depth_pro"
    assert isinstance(load_checkpoint(path), DepthPro)
    old = tmp_path / "old.pt"  # written before the family key existed
    torch.save({"format": "depth_pro_ros", "version": 1, "config": model.config.to_dict(),
                "state_dict": model.state_dict()}, old)
    assert isinstance(load_checkpoint(old), DepthPro)
    torch.save({"format": "depth_pro_ros", "version": 1, "model": "zoedepth",
                "config": {}, "state_dict": model.state_dict()}, old)
    with pytest.raises(CheckpointError, match="unknown model 'zoedepth'"):
        load_checkpoint(old)


# --- full-size original files: shapes and names only (meta tensors, a few kB each) -------

@pytest.fixture(scope="module")
def released_files(tmp_path_factory):
    """The released key sets and shapes, saved from meta tensors (no data), under the
    release's file names; load them with device="meta"."""
    root = tmp_path_factory.mktemp("released")
    vits = create_depth_anything(DepthAnythingConfig.vits(), device="meta").state_dict()
    first = root / "depth_anything_v2_vits.pth"
    torch.save(vits, first)
    for name in ["depth_anything_v2_metric_hypersim_vits.pth",
                 "depth_anything_v2_metric_vkitti_vits.pth", "depth_anything_v2_metric_vits.pth",
                 "indoor-metric-small.pth", "metric_outdoor_vits.pth"]:
        os.link(first, root / name)
    vitl = create_depth_anything(DepthAnythingConfig.vitl(prompt=True), device="meta")
    save_original_da(vitl.state_dict(), root / "model.ckpt", prompt=True)
    return root


@pytest.mark.parametrize("name, head, max_depth", [
    ("depth_anything_v2_vits.pth", "relative", 1.0),
    ("depth_anything_v2_metric_hypersim_vits.pth", "metric", 20.0),
    ("depth_anything_v2_metric_vkitti_vits.pth", "metric", 80.0),
    ("indoor-metric-small.pth", "metric", 20.0),
    ("metric_outdoor_vits.pth", "metric", 80.0),
])
def test_original_v2_kind_from_file_name(released_files, name, head, max_depth):
    model = load_checkpoint(released_files / name, device="meta")
    assert model.config == DepthAnythingConfig.vits(head=head, max_depth=max_depth)


def test_metric_name_without_release_asks_for_model_type(released_files):
    path = released_files / "depth_anything_v2_metric_vits.pth"
    with pytest.raises(CheckpointError, match="pass model_type depth_anything_v2_metric_indoor"):
        load_checkpoint(path, device="meta")
    model = load_checkpoint(path, device="meta", model_type="depth_anything_v2_metric_outdoor")
    assert (model.config.head, model.config.max_depth) == ("metric", 80.0)


def test_model_type_replaces_the_name_guess(released_files):
    path = released_files / "depth_anything_v2_metric_hypersim_vits.pth"
    model = load_checkpoint(path, device="meta", model_type="depth_anything_v2")
    assert model.config.kind == "relative"
    model = load_checkpoint(path, device="meta", model_type="auto")
    assert model.config.max_depth == 20.0


def test_prompt_ckpt_detected_with_its_lightning_prefix(released_files):
    model = load_checkpoint(released_files / "model.ckpt", device="meta")
    assert model.config == DepthAnythingConfig.vitl(prompt=True)
    assert model.config.release == "prompt_depth_anything" and model.config.kind == "metric"
    load_checkpoint(released_files / "model.ckpt", device="meta",
                    model_type="prompt_depth_anything")


@pytest.mark.parametrize("name, model_type, says", [
    ("depth_anything_v2_vits.pth", "depth_pro", "Depth Anything V2"),
    ("depth_anything_v2_vits.pth", "prompt_depth_anything", "Depth Anything V2"),
    ("model.ckpt", "depth_anything_v2", "Prompt Depth Anything"),
    ("model.ckpt", "depth_anything_v2_metric_indoor", "Prompt Depth Anything"),
])
def test_model_type_contradicting_original_weights(released_files, name, model_type, says):
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(released_files / name, device="meta", model_type=model_type)
    message = str(info.value)
    assert f"model_type {model_type!r}" in message and f"its weights: {says}" in message


def test_model_type_contradicting_a_config(da_reference, tmp_path):
    folder = da_reference["paths"]["hf_older"]
    name = da_reference["name"]
    agreeing = {"relative": "depth_anything_v2", "metric": "depth_anything_v2_metric_indoor",
                "prompt": "prompt_depth_anything"}[name]
    assert isinstance(load_checkpoint(folder, model_type=agreeing), DepthAnything)
    for model_type in MODEL_TYPES[1:]:
        if model_type == agreeing:
            continue
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(folder, model_type=model_type)
        message = str(info.value)
        assert f"model_type {model_type!r}" in message and "contradicts config.json" in message
    # An explicit config of the other family, and a model type against an explicit config.
    with pytest.raises(CheckpointError, match="config given describes Depth Pro, but the "
                                              "file holds Depth Anything weights"):
        load_checkpoint(folder, config=DepthProConfig.tiny())
    with pytest.raises(CheckpointError, match="contradicts the config given"):
        load_checkpoint(da_reference["paths"]["original"], config=da_reference["config"],
                        model_type="depth_pro")


def test_model_type_against_depth_pro_files(tmp_path):
    path = save_checkpoint(create_model(DepthProConfig.tiny()), tmp_path / "dp.pt")
    assert isinstance(load_checkpoint(path, model_type="depth_pro"), DepthPro)
    with pytest.raises(CheckpointError, match=r"model_type 'depth_anything_v2' \(Depth Anything "
                                              r"V2, relative\) contradicts its stored config: "
                                              r"Depth Pro"):
        load_checkpoint(path, model_type="depth_anything_v2")
    with pytest.raises(ValueError, match="unknown model_type 'dpt'"):
        load_checkpoint(path, model_type="dpt")
    with pytest.raises(CheckpointError, match="describes Depth Anything V2, relative .* holds "
                                              "Depth Pro weights"):
        load_checkpoint(path, config=DepthAnythingConfig.tiny())


def test_wrong_keys_and_shapes_are_listed(da_reference, tmp_path):
    state = dict(da_reference["original_state"])
    del state["depth_head.scratch.output_conv1.bias"]
    state["depth_head.scratch.extra.weight"] = torch.zeros(1)
    state["depth_head.projects.0.weight"] = torch.zeros(9, 32, 1, 1)
    path = save_original_da(state, tmp_path / "broken.pth", da_reference["config"].prompt)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, config=da_reference["config"])
    message = str(info.value)
    assert "broken.pth" in message and "weights do not fit the" in message
    assert "1 missing: depth_head.scratch.output_conv1.bias" in message
    assert "1 unexpected: depth_head.scratch.extra.weight" in message
    assert "1 wrong shape: depth_head.projects.0.weight (9, 32, 1, 1) != (8, 32, 1, 1)" in message


def test_prompt_layers_against_a_v2_config(tmp_path):
    state = create_depth_anything(DepthAnythingConfig.tiny(prompt=True)).state_dict()
    path = save_original_da(state, tmp_path / "promptda.ckpt", prompt=True)
    with pytest.raises(CheckpointError, match=r"unexpected: depth_head\.scratch\.refinenet"
                                              r"\d\.resConfUnit_depth"):
        load_checkpoint(path, config=DepthAnythingConfig.tiny())


def test_prompt_ckpt_with_other_normalisation(tmp_path):
    state = create_depth_anything(DepthAnythingConfig.tiny(prompt=True)).state_dict()
    path = save_original_da(state, tmp_path / "promptda.ckpt", prompt=True)
    ckpt = torch.load(path, weights_only=True)
    ckpt["state_dict"]["pipeline._std"] = torch.ones(1, 3, 1, 1)
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="_std = .* is not the ImageNet normalisation"):
        load_checkpoint(path, config=DepthAnythingConfig.tiny(prompt=True))


def test_hf_depth_anything_problems(da_reference, tmp_path):
    folder = tmp_path / "hf"
    shutil.copytree(da_reference["paths"]["hf_older"], folder)
    config_file = folder / "config.json"
    good = json.loads(config_file.read_text())
    config_file.unlink()
    with pytest.raises(CheckpointError, match="config.json not found"):
        load_checkpoint(folder)
    for change, message in [
        ({"reassemble_factors": [4, 2, 1, 1]}, r"reassemble_factors=\[4, 2, 1, 1\] is not "
                                               r"supported"),
        ({"model_type": "depth_pro"}, "says model_type 'depth_pro' but the tensors are "
                                      "Depth Anything's"),
        ({"model_type": "zoedepth"}, "says model_type 'zoedepth'"),
        ({"head_in_index": 2}, "head_in_index=2 is not supported"),
    ]:
        config_file.write_text(json.dumps({**good, **change}))
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(folder)
    backbone = {**good["backbone_config"], "out_indices": [0, 1, 2, 3]}
    backbone.pop("out_features", None)
    config_file.write_text(json.dumps({**good, "backbone_config": backbone}))
    with pytest.raises(CheckpointError, match="out_indices must be 4 transformer stages"):
        load_checkpoint(folder)
    # A missing model_type is read from the tensors.
    config_file.write_text(json.dumps({k: v for k, v in good.items() if k != "model_type"}))
    assert load_checkpoint(folder).config == da_reference["config"]


def test_hf_weights_without_their_config(da_reference, tmp_path):
    path = tmp_path / "hf_state.pth"
    torch.save(da_reference["hf_model"].state_dict(), path)
    with pytest.raises(CheckpointError, match="need their config.json"):
        load_checkpoint(path)


def test_config_from_a_released_style_config_json():
    """The released configs leave transformers' defaults out (diff-only serialisation)."""
    small = {
        "model_type": "depth_anything", "patch_size": 14, "reassemble_hidden_size": 384,
        "neck_hidden_sizes": [48, 96, 192, 384], "fusion_hidden_size": 64,
        "reassemble_factors": [4, 2, 1, 0.5], "head_in_index": -1,
        "backbone_config": {"model_type": "dinov2", "hidden_size": 384, "image_size": 518,
                            "num_attention_heads": 6, "patch_size": 14,
                            "out_indices": [3, 6, 9, 12], "reshape_hidden_states": False},
    }
    assert config_from_hf(small) == DepthAnythingConfig.vits()
    indoor = {**small, "depth_estimation_type": "metric", "max_depth": 20}
    assert config_from_hf(indoor) == DepthAnythingConfig.vits(head="metric", max_depth=20.0)
    large_prompt = {
        "model_type": "prompt_depth_anything", "reassemble_hidden_size": 1024,
        "neck_hidden_sizes": [256, 512, 1024, 1024], "fusion_hidden_size": 256,
        "depth_estimation_type": "metric", "max_depth": None,
        "backbone_config": {"model_type": "dinov2", "hidden_size": 1024, "image_size": 518,
                            "num_hidden_layers": 24, "num_attention_heads": 16,
                            "out_features": ["stage5", "stage12", "stage18", "stage24"]},
    }
    assert config_from_hf(large_prompt) == DepthAnythingConfig.vitl(prompt=True)
    with pytest.raises(ValueError, match="use_swiglu_ffn=True is not supported"):
        config_from_hf({**small, "backbone_config": {**small["backbone_config"],
                                                     "use_swiglu_ffn": True}})
    with pytest.raises(ValueError, match="model_type 'dpt' is not one of"):
        config_from_hf({**small, "model_type": "dpt"})
