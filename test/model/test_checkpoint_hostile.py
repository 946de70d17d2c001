"""Hostile checkpoints: configs that declare absurd sizes or wrong types are refused before
anything is built or allocated, and pickles that hold code are named as such, never run."""

from __future__ import annotations

import json
import os
import pickle
import zipfile

import pytest
import torch
from harness.memory import traced_peak
from safetensors.torch import save_file

from depth_pro_ros.cli import main
from depth_pro_ros.model import (
    CheckpointError,
    DepthAnythingConfig,
    DepthProConfig,
    create_depth_anything,
    create_model,
    load_checkpoint,
)
from depth_pro_ros.model.common.errors import ConfigLimitError
from depth_pro_ros.model.common.limits import MAX_PARAMETERS

_BIG_PROBE = 64 << 20  # a refused config must not have allocated anywhere near this


def _refused(path, *says: str) -> str:
    """Load ``path``: one CheckpointError line that names every ``says``, with small peak
    memory (nothing was built)."""
    with traced_peak() as peak, pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and all(s in message for s in says), message
    assert peak.bytes < _BIG_PROBE, peak.bytes
    return message


def _project_file(path, model: str, config: dict) -> None:
    torch.save({"format": "depth_pro_ros", "version": 1, "model": model, "config": config,
                "state_dict": {"w": torch.zeros(1)}}, path)


_DP = DepthProConfig.depth_pro().to_dict()
_DA = DepthAnythingConfig.vitl().to_dict()
# Within every field's range, but 256 blocks of 8192 channels: 2e11 parameters.
_HUGE_DP = {**_DP, "embed_dim": 8192, "depth": 256, "num_heads": 256}


@pytest.mark.parametrize(("model", "config", "says"), [
    ("depth_pro", {**_DP, "embed_dim": 10**9}, "embed_dim = 1000000000"),
    ("depth_pro", {**_DP, "depth": 10**7}, "depth = 10000000"),
    ("depth_pro", {**_DP, "num_heads": True}, "num_heads = True: must be an integer"),
    ("depth_pro", {**_DP, "patch_size": 16.0}, "patch_size = 16.0: must be an integer"),
    ("depth_pro", {**_DP, "decoder_features": -256}, "decoder_features = -256"),
    ("depth_pro", {**_DP, "decoder_features": 0}, "decoder_features = 0"),
    ("depth_pro", {**_DP, "mlp_ratio": "4"}, "mlp_ratio = '4': must be a number"),
    ("depth_pro", {**_DP, "mlp_ratio": 1e9}, "mlp_ratio = 1000000000.0"),
    ("depth_pro", {**_DP, "encoder_dims": [256, 512, 2**40, 1024]}, "encoder_dims[2]"),
    ("depth_pro", {**_DP, "encoder_dims": 7}, "encoder_dims = 7"),
    ("depth_pro", {**_DP, "hook_block_ids": [5, [11]]}, "hook_block_ids[1]"),
    ("depth_pro", {**_DP, "use_fov_head": "yes"}, "use_fov_head = 'yes'"),
    ("depth_pro", _HUGE_DP, "parameters"),
    ("depth_anything", {**_DA, "embed_dim": 10**9}, "embed_dim = 1000000000"),
    ("depth_anything", {**_DA, "depth": 10**7}, "depth = 10000000"),
    ("depth_anything", {**_DA, "fusion_features": 2**30}, "fusion_features = 1073741824"),
    ("depth_anything", {**_DA, "pos_grid": 10**6}, "pos_grid = 1000000"),
    ("depth_anything", {**_DA, "head_features": None}, "head_features = None"),
    ("depth_anything", {**_DA, "neck_dims": [256, 512, 1024, 1e9]}, "neck_dims[3]"),
    ("depth_anything", {**_DA, "max_depth": float("inf")}, "max_depth = inf"),
    ("depth_anything", {**_DA, "prompt": 1}, "prompt = 1"),
], ids=lambda v: v if isinstance(v, str) and " " not in v else None)
def test_project_file_with_absurd_config_is_refused_before_building(tmp_path, model, config,
                                                                   says):
    path = tmp_path / "hostile.pt"
    _project_file(path, model, config)
    _refused(path, str(path), "config cannot be built", says)


