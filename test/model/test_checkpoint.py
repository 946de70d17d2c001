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
    """Loading maps the file and reads no weight: the peak resident memory while loading
    grows by the Python objects and the meta model only (7 MiB for this 169 MiB file; a
    copy of the weights would be the whole file). 10 % leaves room for the allocator."""
    config = DepthProConfig(
        embed_dim=384, depth=8, num_heads=6, patch_size=4, vit_image_size=96,
        hook_block_ids=(1, 3), encoder_dims=(32, 64, 128, 128), decoder_features=32,
    )
    path = save_checkpoint(create_model(config), tmp_path / "medium.pt")
    size_mb = path.stat().st_size / 2**20
    script = textwrap.dedent(
        """
        import sys, torch
        from depth_pro_ros.model import load_checkpoint
        def kib(field):
            with open("/proc/self/status") as f:
                return next(int(line.split()[1]) for line in f if line.startswith(field))
        before = kib("VmRSS:")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # the peak (VmHWM) starts again from the present resident set
        model = load_checkpoint(sys.argv[1])
        print((kib("VmHWM:") - before) / 1024)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(path)], check=True, capture_output=True, text=True
    )
    growth_mb = float(out.stdout.strip().splitlines()[-1])
    assert size_mb > 100
    assert growth_mb < 0.1 * size_mb, (growth_mb, size_mb)


def test_missing_file_says_where_to_get_weights_and_the_stand_in(tmp_path, monkeypatch):
    """One message, whoever asks (node, bag tool, image command, demo)."""
    from depth_pro_ros.model.weights import missing_checkpoint_message

    monkeypatch.delenv("DEPTH_PRO_CHECKPOINT", raising=False)
    path = tmp_path / "missing.pt"
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message == missing_checkpoint_message(path)
    assert message.startswith(f"checkpoint {path}: no such file or folder")
    for part in ("https://ml-site.cdn-apple.com/models/depth-pro/depth_pro.pt",
                 "apple/DepthPro-hf", "Depth Anything V2", "Prompt Depth Anything",
                 "~/.cache/depth_pro_ros/depth_pro.pt", "$DEPTH_PRO_CHECKPOINT",
                 "--checkpoint PATH", "checkpoint:=PATH",
                 "depth-pro-ros checkpoint --random tiny -o tiny.pt", "meaningless"):
        assert part in message, part


def test_download_failure_names_the_stand_in(tmp_path):
    from depth_pro_ros.model.weights import DownloadError, download_weights

    with pytest.raises(DownloadError) as info:
        download_weights(tmp_path / "w.pt", url=(tmp_path / "absent.pt").as_uri(),
                         progress=False)
    assert "depth-pro-ros checkpoint --random tiny -o tiny.pt" in str(info.value)


def _whole_module(path):
    torch.manual_seed(0)
    torch.save(create_model(DepthProConfig.tiny()), path)


def _legacy_whole_module(path):
    torch.manual_seed(0)
    torch.save(create_model(DepthProConfig.tiny()), path, _use_new_zipfile_serialization=False)


def _jpeg(path):
    import cv2
    import numpy as np

    cv2.imwrite(str(path.with_suffix(".jpg")), np.zeros((8, 8, 3), np.uint8))
    path.with_suffix(".jpg").rename(path)


def _torchscript(path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated
        torch.jit.script(torch.nn.Linear(2, 2)).save(str(path))


def _namespace(path):
    import argparse

    torch.save({"state_dict": {"w": torch.zeros(2)}, "args": argparse.Namespace(lr=1)}, path)


def _plain_pickle(path):
    import pickle

    path.write_bytes(pickle.dumps({"w": [1.0, 2.0]}, protocol=2))


def _zip(path):
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "hello")


def _safetensors(path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(path))


@pytest.mark.parametrize(("write", "says"), [
    (_whole_module, "holds a pickled whole torch module "
                    "(depth_pro_ros.model.depth_pro.network.DepthPro), written by "
                    "torch.save(model), not a state dict: save model.state_dict() instead"),
    (_legacy_whole_module, "holds a pickled whole torch module "
                           "(depth_pro_ros.model.depth_pro.network.DepthPro)"),
    (_jpeg, "is a JPEG image, not a checkpoint: expected Apple's depth_pro.pt, a Depth "
            "Anything .pth / .ckpt, a Hugging Face folder"),
    (lambda p: p.write_bytes(bytes(range(256)) * 40),
     "is not a PyTorch checkpoint (neither a torch.save zip nor pickle) nor a safetensors "
     "file: expected Apple's depth_pro.pt"),
    (lambda p: p.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:ab\n"),
     "is a Git LFS pointer, not the weights it stands for: fetch the file itself"),
    (lambda p: p.write_text("<!DOCTYPE html><html><body>Sign in</body></html>"),
     "is an HTML page, not the weights"),
    (_torchscript, "is a TorchScript program (torch.jit.save), not a state dict"),
    (_namespace, "holds Python objects besides tensors (argparse.Namespace), which are not "
                 "loaded"),
    (_plain_pickle, "is a plain Python pickle, not a PyTorch checkpoint"),
    (_zip, "is a zip archive but not a PyTorch checkpoint (it has no data.pkl)"),
    (_safetensors, "is a safetensors file under another name: name it model.safetensors"),
], ids=["whole_module", "legacy_whole_module", "jpeg", "garbage", "lfs_pointer", "html",
        "torchscript", "other_objects", "plain_pickle", "zip", "safetensors_named_pt"])
def test_each_kind_of_foreign_file_gets_one_plain_sentence(tmp_path, write, says):
    path = tmp_path / "weights.pt"
    write(path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"checkpoint {path} ") and says in message, message
    assert "\n" not in message and "\x1b" not in message
    for internal in ("mmap", "weights_only", "Weights only", "_use_new_zipfile", "enforce fail",
                     "PytorchStreamReader", "Unsupported global"):
        assert internal not in message, message


@pytest.mark.parametrize(("write", "says"), [
    (_jpeg, "is a JPEG image, not a checkpoint"),
    (_whole_module, "is a PyTorch file, not safetensors: give it a .pt name"),
    (lambda p: p.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": 1"),
     "is not a valid safetensors file (truncated or corrupt?)"),
])
def test_a_foreign_safetensors_file_says_what_it_is(tmp_path, write, says):
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    path = folder / "model.safetensors"
    write(path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(info.value).startswith(f"checkpoint {path} {says}"), str(info.value)
    assert "\x1b" not in str(info.value) and "HeaderTooLarge" not in str(info.value)


def test_legacy_format_state_dict_loads(tiny_model, tmp_path):
    """torch.save's pre-1.6 (non-zip) format cannot be memory-mapped; it is read whole."""
    path = tmp_path / "legacy.pt"
    torch.save(tiny_model.state_dict(), path, _use_new_zipfile_serialization=False)
    loaded = load_checkpoint(path, config=tiny_model.config)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(),
                                                 tiny_model.state_dict().values()))


