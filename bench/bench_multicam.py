#!/usr/bin/env python3
"""Multi-camera benchmark of the depth engine (a script, not a test).

For 1, 2 and 4 cameras (``--cameras``) of 1920x1080 bgr8 frames it compares

* ``batched``: one engine and one model, policy "latest", ``batch_size`` = cameras; each
  camera submits with ``Frame(source=<camera>)``, so the waiting frames of the cameras
  run through the network together;
* ``separate``: one engine and one model copy per camera (batch_size 1), all running
  at the same time.

Every camera runs on a thread of its own, by default closed-loop: it submits its next
frame as soon as the result of the previous one came back, so each camera always has one
frame in flight (the heaviest load the engine can sustain without dropping frames).
``--rate HZ`` makes the cameras submit at a fixed rate instead (open loop, like real
cameras; the latest-frame policy drops what the engine cannot take). After ``--warmup``
frames per camera the cameras start together; the measured window ends when the slowest
camera has had ``--frames`` results, and every camera keeps submitting until then so that
the load stays constant. Prints a table and writes JSON (see
bench/README.md). Run it as ``python bench/bench_multicam.py``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch
from _common import CONFIGS, build_model, device_name, parser, results_path, write_json

from depth_pro_ros.bag.sample import sample_frames
from depth_pro_ros.engine import DepthEngine, EngineConfig, Frame, Intrinsics
from depth_pro_ros.model import DepthPro

KIND = "_multicam"
MODES = ("batched", "separate")
#: Seconds a camera waits for one result before the run is declared stuck.
RESULT_TIMEOUT_S = 600.0


# --------------------------------------------------------------------------- cameras
@dataclass
class Record:
    """One delivered frame of a camera."""

    submitted: float  # perf_counter() just before submit()
    delivered: float  # perf_counter() in the on_result callback
    batch_size: int
    ok: bool


@dataclass
class Camera:
    """A camera: one image, the engine it submits to, the frames it has in flight."""

    name: str
    engine: DepthEngine | None
    image: np.ndarray
    intrinsics: Intrinsics | None
    records: list[Record] = field(default_factory=list)
    result: threading.Event = field(default_factory=threading.Event)
    errors: list[str] = field(default_factory=list)
    submitted: int = 0  # frames submitted after the start of the measured part
    _times: dict[int, float] = field(default_factory=dict)  # seq -> submit time

    def on_result(self, result) -> None:
        """Called on the engine's worker thread for this camera's frames."""
        now = time.perf_counter()
        self.records.append(Record(self._times.pop(result.meta[1]), now, result.batch_size,
                                   result.ok))
        if not result.ok and len(self.errors) < 3:
            self.errors.append(str(result.error))
        self.result.set()

    def submit(self, seq: int) -> None:
        self._times[seq] = time.perf_counter()
        self.engine.submit(Frame(image=self.image, channel_order="bgr",
                                 intrinsics=self.intrinsics, meta=(self.name, seq),
                                 source=self.name))

    def step(self, seq: int) -> Record:
        """Submit one frame and wait for its result (closed loop)."""
        self.result.clear()
        self.submit(seq)
        if not self.result.wait(RESULT_TIMEOUT_S):
            raise RuntimeError(f"{self.name}: no result within {RESULT_TIMEOUT_S:.0f} s")
        return self.records[-1]


def route(cameras: list[Camera]):
    """An ``on_result`` callback handing each result to the camera named in its meta."""
    by_name = {cam.name: cam for cam in cameras}
    return lambda result: by_name[result.meta[0]].on_result(result)


def drive(cameras: list[Camera], frames: int, warmup: int,
          rate: float) -> tuple[float, float, float]:
    """Run every camera on its own thread; returns the measured window (t0, t_end) and
    the process's CPU time at t0.

    Each camera runs ``warmup`` frames closed-loop, then all wait at a barrier whose
    release is t0. Then each camera submits closed-loop (``rate`` 0: the next frame as
    soon as the previous result is back) or at ``rate`` Hz whatever comes back. The
    window ends when the last camera has its ``frames``-th result after t0; the cameras
    stop submitting then.
    """
    start: list[float] = []  # perf_counter() and process CPU time at t0
    barrier = threading.Barrier(
        len(cameras), action=lambda: start.extend((time.perf_counter(), time.process_time())))
    stop = threading.Event()
    failures: list[BaseException] = []

    def run(cam: Camera) -> None:
        try:
            for seq in range(warmup):
                cam.step(-1 - seq)
            barrier.wait()
            seq = 0
            while not stop.is_set():
                if rate:
                    delay = start[0] + seq / rate - time.perf_counter()
                    if delay > 0 and stop.wait(delay):
                        break
                    cam.submit(seq)
                else:
                    cam.step(seq)
                seq += 1
                cam.submitted = seq
        except BaseException as exc:  # noqa: BLE001 -- reported by the main thread
            failures.append(exc)
            barrier.abort()
            stop.set()

    threads = [threading.Thread(target=run, args=(cam,), name=f"camera_{cam.name}")
               for cam in cameras]
    for thread in threads:
        thread.start()
    t_end = None
    while not stop.wait(0.01):
        ends = [_nth_result(cam, start, frames) for cam in cameras]
        if all(t is not None for t in ends):
            t_end = max(ends)
            break
    stop.set()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"a camera failed: {failures[0]!r}") from failures[0]
    return start[0], t_end, start[1]


def _nth_result(cam: Camera, start: list[float], n: int) -> float | None:
    """When ``cam`` received its ``n``-th result of a frame submitted after the start."""
    if not start:
        return None
    times = [r.delivered for r in list(cam.records) if r.submitted >= start[0]]
    return times[n - 1] if len(times) >= n else None


def measure(cameras: list[Camera], engines: list[DepthEngine], frames: int, warmup: int,
            rate: float) -> dict:
    """The run's numbers over the measured window."""
    t0, t_end, cpu0 = drive(cameras, frames, warmup, rate)
    for engine in engines:  # nothing is in flight at t0 nor after this
        engine.drain()
    cpu = time.process_time() - cpu0
    after_t0 = sum(r.submitted >= t0 for cam in cameras for r in cam.records)
    window = t_end - t0
    per_camera, latencies, sizes, failed = [], [], Counter(), 0
    for cam in cameras:
        measured = [r for r in cam.records if r.submitted >= t0 and r.delivered <= t_end]
        per_camera.append(len(measured))
        latencies += [1e3 * (r.delivered - r.submitted) for r in measured]
        sizes.update(r.batch_size for r in measured)
        failed += sum(not r.ok for r in measured)
    return {
        "window_s": window,
        "frames_measured": per_camera,
        "aggregate_fps": sum(per_camera) / window,
        "per_camera_fps": [n / window for n in per_camera],
        "latency_ms_median": float(np.median(latencies)),
        "latency_ms_p90": float(np.percentile(latencies, 90)),
        "latency_ms_max": float(np.max(latencies)),
        # frames (not batches) of the measured window by the batch they ran in
        "batch_sizes": {str(k): sizes[k] for k in sorted(sizes)},
        "mean_batch_size": sum(k * n for k, n in sizes.items()) / sum(sizes.values()),
        # process CPU time (all threads) from t0 until the engines were idle again, per
        # frame delivered in that time: the cost of a frame, less sensitive to other load
        "cpu_ms_per_frame": 1e3 * cpu / after_t0,
        "failed": failed,
        "errors": [e for cam in cameras for e in cam.errors][:3],
    }


