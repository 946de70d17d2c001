#!/usr/bin/env python3
"""Backend comparison on one network: torch eager vs onnxruntime (a script, not a test).

The stand-in ``--config`` (default ``da_vits``: Depth Anything V2-Small's architecture at
its 518 input) is saved as a checkpoint and exported with ``depth-pro-ros export``'s
code; both files are loaded through ``create_engine`` (torch: ``backend torch``; the
``.onnx``: ``backend auto`` -> onnxruntime, after its accuracy gate). Then, interleaved
in one process (torch and onnxruntime alternate every repetition, so a change of load
on a shared machine hits both alike):

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
import subprocess
import sys
import time

import numpy as np
import torch
from _common import build_model, device_name, parser, results_path, temp_dir, write_json

from depth_pro_ros.engine import EngineConfig, Frame, Intrinsics, create_engine
from depth_pro_ros.engine.backends.onnx_export import export_onnx
from depth_pro_ros.model import save_checkpoint

BACKENDS = ("torch", "onnxruntime")


def _frame(width: int, height: int) -> Frame:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    k = Intrinsics(fx=0.8 * width, fy=0.8 * width, cx=width / 2, cy=height / 2,
                   width=width, height=height)
    return Frame(image, intrinsics=k)


def _model_only(engine, frame: Frame) -> float:
    """One forward pass of the backend on the frame's prepared input, ms."""
    images = torch.from_numpy(frame.image[None])
    x = engine.recipe.prepare(images, "rgb", engine.backend.dtype)
    t0 = time.perf_counter()
    engine.backend.run(x, False, None)
    return 1e3 * (time.perf_counter() - t0)


def _pipeline(engine, frame: Frame) -> float:
    """One frame through the whole engine, submit -> result, ms."""
    t0 = time.perf_counter()
    engine.submit(frame)
    result = engine.get(timeout=600)
    if result is None or not result.ok:
        raise RuntimeError(f"frame failed: {result and result.error}")
    return 1e3 * (time.perf_counter() - t0)


def _measure(engines: dict, frame: Frame, reps: int) -> dict:
    """Interleaved medians of model-only and pipeline times per backend."""
    times = {(b, kind): [] for b in engines for kind in ("model_only", "pipeline")}
    for _ in range(reps):
        for name, engine in engines.items():
            times[(name, "model_only")].append(_model_only(engine, frame))
            times[(name, "pipeline")].append(_pipeline(engine, frame))
    out = {}
    for name in engines:
        forward = statistics.median(times[(name, "model_only")])
        whole = statistics.median(times[(name, "pipeline")])
        out[name] = {"model_only_median_ms": forward, "pipeline_median_ms": whole,
                     "pipeline_over_forward": whole / forward, "n": reps}
    base = out["torch"]
    for name in engines:
        out[name]["pipeline_vs_torch_pipeline"] = (out[name]["pipeline_median_ms"]
                                                   / base["pipeline_median_ms"])
        out[name]["model_only_vs_torch_model_only"] = (out[name]["model_only_median_ms"]
                                                       / base["model_only_median_ms"])
    return out


def main(argv=None) -> int:
    p = parser(__doc__.splitlines()[1], "_backends")
    p.set_defaults(config="da_vits", device="cpu")
    p.add_argument("--reps", type=int, default=7, help="repetitions per condition")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    work = temp_dir()
    checkpoint = save_checkpoint(build_model(args.config, torch.device("cpu"), "fp32"),
                                 work / f"{args.config}.pt")
    t0 = time.perf_counter()
    exported = export_onnx(checkpoint, work / f"{args.config}.onnx")
    print(f"exported in {time.perf_counter() - t0:.0f} s (self-check "
          f"{exported.self_check:.2g})", flush=True)
    config = EngineConfig(device=str(device), policy="all", precision="fp32")
    engines = {"torch": create_engine(checkpoint, EngineConfig(
                   device=str(device), policy="all", precision="fp32", backend="torch")),
               "onnxruntime": create_engine(exported.path, config)}
    frame = _frame(args.width, args.height)
    for engine in engines.values():  # warm-up: first-run allocations, ORT's arena
        _pipeline(engine, frame)
    report = {"device": device_name(device), "config": args.config,
              "description": engines["torch"].recipe.info.description,
              "frame": [args.height, args.width], "cores": len(os.sched_getaffinity(0)),
              "torch_threads": torch.get_num_threads(),
              "ort_threads": engines["onnxruntime"].backend.session.get_session_options()
              .intra_op_num_threads,
              "export_self_check": exported.self_check,
              "load_average_at_start": os.getloadavg()[0],
              "note": "shared machine: other work may have run meanwhile; both backends "
                      "interleaved per repetition", "conditions": {}}
    report["conditions"]["quiet"] = _measure(engines, frame, args.reps)
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        report["conditions"]["one_core_taken"] = _measure(engines, frame, args.reps)
    finally:
        hog.kill()
        hog.wait()
    report["load_average_at_end"] = os.getloadavg()[0]  # other work on a shared machine
    for engine in engines.values():
        engine.close()
    for condition, rows in report["conditions"].items():
        for name, row in rows.items():
            print(f"{condition:15s} {name:12s} forward {row['model_only_median_ms']:8.1f} ms"
                  f"  pipeline {row['pipeline_median_ms']:8.1f} ms  "
                  f"x torch pipeline {row['pipeline_vs_torch_pipeline']:.2f}")
    path = results_path(args, report["device"], "_backends")
    write_json(report, path)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
