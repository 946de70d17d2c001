"""Loading and saving the weights of any family in every layout the project accepts.

The family is detected from the file, never from a flag; this module reads the file and
asks each family of the registry (:mod:`.registry`) in turn whether it is theirs:

1. Plain state dicts (``.pt``, ``.pth``, Lightning ``.ckpt`` with a ``state_dict``,
   training files that nest a ``model``): Apple's ``depth_pro.pt``, the original Depth
   Anything releases (see each family's ``read_state``).
2. Hugging Face folders: ``model.safetensors`` (or shards) with ``config.json``, given as
   the folder or the ``.safetensors`` file inside it (each family's ``claims_hf`` /
   ``read_hf``).
3. The project's own ``{"format", "model", "config", "state_dict"}`` file (``model`` is
   the family; a missing one means Depth Pro, as in files written before Depth Anything
   existed).

The model is built on the ``meta`` device and the tensors are assigned into it, so loading
never holds two copies of the weights; ``torch.load`` memory-maps the file.
"""

from __future__ import annotations

import json
import os
import pickle
import secrets
import stat
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch

from . import file_kinds, registry
from .common.config import DictConfig, parse_precision
from .common.errors import CheckpointError
from .common.family import Family, ModelType
from .common.vit import split_qkv
from .registry import MODEL_TYPES
from .weights import missing_checkpoint_message

if TYPE_CHECKING:
    from torch import nn

__all__ = ["MODEL_TYPES", "PROJECT_FORMAT", "CheckpointError", "load_checkpoint",
           "save_checkpoint"]

PROJECT_FORMAT = "depth_pro_ros"
_SHOWN = 5  # keys listed per category in a mismatch message
_DEPTH_PRO = "depth_pro"  # the family of project files written before families existed
_MAX_JSON_BYTES = 16 << 20  # config.json and the shard index are a few kB


class _Found(NamedTuple):
    """What a file holds: weights in the network's names, their family, and the
    architecture the file states (None for plain state dicts)."""

    state: dict[str, torch.Tensor]
    family: Family
    config: DictConfig | None  # the family's config; None for a plain state dict
    config_source: str  # where ``config`` came from, for messages


def load_checkpoint(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    precision: str | torch.dtype = torch.float32,
    config: DictConfig | None = None,
    model_type: str | None = None,
) -> nn.Module:
    """Load weights from any accepted layout into a model on ``device`` in ``precision``.

    Returns the network of whichever family the file holds (a :class:`DepthPro` or a
    :class:`DepthAnything`). ``config`` (a config of the file's family) overrides the
    architecture. Plain state dicts carry none: Apple's file is taken to be the released
    Depth Pro, an original Depth Anything file gets its variant from the tensor shapes
    (released variants only) and relative / metric from its name (``metric`` with
    ``hypersim`` / ``indoor``: 20 m, with ``vkitti`` / ``outdoor``: 80 m). ``model_type``
    (one of :data:`MODEL_TYPES`; None or ``auto``: detect) replaces that name guess; a
    model type that contradicts the file's weights or config (or ``config``) is a
    :class:`CheckpointError`.

    Raises:
        CheckpointError: a missing, unreadable, foreign or contradicted checkpoint.
        ValueError: an unknown ``model_type`` or precision.
    """
    wanted = registry.model_type(model_type)
    path = Path(path).expanduser()
    dtype = parse_precision(precision)
    if config is not None and not isinstance(config, registry.config_classes()):
        names = " or a ".join(c.__name__ for c in registry.config_classes())
        raise TypeError(f"config must be a {names}, got {type(config).__name__}")
    if not path.exists():
        raise CheckpointError(missing_checkpoint_message(path))
    if not path.is_dir():
        _check_regular(path)
    if path.is_dir() or path.suffix == ".safetensors":
        found = _read_hf(path)
    else:
        found = _read_torch_file(path)
    if config is not None:
        if registry.family_of(config) is not found.family:
            raise CheckpointError(
                f"checkpoint {path}: the config given describes {registry.describe(config)}, "
                f"but the file holds {found.family.text} weights"
            )
        source = "the config given"
    else:  # a plain state dict carries none: its family makes out the architecture
        config = found.config or found.family.plain_config(path, found.state, wanted)
        source = found.config_source
    _check_model_type(path, wanted, config, source)
    return _build(path, found.state, found.family, config, device, dtype)


