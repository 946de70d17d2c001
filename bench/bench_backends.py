#!/usr/bin/env python3
"""Backend comparison on one network: torch eager vs onnxruntime fp32 and int8 (a script,
not a test).

The stand-in ``--config`` (default ``da_vits``: Depth Anything V2-Small's architecture at
its 518 input) is saved as a checkpoint and exported with ``depth-pro-ros export``'s
code, and that file quantised as ``export --quantize int8`` does; the three files are
loaded through ``create_engine`` (torch: ``backend torch``; the ``.onnx`` files:
``backend auto`` -> onnxruntime, after their accuracy gates). With ``--openvino`` (the
``openvino`` package importable) OpenVINO's CPU plugin also runs the fp32 file,
model-only, in fp32 and in its default precision (bf16 on CPUs with AVX512-BF16): not a
backend of this project, measured to decide whether it should be one. Then, interleaved
in one process (every runner in turn each repetition, so a change of load on a shared
machine hits all alike):

1. model-only: the backend's forward pass on the prepared network input of a
   ``--width`` x ``--height`` frame;
2. pipeline: that frame through the whole engine (submit -> result: preprocess,
   forward, post-processing), one frame at a time;

each quiet and again with one core taken by another process (``python -c "while True:
pass"``, started and stopped here), as a robot's CPU is never idle. Medians, and each
backend's pipeline time over its own forward, are written as JSON (see
bench/README.md). Run it as ``python bench/bench_backends.py``.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import numpy as np
import torch
from _common import (
    build_model,
    device_name,
    one_core_taken,
    parser,
    results_path,
    temp_dir,
    write_json,
)

from depth_pro_ros.engine import EngineConfig, Frame, Intrinsics, create_engine
from depth_pro_ros.engine.backends.onnx_export import export_onnx
from depth_pro_ros.engine.backends.ort_quantize import quantize_int8
from depth_pro_ros.model import save_checkpoint


def _frame(width: int, height: int) -> Frame:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    k = Intrinsics(fx=0.8 * width, fy=0.8 * width, cx=width / 2, cy=height / 2,
                   width=width, height=height)
    return Frame(image, intrinsics=k)


def _network_input(engine, frame: Frame) -> torch.Tensor:
    return engine.recipe.prepare(torch.from_numpy(frame.image[None]), "rgb",
                                 engine.backend.dtype)


def _model_only(run, x: torch.Tensor) -> float:
    """One forward pass ``run(x)`` on the frame's prepared input, ms."""
    t0 = time.perf_counter()
    run(x)
    return 1e3 * (time.perf_counter() - t0)


