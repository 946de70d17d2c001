"""The ONNX files this project exports: their self-description and how it is read back.

An exported file carries one ``metadata_props`` entry, :data:`META_KEY`, holding JSON:
the format version, the model family and its config (all a batch recipe needs), the
precision (``int8`` for a quantised file, :mod:`.ort_quantize`; absent: fp32), the
network input size the gate references were made at, the inputs and outputs of the
graph, the source checkpoint's SHA-256, the exporter and project versions, and the
gate references (:mod:`.gate`). :func:`read_onnx` checks all of it against the graph
and builds the family's network on PyTorch's ``meta`` device (its architecture, no
weights, no memory), so that the usual ``recipe_for`` gives the file's recipe.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from depth_pro_ros.engine.backends.gate import GateReference
from depth_pro_ros.model import CheckpointError, recipe_for, registry

__all__ = ["FORMAT_VERSION", "META_KEY", "PRECISIONS", "OnnxModel", "describe_graph",
           "is_onnx", "read_onnx"]

META_KEY = "depth_pro_ros"
PRECISIONS = ("fp32", "int8")  # the metadata's "precision" (absent: fp32)
FORMAT_VERSION = 1
_MAX_META_BYTES = 1 << 20  # the real entry is a few kB (config + pooled gate outputs)
_ONNX_MAGIC = b"\x08"  # a ModelProto starts with field 1 (ir_version), varint


def describe_graph(needs_prompt: bool, has_fov_head: bool) -> tuple[list[str], list[str]]:
    """The graph's input and output names for a model with these capabilities."""
    return (["image", "prompt"] if needs_prompt else ["image"],
            ["depth", "fov"] if has_fov_head else ["depth"])


def is_onnx(path: str | Path) -> bool:
    """Whether ``path`` is taken for an ONNX file: its ``.onnx`` suffix."""
    return Path(path).suffix.lower() == ".onnx"


@dataclass(frozen=True)
class OnnxModel:
    """An exported file ready for a backend: where it is, what its metadata says, and the
    family's network on the ``meta`` device (``skeleton``: for the recipe only)."""

    path: Path
    meta: dict[str, Any]
    skeleton: torch.nn.Module
    gate: GateReference

    @property
    def inputs(self) -> list[str]:
        return list(self.meta["inputs"])

    @property
    def outputs(self) -> list[str]:
        return list(self.meta["outputs"])

    @property
    def precision(self) -> str:
        """What the graph computes in: fp32, or int8 (``export --quantize int8``)."""
        return self.meta.get("precision", "fp32")

    def gate_recipe(self):
        """The recipe at the input size the gate references were made at."""
        return recipe_for(self.skeleton, int(self.meta["gate_input_size"]))


def read_onnx(path: str | Path, model_type: str | None = None) -> OnnxModel:
    """Read and check an exported file's metadata (the weights are not loaded).

    ``model_type`` (None or ``auto``: take the file's) must agree with the file.

    Raises:
        CheckpointError: not an ONNX file, onnx not installed, metadata missing or
            inconsistent with the graph, or a model type it contradicts.
    """
    path = Path(path)
    try:
        import onnx
    except ImportError:
        raise CheckpointError(f"checkpoint {path}: reading an ONNX file needs the onnx "
                              "package: pip install 'depth_pro_ros[onnx]'") from None
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: not found or not a file")
    with path.open("rb") as f:
        if f.read(1) != _ONNX_MAGIC:
            raise CheckpointError(f"checkpoint {path}: not an ONNX model file")
    try:  # external weights stay on disk: only the graph and metadata are parsed
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 -- protobuf raises several kinds
        raise CheckpointError(f"checkpoint {path}: not a readable ONNX model "
                              f"({type(exc).__name__}: {exc})") from None
    props = {p.key: p.value for p in proto.metadata_props}
    if META_KEY not in props:
        raise CheckpointError(
            f"checkpoint {path}: an ONNX file without this project's metadata "
            f"('{META_KEY}'); export it with `depth-pro-ros export` so that it says "
            "which model it holds")
    graph = ([i.name for i in proto.graph.input], [o.name for o in proto.graph.output])
    return _from_meta(path, props[META_KEY], graph, model_type)


def _from_meta(path: Path, text: str, graph: tuple[list[str], list[str]],
               model_type: str | None) -> OnnxModel:
    def bad(problem: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {path}: its '{META_KEY}' metadata {problem}; "
                               "export the file again with `depth-pro-ros export`")

    if len(text) > _MAX_META_BYTES:
        raise bad(f"is {len(text):,} bytes, more than any export writes")
    try:
        meta = json.loads(text)
    except ValueError:
        raise bad("is not JSON") from None
    if not isinstance(meta, dict):
        raise bad("is not a JSON object")
    if meta.get("format") != FORMAT_VERSION:
        raise bad(f"has format {meta.get('format')!r}; this version reads "
                  f"{FORMAT_VERSION}")
    missing = sorted({"family", "config", "gate_input_size", "inputs", "outputs",
                      "source_sha256", "gate"} - meta.keys())
    if missing:
        raise bad(f"lacks {missing}")
    if meta["family"] not in registry.FAMILIES:
        raise bad(f"names family {meta['family']!r}, not one of {registry.FAMILIES}")
    if meta.get("precision", "fp32") not in PRECISIONS:
        raise bad(f"names precision {meta['precision']!r}, not one of {PRECISIONS}")
    if not re.fullmatch(r"[0-9a-f]{64}", str(meta["source_sha256"])):
        raise bad("has no SHA-256 of its source checkpoint")
    family = registry.family(meta["family"])
    try:
        config = family.config_class.from_dict(dict(meta["config"]))
        skeleton = family.create(config, device="meta")
        recipe = recipe_for(skeleton, int(meta["gate_input_size"]))
        gate = GateReference.from_json(meta["gate"])
    except (TypeError, ValueError) as exc:  # ConfigLimitError is a ValueError
        raise bad(f"describes no usable model ({exc})") from None
    want = describe_graph(recipe.info.needs_prompt, recipe.info.has_fov_head)
    if (list(meta["inputs"]), list(meta["outputs"])) != want or graph != want:
        raise bad(f"says inputs/outputs {meta['inputs']}/{meta['outputs']}, the graph has "
                  f"{graph[0]}/{graph[1]}, and {registry.describe(config)} needs "
                  f"{want[0]}/{want[1]}")
    row = registry.model_type(model_type)
    if row is not None and (row.family != family.name or not row.agrees(config)):
        raise CheckpointError(f"checkpoint {path}: model_type {model_type!r} contradicts "
                              f"its metadata: {registry.describe(config)}")
    return OnnxModel(path, meta, skeleton, gate)
