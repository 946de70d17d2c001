"""Soak depth_pro_node: valid frames at a fixed rate for minutes; memory, rates, diagnostics.

Starts the node (a random-weight checkpoint built in a temp folder) and publishes a
CameraInfo and a ``--width`` x ``--height`` bgr8 frame at ``--rate`` Hz for
``--minutes``. Samples the node's resident memory every ``--sample-s`` seconds and
records every depth image and /diagnostics message it publishes.

    .venv/bin/python bench/soak_node.py --minutes 0.5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch
from _common import (
    bench_probe,
    device_name,
    parser,
    reliable_inputs,
    results_path,
    start_node,
    temp_dir,
    tiny_checkpoint,
    write_json,
)
from harness.malformed import Message
from harness.node import log_summary, set_ros_env


def _parse() -> argparse.Namespace:
    p = parser(__doc__.split("\n\n")[0], "_soak_node")
    p.add_argument("--rate", type=float, default=10.0, help="input frames per second")
    p.add_argument("--minutes", type=float, default=10.0, help="publishing time")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--sample-s", type=float, default=5.0, help="seconds between RSS samples")
    p.add_argument("--domain", default="78", help="ROS_DOMAIN_ID of the run")
    p.add_argument("--reliable", action="store_true",
                   help="make the node's inputs reliable with a deep queue (default: the "
                   "node's own best-effort QoS, as deployed)")
    p.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE",
                   help="extra node parameter (repeatable)")
    return p.parse_args()


def _frame(pixels: np.ndarray, index: int, fx: float) -> tuple[Message, Message]:
    """CameraInfo and bgr8 image of frame ``index`` (the picture shifts a column each)."""
    h, w = pixels.shape[:2]
    stamp = (1_000 + index // 1000, (index % 1000) * 1_000_000) if index >= 0 else (999, 0)
    info = {"width": w, "height": h, "distortion_model": "plumb_bob",
            "k": [fx, 0.0, w / 2, 0.0, fx, h / 2, 0.0, 0.0, 1.0]}
    image = {"encoding": "bgr8", "height": h, "width": w, "step": 3 * w,
             "data": np.roll(pixels, index, axis=1).tobytes()}
    return Message("camera_info", info, stamp), Message("image", image, stamp)


def main() -> int:
    args = _parse()
    set_ros_env(args.domain)
    import rclpy

    folder = temp_dir()
    checkpoint = tiny_checkpoint(folder, args.config)
    params = [f"checkpoint:={checkpoint}", f"device:={args.device}", *args.param]
    if args.reliable:
        params += reliable_inputs("image", "camera_info")
    rng = np.random.default_rng(0)
    cells = rng.integers(0, 256, (args.height // 8 + 1, args.width // 8 + 1, 3), np.uint8)
    pixels = np.kron(cells, np.ones((8, 8, 1), np.uint8))[:args.height, :args.width]
    fx = 0.8 * args.width
    rclpy.init()
    node = start_node(params, folder, args.domain)
    probe = bench_probe("soak_probe")
    rss: list[tuple[float, int]] = []
    try:
        probe.wait_started(node, "image")
        # One frame through first, so that the one-off allocations of the first inference
        # do not count as growth.
        probe.warm_up(node, _frame(pixels, -1, fx))
        seconds = 60.0 * args.minutes
        start = time.monotonic()
        frames = 0
        next_sample = start
        while (now := time.monotonic()) < start + seconds and node.alive():
            if now >= next_sample:
                rss.append((round(now - start, 1), node.memory_kb()["VmRSS"]))
                next_sample += args.sample_s
            if now >= start + frames / args.rate:
                for message in _frame(pixels, frames, fx):
                    probe.publish(message)
                frames += 1
            probe.spin(min(0.01, max(0.0, start + frames / args.rate - time.monotonic())))
        end = time.monotonic()
        if node.alive():
            rss.append((round(end - start, 1), node.memory_kb()["VmRSS"]))
        peak = node.memory_kb().get("VmHWM")
        probe.spin(2.5)
        crashed = not node.alive()
        gaps = probe.diagnostics_gaps(since=start)
        diag = probe.last_diagnostics()
    finally:
        probe.close()
        code = node.stop()
        rclpy.try_shutdown()
    served = [t for t in probe.times["depth"] if start <= t <= end]
    device = device_name(torch.device(args.device))
    report = {
        "benchmark": "soak_node", "device": device, "node_device": args.device,
        "config": args.config, "image_size": [args.width, args.height],
        "minutes": args.minutes, "node_params": params[1:],
        "frames_sent": frames, "depth_received": len(served),
        "input_rate_hz": round(frames / (end - start), 2),
        "output_rate_hz": round(len(served) / (end - start), 3),
        "rss_kb": {**rss_summary(rss), "peak": peak, "samples": rss},
        "diagnostics_gaps": gaps,
        "node_diagnostics": diag,
        "crashed": crashed, "exit_code": code,
        "log": log_summary(node.log_lines()),
        "wall_s": round(end - start, 1),
    }
    mb = {k: (v or 0) / 1024 for k, v in report["rss_kb"].items() if k != "samples"}
    print(f"in {report['input_rate_hz']} Hz, out {report['output_rate_hz']} Hz "
          f"({len(served)}/{frames} frames); RSS median {mb['median_first_quarter']:.0f} MB "
          f"in the first quarter, {mb['median_last_quarter']:.0f} MB in the last (trend "
          f"{mb['trend']:+.1f} MB), max {mb['max']:.0f} MB; "
          f"diagnostics max gap {gaps['max_gap_s']} s over {gaps['count']}; "
          f"{'CRASHED' if crashed else 'alive'}")
    path = results_path(args, device, "_soak_node")
    write_json(report, path)
    print(f"JSON: {path}")
    return 1 if crashed else 0


def rss_summary(samples: list[tuple[float, int]]) -> dict[str, int | None]:
    """First, last and largest VmRSS sample (kB), and the trend: median of the last quarter
    of the samples minus that of the first. RSS swings by hundreds of MB with each forward
    pass (transient buffers), so last - first says little; a leak moves the medians."""
    values = [kb for _, kb in samples]
    if not values:
        return dict.fromkeys(("first", "last", "max", "median_first_quarter",
                              "median_last_quarter", "trend"))
    quarter = max(1, len(values) // 4)
    first, last = statistics.median(values[:quarter]), statistics.median(values[-quarter:])
    return {"first": values[0], "last": values[-1], "max": max(values),
            "median_first_quarter": round(first), "median_last_quarter": round(last),
            "trend": round(last - first)}


if __name__ == "__main__":
    sys.exit(main())
