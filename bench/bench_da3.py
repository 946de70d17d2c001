#!/usr/bin/env python3
"""Depth Anything 3 at its default resolution, one view and a rig of three (a script).

The random-weight stand-in of a released any-view architecture (``--size``, default
small: DA3-SMALL) on 640x480 frames of the sample picture, which the input processor
takes to 378x504. Measured interleaved, ``--reps`` times each, medians:

* model-only: the network's forward on a ready (1, V, 3, 378, 504) input, V = 1 and 3;
* pipeline, one view: ``DepthEngine`` (the node's and the bag tool's path), one frame
  submitted and its result taken;
* pipeline, rig: ``RigEngine.run`` over three cameras' frames (the node's and the bag
  tool's rig mode), against three one-view pipeline frames.

Run as ``python bench/bench_da3.py [--size small] [--reps 5]``; the JSON goes to
bench/results/<device>_da3_<size>.json (see bench/README.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
from _common import RESULTS, device_name, slug, write_json

from depth_pro_ros.bag.sample import sample_frames
from depth_pro_ros.engine import DepthEngine, EngineConfig, Frame
from depth_pro_ros.engine.rig import RigEngine
from depth_pro_ros.model.depth_anything_3.recipe import prepare_input
from depth_pro_ros.model.stand_in import random_model


def _median_ms(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="small", choices=("tiny", "small", "base"))
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    device = torch.device(args.device)
    model = random_model("depth_anything_3", args.size).to(device).eval()
    config = EngineConfig(device=str(device), precision="fp32")
    images = sample_frames(3)  # BGR
    frames = [Frame(img, channel_order="bgr") for img in images]
    x = torch.cat([prepare_input(torch.from_numpy(img[..., ::-1].copy())[None].to(device))
                   for img in images])  # the recipe's input for these frames
    size = tuple(x.shape[-2:])
    rig = RigEngine(model, config)

    with DepthEngine(model, config) as engine:
        def forward(views: int) -> None:
            with torch.inference_mode():
                model(x[:views][None])
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        def one_view(frame: Frame) -> None:
            engine.submit(frame)
            result = engine.get(timeout=600)
            assert result is not None and result.ok, result

        cases = {
            "model_1_view": lambda: forward(1),
            "model_3_views": lambda: forward(3),
            "pipeline_1_view": lambda: one_view(frames[0]),
            "pipeline_3_single_views": lambda: [one_view(f) for f in frames],
            "pipeline_rig_3_views": lambda: rig.run(frames),
        }
        for fn in cases.values():  # warm-up
            fn()
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.reps):  # interleaved: load changes hit every case alike
            for name, fn in cases.items():
                samples[name].append(_median_ms(fn, 1))
    medians = {name: statistics.median(v) for name, v in samples.items()}
    report = {
        "benchmark": "bench_da3", "device": device_name(device), "size": args.size,
        "frame": [480, 640], "network_input": list(size), "reps": args.reps,
        "threads": torch.get_num_threads(), "load_average": list(os.getloadavg()),
        "median_ms": medians,
        "ratios": {
            "model_3_views_over_1": medians["model_3_views"] / medians["model_1_view"],
            "rig_over_3_single_views":
                medians["pipeline_rig_3_views"] / medians["pipeline_3_single_views"],
            "pipeline_over_model_1_view":
                medians["pipeline_1_view"] / medians["model_1_view"],
        },
        "samples_ms": samples,
    }
    out = args.out or RESULTS / f"{slug(report['device'])}_da3_{args.size}.json"
    write_json(report, out)
    for name, value in medians.items():
        print(f"{name:26s} {value:9.1f} ms")
    for name, value in report["ratios"].items():
        print(f"{name:26s} {value:9.3f}")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
