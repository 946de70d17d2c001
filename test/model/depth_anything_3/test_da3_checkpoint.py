"""Depth Anything 3 checkpoints in the released layout (a Hugging Face folder as the
package's ``PyTorchModelHubMixin`` writes it: ``config.json`` naming the preset,
``model.safetensors`` by safetensors' ``save_model`` with the network under ``model.``),
written from the released package's own network, and the loader's strict errors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from da3_reference import build_reference
from safetensors.torch import load_file, save_file, save_model

from depth_pro_ros.model import CheckpointError, load_checkpoint
from depth_pro_ros.model.depth_anything_3.config import preset

pytest.importorskip("depth_anything_3.model.da3")


class _Released(torch.nn.Module):
    """The package's ``DepthAnything3``: its network under ``model``."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.model = net


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """A DA3-SMALL folder (random weights of the real architecture) and the network."""
    net = build_reference(preset("da3-small"))
    folder = tmp_path_factory.mktemp("da3_small")
    save_model(_Released(net), str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model_name": "da3-small"}, indent=2))
    return folder, net


def _folder(tmp_path, config: dict, tensors: dict):
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "config.json").write_text(json.dumps(config))
    save_file(tensors, tmp_path / "model.safetensors")
    return tmp_path


def test_released_folder_loads_as_its_preset(released):
    folder, net = released
    for path in (folder, folder / "model.safetensors"):
        model = load_checkpoint(path, model_type="depth_anything_3")
        assert model.config == preset("da3-small")
    ours, theirs = model.state_dict(), net.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    with pytest.raises(CheckpointError, match="model_type 'depth_anything_3_mono' .* "
                       r"contradicts config.json: Depth Anything 3 \(small, any-view\)"):
        load_checkpoint(folder, model_type="depth_anything_3_mono")


@pytest.mark.parametrize(("change", "message"), [
    ("drop", r"weights do not fit the Depth Anything 3 \(small, any-view\) model .*1 missing: "
             "head.norm.weight"),
    ("shape", "1 wrong shape: head.norm.bias"),
    ("foreign", r"not a released Depth Anything 3 model.safetensors .* \['extra'\]"),
], ids=["missing", "shape", "foreign"])
def test_damaged_release_is_refused(released, tmp_path, change, message):
    tensors = load_file(released[0] / "model.safetensors")
    if change == "drop":
        del tensors["model.head.norm.weight"]
    elif change == "shape":
        tensors["model.head.norm.bias"] = torch.zeros(3)
    else:
        tensors["extra"] = torch.zeros(1)
    folder = _folder(tmp_path / "f", {"model_name": "da3-small"}, tensors)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(folder)


TINY = {"model.backbone.pretrained.cls_token": torch.zeros(1, 1, 4),
        "model.head.norm.weight": torch.zeros(4)}


@pytest.mark.parametrize(("config", "message"), [
    ({"model_name": "da3-huge"}, "model_name 'da3-huge' is not a Depth Anything 3 preset; "
                                 "config.json must name one of da3-small, da3-base"),
    ({}, "model_name None is not a Depth Anything 3 preset"),
    ({"model_name": "da3nested-giant-large"}, "is two networks"),
    ({"model_name": "da3metric-large"}, r"the Depth Anything 3 \(large, metric\) model"),
    ({"model_name": "da3mono-large", "extra": 1}, r"Depth Anything 3 \(large, monocular\)"),
], ids=["unknown", "none", "nested", "metric", "mono"])
def test_config_names_the_preset(tmp_path, config, message):
    folder = _folder(tmp_path, config, TINY)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(folder)


def test_lone_file_is_told_by_its_tensors(released, tmp_path):
    """Without config.json: an any-view release by its ViT's width; a DPT-head file needs
    model_type (DA3MONO and DA3METRIC have the same tensors)."""
    lone = shutil.copy(released[0] / "model.safetensors", tmp_path / "model.safetensors")
    assert load_checkpoint(lone).config == preset("da3-small")
    dpt = tmp_path / "dpt" / "model.safetensors"
    dpt.parent.mkdir()
    save_file(TINY, dpt)
    with pytest.raises(CheckpointError, match="have the same tensors: keep config.json "
                       "beside the file, or set model_type depth_anything_3_mono"):
        load_checkpoint(dpt)
    with pytest.raises(CheckpointError, match=r"Depth Anything 3 \(large, metric\) model"):
        load_checkpoint(dpt, model_type="depth_anything_3_metric")
