"""Export a checkpoint's network to a self-describing ONNX file (``depth-pro-ros export``).

The graph is the family recipe's forward pass (``recipe.run``: Depth Pro with its FoV
head, Depth Anything V2, Prompt Depth Anything with its ``prompt`` input), fp32, with a
dynamic batch axis; a family whose network size follows the image (Depth Anything) also
gets dynamic height and width in multiples of its patch size, Depth Pro keeps its fixed
square. It is traced by ``torch.onnx.export(dynamo=True)`` (torch.export + onnxscript):
the older TorchScript exporter (``dynamo=False``, deprecated) cannot trace Depth Pro's
token-grid reshape, which computes a size from a tensor's length. The onnxscript graph
optimiser is left off: ONNX Runtime applies its own graph optimisations when it loads
the file, and export is twice as fast without it.

The file describes itself (:mod:`.onnx_file`) and carries the gate references
(:mod:`.gate`). Before it is written the export checks itself: ONNX Runtime runs the
written graph on the gate batch (and, with dynamic sizes, on a second batch of another
size and batch size) and the file is refused unless every output is within
:data:`SELF_CHECK_LIMIT` of torch's (max |ort - torch| / max |torch|). Everything is
written into a temporary folder beside the output and renamed into place only then, so
no partial or failed file is ever left under the output name. Networks over 2 GB keep
their weights in ``<output>.data`` (ONNX external data) beside the file.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from depth_pro_ros import __version__
from depth_pro_ros.engine.backends import gate
from depth_pro_ros.engine.backends.onnx_file import (
    FORMAT_VERSION,
    META_KEY,
    describe_graph,
    is_onnx,
)
from depth_pro_ros.engine.backends.ort_quantize import QUANTIZATIONS, quantize_int8
from depth_pro_ros.engine.errors import ExportError
from depth_pro_ros.model import load_checkpoint, recipe_for
from depth_pro_ros.model.weights import checkpoint_sha256

__all__ = ["SELF_CHECK_LIMIT", "ExportResult", "TracedGraph", "export_onnx", "trace_onnx",
           "write_onnx"]

SELF_CHECK_LIMIT = 1e-4
_EXTERNAL_DATA_BYTES = 2_000_000_000  # protobuf's 2 GB limit on one message, with margin
_MAX_SIDE = 8190  # ranges.INPUT_SIZE's bound: the largest network side the graph takes


@dataclass(frozen=True)
class ExportResult:
    """What was written and how it checked."""

    path: Path
    external_data: Path | None  # the weights file beside it, for networks over 2 GB
    description: str
    self_check: float  # worst max |ort - torch| / max |torch| over outputs and batches
    seconds: float
    precision: str = "fp32"  # int8: quantised (ort_quantize)
    gate_figure: float | None = None  # int8: its accuracy gate figure vs fp32 torch


class _Graph(torch.nn.Module):
    """The exported forward pass: the recipe's ``run`` with the FoV always estimated."""

    def __init__(self, model: torch.nn.Module, recipe) -> None:
        super().__init__()
        self.model, self.recipe = model, recipe

    def forward(self, image: torch.Tensor, prompt: torch.Tensor | None = None):
        depth, fov = self.recipe.run(self.model, image, self.recipe.info.has_fov_head, prompt)
        return (depth,) if fov is None else (depth, fov)


@dataclass(frozen=True)
class TracedGraph:
    """A checkpoint's graph traced (the slow part of an export), its metadata set, with
    torch's outputs on the sample batches: what :func:`write_onnx` checks and writes."""

    checkpoint: Path
    program: object  # the exporter's torch.onnx.ONNXProgram
    inputs: list[str]
    batches: list[tuple[torch.Tensor, ...]]
    expected: list[tuple[torch.Tensor, ...]]
    external: bool  # weights over 2 GB: saved as external data
    description: str
    seconds: float