def _openvino(path, x: torch.Tensor) -> dict:
    """OpenVINO's CPU plugin on the exported file: name -> run(x), fp32 and its default
    precision (empty without the package)."""
    try:
        import openvino
    except ImportError:
        return {}
    core, runs = openvino.Core(), {}
    threads = len(os.sched_getaffinity(0))
    for name, hint in (("openvino_fp32", {"INFERENCE_PRECISION_HINT": "f32"}),
                       ("openvino_default", {})):
        compiled = core.compile_model(str(path), "CPU", {
            "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads, **hint})
        request = compiled.create_infer_request()
        runs[name] = lambda a, r=request: torch.from_numpy(
            np.array(r.infer({"image": a.numpy()})[0]))
        runs[name].precision = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    return runs


def _agreement(runs: dict, x: torch.Tensor) -> dict:
    """Each runner's output on the frame against onnxruntime fp32's: the gate's relative
    L1, and the same over the output's variation about its mean (the random stand-ins'
    outputs are nearly constant, which hides errors from the first)."""
    ref = runs["onnxruntime"](x).float()
    out = {}
    for name, run in runs.items():
        diff = (run(x).float() - ref).abs().mean()
        out[name] = {"relative_l1": float(diff / ref.abs().mean()),
                     "relative_l1_of_variation": float(diff / (ref - ref.mean()).abs().mean())}
    return out


def _pipeline(engine, frame: Frame) -> float:
    """One frame through the whole engine, submit -> result, ms."""
    t0 = time.perf_counter()
    engine.submit(frame)
    result = engine.get(timeout=600)
    if result is None or not result.ok:
        raise RuntimeError(f"frame failed: {result and result.error}")
    return 1e3 * (time.perf_counter() - t0)


def _measure(engines: dict, runs: dict, x: torch.Tensor, frame: Frame, reps: int) -> dict:
    """Interleaved medians of model-only (every runner) and pipeline (every engine)
    times, and the load average before and after."""
    times = {name: {"model_only": [], "pipeline": []} for name in runs}
    load = os.getloadavg()[0]
    for _ in range(reps):
        for name, run in runs.items():
            times[name]["model_only"].append(_model_only(run, x))
            if name in engines:
                times[name]["pipeline"].append(_pipeline(engines[name], frame))
    out = {"load_average": [load, os.getloadavg()[0]]}
    base = {kind: statistics.median(times["torch"][kind]) for kind in times["torch"]}
    for name, kinds in times.items():
        forward = statistics.median(kinds["model_only"])
        row = out[name] = {"model_only_median_ms": forward,
                           "model_only_min_ms": min(kinds["model_only"]),
                           "model_only_vs_torch_model_only": forward / base["model_only"],
                           "n": reps}
        if kinds["pipeline"]:
            whole = statistics.median(kinds["pipeline"])
            row.update(pipeline_median_ms=whole, pipeline_min_ms=min(kinds["pipeline"]),
                       pipeline_over_forward=whole / forward,
                       pipeline_vs_torch_pipeline=whole / base["pipeline"])
    return out


def main(argv=None) -> int:
    p = parser(__doc__.splitlines()[1], "_backends")
    p.set_defaults(config="da_vits", device="cpu")
    p.add_argument("--reps", type=int, default=7, help="repetitions per condition")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--openvino", action="store_true",
                   help="also OpenVINO on the fp32 file, model-only (needs openvino)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    work = temp_dir()
    checkpoint = save_checkpoint(build_model(args.config, torch.device("cpu"), "fp32"),
                                 work / f"{args.config}.pt")
    t0 = time.perf_counter()
    exported = export_onnx(checkpoint, work / f"{args.config}.onnx")
    print(f"exported in {time.perf_counter() - t0:.0f} s (self-check "
          f"{exported.self_check:.2g})", flush=True)
    int8 = work / f"{args.config}_int8.onnx"
    int8_gate = quantize_int8(exported.path, int8)
    config = EngineConfig(device=str(device), policy="all")
    engines = {"torch": create_engine(checkpoint, EngineConfig(
                   device=str(device), policy="all", precision="fp32", backend="torch")),
               "onnxruntime": create_engine(exported.path, config),
               "onnxruntime_int8": create_engine(int8, config)}
    frame = _frame(args.width, args.height)
    x = _network_input(engines["torch"], frame)
    runs = {name: lambda a, e=e: e.backend.run(a, False, None)[0]
            for name, e in engines.items()}
    if args.openvino:
        runs.update(_openvino(exported.path, x))
    for engine in engines.values():  # warm-up: first-run allocations, ORT's arena
        _pipeline(engine, frame)
    agreement = _agreement(runs, x)  # also the OpenVINO runners' warm-up
    report = {"device": device_name(device), "config": args.config,
              "description": engines["torch"].recipe.info.description,
              "frame": [args.height, args.width], "cores": len(os.sched_getaffinity(0)),
              "torch_threads": torch.get_num_threads(),
              "ort_threads": engines["onnxruntime"].backend.session.get_session_options()
              .intra_op_num_threads,
              "export_self_check": exported.self_check, "int8_gate_figure": int8_gate,
              "agreement_with_onnxruntime_fp32": agreement,
              "openvino_precisions": {n: getattr(r, "precision", None) for n, r in
                                      runs.items() if n.startswith("openvino")},
              "load_average_at_start": os.getloadavg()[0],
              "note": "shared machine: other work may have run meanwhile (load_average "
                      "per condition); all runners interleaved per repetition",
              "conditions": {}}
    report["conditions"]["quiet"] = _measure(engines, runs, x, frame, args.reps)
    with one_core_taken():
        report["conditions"]["one_core_taken"] = _measure(engines, runs, x, frame,
                                                          args.reps)
    report["load_average_at_end"] = os.getloadavg()[0]  # other work on a shared machine
    for engine in engines.values():
        engine.close()
    for condition, rows in report["conditions"].items():
        for name, row in rows.items():
            if name == "load_average":
                continue
            pipeline = (f"  pipeline {row['pipeline_median_ms']:8.1f} ms  x torch pipeline "
                        f"{row['pipeline_vs_torch_pipeline']:.2f}"
                        if "pipeline_median_ms" in row else "")
            print(f"{condition:15s} {name:17s} forward {row['model_only_median_ms']:8.1f} "
                  f"ms{pipeline}")
    path = results_path(args, report["device"], "_backends")
    write_json(report, path)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
