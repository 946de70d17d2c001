#!/usr/bin/env python3
"""Depth Pro at 1536 x 1536 on a GPU: torch fp16 / bf16 and a TensorRT fp16 engine, each
against torch fp32 (a script, not a test).

The ``--config`` stand-in (default ``full``: the released Depth Pro's architecture,
random weights) runs on the network input its recipe makes of the first gate scene
(:func:`depth_pro_ros.engine.backends.gate.gate_images`), FoV head on. torch fp32 gives
the reference; torch fp16 and bf16 run copies of the same weights cast down; TensorRT
fp16 runs the engine that ``backend tensorrt`` builds from the file ``depth-pro-ros
export`` writes (through ``create_engine``, accuracy gate included). For each: the
median forward time over ``--reps`` runs after warm-up (the device synchronised around
each run) and AbsRel of its depth and FoV against fp32 (``mean |out - ref| / mean |ref|``
over the full output, as the gate computes it).

The JSON is rewritten after every step, so a run stopped by ``bench/gpu_check.sh``'s time
bound keeps what it measured. Without CUDA it records that and stops; without the
``tensorrt`` package it measures torch alone and records why TensorRT is missing. Run as
``python bench/bench_tensorrt.py [--reps N] [--out PATH]``; see bench/README.md.
"""

from __future__ import annotations

import copy
import functools
import statistics
import time

import torch
from _common import build_model, device_name, parser, results_path, temp_dir, write_json

from depth_pro_ros.engine import EngineConfig, create_engine
from depth_pro_ros.engine.backends import gate
from depth_pro_ros.model import recipe_for, save_checkpoint


def _median_ms(run, reps: int, warmup: int = 3) -> float:
    """Median wall time of ``run()`` in ms, the device idle before and after each run."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(reps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        run()
        torch.cuda.synchronize()
        times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times)


def _against(out: tuple, ref: tuple) -> dict:
    """AbsRel of depth and FoV against the fp32 reference."""
    figures = {"abs_rel_depth": gate.relative_l1(out[0].float(), ref[0])}
    if ref[1] is not None:
        figures["abs_rel_fov"] = (gate.relative_l1(out[1].float(), ref[1])
                                  if out[1] is not None else float("inf"))
    return figures


def _tensorrt_version() -> tuple[str | None, str | None]:
    try:
        import tensorrt
    except ImportError as exc:
        return None, (f"tensorrt is not importable here ({exc}): pip install "
                      "'depth_pro_ros[tensorrt]'; TensorRT was not measured")
    return tensorrt.__version__, None


def main(argv=None) -> int:
    p = parser(__doc__.split("\n\n")[0], "_tensorrt")
    p.add_argument("--reps", type=int, default=20, help="timed runs per variant")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    path = results_path(args, device_name(device) if device.type == "cuda" else "cpu",
                        "_tensorrt")
    trt_version, trt_missing = _tensorrt_version()
    report = {"config": args.config, "device": None, "torch": torch.__version__,
              "tensorrt": trt_version, "tensorrt_missing": trt_missing,
              "reps": args.reps, "results": {}}
    if device.type != "cuda" or not torch.cuda.is_available():
        report["skipped"] = "no CUDA device: nothing measured"
        write_json(report, path)
        print(report["skipped"])
        return 0
    report["device"] = device_name(device)
    results = report["results"]

    def record(name: str, entry: dict) -> None:
        results[name] = entry
        write_json(report, path)
        print(name, entry, flush=True)

    model = build_model(args.config, torch.device("cpu"), "fp32")
    recipe = recipe_for(model, 0)
    work = temp_dir()
    checkpoint = save_checkpoint(model, work / f"{args.config}.pt") if trt_version else None
    model = model.to(device)
    images = torch.from_numpy(gate.gate_images()[:1]).to(device)
    x = recipe.prepare(images, "rgb", torch.float32)
    report["input"] = list(x.shape)
    with torch.inference_mode():
        run = functools.partial(recipe.run, model, x, True, None)
        ref = tuple(None if t is None else t.float() for t in run())
        record("torch_fp32", {"median_ms": _median_ms(run, args.reps)})
        for name, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
            run = functools.partial(recipe.run, copy.deepcopy(model).to(dtype),
                                    x.to(dtype), True, None)
            record(f"torch_{name}", {"median_ms": _median_ms(run, args.reps),
                                     **_against(run(), ref)})
    run = model = None  # the GPU memory goes to TensorRT's build
    torch.cuda.empty_cache()
    if trt_version is None:
        return 0
    from depth_pro_ros.engine.backends.onnx_export import export_onnx

    t0 = time.perf_counter()
    exported = export_onnx(checkpoint, work / f"{args.config}.onnx")
    record("onnx_export", {"seconds": time.perf_counter() - t0})
    t0 = time.perf_counter()
    with create_engine(exported.path, EngineConfig(device=str(device), backend="tensorrt",
                                                   precision="fp16", policy="all")
                       ) as engine:
        build_s = time.perf_counter() - t0
        backend = engine.backend
        run = functools.partial(backend.run, x, True, None)
        with torch.inference_mode():
            record("tensorrt_fp16", {"median_ms": _median_ms(run, args.reps),
                                     "build_and_gate_s": build_s, "built": backend.builds,
                                     **_against(run(), ref)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
