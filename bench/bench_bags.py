#!/usr/bin/env python3
"""Benchmark of ``depth-pro-ros bags`` against one ``depth-pro-ros bag`` run per bag.

N ROS 2 bags of M frames each (the demo's zoom/pan over the bundled sample picture) are
generated, then processed three ways, each as a fresh command (as a user runs them):

1. sequential: ``depth-pro-ros bag`` once per bag (Python, torch and the model loaded
   per bag);
2. bags: ``depth-pro-ros bags`` (one process, one model);
3. ray: ``depth-pro-ros bags --ray local --workers W`` (W actors, one model each; Ray's
   start-up included), skipped when Ray is not installed.

frames_per_s = frames written / wall time of the whole mode. ``load_s`` is the time to
load the checkpoint once in this process; ``saved_s`` is sequential minus bags wall time
(what loading per bag costs in total). Writes JSON (default
bench/results/<device>_<config>_bags.json). Run it as ``python bench/bench_bags.py``.
"""

from __future__ import annotations

import importlib.util
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import build_model, device_name, parser, results_path, write_json

from depth_pro_ros.bag.sample import image_message, sample_frames, stamp_at, write_bag
from depth_pro_ros.engine import load_model
from depth_pro_ros.model import save_checkpoint

TOPIC = "/camera/image_raw"


def command(*args: str) -> float:
    """Run ``depth-pro-ros ARGS`` in a fresh interpreter; its wall time."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "depth_pro_ros.cli", *args], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    p = parser(__doc__.split("\n\n")[0], "_bags")
    p.add_argument("--bags", type=int, default=4)
    p.add_argument("--frames", type=int, default=2, help="frames per bag")
    p.add_argument("--width", type=int, default=160)
    p.add_argument("--height", type=int, default=120)
    p.add_argument("--workers", type=int, default=2, help="Ray workers")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    model = build_model(args.config, device, "fp32")
    total = args.bags * args.frames
    modes: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench_bags_") as tmp:
        work = Path(tmp)
        checkpoint = save_checkpoint(model, work / "model.pt")
        t0 = time.perf_counter()
        load_model(checkpoint, args.device, "fp32")
        load_s = time.perf_counter() - t0
        frames = sample_frames(args.frames, args.width, args.height)
        inputs = work / "in"
        for b in range(args.bags):
            write_bag(inputs / f"run{b}", [image_message(TOPIC, bgr, stamp_at(i, 10.0),
                                                         frame_id="cam")
                                           for i, bgr in enumerate(frames)])
        common = ["--checkpoint", str(checkpoint), "--image-topic", TOPIC, "--device",
                  args.device, "--precision", "fp32", "--no-progress"]
        wall = sum(command("bag", str(inputs / f"run{b}"), "-o", str(work / "seq" / f"run{b}"),
                           *common) for b in range(args.bags))
        modes["sequential"] = {"workers": 1, "wall_s": wall}
        wall = command("bags", str(inputs), "-o", str(work / "bags"), *common)
        modes["bags"] = {"workers": 1, "wall_s": wall}
        if importlib.util.find_spec("ray") is not None:
            wall = command("bags", str(inputs), "-o", str(work / "ray"), *common,
                           "--ray", "local", "--workers", str(args.workers))
            modes["ray"] = {"workers": args.workers, "wall_s": wall}
    for name, mode in modes.items():
        mode.update(bags=args.bags, frames=total, frames_per_s=total / mode["wall_s"])
        print(f"{name:10s} {mode['workers']} worker(s): {mode['wall_s']:.1f} s, "
              f"{mode['frames_per_s']:.3f} frames/s")
    saved = modes["sequential"]["wall_s"] - modes["bags"]["wall_s"]
    print(f"model load {load_s:.2f} s; bags saves {saved:.1f} s over {args.bags} bags")
    report = {
        "device": device_name(device), "device_type": device.type,
        "torch": torch.__version__, "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(), "config": args.config,
        "input": {"bags": args.bags, "frames_per_bag": args.frames, "width": args.width,
                  "height": args.height, "encoding": "bgr8"},
        "load_s": load_s, "saved_s": saved, "modes": modes,
    }
    out = results_path(args, device_name(device), "_bags")
    write_json(report, out)
    print(json.dumps({k: v["frames_per_s"] for k, v in modes.items()}))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
