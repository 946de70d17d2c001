"""Loading every accepted layout, and one clear error for each kind of bad checkpoint."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

from depth_pro_ros.model import (
    CheckpointError,
    DepthProConfig,
    create_model,
    load_checkpoint,
    save_checkpoint,
)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return create_model(DepthProConfig.tiny())


def test_project_format_round_trip(tiny_model, tmp_path):
    path = save_checkpoint(tiny_model, tmp_path / "tiny.pt")
    assert not list(tmp_path.glob("*.partial"))
    loaded = load_checkpoint(path)
    assert loaded.config == tiny_model.config
    for (k, a), (_, b) in zip(tiny_model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    assert not loaded.training


def test_fp16_apple_file_loads_in_requested_precision(tiny_model, tmp_path):
    path = tmp_path / "half.pt"
    torch.save({k: v.half() for k, v in tiny_model.state_dict().items()}, path)
    model = load_checkpoint(path, precision="fp32", config=tiny_model.config)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    ref = tiny_model.state_dict()["encoder.patch_encoder.blocks.0.attn.qkv.weight"]
    got = model.state_dict()["encoder.patch_encoder.blocks.0.attn.qkv.weight"]
    assert torch.equal(got, ref.half().float())
    model16 = load_checkpoint(path, precision="bf16", config=tiny_model.config)
    assert all(p.dtype == torch.bfloat16 for p in model16.parameters())


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"missing\.pt: no such file"):
        load_checkpoint(tmp_path / "missing.pt")


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "the file is empty"),
        (b"hello, I am a text file\n", "not a PyTorch checkpoint"),
        (bytes(range(256)) * 40, "not a PyTorch checkpoint"),
    ],
)
def test_not_a_checkpoint(tmp_path, content, reason):
    path = tmp_path / "weights.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=reason) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_pickle_of_something_else(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="not a checkpoint .*found list"):
        load_checkpoint(path)
    torch.save({"epoch": 3, "lr": 0.1}, path)
    with pytest.raises(CheckpointError, match="not a state dict"):
        load_checkpoint(path)


def test_truncated_file(tiny_model, tmp_path):
    good = save_checkpoint(tiny_model, tmp_path / "good.pt")
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        load_checkpoint(cut)
    assert "cut.pt" in str(info.value)


def test_wrong_model_lists_keys(tiny_model, tmp_path):
    path = tmp_path / "tiny_plain.pt"
    torch.save(tiny_model.state_dict(), path)
    # A plain state dict is taken to be the released model: every shape is wrong.
    with pytest.raises(CheckpointError, match=r"wrong shape: encoder\.patch_encoder\.cls_token"):
        load_checkpoint(path)
    state = dict(tiny_model.state_dict())
    del state["head.4.bias"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, config=tiny_model.config)
    message = str(info.value)
    assert "1 missing: head.4.bias" in message and "1 unexpected: extra.weight" in message
    # The FoV weights of a model without FoV head are unexpected too.
    with pytest.raises(CheckpointError, match=r"unexpected: fov\."):
        load_checkpoint(path, config=DepthProConfig.tiny(use_fov_head=False))


def test_config_that_cannot_be_built(tiny_model, tmp_path):
    path = tmp_path / "bad_config.pt"
    config = tiny_model.config.to_dict() | {"num_heads": 5}
    torch.save({"config": config, "state_dict": tiny_model.state_dict()}, path)
    with pytest.raises(CheckpointError, match="config cannot be built: .*num_heads"):
        load_checkpoint(path)


def test_hf_folder_problems(reference, tmp_path):
    folder = tmp_path / "hf"
    shutil.copytree(reference["paths"]["hf_older"], folder)
    (folder / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json not found"):
        load_checkpoint(folder)
    shutil.copy(reference["paths"]["hf_older"] / "config.json", folder / "config.json")
    config = json.loads((folder / "config.json").read_text())
    config["num_fov_head_layers"] = 3
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="num_fov_head_layers=3"):
        load_checkpoint(folder)
    shutil.copy(reference["paths"]["hf_older"] / "config.json", folder / "config.json")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_checkpoint(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="no .safetensors file"):
        load_checkpoint(empty)


def test_hf_without_fov_flag_drops_fov_weights(reference, tmp_path):
    folder = tmp_path / "hf"
    shutil.copytree(reference["paths"]["hf_older"], folder)
    config = json.loads((folder / "config.json").read_text())
    config["use_fov_model"] = False
    (folder / "config.json").write_text(json.dumps(config))
    model = load_checkpoint(folder)
    assert model.fov is None and not model.config.use_fov_head


def test_loading_keeps_one_copy_of_the_weights(tmp_path):
    """Peak memory while loading stays near one copy of the file, not two."""
    config = DepthProConfig(
        embed_dim=384, depth=8, num_heads=6, patch_size=4, vit_image_size=96,
        hook_block_ids=(1, 3), encoder_dims=(32, 64, 128, 128), decoder_features=32,
    )
    path = save_checkpoint(create_model(config), tmp_path / "medium.pt")
    size_mb = path.stat().st_size / 2**20
    script = textwrap.dedent(
        """
        import resource, sys, torch
        from depth_pro_ros.model import load_checkpoint
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        model = load_checkpoint(sys.argv[1])
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print((after - before) / 1024)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(path)], check=True, capture_output=True, text=True
    )
    growth_mb = float(out.stdout.strip().splitlines()[-1])
    assert size_mb > 100
    assert growth_mb < 1.3 * size_mb, (growth_mb, size_mb)