def save_checkpoint(model: nn.Module, path: str | os.PathLike) -> Path:
    """Save ``model`` in the project's own format (family, config, state dict), atomically."""
    family = next((f for f in registry.families() if isinstance(model, f.network_class)), None)
    if family is None:
        raise TypeError(f"not a model of this project: {type(model).__name__}")
    path = Path(path)
    payload = {
        "format": PROJECT_FORMAT,
        "version": 1,
        "model": family.name,
        "config": model.config.to_dict(),
        "state_dict": model.state_dict(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_partial_file(path)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _new_partial_file(path: Path) -> Path:
    """A new empty file beside ``path`` with the permissions the umask gives (mkstemp's
    0600 would hide the checkpoint from the other users of a robot)."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.partial")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def _check_model_type(path: Path, model_type: ModelType | None, config: DictConfig,
                      source: str) -> None:
    """Refuse a model type that contradicts ``config`` (what the file or caller says)."""
    if model_type is None:
        return
    if registry.family_of(config).name != model_type.family or not model_type.agrees(config):
        raise CheckpointError(
            f"checkpoint {path}: model_type {model_type.name!r} ({model_type.text}) "
            f"contradicts {source}: {registry.describe(config)}"
        )


def _read_torch_file(path: Path) -> _Found:
    obj = _torch_load(path)
    if isinstance(obj, Mapping) and "state_dict" in obj and "config" in obj:
        name = obj.get("model", _DEPTH_PRO)
        if name not in registry.FAMILIES:
            raise CheckpointError(
                f"checkpoint {path}: unknown model {name!r} in a project file (expected "
                f"{' or '.join(registry.FAMILIES)})"
            )
        family = registry.family(name)
        try:
            config = family.config_class.from_dict(dict(obj["config"]))
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"checkpoint {path}: its config cannot be built: {exc}") from None
        return _Found(_tensor_dict(path, obj["state_dict"]), family, config, "its stored config")
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]  # Lightning checkpoints (Prompt Depth Anything's .ckpt)
    elif isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]  # training checkpoints often nest the weights
    state = _tensor_dict(path, obj)
    for family in registry.families():
        read = family.read_state(path, state)
        if read is not None:
            return _Found(read, family, None, "its weights")
    raise CheckpointError(f"checkpoint {path}: no model family knows these weights")


def _torch_load(path: Path) -> Any:
    """``torch.load`` (tensors only, memory-mapped when possible); each way a file can fail
    to be a checkpoint is told in one sentence that names the file (``file_kinds``)."""
    problem = file_kinds.torch_file_problem(path)
    if problem is not None:
        raise CheckpointError(problem)
    try:
        return torch.load(path, map_location="cpu", weights_only=True,  # legacy: no mmap
                          mmap=file_kinds.is_zip(file_kinds.read_head(path)))
    except pickle.UnpicklingError:  # weights_only refuses any object but tensors
        raise CheckpointError(file_kinds.refused_objects_message(path)) from None
    except (RuntimeError, zipfile.BadZipFile, EOFError, ValueError, OSError):
        # torch fails some files for their layout before it reads their pickle (a zip
        # without a version record): a pickle that names code is still said to be one.
        if file_kinds.unsafe_globals(path):
            raise CheckpointError(file_kinds.refused_objects_message(path)) from None
        raise CheckpointError(file_kinds.truncated_message(path)) from None


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


def _read_hf(path: Path) -> _Found:
    folder = path if path.is_dir() else path.parent
    if path.is_dir():
        index = folder / "model.safetensors.index.json"
        if index.exists():
            files = _shards(index, _read_json(index).get("weight_map"))
        else:
            files = sorted(folder.glob("*.safetensors"))
        if not files:
            raise CheckpointError(f"checkpoint {path}: folder has no .safetensors file")
    else:
        files = [path]
    hf_state: dict[str, torch.Tensor] = {}
    for f in files:
        hf_state.update(_read_safetensors(f))
    config_file = folder / "config.json"
    if not config_file.exists():
        for family in registry.families():
            lone = family.read_lone_safetensors
            state = None if path.is_dir() or lone is None else lone(path, hf_state)
            if state is not None:
                return _Found(state, family, None, "its weights")
        raise CheckpointError(
            f"checkpoint {path}: config.json not found in {folder} (it describes the "
            "architecture of a Hugging Face checkpoint; keep it beside model.safetensors)"
        )
    hf_config = _read_json(config_file)
    for family in registry.families():
        if family.claims_hf(hf_state, hf_config):
            state, config = family.read_hf(path, config_file, hf_state, hf_config)
            return _Found(state, family, config, "config.json")
    raise CheckpointError(
        f"checkpoint {config_file}: model_type {hf_config.get('model_type')!r} is not "
        f"supported ({', '.join(registry.hf_model_types())})"
    )


def _shards(index: Path, weight_map: Any) -> list[Path]:
    """The shard files an index names: plain file names beside it (no other folder)."""
    names = set(weight_map.values()) if isinstance(weight_map, dict) else None
    if not names or not all(isinstance(n, str) and n and Path(n).name == n for n in names):
        raise CheckpointError(f"checkpoint {index}: weight_map must map tensor names to "
                              "shard file names in its folder")
    return sorted(index.parent / n for n in names)


def _check_regular(path: Path) -> None:
    """Refuse a FIFO, device or socket before opening it (reading a FIFO would wait
    forever for a writer); ``stat`` itself never blocks."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:  # e.g. a symlink loop
        raise CheckpointError(f"checkpoint {path}: cannot be read: {exc.strerror or exc}") \
            from None
    if not stat.S_ISREG(mode):
        raise CheckpointError(f"checkpoint {path}: not a regular file (a FIFO, device or "
                              "socket?): expected a checkpoint file or folder")


def _read_json(path: Path) -> dict:
    """A config.json / index.json: a size bound before it is read (real ones are a few
    kB), and nesting too deep for the parser is a damaged file, not a crash."""
    _check_regular(path)
    try:
        size = path.stat().st_size
        if size > _MAX_JSON_BYTES:
            raise CheckpointError(f"checkpoint {path}: {size:,} bytes, far more than a "
                                  f"config can take (at most {_MAX_JSON_BYTES:,})")
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"checkpoint {path}: unreadable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint {path}: expected a JSON object")
    return data


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    _check_regular(path)
    try:
        return load_file(path)  # memory-mapped
    except (SafetensorError, OSError):
        raise CheckpointError(file_kinds.safetensors_problem(path)) from None


def _build(
    path: Path,
    state: dict[str, torch.Tensor],
    family: Family,
    config: DictConfig,
    device: str | torch.device,
    dtype: torch.dtype,
) -> nn.Module:
    model = family.create(config, device="meta", precision=dtype)
    state = split_qkv(dict(state))  # views of the released joined q/k/v: no copy
    # Compared in the network's own names (q, k, v apart), whatever layout the file has.
    expected = split_qkv(model.state_dict())
    _check_keys(path, state, expected, family.describe_arch(config))
    # One tensor at a time: a tensor already on ``device`` in ``dtype`` is kept as it is
    # (memory-mapped from the file), any other is made there directly in ``dtype``, and
    # its source is dropped at once, so no second copy of the weights builds up.
    for key in list(state):
        state[key] = state[key].to(device=device, dtype=dtype)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def _check_keys(
    path: Path,
    state: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Tensor],
    model: str,
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
    raise CheckpointError(f"checkpoint {path}: weights do not fit {model}: " + "; ".join(parts))
