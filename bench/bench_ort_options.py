#!/usr/bin/env python3
"""ONNX Runtime session options on one network, fp32 and int8 (a script, not a test).

The stand-in ``--config`` (default ``da_vits``: Depth Anything V2-Small at 518) is
exported and quantised as ``depth-pro-ros export [--quantize int8]`` does; each file is
opened once per variant of the backend's session options (``session_options``: all
graph optimisations, sleeping threads, one inter-op thread) - a lower optimisation
level, spinning threads, no memory arena, denormals as zero, the parallel executor -
and all sessions run the prepared input of a 640x480 frame in turn, ``--reps`` times,
quiet and (the defaults and spinning only) with one core taken by another process.
Medians and minima per variant go to JSON (bench/README.md); docs/backends.md says what
was kept.
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

from depth_pro_ros.engine import EngineConfig
from depth_pro_ros.engine.backends.onnx_export import export_onnx
from depth_pro_ros.engine.backends.onnx_file import read_onnx
from depth_pro_ros.engine.backends.onnxruntime_backend import session_options
from depth_pro_ros.engine.backends.ort_quantize import quantize_int8
from depth_pro_ros.model import save_checkpoint


def _variants(ort) -> dict:
    """Variant name -> what it changes in the backend's session options."""
    level = ort.GraphOptimizationLevel

    def parallel(o):
        o.execution_mode = ort.ExecutionMode.ORT_PARALLEL
        o.inter_op_num_threads = 2

    return {
        "default": lambda o: None,
        "basic_optimisations": lambda o: setattr(o, "graph_optimization_level",
                                                 level.ORT_ENABLE_BASIC),
        "extended_optimisations": lambda o: setattr(o, "graph_optimization_level",
                                                    level.ORT_ENABLE_EXTENDED),
        "spinning": lambda o: o.add_session_config_entry(
            "session.intra_op.allow_spinning", "1"),
        "no_memory_arena": lambda o: setattr(o, "enable_cpu_mem_arena", False),
        "denormal_as_zero": lambda o: o.add_session_config_entry(
            "session.set_denormal_as_zero", "1"),
        "parallel_executor": parallel,
    }


def _time(sessions: dict, x: np.ndarray, reps: int) -> dict:
    times = {name: [] for name in sessions}
    load = os.getloadavg()[0]
    for _ in range(reps):
        for name, session in sessions.items():
            t0 = time.perf_counter()
            session.run(None, {"image": x})
            times[name].append(1e3 * (time.perf_counter() - t0))
    return {"load_average": [load, os.getloadavg()[0]],
            **{name: {"median_ms": statistics.median(t), "min_ms": min(t), "n": reps}
               for name, t in times.items()}}


def main(argv=None) -> int:
    p = parser(__doc__.splitlines()[1], "_ort_options")
    p.set_defaults(config="da_vits", device="cpu")
    p.add_argument("--reps", type=int, default=3, help="runs per variant and condition")
    args = p.parse_args(argv)
    import onnxruntime as ort

    work = temp_dir()
    checkpoint = save_checkpoint(build_model(args.config, torch.device("cpu"), "fp32"),
                                 work / f"{args.config}.pt")
    files = {"fp32": export_onnx(checkpoint, work / f"{args.config}.onnx").path}
    files["int8"] = work / f"{args.config}_int8.onnx"
    quantize_int8(files["fp32"], files["int8"])
    model = read_onnx(files["fp32"])
    image = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, 480, 640, 3),
                                                               dtype=np.uint8))
    x = np.ascontiguousarray(model.gate_recipe().prepare(image, "rgb", torch.float32))
    sessions = {}
    for precision, path in files.items():
        for name, change in _variants(ort).items():
            options = session_options(EngineConfig(device="cpu"))
            change(options)
            session = ort.InferenceSession(str(path), options,
                                           providers=["CPUExecutionProvider"])
            session.run(None, {"image": x})  # warm-up
            sessions[f"{precision}/{name}"] = session
    report = {"device": device_name(torch.device("cpu")), "config": args.config,
              "input": list(x.shape), "cores": len(os.sched_getaffinity(0)),
              "onnxruntime": ort.__version__, "conditions": {}}
    report["conditions"]["quiet"] = _time(sessions, x, args.reps)
    busy = {k: s for k, s in sessions.items() if k.endswith(("/default", "/spinning"))}
    with one_core_taken():
        report["conditions"]["one_core_taken"] = _time(busy, x, args.reps)
    for condition, rows in report["conditions"].items():
        for name, row in rows.items():
            if name != "load_average":
                print(f"{condition:15s} {name:30s} median {row['median_ms']:8.1f} ms  "
                      f"min {row['min_ms']:8.1f} ms")
    path = results_path(args, report["device"], "_ort_options")
    write_json(report, path)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
