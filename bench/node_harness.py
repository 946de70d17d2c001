"""Node plumbing shared by the node benchmarks (imported as ``node_harness``).

``NodeRun`` starts ``depth_pro_node`` as its own process (as ``ros2 run`` would) on the
benchmark's DDS domain and reads its memory from /proc; ``BenchProbe`` is the rclpy
node in the script that publishes camera messages (`bench/malformed.py`
``Message`` objects) and records what the node sends back: depth stamps and
/diagnostics. Scripts call :func:`use_domain` before anything imports rclpy.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from _common import CONFIGS, build_model
from malformed import Message, build

from depth_pro_ros.model import save_checkpoint

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config" / "depth_pro.yaml"
NAMESPACE = "/bench"
NODE_NAME = "depth_pro_node"
#: Subscriber queue of the node's inputs in the benchmarks: reliable and deep, so that
#: every message sent reaches its callback and the counts mean something.
QUEUE = 200


def use_domain(domain: str) -> None:
    """Put this process (and the nodes it starts) on DDS domain ``domain``, loopback only."""
    os.environ.update(ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
                      ROS_LOCALHOST_ONLY="1", RCUTILS_COLORIZED_OUTPUT="0",
                      PYTHONUNBUFFERED="1")


def tiny_checkpoint(folder: Path, config: str = "tiny") -> Path:
    """A random-weight checkpoint of ``config`` (plausible outputs, see _common)."""
    model = build_model(CONFIGS[config](), torch.device("cpu"), "fp32")
    return save_checkpoint(model, folder / f"{config}.pt")


def reliable_inputs(*topics: str) -> list[str]:
    """Node parameters that make its subscriptions to ``topics`` reliable and deep."""
    out = []
    for topic in topics:
        key = f"qos_overrides.{NAMESPACE}/{topic}.subscription"
        out += [f"{key}.reliability:=reliable", f"{key}.history:=keep_last",
                f"{key}.depth:={QUEUE}"]
    return out


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (peak resident) of a process, in kB."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key = line.split(":", 1)[0]
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(line.split()[1])
    return values


class NodeRun:
    """depth_pro_node in a subprocess, its output in a log file."""

    def __init__(self, params: list[str], log_dir: Path) -> None:
        self.log_path = Path(log_dir) / f"node_{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        cmd = [sys.executable, "-m", "depth_pro_ros.ros.node", "--ros-args",
               "-r", f"__ns:={NAMESPACE}", "--params-file", str(CONFIG)]
        for param in params:
            cmd += ["-p", param]
        # cwd=REPO: `-m` then imports the checkout's package, the same as the tests do.
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=self._log,
                                     stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def memory_kb(self) -> dict[str, int]:
        return memory_kb(self.proc.pid) if self.alive() else {}

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()

    def stop(self, timeout: float = 30.0) -> int:
        """SIGINT, then the exit code (SIGKILL after ``timeout`` s)."""
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        finally:
            self._log.close()


class BenchProbe:
    """Publishes camera messages to the node and records depth stamps and /diagnostics."""

    def __init__(self, name: str) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.node import Node
        from rclpy.qos import QoSProfile
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image

        self.node = Node(name)
        qos = QoSProfile(depth=QUEUE)
        self.classes = {"image": Image, "compressed": CompressedImage,
                        "camera_info": CameraInfo}
        topics = {"image": "image", "compressed": "image/compressed",
                  "camera_info": "camera_info"}
        self.pubs = {key: self.node.create_publisher(cls, f"{NAMESPACE}/{topics[key]}", qos)
                     for key, cls in self.classes.items()}
        #: header stamp (sec, nanosec) -> monotonic arrival time of its depth image
        self.depth: dict[tuple[int, int], float] = {}
        self.depth_times: list[float] = []
        #: (monotonic arrival, node clock stamp in s, {key: value}) per /diagnostics
        self.diagnostics: list[tuple[float, float, dict[str, str]]] = []
        self.node.create_subscription(Image, f"{NAMESPACE}/depth", self._on_depth, qos)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, qos)

    def _on_depth(self, msg: Any) -> None:
        now = time.monotonic()
        self.depth[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = now
        self.depth_times.append(now)

    def _on_diag(self, msg: Any) -> None:
        for status in msg.status:
            if status.name == f"{NODE_NAME}: depth":  # the camera's, not the engine's
                stamp = msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec
                values = {kv.key: kv.value for kv in status.values}
                values["_message"] = status.message
                self.diagnostics.append((time.monotonic(), stamp, values))

    def publish(self, message: Message) -> None:
        self.pubs[message.topic].publish(build(message, self.classes))

    def spin(self, seconds: float) -> None:
        """Handle incoming messages for ``seconds`` (at least once)."""
        import rclpy

        end = time.monotonic() + seconds
        while True:
            rclpy.spin_once(self.node, timeout_sec=max(0.0, min(0.05, end - time.monotonic())))
            if time.monotonic() >= end:
                return

    def wait_started(self, node: NodeRun, topic: str, timeout: float = 300.0) -> None:
        """Until the node subscribes to ``topic`` and has published /diagnostics."""
        deadline = time.monotonic() + timeout
        while not (self.pubs[topic].get_subscription_count() and self.diagnostics):
            if not node.alive() or time.monotonic() > deadline:
                tail = "\n".join(node.log_lines()[-30:])
                raise SystemExit(f"depth_pro_node did not start:\n{tail}")
            self.spin(0.1)

    def wait_depth(self, stamp: tuple[int, int], timeout: float, node: NodeRun) -> float | None:
        """Seconds until the depth image stamped ``stamp`` arrived; None after
        ``timeout`` or when the node exited."""
        start = time.monotonic()
        while stamp not in self.depth:
            if time.monotonic() - start > timeout or not node.alive():
                return None
            self.spin(0.02)
        return self.depth[stamp] - start

    def warm_up(self, node: NodeRun, messages: tuple[Message, ...], timeout: float = 300.0,
                period: float = 5.0) -> None:
        """Publish ``messages`` (a CameraInfo and its image) every ``period`` s until the
        image's depth comes back: the first messages after discovery can be lost on a
        best-effort link, and the first inference is slow."""
        deadline = time.monotonic() + timeout
        stamp = messages[-1].stamp
        while True:
            for message in messages:
                self.publish(message)
                self.spin(0.05)  # the CameraInfo first: topics are not ordered
            if self.wait_depth(stamp, period, node) is not None:
                return
            if not node.alive() or time.monotonic() > deadline:
                raise SystemExit("depth_pro_node served no depth:\n"
                                 + "\n".join(node.log_lines()[-30:]))

    def last_diagnostics(self) -> dict[str, str]:
        return dict(self.diagnostics[-1][2]) if self.diagnostics else {}

    def diagnostics_gaps(self, since: float = 0.0) -> dict[str, float | int | None]:
        """Largest and median gap between consecutive /diagnostics of the node (by the
        node's own stamps, so the probe's spinning does not count) after ``since``."""
        stamps = [stamp for arrival, stamp, _ in self.diagnostics if arrival >= since]
        gaps = [b - a for a, b in zip(stamps, stamps[1:])]
        return {"count": len(stamps),
                "max_gap_s": round(max(gaps), 3) if gaps else None,
                "median_gap_s": round(statistics.median(gaps), 3) if gaps else None}

    def close(self) -> None:
        self.node.destroy_node()


def log_summary(lines: list[str], skip: int = 0) -> dict[str, Any]:
    """Line counts of a node log from line ``skip`` on, by level."""
    lines = lines[skip:]
    levels = {level: sum(line.startswith(f"[{level}]") for line in lines)
              for level in ("FATAL", "ERROR", "WARN", "INFO", "DEBUG")}
    return {"lines": len(lines), "by_level": levels,
            "traceback": any("Traceback" in line for line in lines)}


def temp_dir(keep: bool = False) -> Path:
    """A scratch folder for the checkpoint and the node logs, removed at exit unless ``keep``."""
    path = Path(tempfile.mkdtemp(prefix="depth_pro_bench_"))
    if not keep:
        atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path
