"""Loading and saving Depth Pro and Depth Anything weights in every layout the project accepts.

The family is detected from the file, never from a flag:

1. Apple's ``depth_pro.pt``: a plain state dict with the released architecture.
2. The Depth Anything releases: plain state dicts with ``pretrained.*`` and
   ``depth_head.*`` keys (``depth_anything_v2_vits.pth``,
   ``depth_anything_v2_metric_hypersim_vitl.pth`` ...), and Prompt Depth Anything's
   Lightning ``.ckpt`` (``{"state_dict": {"pipeline.pretrained...": ...}}``). The variant
   comes from the tensor shapes; relative or metric from the file name or ``model_type``.
3. Hugging Face ``DepthProForDepthEstimation``, ``DepthAnythingForDepthEstimation`` and
   ``PromptDepthAnythingForDepthEstimation``: ``model.safetensors`` (or shards) with
   ``config.json``, given as the folder or the ``.safetensors`` file inside it.
4. The project's own ``{"format", "model", "config", "state_dict"}`` file (a missing
   ``model`` means Depth Pro, as in files written before Depth Anything existed).

The model is built on the ``meta`` device and the tensors are assigned into it, so loading
never holds two copies of the weights; ``torch.load`` memory-maps the file.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import secrets
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch

from . import da_layout, file_kinds
from .config import DepthProConfig, parse_precision
from .depth_anything import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MAX_DEPTH_INDOOR,
    MAX_DEPTH_OUTDOOR,
    RELEASED,
    RELEASED_HEADS,
    DepthAnything,
    DepthAnythingConfig,
    create_depth_anything,
)
from .hf_layout import config_from_hf, hf_to_apple_state_dict
from .network import DepthPro, create_model
from .weights import missing_checkpoint_message

PROJECT_FORMAT = "depth_pro_ros"
_SHOWN = 5  # keys listed per category in a mismatch message

#: ``model_type`` values: ``auto`` (or None) detects; the others say what the file is. For
#: original Depth Anything V2 files, which cannot tell relative from metric, they replace
#: the file-name guess; anywhere else they must agree with what the file says.
MODEL_TYPES = (
    "auto",
    "depth_pro",
    "depth_anything_v2",
    "depth_anything_v2_metric_indoor",
    "depth_anything_v2_metric_outdoor",
    "prompt_depth_anything",
)
# What each model type asserts: (family, prompt, head, max_depth); None: not asserted.
_TYPE_SPECS: dict[str, tuple[str, bool | None, str | None, float | None]] = {
    "depth_pro": ("depth_pro", None, None, None),
    "depth_anything_v2": ("depth_anything", False, "relative", None),
    "depth_anything_v2_metric_indoor": ("depth_anything", False, "metric", MAX_DEPTH_INDOOR),
    "depth_anything_v2_metric_outdoor": ("depth_anything", False, "metric", MAX_DEPTH_OUTDOOR),
    "prompt_depth_anything": ("depth_anything", True, None, None),
}
_TYPE_TEXT = {
    "depth_pro": "Depth Pro",
    "depth_anything_v2": "Depth Anything V2, relative",
    "depth_anything_v2_metric_indoor": "Depth Anything V2, metric up to 20 m (Hypersim)",
    "depth_anything_v2_metric_outdoor": "Depth Anything V2, metric up to 80 m (Virtual KITTI)",
    "prompt_depth_anything": "Prompt Depth Anything",
}
_DA_ORIGINAL_PREFIXES = ("pretrained.", "depth_head.")
_DA_ANCHOR = "pretrained.cls_token"  # a key every original Depth Anything file has
_DA_NORM_BUFFERS = {"_mean": IMAGENET_MEAN, "_std": IMAGENET_STD}  # Prompt DA's .ckpt

Config = DepthProConfig | DepthAnythingConfig
Model = DepthPro | DepthAnything


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file and the problem."""


class _Found(NamedTuple):
    """What a file holds: weights in the project's names, their family, and the
    architecture the file states (None for plain state dicts)."""

    state: dict[str, torch.Tensor]
    family: str  # depth_pro or depth_anything
    config: Config | None
    config_source: str  # where ``config`` came from, for messages