def run_mode(mode: str, count: int, models: list[DepthPro], images: list[np.ndarray],
             intrinsics: Intrinsics | None, args, device: torch.device) -> dict:
    """One run of ``count`` cameras in ``mode``."""
    base = dict(device=str(device), precision=args.precision, policy="latest")
    cameras = [Camera(f"cam{i}", None, images[i], intrinsics) for i in range(count)]
    if mode == "batched":
        engines = [DepthEngine(models[0], EngineConfig(batch_size=count, **base),
                               on_result=route(cameras))]
        for cam in cameras:
            cam.engine = engines[0]
    else:
        engines = [DepthEngine(models[i], EngineConfig(batch_size=1, **base),
                               on_result=cam.on_result) for i, cam in enumerate(cameras)]
        for cam, engine in zip(cameras, engines):
            cam.engine = engine
    try:
        out = measure(cameras, engines, args.frames, args.warmup, args.rate)
    finally:
        for engine in engines:
            engine.close()
    # Frames a newer one of the same camera replaced (only with --rate), whole run.
    out["dropped"] = sum(e.stats.dropped for e in engines)
    out["engines"] = len(engines)
    out["load_average_after"] = loadavg()
    return out


# --------------------------------------------------------------------------- output
def fmt(value, spec=".2f") -> str:
    return "-" if value is None else format(value, spec)


def print_table(report: dict) -> None:
    print()
    print(f"device: {report['device']} | torch {report['torch']} | config "
          f"{report['config']} | {report['precision']} | input {report['image_width']}x"
          f"{report['image_height']} bgr8 | focal {report['focal']} | "
          f"{report['frames_per_camera']} frames/camera (+{report['warmup']} warm-up) | "
          f"cameras {report['camera_load']}")
    header = ("cams", "mode", "agg fps", "per-camera fps", "lat med ms", "lat p90 ms",
              "batch sizes (frames)", "dropped", "cpu ms/frame", "load", "ratio b/s")
    rows = [(
        row["cameras"], row["mode"], fmt(row["aggregate_fps"], ".3f"),
        " ".join(fmt(f, ".3f") for f in row["per_camera_fps"]),
        fmt(row["latency_ms_median"], ".0f"), fmt(row["latency_ms_p90"], ".0f"),
        " ".join(f"{k}:{n}" for k, n in row["batch_sizes"].items()), row["dropped"],
        fmt(row["cpu_ms_per_frame"], ".0f"), fmt((row["load_average_after"] or [None])[0]),
        fmt(row.get("ratio_batched_over_separate")),
    ) for row in report["rows"]]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    for row in (header, *rows):
        print("  ".join(str(c).rjust(w) for c, w in zip(row, widths)))