def export_onnx(checkpoint: str | Path, output: str | Path, overwrite: bool = False,
                model_type: str | None = None, input_size: int = 0,
                quantize: str | None = None) -> ExportResult:
    """Export ``checkpoint`` to ``output`` (see the module docstring): :func:`trace_onnx`
    then :func:`write_onnx`, the output checked before the trace.

    ``input_size`` (0: the family's default) is the size the gate references are made
    at; the graph itself takes any size its family allows. ``quantize="int8"`` writes
    the checked fp32 graph's int8 version instead (:mod:`.ort_quantize`: gated at 1 %).

    Raises:
        ExportError: an existing output without ``overwrite``, the output naming the
            checkpoint, an ONNX checkpoint, missing packages, a failed trace or a failed
            self-check; nothing is written.
        CheckpointError: a checkpoint that cannot be loaded.
    """
    if quantize not in (None, *QUANTIZATIONS):
        raise ExportError(f"quantize must be one of {QUANTIZATIONS}, got {quantize!r}")
    _check_paths(Path(checkpoint), Path(output), overwrite)
    return write_onnx(trace_onnx(checkpoint, model_type, input_size), output, overwrite,
                      quantize)


def trace_onnx(checkpoint: str | Path, model_type: str | None = None,
               input_size: int = 0) -> TracedGraph:
    """Load ``checkpoint`` and trace its graph; nothing is written. Raises as
    :func:`export_onnx`."""
    start = time.perf_counter()
    checkpoint = Path(checkpoint)
    _check_source(checkpoint)
    onnx, _ = _packages()
    model = load_checkpoint(checkpoint, device="cpu", precision=torch.float32,
                            model_type=model_type)
    try:
        recipe = recipe_for(model, input_size)
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    graph = _Graph(model, recipe).eval()
    batches = _sample_batches(model, recipe)
    with torch.inference_mode():
        expected = [graph(*batch) for batch in batches]
    inputs, outputs = describe_graph(recipe.info.needs_prompt, recipe.info.has_fov_head)
    program = _trace(graph, batches[0], inputs, outputs, _dynamic_shapes(model, recipe))
    meta = {
        "format": FORMAT_VERSION, "family": recipe.info.family,
        "config": model.config.to_dict(), "description": recipe.info.description,
        "gate_input_size": recipe.info.input_size, "inputs": inputs, "outputs": outputs,
        "source": checkpoint.name, "source_sha256": checkpoint_sha256(checkpoint),
        "exporter": f"torch {torch.__version__} torch.onnx.export(dynamo=True), onnx "
                    f"{onnx.__version__}", "project_version": __version__,
        "gate": gate.GateReference.pooled(*_pad(expected[0])).to_json(),
    }
    program.model.metadata_props[META_KEY] = json.dumps(meta)
    external = sum(p.numel() * 4 for p in model.parameters()) > _EXTERNAL_DATA_BYTES
    return TracedGraph(checkpoint, program, inputs, batches, expected, external,
                       recipe.info.description, time.perf_counter() - start)


