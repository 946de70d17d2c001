"""int8 ONNX files (``export --quantize int8``, engine/backends/ort_quantize.py).

The tiny Depth Pro export (the shared ``onnx_checkpoint`` file) is quantised once per
module by ONNX Runtime for real; the int8 file describes itself, passes the
accuracy gate at load (1 %) through the one loading path and serves frames close to
the fp32 file's; a damaged int8 file is refused at load with its figure, and a network
that quantises badly (an outlier input channel in every linear layer: each output
channel's int8 scale then rounds the rest of its weights to zero) is refused at
quantisation with the figure, leaving nothing behind.

Depth Pro, not Depth Anything: the tiny Depth Anything stand-ins' outputs are nearly
constant (std 1 % of the mean), so that even every quantised layer zeroed moves their
gate figure by only 0.9 %; Depth Pro's depth and FoV follow its encoders (its int8
weights twice too large: 4 %).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from depth_pro_ros.cli import main
from depth_pro_ros.cli.parser import build_parser
from depth_pro_ros.engine import EngineConfig, Frame, create_engine
from depth_pro_ros.engine.backends import gate, onnx_export
from depth_pro_ros.engine.backends.onnx_file import META_KEY, read_onnx
from depth_pro_ros.engine.backends.ort_quantize import quantize_int8
from depth_pro_ros.engine.errors import AccuracyGateError, ExportError

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
numpy_helper = onnx.numpy_helper

CPU = EngineConfig(device="cpu", policy="all")


@pytest.fixture(scope="module")
def int8_file(onnx_checkpoint, tmp_path_factory) -> tuple[Path, Path, float]:
    """(fp32 export, its int8 version, the int8 gate figure)."""
    fp32 = onnx_checkpoint("depth_pro")
    out = tmp_path_factory.mktemp("int8") / "metric_int8.onnx"
    return fp32, out, quantize_int8(fp32, out)


def _result(path: Path, frame: Frame, **config):
    with create_engine(path, EngineConfig(device="cpu", policy="all", **config)) as engine:
        engine.submit(frame)
        result = engine.get(timeout=120)
        assert result is not None and result.ok, result and result.error
        return engine.config, result


def test_int8_file_describes_itself_passes_the_gate_and_serves(int8_file):
    fp32, int8, figure = int8_file
    assert 0.0 <= figure <= gate.LIMITS["int8"]
    model, source = read_onnx(int8), read_onnx(fp32)
    assert (model.precision, source.precision) == ("int8", "fp32")
    quant = model.meta["quantization"]
    assert quant["weights"] == "int8 per output channel" and quant["layers"] > 0
    # the gate references stay fp32 torch's: the int8 file is judged against them
    assert torch.equal(model.gate.depth, source.gate.depth)
    assert int8.stat().st_size < 0.6 * fp32.stat().st_size
    rng = np.random.default_rng(3)
    frame = Frame(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), estimate_fov=True)
    config, got = _result(int8, frame)
    assert (config.backend, config.precision) == ("onnxruntime", "int8")
    _, want = _result(fp32, frame, accuracy_gate=False)  # fp32: gated elsewhere
    # the gate's measure on a camera frame: int8 within the int8 limit of fp32
    err = np.abs(got.depth - want.depth).mean() / np.abs(want.depth).mean()
    assert err <= gate.LIMITS["int8"]
    assert got.fov_deg == pytest.approx(want.fov_deg, rel=gate.LIMITS["int8"])


def test_int8_file_refuses_another_precision_and_requantisation(int8_file, tmp_path):
    _, int8, _ = int8_file
    with pytest.raises(ValueError, match="is an int8 ONNX graph; precision must be auto "
                                         "or int8, got 'fp32'"):
        create_engine(int8, EngineConfig(device="cpu", precision="fp32"))
    with pytest.raises(ExportError, match="already int8"):
        quantize_int8(int8, tmp_path / "again.onnx")
    with pytest.raises(ExportError, match="quantize must be one of"):
        onnx_export.export_onnx(int8, tmp_path / "x.onnx", quantize="int4")
    args = build_parser().parse_args(["export", "--checkpoint", "m.pt", "-o", "m.onnx",
                                      "--quantize", "int8"])
    assert args.quantize == "int8"
    with pytest.raises(SystemExit) as info:  # refused before any export work
        main(["export", "--checkpoint", str(int8), "-o", str(tmp_path / "t.onnx"),
              "--quantize", "int8", "--format", "tensorrt"])
    assert info.value.code == 2 and not (tmp_path / "t.onnx").exists()


def test_damaged_int8_file_is_refused_at_load_with_its_figure(int8_file, tmp_path):
    _, int8, _ = int8_file
    model = onnx.load(str(int8))
    # the weights' scales (the activations' are computed at run time)
    scales = [t for t in model.graph.initializer if t.name.endswith("_scale")]
    assert scales, "no weight scales in the int8 graph"
    for t in scales:  # every int8 weight twice too large
        t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t) * 2, t.name))
    damaged = tmp_path / "damaged.onnx"
    onnx.save(model, str(damaged))
    with pytest.raises(AccuracyGateError, match="the limit is 0.01") as info:
        create_engine(damaged, CPU)
    figure = float(str(info.value).split("by ")[1].split(" ")[0])
    assert figure > gate.LIMITS["int8"]


def test_network_that_quantises_badly_is_refused_with_its_figure(onnx_checkpoint,
                                                                  tmp_path):
    """An outlier input channel in every linear layer (fp32 stays exact; int8 rounds the
    rest of every output channel to zero), with its own fp32 references: refused,
    nothing left."""
    model = onnx.load(str(onnx_checkpoint("depth_pro")))
    for t in model.graph.initializer:
        w = numpy_helper.to_array(t)
        if w.ndim == 2 and min(w.shape) >= 8:  # linear layers' weights
            w = w.copy()
            w[:, 0] = 500 * np.abs(w).max()  # torch's (out, in): input 0 in every row
            t.CopyFrom(numpy_helper.from_array(w, t.name))
    outlier = tmp_path / "outlier.onnx"
    onnx.save(model, str(outlier))
    with create_engine(outlier, EngineConfig(device="cpu", accuracy_gate=False)) as engine:
        recipe = read_onnx(outlier).gate_recipe()
        reference = gate.gate_outputs(engine.backend.run, recipe, torch.device("cpu"),
                                      torch.float32)
    (entry,) = [p for p in model.metadata_props if p.key == META_KEY]
    entry.value = json.dumps({**json.loads(entry.value), "gate": reference.to_json()})
    onnx.save(model, str(outlier))
    out = tmp_path / "out" / "outlier_int8.onnx"
    out.parent.mkdir()
    with pytest.raises(ExportError, match=r"differs from fp32 torch by \S+ on the gate "
                                          r"images .* nothing was written") as info:
        quantize_int8(outlier, out)
    figure = float(str(info.value).split("by ")[1].split(" ")[0])
    assert figure > gate.LIMITS["int8"]
    assert list(out.parent.iterdir()) == []



def test_bag_tools_engine_runs_an_int8_file_as_it_reports(int8_file, tmp_path):
    """``bags``' one engine for many bags: its options' precision ``auto`` is the file's
    int8, and the engine it creates matches those options (was: auto resolved to fp32 on
    the CPU first, which the int8 file refuses)."""
    from depth_pro_ros.bag.options import (
        BagOptions,
        check_engine,
        create_bag_engine,
        engine_config,
    )

    _, int8, _ = int8_file
    opts = BagOptions(input=tmp_path / "in", output=tmp_path / "out", checkpoint=int8,
                      image_topics=["/cam/image"], device="cpu", progress=False)
    assert engine_config(opts).precision == "auto"
    with create_bag_engine(opts) as engine:
        assert (engine.config.backend, engine.config.precision) == ("onnxruntime", "int8")
        check_engine(engine, opts)  # raises BagSetupError on any difference
