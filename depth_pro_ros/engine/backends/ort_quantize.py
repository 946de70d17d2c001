"""int8 ONNX files: an exported fp32 file's linear layers quantised by ONNX Runtime.

``depth-pro-ros export --quantize int8`` writes the fp32 file (:mod:`.onnx_export`) and
then this: ONNX Runtime's *dynamic* quantisation of every matrix product with a constant
weight (the ViT's q / k / v, projection and MLP layers; the DPT head's convolutions and
attention's activation x activation products stay fp32). Weights are stored as int8 with
one scale per output channel (a trained ViT's few large channels then cost only their own
precision, not their layer's; as fast here as one scale per matrix); activations are
quantised to uint8 at run time from their own range,
so no calibration images are needed (static quantisation would need a representative
set per camera and scene, which an exported file cannot carry). The file is about a
third of the fp32 one.

Before quantising, ONNX Runtime's basic graph optimisations are applied and saved: the
exporter feeds each linear layer's weight through a ``Transpose`` node, which hides the
constant weight from the quantiser until it is folded.

The result describes itself like any export (``precision: int8`` and a ``quantization``
entry in the metadata, the fp32 torch gate references kept) and passes the accuracy gate
against them before it is written: ``gate.LIMITS["int8"]`` (1 %), refused with the
measured figure otherwise. The gate runs again at every load, on the machine that serves
it: int8 kernels differ by CPU (VNNI or not), which this catches.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import torch

from depth_pro_ros.engine.backends import gate
from depth_pro_ros.engine.backends.onnx_file import META_KEY, read_onnx
from depth_pro_ros.engine.errors import ExportError

__all__ = ["QUANTIZATIONS", "quantize_int8"]

#: What ``export --quantize`` accepts.
QUANTIZATIONS = ("int8",)


def quantize_int8(source: Path, output: Path) -> float:
    """Write the int8 version of the exported fp32 file ``source`` to ``output``; its
    gate figure against fp32 torch (see the module docstring).

    Raises:
        ExportError: ``source`` is not an fp32 export, quantisation failed, or the
            result fails the gate (with the figure); ``output`` is then removed.
    """
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32 = read_onnx(source)
    if fp32.precision != "fp32":
        raise ExportError(f"{source.name} is already {fp32.precision}; quantise an fp32 "
                          "export")
    with tempfile.TemporaryDirectory(dir=output.parent) as tmp:
        folded = Path(tmp) / "folded.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(folded)
        if (source.parent / f"{source.name}.data").exists():  # over 2 GB: stays external
            options.add_session_config_entry(
                "session.optimized_model_external_initializers_file_name", "folded.data")
        previous = logging.root.manager.disable
        try:
            ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
            # The quantiser logs through the root logger that the model was not
            # "pre-processed" (its folding, done above, and shape inference it runs
            # itself): noise for a user of the export command.
            logging.disable(max(previous, logging.WARNING))
            quantize_dynamic(folded, output, op_types_to_quantize=["MatMul"],
                             per_channel=True, weight_type=QuantType.QInt8,
                             extra_options={"MatMulConstBOnly": True})
        except Exception as exc:  # noqa: BLE001 -- ORT and onnx raise many kinds
            output.unlink(missing_ok=True)
            raise ExportError(f"int8 quantisation of {source.name} failed: "
                              f"{type(exc).__name__}: {exc}") from None
        finally:
            logging.disable(previous)
    proto = onnx.load(str(output))
    layers = sum(n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul")
                 for n in proto.graph.node)
    meta = dict(fp32.meta, precision="int8", quantization={
        "method": "onnxruntime dynamic (quantize_dynamic)", "weights": "int8 per output channel",
        "activations": "uint8, per run", "layers": layers,
        "onnxruntime": ort.__version__})
    del proto.metadata_props[:]  # the quantiser's own entries; ours replaces the fp32 one
    proto.metadata_props.add(key=META_KEY, value=json.dumps(meta))
    onnx.save(proto, str(output))
    return _gate(output)


def _gate(path: Path) -> float:
    """The int8 file's gate figure; the file is removed and refused above the limit."""
    from depth_pro_ros.engine.backends.onnxruntime_backend import OnnxRuntimeBackend
    from depth_pro_ros.engine.types import EngineConfig  # imports the backend table

    model = read_onnx(path)
    backend = OnnxRuntimeBackend(model, model.gate_recipe(), EngineConfig(device="cpu"))
    figure = gate.measure(backend.run, model.gate_recipe(), torch.device("cpu"),
                          torch.float32, model.gate)
    limit = gate.LIMITS["int8"]
    if not figure <= limit:
        path.unlink(missing_ok=True)
        raise ExportError(
            f"int8 quantisation: the quantised network differs from fp32 torch by "
            f"{figure:.3g} on the gate images (relative L1; the limit is {limit:g}); "
            "nothing was written: this model does not quantise well, keep the fp32 file")
    return figure