def write_onnx(traced: TracedGraph, output: str | Path, overwrite: bool = False,
               quantize: str | None = None) -> ExportResult:
    """Check ``traced`` with ONNX Runtime and write it (or its int8 version) to
    ``output``, or nothing (see the module docstring); it can be written again. Raises
    ExportError as :func:`export_onnx`."""
    start = time.perf_counter()
    output = Path(output)
    _check_paths(traced.checkpoint, output, overwrite)
    _, ort = _packages()
    external = traced.external
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        written = tmp / output.name
        # Saved from the exporter's own model (no protobuf message of the whole network,
        # which cannot exceed 2 GB); external data goes to "<name>.data" beside it.
        traced.program.save(written, external_data=external)
        worst = _self_check(ort, written, traced.inputs, traced.batches, traced.expected)
        figure = None
        if quantize:  # the int8 file replaces the fp32 one; it keeps its weights inline
            written, external = tmp / f"int8.{output.name}", False
            figure = quantize_int8(tmp / output.name, written)
        data = output.with_name(f"{output.name}.data") if external else None
        if data is not None:
            os.replace(tmp / data.name, data)
        os.replace(written, output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ExportResult(output, data, traced.description, worst,
                        traced.seconds + time.perf_counter() - start, quantize or "fp32",
                        figure)


def _check_source(checkpoint: Path) -> None:
    if is_onnx(checkpoint):
        raise ExportError(f"{checkpoint} is already an ONNX file; export takes a torch "
                          "checkpoint")


def _check_paths(checkpoint: Path, output: Path, overwrite: bool) -> None:
    _check_source(checkpoint)
    if output.suffix.lower() != ".onnx":
        raise ExportError(f"output {output} must end in .onnx (the suffix the tools "
                          "recognise an exported file by)")
    if output.resolve() == checkpoint.resolve() or checkpoint.resolve() in (
            output.resolve().parents):
        raise ExportError(f"output {output} would overwrite the checkpoint")
    if not output.parent.is_dir():
        raise ExportError(f"output folder {output.parent} does not exist")
    if output.exists() and not overwrite:
        raise ExportError(f"output {output} exists; pass --overwrite to replace it")


def _packages():
    try:
        import onnx
        import onnxruntime
        import onnxscript  # noqa: F401 -- torch.onnx.export(dynamo=True) needs it
    except ImportError as exc:
        raise ExportError(f"export needs {exc.name}: pip install 'depth_pro_ros[onnx]'"
                          ) from None
    return onnx, onnxruntime


def _sample_batches(model, recipe) -> list[tuple[torch.Tensor, ...]]:
    """The gate batch (batch 2: torch.export would fix a batch of 1), and for networks
    whose size follows the image a portrait batch of 1 (checks the dynamic axes)."""
    x, prompt = gate.gate_batch(recipe, torch.device("cpu"), torch.float32)
    batches = [(x,) if prompt is None else (x, prompt)]
    if _follows_image(recipe):
        portrait = torch.from_numpy(gate.gate_images()[:1]).transpose(1, 2).contiguous()
        x2 = recipe.prepare(portrait, "rgb", torch.float32)
        batches.append((x2,) if prompt is None else (x2, prompt[:1, :, :20, :30] * 1.5))
    return batches


def _follows_image(recipe) -> bool:
    return recipe.network_size(96, 128) != recipe.network_size(128, 96)


def _dynamic_shapes(model, recipe) -> dict:
    batch = torch.export.Dim("batch", min=1, max=1024)
    image: dict[int, object] = {0: batch}
    if _follows_image(recipe):
        patch = model.config.patch_size
        image[2] = patch * torch.export.Dim("grid_h", min=1, max=_MAX_SIDE // patch)
        image[3] = patch * torch.export.Dim("grid_w", min=1, max=_MAX_SIDE // patch)
    shapes = {"image": image}
    if recipe.info.needs_prompt:
        shapes["prompt"] = {0: batch, 2: torch.export.Dim("prompt_h", min=2, max=16384),
                            3: torch.export.Dim("prompt_w", min=2, max=16384)}
    return shapes


def _trace(graph: _Graph, batch: tuple, inputs: list[str], outputs: list[str],
           shapes: dict):
    """The exported ``torch.onnx.ONNXProgram`` of ``graph``; the exporter's progress
    lines are not shown."""
    kwargs = dict(zip(inputs, batch))
    chatter = io.StringIO()
    try:
        with contextlib.redirect_stdout(chatter):
            program = torch.onnx.export(graph, (), kwargs=kwargs, dynamo=True,
                                        dynamic_shapes=shapes, input_names=inputs,
                                        output_names=outputs, optimize=False,
                                        verbose=False)
    except Exception as exc:  # noqa: BLE001 -- torch.export raises many kinds
        raise ExportError(f"torch.onnx.export failed: {type(exc).__name__}: {exc}"
                          ) from None
    return program


def _self_check(ort, path: Path, inputs: list[str], batches: list[tuple],
                expected: list[tuple]) -> float:
    """Worst relative difference of ONNX Runtime's outputs from torch's; refused above
    :data:`SELF_CHECK_LIMIT`."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for batch, want in zip(batches, expected):
        got = session.run(None, {n: t.numpy() for n, t in zip(inputs, batch)})
        for name, a, b in zip(session.get_outputs(), got, want):
            a = torch.from_numpy(a)
            diff = (float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))
                    if a.shape == b.shape else float("inf"))
            worst = max(worst, diff)
            if not diff <= SELF_CHECK_LIMIT:
                raise ExportError(
                    f"self-check failed: ONNX Runtime's {name.name} differs from torch's "
                    f"by {diff:.3g} (max relative, limit {SELF_CHECK_LIMIT:g}) on input "
                    f"{list(batch[0].shape)}; nothing was written")
    return worst


def _pad(outputs: tuple) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(depth,) or (depth, fov) -> (depth, fov or None)."""
    return outputs[0], outputs[1] if len(outputs) > 1 else None
