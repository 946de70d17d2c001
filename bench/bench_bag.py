#!/usr/bin/env python3
"""Benchmark of ``depth-pro-ros bag`` against the engine alone on the same frames.

A ROS 2 bag of N frames (the demo's zoom/pan over data/sample.jpg, resized to the
requested size; raw bgr8 or JPEG) is generated, then

1. bag: ``process_bag`` on it, as the command runs (read, deserialize, decode, CameraInfo
   pairing / focal tracking, engine, output messages, serialization, writing, copying
   the input topics); frames written / time of the pass over the bag (model loading
   excluded, as it is for the engine);
2. engine: the same frames already decoded to numpy, submitted to a ``DepthEngine`` with
   the same configuration (policy ``all``, batch size, queue, FoV-estimate focal with an
   EMA), first submit to last result.

``ratio`` = bag fps / engine fps: 1.0 means the bag tool adds nothing to the engine.
Each is run ``--repeats`` times after a warm-up, alternating, and the best run counts.
Prints the figures and writes JSON (see bench/README.md).
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from bench_engine import CONFIGS, build_model, device_name, slug, write_json  # noqa: E402

from depth_pro_ros.bag import BagOptions, process_bag  # noqa: E402
from depth_pro_ros.bag.demo import SAMPLE_IMAGE, sample_views  # noqa: E402
from depth_pro_ros.engine import DepthEngine, EngineConfig, FocalTracker, Frame  # noqa: E402
from depth_pro_ros.model import save_checkpoint  # noqa: E402
from depth_pro_ros.stream import OutputOptions  # noqa: E402

TOPIC_RAW, TOPIC_JPEG = "/camera/image_raw", "/camera/image_raw/compressed"


def make_frames(count: int, width: int, height: int) -> list[np.ndarray]:
    """``count`` distinct BGR frames of the sample scene at ``width`` x ``height``."""
    image = cv2.imread(str(SAMPLE_IMAGE), cv2.IMREAD_COLOR)
    views = [frame for frame, _ in sample_views(image, max(count, 2))][:count]
    return [cv2.resize(v, (width, height), interpolation=cv2.INTER_LINEAR) for v in views]


def write_bag(path: Path, frames: list[np.ndarray], jpeg: bool, rate_hz: float = 10.0) -> str:
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.LATEST)
    t = store.types
    topic = TOPIC_JPEG if jpeg else TOPIC_RAW
    msgtype = "sensor_msgs/msg/CompressedImage" if jpeg else "sensor_msgs/msg/Image"
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection(topic, msgtype, typestore=store)
        for i, bgr in enumerate(frames):
            stamp = 1_700_000_000 * 10**9 + round(i * 1e9 / rate_hz)
            sec, nsec = divmod(stamp, 10**9)
            header = t["std_msgs/msg/Header"](
                stamp=t["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec), frame_id="cam")
            if jpeg:
                ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
                assert ok
                msg = t[msgtype](header=header, format="jpeg", data=buf.reshape(-1))
            else:
                h, w = bgr.shape[:2]
                msg = t[msgtype](header=header, height=h, width=w, encoding="bgr8",
                                 is_bigendian=0, step=3 * w, data=bgr.reshape(-1))
            writer.write(conn, stamp, store.serialize_cdr(msg, msgtype))
    return topic


def decoded(frames: list[np.ndarray], jpeg: bool) -> list[np.ndarray]:
    """What the engine gets: the frames as the bag tool decodes them."""
    if not jpeg:
        return frames
    out = []
    for bgr in frames:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
        out.append(cv2.imdecode(buf, cv2.IMREAD_COLOR))
    return out


def run_bag(args, src: Path, topic: str, checkpoint: Path, work: Path, tag: str) -> dict:
    out = work / f"out_{tag}"
    summary = process_bag(BagOptions(
        input=src, output=out, checkpoint=checkpoint, image_topics=[topic],
        device=args.device, precision=args.precision, batch_size=args.batch,
        outputs=OutputOptions(points=args.points), copy_topics=args.copy_topics,
        overwrite=True, progress=False), report=lambda _line: None)
    return {"frames_out": summary.frames_out, "fps": summary.fps,
            "process_s": summary.process_seconds, "load_s": summary.load_seconds,
            "host_cpu_ms_per_frame": 1e3 * summary.host_cpu_seconds / summary.frames_in,
            "wall_s": summary.wall_seconds}


def run_engine(args, model, images: list[np.ndarray]) -> dict:
    config = EngineConfig(device=args.device, precision=args.precision, policy="all",
                          queue_size=2 * args.batch, batch_size=args.batch, points=args.points)
    tracker = FocalTracker("fov_head", ema_alpha=0.1)
    with DepthEngine(model, config) as engine:
        t0 = time.perf_counter()
        for i in range(0, len(images), args.batch):
            group = [Frame(image=img, channel_order="bgr", focal_filter=tracker.observe_estimate)
                     for img in images[i:i + args.batch]]
            engine.submit_batch(group)
        results = [engine.get() for _ in images]
        seconds = time.perf_counter() - t0
    assert all(r is not None and r.ok for r in results)
    return {"frames_out": len(results), "fps": len(results) / seconds, "process_s": seconds}


def parse_args(argv=None) -> argparse.Namespace:
    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", default="cuda" if cuda else "cpu")
    p.add_argument("--config", choices=sorted(CONFIGS), default="full" if cuda else "tiny")
    p.add_argument("--precision", choices=["fp32", "fp16", "bf16"],
                   default="fp16" if cuda else "fp32")
    p.add_argument("--frames", type=int, default=100 if cuda else 16)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--jpeg", action="store_true", help="CompressedImage (JPEG) instead of bgr8")
    p.add_argument("--batch", type=int, default=4 if cuda else 1)
    p.add_argument("--points", action="store_true", help="also compute and write points")
    p.add_argument("--copy-topics", default="all", help="as the bag command's option")
    p.add_argument("--repeats", type=int, default=2, help="runs of each; the best counts")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON path (default bench/results/<device>_<config>_bag.json)")
    args = p.parse_args(argv)
    if args.frames < 2 or args.batch < 1 or args.repeats < 1:
        p.error("--frames must be >= 2, --batch and --repeats >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    name = device_name(device)
    print(f"bag benchmark on {name} ({device}), config {args.config}, {args.precision}, "
          f"{args.frames} frames {args.width}x{args.height} "
          f"{'jpeg' if args.jpeg else 'bgr8'}, batch {args.batch}")
    t_start = time.perf_counter()
    model = build_model(CONFIGS[args.config](), device, args.precision)
    frames = make_frames(args.frames, args.width, args.height)
    images = decoded(frames, args.jpeg)
    runs: dict[str, list[dict]] = {"bag": [], "engine": []}
    with tempfile.TemporaryDirectory(prefix="bench_bag_") as tmp:
        work = Path(tmp)
        checkpoint = save_checkpoint(model, work / "model.pt")
        src = work / "input"
        topic = write_bag(src, frames, args.jpeg)
        warm = work / "warm"
        write_bag(warm, frames[:2], args.jpeg)
        run_bag(args, warm, topic, checkpoint, work, "warm")  # warm-up: kernels, caches
        run_engine(args, model, images[:2])
        for i in range(args.repeats):
            runs["engine"].append(run_engine(args, model, images))
            runs["bag"].append(run_bag(args, src, topic, checkpoint, work, str(i)))
            print(f"  run {i}: bag {runs['bag'][-1]['fps']:.3f} fps, "
                  f"engine {runs['engine'][-1]['fps']:.3f} fps")
    bag = max(runs["bag"], key=lambda r: r["fps"])
    engine = max(runs["engine"], key=lambda r: r["fps"])
    ratio = bag["fps"] / engine["fps"]
    overhead_ms = 1e3 * (1 / bag["fps"] - 1 / engine["fps"])
    report = {
        "device": name, "device_type": device.type, "torch": torch.__version__,
        "cuda": torch.version.cuda, "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(), "config": args.config,
        "model_config": CONFIGS[args.config]().to_dict(), "precision": args.precision,
        "input": {"frames": args.frames, "width": args.width, "height": args.height,
                  "encoding": "jpeg" if args.jpeg else "bgr8", "format": "mcap"},
        "batch": args.batch, "points": args.points, "copy_topics": args.copy_topics,
        "repeats": args.repeats, "bag": bag, "engine": engine, "runs": runs,
        "bag_fps": bag["fps"], "engine_fps": engine["fps"], "ratio": ratio,
        "overhead_ms_per_frame": overhead_ms, "wall_s": time.perf_counter() - t_start,
    }
    print(f"bag    {bag['fps']:8.3f} frames/s  ({bag['process_s']:.1f} s for "
          f"{bag['frames_out']} frames; model load {bag['load_s']:.1f} s not counted)")
    print(f"engine {engine['fps']:8.3f} frames/s  ({engine['process_s']:.1f} s)")
    print(f"ratio  {ratio:8.3f}  (bag / engine; overhead {overhead_ms:.1f} ms per frame)")
    print(f"host   {bag['host_cpu_ms_per_frame']:8.1f} ms CPU per frame in the bag tool's own "
          "thread (read, decode, build, serialize, write)")
    out = args.out or ROOT / "bench" / "results" / f"{slug(name)}_{args.config}_bag.json"
    write_json(report, out)
    print(f"wrote {out} ({report['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