def _hf_folder(folder, config: dict, keys: list[str]) -> None:
    folder.mkdir()
    save_file({k: torch.zeros(1) for k in keys}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config))


_DA_KEYS = ["backbone.embeddings.cls_token", "neck.convs.0.weight"]
_DA_HF = {"model_type": "depth_anything", "fusion_hidden_size": 64,
          "backbone_config": {"model_type": "dinov2", "hidden_size": 384,
                              "num_hidden_layers": 12, "num_attention_heads": 6,
                              "image_size": 518, "patch_size": 14,
                              "out_indices": [3, 6, 9, 12]}}
_DP_KEYS = ["depth_pro.encoder.patch_encoder.model.embeddings.cls_token"]
_VIT_HF = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
           "patch_size": 16, "image_size": 384}
_DP_HF = {"model_type": "depth_pro", "patch_model_config": _VIT_HF, "patch_size": 384,
          "intermediate_hook_ids": [11, 5], "intermediate_feature_dims": [256, 256],
          "scaled_images_feature_dims": [1024, 1024, 512], "fusion_hidden_size": 256,
          "use_fov_model": False}


def _backbone(**changes) -> dict:
    return {**_DA_HF, "backbone_config": {**_DA_HF["backbone_config"], **changes}}


@pytest.mark.parametrize(("config", "keys", "says"), [
    ({**_DA_HF, "fusion_hidden_size": 2**30}, _DA_KEYS,
     "fusion_features (config.json fusion_hidden_size) = 1073741824"),
    (_backbone(num_hidden_layers=10**7), _DA_KEYS,
     "depth (config.json backbone_config.num_hidden_layers) = 10000000"),
    (_backbone(hidden_size=384.0), _DA_KEYS, "embed_dim (config.json backbone_config"),
    (_backbone(num_attention_heads="6"), _DA_KEYS, "must be an integer"),
    (_backbone(patch_size=0), _DA_KEYS, "patch_size"),
    (_backbone(out_indices=[3.5, 6, 9, 12]), _DA_KEYS, "out_indices must be 4 integers"),
    (_backbone(out_indices=list(range(10**4))), _DA_KEYS, "out_indices must be 4 integers"),
    ({**_DA_HF, "neck_hidden_sizes": [48, 96, True, 384]}, _DA_KEYS, "neck_dims[2]"),
    ({**_DA_HF, "backbone_config": [1, 2]}, _DA_KEYS, "config cannot be built"),
    ({**_DP_HF, "fusion_hidden_size": 2**30}, _DP_KEYS,
     "decoder_features (config.json fusion_hidden_size) = 1073741824"),
    ({**_DP_HF, "patch_model_config": {**_VIT_HF, "num_hidden_layers": 10**7}}, _DP_KEYS,
     "depth (config.json patch_model_config.num_hidden_layers) = 10000000"),
    ({**_DP_HF, "patch_model_config": {**_VIT_HF, "hidden_size": False}}, _DP_KEYS,
     "embed_dim (config.json patch_model_config.hidden_size) = False"),
    ({**_DP_HF, "patch_model_config": "vit"}, _DP_KEYS, "config cannot be built"),
], ids=lambda v: None)
def test_hugging_face_config_with_absurd_sizes_is_refused(tmp_path, config, keys, says):
    folder = tmp_path / "hf"
    _hf_folder(folder, config, keys)
    _refused(folder, "config.json", says)


def test_every_released_architecture_is_within_the_limits():
    """The limits leave room for far larger networks than any release (ViT-G included),
    and the estimate the total bound uses is close to the real parameter count."""
    vitg = DepthAnythingConfig(embed_dim=1536, depth=40, num_heads=24,
                               hook_block_ids=(9, 19, 29, 39), neck_dims=(1536,) * 4,
                               fusion_features=384)
    assert vitg.parameter_estimate() < MAX_PARAMETERS / 5
    configs = [DepthProConfig.tiny(), DepthProConfig.small(False), DepthProConfig.depth_pro(),
               DepthAnythingConfig.tiny(prompt=True), DepthAnythingConfig.vits(),
               DepthAnythingConfig.vitl(prompt=True), vitg]
    for config in configs:
        create = create_model if isinstance(config, DepthProConfig) else create_depth_anything
        real = sum(t.numel() for t in create(config, device="meta").state_dict().values())
        assert 0.9 < config.parameter_estimate() / real < 1.1, (config, real)