def load_checkpoint(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    precision: str | torch.dtype = torch.float32,
    config: Config | None = None,
    model_type: str | None = None,
) -> Model:
    """Load weights from any accepted layout into a model on ``device`` in ``precision``.

    Returns a :class:`DepthPro` or a :class:`DepthAnything`, whichever the file holds.
    ``config`` overrides the architecture (it must be of the file's family); plain state
    dicts carry none: Apple's file is taken to be the released Depth Pro, an original
    Depth Anything file gets its variant from the tensor shapes (released variants only)
    and relative / metric from its name (``metric`` with ``hypersim`` / ``indoor``: 20 m,
    with ``vkitti`` / ``outdoor``: 80 m). ``model_type`` (one of :data:`MODEL_TYPES`; None
    or ``auto``: detect) replaces that name guess; a model type that contradicts the
    file's weights or config (or ``config``) is a :class:`CheckpointError`.

    Raises:
        CheckpointError: a missing, unreadable, foreign or contradicted checkpoint.
        ValueError: an unknown ``model_type`` or precision.
    """
    model_type = _parse_model_type(model_type)
    path = Path(path).expanduser()
    dtype = parse_precision(precision)
    if config is not None and not isinstance(config, Config):
        raise TypeError(f"config must be a DepthProConfig or a DepthAnythingConfig, "
                        f"got {type(config).__name__}")
    if not path.exists():
        raise CheckpointError(missing_checkpoint_message(path))
    if path.is_dir() or path.suffix == ".safetensors":
        found = _read_hf(path)
    else:
        found = _read_torch_file(path)
    if config is not None:
        if _family(config) != found.family:
            raise CheckpointError(
                f"checkpoint {path}: the config given describes {_describe(config)}, but the "
                f"file holds {_FAMILY_TEXT[found.family]} weights"
            )
        _check_model_type(path, model_type, config, "the config given")
    elif found.config is not None:
        config = found.config
        _check_model_type(path, model_type, config, found.config_source)
    elif found.family == "depth_pro":
        config = DepthProConfig.depth_pro()
        _check_model_type(path, model_type, config, "its weights")
    else:
        config = _original_da_config(path, found.state, model_type)
    return _build(path, found.state, config, device, dtype)


def save_checkpoint(model: Model, path: str | os.PathLike) -> Path:
    """Save ``model`` in the project's own format (family, config, state dict), atomically."""
    if isinstance(model, DepthAnything):
        family = "depth_anything"
    elif isinstance(model, DepthPro):
        family = "depth_pro"
    else:
        raise TypeError(f"not a model of this project: {type(model).__name__}")
    path = Path(path)
    payload = {
        "format": PROJECT_FORMAT,
        "version": 1,
        "model": family,
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


_FAMILY_TEXT = {"depth_pro": "Depth Pro", "depth_anything": "Depth Anything"}


def _family(config: Config) -> str:
    return "depth_anything" if isinstance(config, DepthAnythingConfig) else "depth_pro"


def _describe(config: Config) -> str:
    if isinstance(config, DepthProConfig):
        return "Depth Pro"
    if config.prompt:
        return f"Prompt Depth Anything ({config.variant})"
    if config.head == "metric":
        return f"Depth Anything V2, metric up to {config.max_depth:g} m ({config.variant})"
    return f"Depth Anything V2, relative ({config.variant})"


def _parse_model_type(model_type: str | None) -> str | None:
    if model_type is None or model_type == "auto":
        return None
    if model_type not in MODEL_TYPES:
        raise ValueError(f"unknown model_type {model_type!r}; use one of {', '.join(MODEL_TYPES)}")
    return model_type


def _check_model_type(path: Path, model_type: str | None, config: Config, source: str) -> None:
    """Refuse a model type that contradicts ``config`` (what the file or caller says)."""
    if model_type is None:
        return
    family, prompt, head, max_depth = _TYPE_SPECS[model_type]
    if isinstance(config, DepthProConfig):
        agrees = family == "depth_pro"
    else:
        agrees = (family == "depth_anything" and config.prompt == prompt
                  and head in (None, config.head) and max_depth in (None, config.max_depth))
    if not agrees:
        raise CheckpointError(
            f"checkpoint {path}: model_type {model_type!r} ({_TYPE_TEXT[model_type]}) "
            f"contradicts {source}: {_describe(config)}"
        )


def _read_torch_file(path: Path) -> _Found:
    obj = _torch_load(path)
    if isinstance(obj, Mapping) and "state_dict" in obj and "config" in obj:
        family = obj.get("model", "depth_pro")  # files from before Depth Anything: Depth Pro
        config_cls = {"depth_pro": DepthProConfig, "depth_anything": DepthAnythingConfig}.get(
            family)
        if config_cls is None:
            raise CheckpointError(
                f"checkpoint {path}: unknown model {family!r} in a project file (expected "
                "depth_pro or depth_anything)"
            )
        try:
            config = config_cls.from_dict(dict(obj["config"]))
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"checkpoint {path}: its config cannot be built: {exc}") from None
        return _Found(_tensor_dict(path, obj["state_dict"]), family, config, "its stored config")
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]  # Lightning checkpoints (Prompt Depth Anything's .ckpt)
    elif isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]  # training checkpoints often nest the weights
    state = _strip_da_prefix(_tensor_dict(path, obj))
    if any(k.startswith(_DA_ORIGINAL_PREFIXES) for k in state):
        return _Found(_drop_norm_buffers(path, state), "depth_anything", None, "")
    if any(k.startswith("backbone.") for k in state) and any(
            k.startswith("neck.") for k in state):
        raise CheckpointError(
            f"checkpoint {path}: Hugging Face Depth Anything weights need their config.json; "
            "load the folder saved by save_pretrained (model.safetensors + config.json)"
        )
    return _Found(state, "depth_pro", None, "")