# --------------------------------------------------------------------------- main
def parse_args(argv=None) -> argparse.Namespace:
    cuda = torch.cuda.is_available()
    p = parser(__doc__.split("\n\n")[0], KIND)
    p.add_argument("--precision", choices=["fp32", "fp16", "bf16"],
                   default="fp16" if cuda else "fp32")
    p.add_argument("--cameras", type=int, nargs="+", default=[1, 2, 4],
                   help="camera counts to run")
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument("--frames", type=int, default=50 if cuda else 4,
                   help="measured frames per camera (the slowest camera's count)")
    p.add_argument("--warmup", type=int, default=5 if cuda else 1,
                   help="frames per camera before measuring")
    p.add_argument("--width", type=int, default=1920)
    p.add_argument("--height", type=int, default=1080)
    p.add_argument("--focal", choices=["known", "estimate"], default="known",
                   help="known intrinsics (fx = 1000 px at 1920 wide; the FoV head is "
                        "skipped) or the FoV head's estimate in every frame")
    p.add_argument("--rate", type=float, default=0.0,
                   help="0: closed loop (a camera submits when its previous result is "
                        "back); > 0: each camera submits at this rate in Hz (open loop, "
                        "the latest-frame policy drops what the engine cannot take)")
    args = p.parse_args(argv)
    if args.frames < 1 or args.warmup < 0 or min(args.cameras) < 1 or args.rate < 0:
        p.error("--frames and --cameras must be >= 1, --warmup and --rate >= 0")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("CUDA requested but not available", file=sys.stderr)
        return 2
    name = device_name(device)
    t_start = time.perf_counter()
    most = max(args.cameras)
    intrinsics = None if args.focal == "estimate" else Intrinsics.from_focal(
        1000.0 * args.width / 1920, args.width, args.height)
    # Distinct views of the sample scene, one per camera, allocated once.
    images = sample_frames(most, args.width, args.height)
    model_config = CONFIGS[args.config]()
    copies = most if "separate" in args.modes else 1
    print(f"multi-camera benchmark on {name} ({device}), config {args.config}, "
          f"{args.precision}; building {copies} model(s)")
    models = [build_model(args.config, device, args.precision) for _ in range(copies)]
    common = {
        "device": name,
        "device_type": device.type,
        "config": args.config,
        "precision": args.precision,
        "image_width": args.width,
        "image_height": args.height,
        "encoding": "bgr8",
        "focal": args.focal,
        "frames_per_camera": args.frames,
        "warmup": args.warmup,
        "camera_load": f"{args.rate:g} Hz" if args.rate else "closed_loop",
        "torch": torch.__version__,
    }
    report = {
        **common,
        "benchmark": "multicam",
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
        "model_config": model_config.to_dict(),
        "load_average_start": loadavg(),
        "rows": [],
    }
    for count in args.cameras:
        fps = {}
        for mode in args.modes:
            t = time.perf_counter()
            out = run_mode(mode, count, models, images, intrinsics, args, device)
            fps[mode] = out["aggregate_fps"]
            row = {**common, "mode": mode, "cameras": count, **out}
            report["rows"].append(row)
            print(f"{count} camera(s) {mode:>8}: {out['aggregate_fps']:.3f} fps aggregate, "
                  f"latency {out['latency_ms_median']:.0f} ms, batches "
                  f"{out['batch_sizes']} ({time.perf_counter() - t:.0f} s)")
        if len(fps) == 2 and fps["separate"]:
            ratio = fps["batched"] / fps["separate"]
            for row in report["rows"][-2:]:
                if row["mode"] == "batched":
                    row["ratio_batched_over_separate"] = ratio
    report["ratio_batched_over_separate"] = {
        str(row["cameras"]): row["ratio_batched_over_separate"]
        for row in report["rows"] if "ratio_batched_over_separate" in row
    }
    report["load_average_end"] = loadavg()
    report["wall_s"] = time.perf_counter() - t_start
    print_table(report)
    out_path = results_path(args, name, KIND)
    write_json(report, out_path)
    print(f"\nwrote {out_path} ({report['wall_s']:.0f} s)")
    return 0


def loadavg() -> list[float] | None:
    try:
        with open("/proc/loadavg") as f:
            return [float(v) for v in f.read().split()[:3]]
    except OSError:
        return None


if __name__ == "__main__":
    sys.exit(main())
