"""Loading and saving Depth Pro weights in the three layouts the project accepts.

1. Apple's ``depth_pro.pt``: a plain state dict with the released architecture.
2. Hugging Face ``DepthProForDepthEstimation``: ``model.safetensors`` (or shards) with
   ``config.json``, given as the folder or the ``.safetensors`` file inside it.
3. The project's own ``{"format", "config", "state_dict"}`` file (small test models).

The model is built on the ``meta`` device and the tensors are assigned into it, so loading
never holds two copies of the weights; ``torch.load`` memory-maps the file.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .config import DepthProConfig, parse_precision
from .hf_layout import config_from_hf, hf_to_apple_state_dict
from .network import DepthPro, create_model

PROJECT_FORMAT = "depth_pro_ros"
_SHOWN = 5  # keys listed per category in a mismatch message


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file and the problem."""


def load_checkpoint(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    precision: str | torch.dtype = torch.float32,
    config: DepthProConfig | None = None,
) -> DepthPro:
    """Load weights from any accepted layout into a model on ``device`` in ``precision``.

    ``config`` overrides the architecture for plain state dicts (Apple's layout), which
    carry none; by default those are taken to be the released Depth Pro.
    """
    path = Path(path).expanduser()
    dtype = parse_precision(precision)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path}: no such file or folder")
    if path.is_dir() or path.suffix == ".safetensors":
        state, found_config = _read_hf(path)
    else:
        state, found_config = _read_torch_file(path)
    if config is None:
        config = found_config or DepthProConfig.depth_pro()
    return _build(path, state, config, device, dtype)


def save_checkpoint(model: DepthPro, path: str | os.PathLike) -> Path:
    """Save ``model`` in the project's own format (config + state dict), atomically."""
    path = Path(path)
    payload = {
        "format": PROJECT_FORMAT,
        "version": 1,
        "config": model.config.to_dict(),
        "state_dict": model.state_dict(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _read_torch_file(path: Path) -> tuple[dict[str, torch.Tensor], DepthProConfig | None]:
    obj = _torch_load(path)
    if isinstance(obj, Mapping) and "state_dict" in obj and "config" in obj:
        try:
            config = DepthProConfig.from_dict(dict(obj["config"]))
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"checkpoint {path}: its config cannot be built: {exc}") from None
        return _tensor_dict(path, obj["state_dict"]), config
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]  # training checkpoints often nest the weights
    return _tensor_dict(path, obj), None


def _torch_load(path: Path) -> Any:
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path}: the file is empty")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (RuntimeError, zipfile.BadZipFile, pickle.UnpicklingError, EOFError, ValueError) as exc:
        if zipfile.is_zipfile(path) or _looks_like_zip(path):
            reason = "truncated or corrupt (the archive cannot be read)"
        else:
            reason = "not a PyTorch checkpoint"
        raise CheckpointError(f"checkpoint {path}: {reason}: {_first_line(exc)}") from None


def _looks_like_zip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _tensor_dict(path: Path, obj: Any) -> dict[str, torch.Tensor]:
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(
            f"checkpoint {path}: not a checkpoint (expected a state dict of tensors, "
            f"found {type(obj).__name__})"
        )
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(
            f"checkpoint {path}: not a state dict: entries that are not tensors: {bad[:_SHOWN]}"
        )
    return dict(obj)


def _read_hf(path: Path) -> tuple[dict[str, torch.Tensor], DepthProConfig]:
    folder = path if path.is_dir() else path.parent
    if path.is_dir():
        index = folder / "model.safetensors.index.json"
        if index.exists():
            files = sorted({folder / f for f in _read_json(index).get("weight_map", {}).values()})
        else:
            files = sorted(folder.glob("*.safetensors"))
        if not files:
            raise CheckpointError(f"checkpoint {path}: folder has no .safetensors file")
    else:
        files = [path]
    hf_state: dict[str, torch.Tensor] = {}
    for f in files:
        hf_state.update(_read_safetensors(f))
    state, unknown = hf_to_apple_state_dict(hf_state)
    if unknown:
        raise CheckpointError(
            f"checkpoint {path}: not a DepthProForDepthEstimation file; unknown tensors: "
            f"{unknown[:_SHOWN]}"
        )
    config_file = folder / "config.json"
    if not config_file.exists():
        raise CheckpointError(
            f"checkpoint {path}: config.json not found in {folder} (it describes the "
            "architecture of a Hugging Face checkpoint; keep it beside model.safetensors)"
        )
    has_fov = any(k.startswith("fov.") for k in state)
    try:
        config = config_from_hf(_read_json(config_file), has_fov)
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {config_file}: config cannot be built: {exc}") from None
    if not config.use_fov_head:
        state = {k: v for k, v in state.items() if not k.startswith("fov.")}
    return state, config


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint {path}: unreadable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint {path}: expected a JSON object")
    return data


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path)  # memory-mapped
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(
            f"checkpoint {path}: not a valid safetensors file (truncated or corrupt?): "
            f"{_first_line(exc)}"
        ) from None


def _build(
    path: Path,
    state: dict[str, torch.Tensor],
    config: DepthProConfig,
    device: str | torch.device,
    dtype: torch.dtype,
) -> DepthPro:
    model = create_model(config, device="meta", precision=dtype)
    expected = model.state_dict()
    _check_keys(path, state, expected, config)
    converted = {k: v.to(device=device, dtype=dtype) for k, v in state.items()}
    del state
    model.load_state_dict(converted, strict=True, assign=True)
    return model.eval()


def _check_keys(
    path: Path,
    state: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Tensor],
    config: DepthProConfig,
) -> None:
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if not (missing or unexpected or shapes):
        return
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        if items:
            more = f" (+{len(items) - _SHOWN} more)" if len(items) > _SHOWN else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:_SHOWN])}{more}")
    raise CheckpointError(
        f"checkpoint {path}: weights do not fit the Depth Pro model "
        f"(embed_dim={config.embed_dim}, depth={config.depth}, "
        f"use_fov_head={config.use_fov_head}): " + "; ".join(parts)
    )