def _strip_da_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop a wrapper's prefix (Prompt Depth Anything's Lightning module stores the network
    as ``pipeline``) from an original Depth Anything state dict; others are unchanged."""
    anchor = next((k for k in state if k.endswith(_DA_ANCHOR)), None)
    if anchor is None or anchor == _DA_ANCHOR:
        return state
    prefix = anchor[: -len(_DA_ANCHOR)]
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}


def _drop_norm_buffers(path: Path, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Prompt Depth Anything stores its input normalisation as buffers ``_mean`` / ``_std``;
    the network here takes normalised input, so they go once checked to be ImageNet's."""
    for name, expected in _DA_NORM_BUFFERS.items():
        if name in state:
            value = state[name].float().flatten()
            if value.shape != (3,) or not torch.allclose(value, torch.tensor(expected),
                                                          atol=1e-6):
                raise CheckpointError(
                    f"checkpoint {path}: {name} = {value.tolist()} is not the ImageNet "
                    f"normalisation {list(expected)} that this network's input uses"
                )
    return {k: v for k, v in state.items() if k not in _DA_NORM_BUFFERS}


def _original_da_config(
    path: Path, state: Mapping[str, torch.Tensor], model_type: str | None
) -> DepthAnythingConfig:
    """The architecture of an original Depth Anything state dict: the variant from the
    shapes, Prompt Depth Anything from its prompt layers, relative / metric from
    ``model_type`` or else the file name."""
    dims = _original_da_dims(path, state)
    prompt = any(".resConfUnit_depth." in k for k in state)
    found = "Prompt Depth Anything" if prompt else "Depth Anything V2"
    if model_type is not None:
        family, type_prompt, head, max_depth = _TYPE_SPECS[model_type]
        if family != "depth_anything" or type_prompt != prompt:
            raise CheckpointError(
                f"checkpoint {path}: model_type {model_type!r} ({_TYPE_TEXT[model_type]}) "
                f"contradicts its weights: {found}"
                + (" (it has prompt layers, resConfUnit_depth)" if prompt else "")
            )
    elif prompt:
        head, max_depth = None, None
    else:
        head, max_depth = _guess_head_from_name(path)
    if head is None:  # a prompt model: the release's sigmoid head
        head = "metric" if prompt else "relative"
    return DepthAnythingConfig(**dims, head=head, max_depth=max_depth or 1.0, prompt=prompt)


def _guess_head_from_name(path: Path) -> tuple[str, float | None]:
    words = set(re.split(r"[^a-z0-9]+", path.name.lower()))
    if "metric" not in words:
        return "relative", None
    indoor = bool(words & {"hypersim", "indoor"})
    outdoor = bool(words & {"vkitti", "vkitti2", "outdoor"})
    if indoor != outdoor:
        return "metric", MAX_DEPTH_INDOOR if indoor else MAX_DEPTH_OUTDOOR
    raise CheckpointError(
        f"checkpoint {path}: a metric Depth Anything V2 file, but its name does not say which "
        "release (hypersim / indoor: 20 m, vkitti / outdoor: 80 m); pass model_type "
        "depth_anything_v2_metric_indoor or depth_anything_v2_metric_outdoor"
    )


