#!/usr/bin/env python3
"""Benchmark of the streaming depth engine (a script, not a test).

For each precision it measures:

1. model-only: the network's forward pass on a ready (B, 3, S, S) input;
2. pipeline: 1920x1080 bgr8 frames through ``DepthEngine`` as fast as they are taken
   (policy "all") and at a fixed rate (policy "latest"): throughput, submit -> result
   latency, dropped frames;
3. the same pipeline with ``overlap=False`` (the sequential baseline);
4. overlap_ratio = pipeline fps / model-only fps;
5. peak memory (CUDA: ``torch.cuda.max_memory_allocated``; CPU: the process's peak RSS);
6. per-stage medians of ``DepthResult.timings_ms``;
7. for fp16 / bf16, the depth's agreement with fp32 on the same frames (AbsRel, largest
   relative and absolute error; the focal estimate's relative error with ``--focal
   estimate``).

With a Depth Anything configuration (``--config da_vits`` ..., ``pda_*`` for Prompt Depth
Anything, whose frames carry a 192x256 prompt) the network input follows that family's
recipe for the frame size (``--input-size``: its size parameter, 0 = the default).

It prints a table and writes JSON (see bench/README.md). Runs on CUDA when available,
else on the CPU with the tiny configuration and few frames. Run it as
``python bench/bench_engine.py`` (it imports ``bench/_common.py``).
"""

from __future__ import annotations

import argparse
import math
import platform
import resource
import sys
import threading
import time

import numpy as np
import torch
from _common import CONFIGS, build_model, device_name, parser, results_path, write_json
from accuracy import compare_depth, relative_error

from depth_pro_ros.bag.sample import sample_frames
from depth_pro_ros.engine import DepthEngine, DepthResult, EngineConfig, Frame, Intrinsics
from depth_pro_ros.model import BatchRecipe, parse_precision, recipe_for

STAGES = ("queue", "preprocess", "inference", "postprocess", "total")


# --------------------------------------------------------------------------- helpers
def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def summary(values_ms: list[float]) -> dict:
    return {
        "median_ms": percentile(values_ms, 50),
        "p90_ms": percentile(values_ms, 90),
        "n": len(values_ms),
    }


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_memory_allocated"
    # ru_maxrss is in kB on Linux (bytes on macOS); it is the process-lifetime peak.
    scale = 1 if sys.platform == "darwin" else 1024
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    return rss / 2**20, "cpu_peak_rss"


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


# --------------------------------------------------------------------------- measurements
PROMPT_SHAPE = (192, 256)  # the LiDAR depth Prompt Depth Anything was trained with


def prompt_for(recipe: BatchRecipe, seed: int) -> np.ndarray | None:
    """A metric prompt (1-6 m) for Prompt Depth Anything frames, else None."""
    if not recipe.info.needs_prompt:
        return None
    return (1.0 + 5.0 * np.random.default_rng(seed).random(PROMPT_SHAPE)).astype(np.float32)


@torch.inference_mode()
def bench_model_only(model, recipe: BatchRecipe, image: np.ndarray, device, dtype,
                     batch: int, estimate: bool, frames: int, warmup: int) -> dict:
    """The forward pass alone, on the network input the recipe makes of ``image``."""
    images = torch.from_numpy(np.stack([image] * batch)).to(device)
    x = recipe.prepare(images, "bgr", dtype)
    prompt = prompt_for(recipe, 0)
    if prompt is not None:
        prompt = torch.from_numpy(np.stack([prompt] * batch)[:, None]).to(device)

    def forward():
        return recipe.run(model, x, estimate and recipe.info.has_fov_head, prompt)

    for _ in range(warmup):
        forward()
    synchronize(device)
    per_frame = []
    for _ in range(max(1, math.ceil(frames / batch))):
        t0 = time.perf_counter()
        forward()
        synchronize(device)
        per_frame.append(1e3 * (time.perf_counter() - t0) / batch)
    out = summary(per_frame)
    out["fps"] = 1e3 / out["median_ms"]
    out["input_shape"] = list(x.shape)
    return out