def test_saved_checkpoint_permissions_follow_the_umask(tiny_model, tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        path = save_checkpoint(tiny_model, tmp_path / "shared.pt")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["shared.pt"]  # no partial file left


def test_checkpoint_sha256_names_the_weights_whatever_the_path(tmp_path):
    """A file hashes to its bytes' SHA-256; a folder to its files' relative names and
    bytes, so a copy elsewhere hashes the same and a renamed or changed file does not."""
    import hashlib

    from depth_pro_ros.model.weights import checkpoint_files, checkpoint_sha256

    single = tmp_path / "w.pt"
    single.write_bytes(b"weights")
    assert checkpoint_sha256(single) == hashlib.sha256(b"weights").hexdigest()
    folder = tmp_path / "hf"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "sub" / "model.safetensors").write_bytes(b"tensors")
    assert checkpoint_files(folder) == [folder / "config.json",
                                        folder / "sub" / "model.safetensors"]
    expected = hashlib.sha256(b"config.json\0{}sub/model.safetensors\0tensors").hexdigest()
    assert checkpoint_sha256(folder) == expected
    copy = shutil.copytree(folder, tmp_path / "elsewhere")
    assert checkpoint_sha256(copy) == expected
    (copy / "config.json").rename(copy / "other.json")
    assert checkpoint_sha256(copy) != expected