def _original_da_dims(path: Path, state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """ViT and decoder sizes from the tensor shapes; heads and hooks from the releases."""
    try:
        embed = state[_DA_ANCHOR].shape[-1]
        blocks = {int(m.group(1)) for k in state
                  if (m := re.match(r"pretrained\.blocks\.(\d+)\.", k))}
        depth = max(blocks) + 1 if blocks else 0
        patch = state["pretrained.patch_embed.proj.weight"].shape[-1]
        positions = state["pretrained.pos_embed"].shape[1] - 1
        mlp_hidden = state["pretrained.blocks.0.mlp.fc1.weight"].shape[0]
        neck = tuple(state[f"depth_head.projects.{i}.weight"].shape[0] for i in range(4))
        fusion = state["depth_head.scratch.layer1_rn.weight"].shape[0]
        head_features = state["depth_head.scratch.output_conv2.0.weight"].shape[0]
    except KeyError as exc:
        raise CheckpointError(
            f"checkpoint {path}: not a complete Depth Anything checkpoint: {exc} is missing"
        ) from None
    variant = next((name for name, spec in RELEASED.items()
                    if (spec["embed_dim"], spec["depth"]) == (embed, depth)), None)
    if variant is None or embed not in RELEASED_HEADS:
        raise CheckpointError(
            f"checkpoint {path}: a Depth Anything ViT of width {embed} and depth {depth} is "
            "not a released variant (vits 384/12, vitb 768/12, vitl 1024/24), so its heads "
            "and hooked blocks are unknown; pass config=DepthAnythingConfig(...)"
        )
    grid = math.isqrt(positions)
    return dict(
        embed_dim=embed, depth=depth, num_heads=RELEASED_HEADS[embed],
        mlp_ratio=mlp_hidden / embed, patch_size=patch,
        pos_grid=grid if grid * grid == positions else 1,  # not square: the key check says
        hook_block_ids=RELEASED[variant]["hook_block_ids"], neck_dims=neck,
        fusion_features=fusion, head_features=head_features,
    )


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
    is_da = any(k.startswith("backbone.") for k in hf_state) and any(
        k.startswith("neck.") for k in hf_state)
    config_file = folder / "config.json"
    if not config_file.exists():
        raise CheckpointError(
            f"checkpoint {path}: config.json not found in {folder} (it describes the "
            "architecture of a Hugging Face checkpoint; keep it beside model.safetensors)"
        )
    hf_config = _read_json(config_file)
    model_type = hf_config.get("model_type")
    if is_da or model_type in da_layout.HF_MODEL_TYPES:
        return _read_hf_depth_anything(path, config_file, hf_state, hf_config, is_da)
    if model_type not in (None, "depth_pro"):
        raise CheckpointError(
            f"checkpoint {config_file}: model_type {model_type!r} is not supported (depth_pro, "
            f"{', '.join(da_layout.HF_MODEL_TYPES)})"
        )
    state, unknown = hf_to_apple_state_dict(hf_state)
    if unknown:
        raise CheckpointError(
            f"checkpoint {path}: not a DepthProForDepthEstimation file; unknown tensors: "
            f"{unknown[:_SHOWN]}"
        )
    has_fov = any(k.startswith("fov.") for k in state)
    try:
        config = config_from_hf(hf_config, has_fov)
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {config_file}: config cannot be built: {exc}") from None
    if not config.use_fov_head:
        state = {k: v for k, v in state.items() if not k.startswith("fov.")}
    return _Found(state, "depth_pro", config, "config.json")


def _read_hf_depth_anything(
    path: Path, config_file: Path, hf_state: dict[str, torch.Tensor], hf_config: dict,
    is_da: bool,
) -> _Found:
    model_type = hf_config.get("model_type")
    if not is_da or model_type not in (None, *da_layout.HF_MODEL_TYPES):
        tensors = "Depth Anything's" if is_da else "not Depth Anything's (no backbone.*, neck.*)"
        raise CheckpointError(
            f"checkpoint {path}: config.json says model_type {model_type!r} but the tensors "
            f"are {tensors}"
        )
    if model_type is None:
        prompt = any(".prompt_depth_layer." in k for k in hf_state)
        hf_config = {**hf_config,
                     "model_type": "prompt_depth_anything" if prompt else "depth_anything"}
    state, unknown = da_layout.hf_to_original_state_dict(hf_state)
    if unknown:
        raise CheckpointError(
            f"checkpoint {path}: not a (Prompt)DepthAnythingForDepthEstimation file; unknown "
            f"tensors: {unknown[:_SHOWN]}"
        )
    try:
        config = da_layout.config_from_hf(hf_config)
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {config_file}: config cannot be built: {exc}") from None
    return _Found(state, "depth_anything", config, "config.json")


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
    except (SafetensorError, OSError):
        raise CheckpointError(file_kinds.safetensors_problem(path)) from None


def _build(
    path: Path,
    state: dict[str, torch.Tensor],
    config: Config,
    device: str | torch.device,
    dtype: torch.dtype,
) -> Model:
    if isinstance(config, DepthAnythingConfig):
        model = create_depth_anything(config, device="meta", precision=dtype)
    else:
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
    config: Config,
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
    if isinstance(config, DepthAnythingConfig):
        model = (f"the {_describe(config)} model (embed_dim={config.embed_dim}, "
                 f"depth={config.depth}, prompt={config.prompt})")
    else:
        model = (f"the Depth Pro model (embed_dim={config.embed_dim}, depth={config.depth}, "
                 f"use_fov_head={config.use_fov_head})")
    raise CheckpointError(f"checkpoint {path}: weights do not fit {model}: " + "; ".join(parts))