class Recorder:
    """``on_result`` callback: delivery times and results, keyed by the frame index."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.delivered: dict[int, float] = {}
        self.results = []
        self.failed = 0

    def __call__(self, result) -> None:
        now = time.perf_counter()
        with self.lock:
            self.delivered[result.meta] = now
            if result.ok:
                self.results.append(result)
            else:
                self.failed += 1
                if self.failed <= 3:
                    print(f"  frame {result.meta} failed: {result.error}", file=sys.stderr)


def run_pipeline(model, images: list[np.ndarray], intrinsics: Intrinsics | None,
                 config: EngineConfig, frames: int, warmup: int, rate: float | None) -> dict:
    """Feed ``frames`` frames (after ``warmup`` more) as fast as possible or at ``rate``."""
    recorder = Recorder()
    submitted: dict[int, float] = {}
    with DepthEngine(model, config, on_result=recorder) as engine:
        prompts = [prompt_for(engine.recipe, i) for i in range(len(images))]
        for i in range(warmup):
            engine.submit(Frame(image=images[i % len(images)], channel_order="bgr",
                                intrinsics=intrinsics, meta=-1 - i,
                                prompt=prompts[i % len(images)]))
            engine.drain()
        with recorder.lock:
            recorder.delivered.clear()
            recorder.results.clear()
            recorder.failed = 0
        dropped0 = engine.stats.dropped
        t0 = time.perf_counter()
        for i in range(frames):
            if rate:
                delay = t0 + i / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            frame = Frame(image=images[i % len(images)], channel_order="bgr",
                          intrinsics=intrinsics, meta=i, prompt=prompts[i % len(images)])
            submitted[i] = time.perf_counter()
            engine.submit(frame)
        engine.drain()
        t_end = time.perf_counter()
        dropped = engine.stats.dropped - dropped0

    delivered = recorder.delivered
    latencies = [1e3 * (delivered[i] - submitted[i]) for i in sorted(delivered)]
    last = max(delivered.values()) if delivered else t_end
    out = {"policy": config.policy, "overlap": config.overlap, "frames": frames,
           "delivered": len(delivered), "dropped": dropped, "failed": recorder.failed,
           "fps": len(delivered) / (last - t0) if delivered else 0.0}
    if rate:
        out["rate_hz"] = rate
    out["latency"] = summary(latencies)
    out["stages_median_ms"] = {
        key: percentile([r.timings_ms[key] for r in recorder.results if key in r.timings_ms],
                        50)
        for key in STAGES
    }
    return out


def depth_results(model, images: list[np.ndarray], intrinsics: Intrinsics | None,
                  input_size: int) -> list[DepthResult]:
    """One result per image, through the engine (as the pipeline runs deliver them)."""
    with DepthEngine(model, EngineConfig(policy="all", input_size=input_size)) as engine:
        results = []
        for i, img in enumerate(images):  # one at a time: the results are single-frame runs
            engine.submit(Frame(image=img, channel_order="bgr", intrinsics=intrinsics,
                                prompt=prompt_for(engine.recipe, i)))
            results.append(engine.get())
    failed = [r.error for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"accuracy frames failed: {failed}")
    return results


def reference_results(args, device: torch.device, images: list[np.ndarray],
                      intrinsics: Intrinsics | None) -> list[DepthResult]:
    """The fp32 results the reduced precisions are compared with (same weights, rounded)."""
    model = build_model(args.config, device, "fp32")
    results = depth_results(model, images, intrinsics, args.input_size)
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return results


def accuracy_vs_fp32(results: list[DepthResult], reference: list[DepthResult]) -> dict:
    """Agreement of each frame's depth (and focal estimate) with fp32, worst case over frames.

    ``abs_rel`` is the mean over frames of each frame's mean |d - r| / r; ``max_rel`` and
    ``max_abs_m`` the largest relative and absolute (metres) error of any pixel;
    ``delta1`` the smallest per-frame share of pixels within a factor 1.25.
    """
    per_frame = [compare_depth(r.depth, ref.depth) for r, ref in zip(results, reference)]
    out = {
        "frames": len(per_frame),
        "abs_rel": float(np.mean([m["abs_rel"] for m in per_frame])),
        "max_rel": max(m["max_rel"] for m in per_frame),
        "max_abs_m": max(m["max_abs"] for m in per_frame),
        "delta1": min(m["delta1"] for m in per_frame),
        "valid_fraction": min(m["valid_fraction"] for m in per_frame),
        "per_frame_abs_rel": [m["abs_rel"] for m in per_frame],
    }
    if all(r.focal_estimate_px is not None for r in (*results, *reference)):
        out["focal_rel_error"] = max(relative_error(r.focal_estimate_px, ref.focal_estimate_px)
                                     for r, ref in zip(results, reference))
    return out


def bench_precision(args, device: torch.device, precision: str,
                    images: list[np.ndarray], reference: list[DepthResult] | None) -> dict:
    dtype = parse_precision(precision)
    t_build = time.perf_counter()
    model = build_model(args.config, device, precision)
    synchronize(device)
    reset_peak_memory(device)  # after the fp32 build: the peak counts weights in `precision`
    print(f"[{precision}] model built in {time.perf_counter() - t_build:.1f} s "
          f"({sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters)")
    estimate = args.focal == "estimate"
    intrinsics = focal_intrinsics(args)
    recipe = recipe_for(model, args.input_size)

    model_only = bench_model_only(model, recipe, images[0], device, dtype, args.batch,
                                  estimate, args.frames, args.warmup)
    print(f"[{precision}] {recipe.info.description}: model-only "
          f"{model_only['median_ms']:.1f} ms/frame")
    if args.model_only:
        return {"precision": precision, "model": recipe.info.description,
                "parameters": sum(p.numel() for p in model.parameters()),
                "network_input": [args.batch, 3, *recipe.network_size(args.height, args.width)],
                "model_only": model_only}
    base = dict(device=str(device), precision=precision, compile=args.compile,
                cuda_graphs=args.cuda_graphs, points=args.points, input_size=args.input_size)
    fast = run_pipeline(model, images, intrinsics,
                        EngineConfig(policy="all", queue_size=args.queue_size,
                                     batch_size=args.batch, **base),
                        args.frames, args.warmup, rate=None)
    print(f"[{precision}] pipeline {fast['fps']:.2f} fps")
    rate = args.rate or max(0.1, round(0.8 * fast["fps"], 2))
    fixed = run_pipeline(model, images, intrinsics, EngineConfig(policy="latest", **base),
                         args.frames, args.warmup, rate=rate)
    print(f"[{precision}] fixed rate {rate:g} Hz: {fixed['fps']:.2f} fps out")
    sequential = run_pipeline(model, images, intrinsics,
                              EngineConfig(policy="all", queue_size=args.queue_size,
                                           batch_size=args.batch, overlap=False, **base),
                              args.frames, args.warmup, rate=None)
    print(f"[{precision}] sequential {sequential['fps']:.2f} fps")
    memory, memory_kind = peak_memory_mb(device)
    accuracy = None
    if reference:
        frames = images[:len(reference)]
        accuracy = accuracy_vs_fp32(depth_results(model, frames, intrinsics, args.input_size),
                                    reference)
        print(f"[{precision}] vs fp32: AbsRel {accuracy['abs_rel']:.2e}, "
              f"max rel {accuracy['max_rel']:.2e}, max {accuracy['max_abs_m']:.2e} m")
    parameters = sum(p.numel() for p in model.parameters())
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {
        "precision": precision,
        "model_only": model_only,
        "pipeline": fast,
        "fixed_rate": fixed,
        "sequential": sequential,
        "overlap_ratio": fast["fps"] / model_only["fps"],
        "sequential_ratio": sequential["fps"] / model_only["fps"],
        "speedup_vs_sequential": fast["fps"] / sequential["fps"] if sequential["fps"] else None,
        "peak_memory_mb": memory,
        "peak_memory_kind": memory_kind,
        "accuracy_vs_fp32": accuracy,
        "model": recipe.info.description,
        "parameters": parameters,
        "network_input": [args.batch, 3, *recipe.network_size(args.height, args.width)],
    }


# --------------------------------------------------------------------------- output
def fmt(value, spec=".1f") -> str:
    return "-" if value is None else format(value, spec)


def print_table(report: dict) -> None:
    print()
    print(f"device: {report['device']} | torch {report['torch']} | CUDA {report['cuda']} | "
          f"config {report['config']} | input {report['input']['width']}x"
          f"{report['input']['height']} {report['input']['encoding']} | focal "
          f"{report['focal']} | frames {report['frames']} (+{report['warmup']} warm-up)")
    header = ("precision", "model ms", "model p90", "model fps", "pipe fps", "pipe lat",
              "pipe p90", "rate Hz", "rate lat", "rate p90", "dropped", "seq fps",
              "seq lat", "overlap", "peak MB", "AbsRel", "max rel")
    rows = []
    for run in report["runs"]:
        mo, pl, fx, sq = run["model_only"], run["pipeline"], run["fixed_rate"], \
            run["sequential"]
        rows.append((
            run["precision"], fmt(mo["median_ms"]), fmt(mo["p90_ms"]), fmt(mo["fps"], ".2f"),
            fmt(pl["fps"], ".2f"), fmt(pl["latency"]["median_ms"]),
            fmt(pl["latency"]["p90_ms"]), fmt(fx["rate_hz"], ".3g"),
            fmt(fx["latency"]["median_ms"]), fmt(fx["latency"]["p90_ms"]),
            f"{fx['dropped']}/{fx['frames']}", fmt(sq["fps"], ".2f"),
            fmt(sq["latency"]["median_ms"]), fmt(run["overlap_ratio"], ".2f"),
            fmt(run["peak_memory_mb"], ".0f"),
            *[fmt((run["accuracy_vs_fp32"] or {}).get(key), ".1e")
              for key in ("abs_rel", "max_rel")],
        ))
    _print_rows(header, rows)
    print()
    header = ("precision", *[f"{s} ms" for s in STAGES])
    rows = [(run["precision"], *[fmt(run["pipeline"]["stages_median_ms"][s]) for s in STAGES])
            for run in report["runs"]]
    print("per-stage medians (pipeline run, from DepthResult.timings_ms):")
    _print_rows(header, rows)


def _print_rows(header, rows) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    for row in (header, *rows):
        print("  ".join(str(c).rjust(w) for c, w in zip(row, widths)))


# --------------------------------------------------------------------------- main
def focal_intrinsics(args) -> Intrinsics | None:
    """The frames' known intrinsics, or None when the FoV head estimates the focal."""
    if args.focal == "estimate":
        return None
    return Intrinsics.from_focal(0.8 * args.width, args.width, args.height)


