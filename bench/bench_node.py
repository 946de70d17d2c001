"""Run depth_pro_node against a synthetic camera and report what a user sees.

Starts the node as a process (as ``ros2 run`` would), publishes frames (and, for the
first half of the run, a CameraInfo) at a fixed rate, and records the output rates, the
end-to-end latency, the topic list and the last /diagnostics message. A script, not a
test: the numbers depend on the machine.

    .venv/bin/python bench/bench_node.py --checkpoint depth_pro.pt --rate 10 --seconds 30
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from _common import temp_dir
from harness.node import NodeProcess, set_ros_env
from harness.probe import Probe


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="weights for the node")
    p.add_argument("--device", default="", help="node device (default: cuda if available)")
    p.add_argument("--rate", type=float, default=5.0, help="camera rate, Hz")
    p.add_argument("--seconds", type=float, default=20.0, help="publishing time")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--domain", default=str(100 + os.getpid() % 100), help="ROS_DOMAIN_ID")
    p.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE",
                   help="extra node parameter (repeatable), e.g. "
                   "qos_overrides./camera/image.subscription.reliability:=reliable")
    p.add_argument("--out", type=Path, help="JSON file for the results")
    return p.parse_args()


def main() -> int:
    args = _parse()
    set_ros_env(args.domain)
    import rclpy
    from sensor_msgs.msg import CameraInfo, Image

    proc = NodeProcess(temp_dir(keep=True) / "node.log", f"checkpoint:={args.checkpoint}",
                       f"device:={args.device}", *args.param, namespace="/camera",
                       domain=args.domain)
    rclpy.init()
    probe = Probe("camera_sim", "/camera", outputs=("depth", "points", "depth/camera_info"),
                  depth=5, keep=False)
    sent: dict[tuple[int, int], float] = {}

    rng = np.random.default_rng(0)
    w, h = args.width, args.height
    base = (rng.random((h // 8, w // 8, 3)) * 255).astype(np.uint8)
    pixels = np.kron(base, np.ones((8, 8, 1), np.uint8))  # a blocky but structured picture
    try:
        probe.wait_started(proc, "image")
        start = time.monotonic()
        frames = 0
        while (now := time.monotonic()) < start + args.seconds:
            if now >= start + frames / args.rate:
                stamp = probe.node.get_clock().now().to_msg()
                img = Image(height=h, width=w, encoding="rgb8", step=3 * w,
                            data=np.roll(pixels, frames, axis=1).tobytes())
                img.header.stamp, img.header.frame_id = stamp, "camera_optical_frame"
                if now < start + args.seconds / 2:  # CameraInfo for the first half only
                    info = CameraInfo(width=w, height=h)
                    info.k = [0.8 * w, 0.0, w / 2, 0.0, 0.8 * w, h / 2, 0.0, 0.0, 1.0]
                    info.header = img.header
                    probe.info_pub.publish(info)
                sent[(stamp.sec, stamp.nanosec)] = time.monotonic()
                probe.image_pub.publish(img)
                frames += 1
            rclpy.spin_once(probe.node, timeout_sec=0.002)
        probe.spin(5.0)
        topics = sorted(name for name, _ in probe.node.get_topic_names_and_types())
    finally:
        code = proc.stop(timeout=60)
        probe.close()
        rclpy.try_shutdown()
    latencies = [1e3 * (probe.arrivals[key] - sent_at) for key, sent_at in sent.items()
                 if key in probe.arrivals]

    def rate(times: list[float]) -> float:
        inside = [t for t in times if start <= t <= start + args.seconds]
        return len(inside) / args.seconds

    status = probe.diagnostics[-1].status[0]
    result = {
        "image_size": [w, h], "node_params": args.param, "input_rate_hz": frames / args.seconds,
        "output_rate_hz": {t: round(rate(v), 2) for t, v in probe.times.items()},
        "latency_ms_median": statistics.median(latencies) if latencies else None,
        "latency_ms_max": max(latencies) if latencies else None,
        "frames_sent": frames, "depth_received": len(probe.times["depth"]),
        "topics": topics, "node_exit_code": code,
        "diagnostics": {"level": int.from_bytes(status.level, "little")
                        if isinstance(status.level, bytes) else int(status.level),
                        "message": status.message,
                        **{kv.key: kv.value for kv in status.values}},
        "node_log_tail": proc.log_lines()[-8:],
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