def test_config_limit_error_names_field_value_and_limit():
    with pytest.raises(ConfigLimitError) as info:
        DepthProConfig(embed_dim=10**9)
    assert info.value.field == "embed_dim" and info.value.value == 10**9
    assert str(info.value) == "embed_dim = 1000000000: must be in 1..8192"


def test_cli_shows_an_absurd_config_as_one_line(tmp_path, capsys):
    path = tmp_path / "hostile.pt"
    _project_file(path, "depth_pro", {**_DP, "depth": 10**7})
    photo = tmp_path / "p.png"
    photo.write_bytes(b"unused")
    assert main(["image", str(photo), "--checkpoint", str(path), "--device", "cpu",
                 "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "depth = 10000000" in err and "Traceback" not in err, err


class _Evil:
    """Unpickling this runs a shell command that creates the file ``marker``."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _zip_pickle(path, payload: bytes, version: bool) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
        if version:
            archive.writestr("archive/version", "3\n")


@pytest.mark.parametrize("kind", ["zip", "zip_without_version", "zip_protocol_0", "legacy",
                                  "plain_pickle", "plain_pickle_protocol_0"])
def test_a_pickle_holding_code_is_named_and_never_run(tmp_path, kind):
    marker = tmp_path / "marker"
    evil = {"w": _Evil(marker)}
    path = tmp_path / "weights.pt"
    if kind == "zip":
        torch.save(evil, path)
    elif kind == "legacy":
        torch.save(evil, path, _use_new_zipfile_serialization=False)
    elif kind.startswith("zip_"):
        protocol = 0 if kind.endswith("0") else 2
        _zip_pickle(path, pickle.dumps(evil, protocol=protocol), version=protocol == 0)
    else:
        path.write_bytes(pickle.dumps(evil, protocol=0 if kind.endswith("0") else 2))
    message = _refused(path, str(path), "code or objects that a weights file must not hold",
                       "system")
    assert "truncated" not in message
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["huge", "deep"])
def test_an_oversized_or_too_deep_config_json_is_one_line(tmp_path, kind):
    folder = tmp_path / "hf"
    _hf_folder(folder, {}, _DA_KEYS)
    config = folder / "config.json"
    if kind == "huge":  # sparse: no disk used, and never read
        config.write_text("{}")
        os.truncate(config, 1 << 30)
        _refused(folder, "config.json: 1,073,741,824 bytes, far more than a config")
    else:
        config.write_text("[" * 100_000 + "]" * 100_000)
        _refused(folder, "config.json: unreadable JSON")


@pytest.mark.parametrize("kind", ["fifo_file", "fifo_config", "fifo_shard", "device",
                                  "index_list", "index_escapes"])
def test_what_is_not_a_regular_file_is_refused_without_blocking(tmp_path, kind):
    """A FIFO would block the first read forever; stat tells it apart without opening."""
    folder = tmp_path / "hf"
    _hf_folder(folder, _DA_HF, _DA_KEYS)
    target, says = folder, "not a regular file"
    if kind == "fifo_file":
        target = tmp_path / "weights.pt"
        os.mkfifo(target)
    elif kind == "fifo_config":
        (folder / "config.json").unlink()
        os.mkfifo(folder / "config.json")
    elif kind == "fifo_shard":
        os.mkfifo(folder / "model-00002.safetensors")
        (folder / "model.safetensors.index.json").write_text(json.dumps(
            {"weight_map": {"a": "model.safetensors", "b": "model-00002.safetensors"}}))
    elif kind == "device":
        target = tmp_path / "weights.pt"
        os.symlink("/dev/zero", target)
    else:
        names = [1, 2] if kind == "index_list" else {"a": "../../etc/passwd"}
        (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": names}))
        says = "weight_map must map tensor names to shard file names"
    _refused(target, says)