def parse_args(argv=None) -> argparse.Namespace:
    cuda = torch.cuda.is_available()
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--precision", nargs="+", choices=["fp32", "fp16", "bf16"],
                   default=["fp32", "fp16", "bf16"] if cuda else ["fp32"])
    p.add_argument("--frames", type=int, default=100 if cuda else 8,
                   help="measured frames per run")
    p.add_argument("--warmup", type=int, default=10 if cuda else 1,
                   help="frames (or forward passes) before measuring")
    p.add_argument("--rate", type=float, default=None,
                   help="fixed input rate in Hz (default: 80%% of the measured pipeline fps)")
    p.add_argument("--width", type=int, default=1920)
    p.add_argument("--height", type=int, default=1080)
    p.add_argument("--focal", choices=["known", "estimate"], default="known",
                   help="known focal (CameraInfo: FoV head skipped) or estimated (FoV head)")
    p.add_argument("--batch", type=int, default=1, help="network batch (engine batch_size)")
    p.add_argument("--queue-size", type=int, default=4)
    p.add_argument("--accuracy-frames", type=int, default=4, choices=range(5), metavar="0-4",
                   help="frames whose fp16/bf16 depth is compared with fp32 (0: none)")
    p.add_argument("--points", action="store_true", help="also compute point clouds")
    p.add_argument("--compile", action="store_true", help="torch.compile the network")
    p.add_argument("--cuda-graphs", action="store_true", help="replay the network as a graph")
    p.add_argument("--model-only", action="store_true",
                   help="measure the forward pass only (no pipeline runs, no accuracy)")
    p.add_argument("--input-size", type=int, default=0,
                   help="Depth Anything's size parameter (V2: shorter-side bound, default "
                        "518; Prompt: longer-side bound, default 1008); Depth Pro: 0")
    args = p.parse_args(argv)
    if args.frames < 1 or args.warmup < 0 or args.batch < 1:
        p.error("--frames and --batch must be >= 1, --warmup >= 0")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("CUDA requested but not available", file=sys.stderr)
        return 2
    name = device_name(device)
    report = {
        "device": name,
        "device_type": device.type,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
        "config": args.config,
        "model_config": CONFIGS[args.config]().to_dict(),
        "precision": args.precision,
        "input": {"width": args.width, "height": args.height, "encoding": "bgr8"},
        "focal": args.focal,
        "frames": args.frames,
        "warmup": args.warmup,
        "batch": args.batch,
        "queue_size": args.queue_size,
        "points": args.points,
        "accuracy_frames": args.accuracy_frames,
        "compile": args.compile,
        "cuda_graphs": args.cuda_graphs,
        "runs": [],
    }
    print(f"benchmark on {name} ({device}), config {args.config}, "
          f"precisions {' '.join(args.precision)}")
    t0 = time.perf_counter()
    # The sample scene's zoom/pan, not noise: depth and focal estimates then vary
    # smoothly, as they do on camera images, which is what the accuracy check needs.
    images = sample_frames(4, args.width, args.height)
    reference = None
    if args.accuracy_frames and not args.model_only and any(p != "fp32"
                                                              for p in args.precision):
        reference = reference_results(args, device, images[:args.accuracy_frames],
                                      focal_intrinsics(args))
    for precision in args.precision:
        report["runs"].append(bench_precision(
            args, device, precision, images, None if precision == "fp32" else reference))
    report["wall_s"] = time.perf_counter() - t0
    if not args.model_only:
        report["overlap_ratio"] = {r["precision"]: r["overlap_ratio"] for r in report["runs"]}
        print_table(report)
    out = results_path(args, name)
    write_json(report, out)
    print(f"\nwrote {out} ({report['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
