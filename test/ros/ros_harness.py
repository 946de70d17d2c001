"""Run depth_pro_node as a real process and talk to it over DDS (loopback only).

``NodeProcess`` starts ``python -m depth_pro_ros.ros.node`` with a test-specific
ROS_DOMAIN_ID and localhost-only discovery; ``Probe`` is an rclpy node in the test
process that publishes camera messages and collects everything the node publishes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "config" / "depth_pro.yaml"
# One domain per test session (pid-derived) so parallel runs on one host do not meet;
# DEPTH_PRO_TEST_DOMAIN_ID pins it where several suites run at once on one host.
DOMAIN_ID = os.environ.get("DEPTH_PRO_TEST_DOMAIN_ID") or str(20 + os.getpid() % 80)
ROS_ENV = {
    "ROS_DOMAIN_ID": DOMAIN_ID,
    "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
    "ROS_LOCALHOST_ONLY": "1",  # the same for distributions before Jazzy
    "RCUTILS_COLORIZED_OUTPUT": "0",
}
OUTPUTS = ("depth", "depth/camera_info", "points", "depth/colorized")
CAMERA_OUTPUTS = ("depth", "depth/camera_info")  # recorded per camera by CameraProbe
NAMESPACE = "/cam"
WAIT = 90.0  # seconds: a node start plus a CPU forward pass on a loaded CI machine


def set_ros_env() -> None:
    """Put this process on the tests' DDS domain (call before rclpy.init)."""
    os.environ.update(ROS_ENV)


class NodeProcess:
    """depth_pro_node in a subprocess; its log goes to a file the tests can read."""

    def __init__(self, log_path: Path, *params: str, namespace: str = NAMESPACE,
                 params_file: Path | None = CONFIG) -> None:
        args = [sys.executable, "-m", "depth_pro_ros.ros.node", "--ros-args",
                "-r", f"__ns:={namespace}"]
        if params_file is not None:
            args += ["--params-file", str(params_file)]
        for p in params:
            args += ["-p", p]
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, **ROS_ENV, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for_log(self, text: str, timeout: float = 20.0) -> str:
        """Wait until ``text`` appears in the node's log; return the log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()
            if text in log:
                return log
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not in the node's log:\n{self.log()}")

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30.0) -> int:
        """Send ``sig`` and wait for the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._log.close()
        return code

    def wait(self, timeout: float = 60.0) -> int:
        code = self.proc.wait(timeout)
        self._log.close()
        return code


class Probe:
    """A test-side rclpy node: publishes inputs and records the node's outputs."""

    def __init__(self, name: str = "probe", namespace: str = NAMESPACE,
                 outputs: tuple[str, ...] = OUTPUTS, image_topic: str | None = None,
                 camera_info_topic: str | None = None) -> None:
        """``image_topic`` / ``camera_info_topic``: where the node reads its inputs when
        they are remapped (default ``<namespace>/image``, ``<namespace>/camera_info``)."""
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.node import Node
        from rclpy.qos import QoSProfile
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

        self.node = Node(name)
        ns = namespace.rstrip("/")
        qos = QoSProfile(depth=10)
        image_topic = image_topic or f"{ns}/image"
        self.image_pub = self.node.create_publisher(Image, image_topic, qos)
        self.compressed_pub = self.node.create_publisher(
            CompressedImage, f"{image_topic}/compressed", qos)
        self.info_pub = self.node.create_publisher(
            CameraInfo, camera_info_topic or f"{ns}/camera_info", qos)
        types = {"depth": Image, "depth/camera_info": CameraInfo, "points": PointCloud2,
                 "depth/colorized": Image, "depth/relative": Image}
        self.received: dict[str, list[Any]] = {topic: [] for topic in outputs}
        self.diagnostics: list[Any] = []
        self._subs = [
            self.node.create_subscription(types[t], f"{ns}/{t}",
                                          lambda m, t=t: self.received[t].append(m), qos)
            for t in outputs
        ]
        self.node.create_subscription(DiagnosticArray, "/diagnostics",
                                      self.diagnostics.append, qos)

    def spin_until(self, predicate, timeout: float = WAIT, what: str = "",
                   period: float = 0.0) -> None:
        """Spin until ``predicate()`` is true; with ``period``, call it only that often."""
        import rclpy

        deadline = time.monotonic() + timeout
        next_call = 0.0
        while True:
            now = time.monotonic()
            if now >= next_call:
                if predicate():
                    return
                next_call = now + period
            if now > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
            rclpy.spin_once(self.node, timeout_sec=0.05)

    def resend_until(self, send, done, timeout: float = WAIT, what: str = "",
                     period: float = 3.0) -> None:
        """Call ``send()`` now and again every ``period`` s (best effort may lose a
        message) until ``done()``, which is checked on every spin so that an answer is
        seen as soon as it comes."""
        next_send = 0.0

        def check() -> bool:
            nonlocal next_send
            if time.monotonic() >= next_send:
                send()
                next_send = time.monotonic() + period
            return done()

        self.spin_until(check, timeout, what)

    def wait_connected(self, compressed: bool = False, timeout: float = WAIT) -> None:
        """Wait until the node subscribes to our inputs and we to its outputs."""
        pub = self.compressed_pub if compressed else self.image_pub
        self.spin_until(
            lambda: pub.get_subscription_count() > 0
            and all(s.get_publisher_count() > 0 for s in self._subs),
            timeout, "discovery of depth_pro_node",
        )

    def send(self, image: Any, camera_info: Any = None, compressed: bool = False) -> None:
        if camera_info is not None:
            # Topics are not ordered with each other: give the CameraInfo a head start so
            # that the node has it when the image comes (as with a camera streaming both).
            self.info_pub.publish(camera_info)
            pause = time.monotonic() + 0.3
            self.spin_until(lambda: time.monotonic() > pause, what="a pause")
        (self.compressed_pub if compressed else self.image_pub).publish(image)

    def resend_until_depth(self, image: Any, compressed: bool = False, timeout: float = 120.0,
                           period: float = 5.0) -> None:
        """Publish ``image`` every ``period`` s until its depth image arrives.

        A best-effort subscription can miss the first messages after discovery.
        """
        stamp = image.header.stamp
        self.resend_until(lambda: self.send(image, compressed=compressed),
                          lambda: any(m.header.stamp == stamp for m in self.received["depth"]),
                          timeout, "a depth image", period=period)

    def outputs_for(self, stamp: Any, timeout: float = WAIT) -> dict[str, Any]:
        """Wait for one message per recorded output topic with header stamp ``stamp``."""
        def matching(topic: str) -> list[Any]:
            return [m for m in self.received[topic]
                    if m.header.stamp.sec == stamp.sec and m.header.stamp.nanosec == stamp.nanosec]

        self.spin_until(lambda: all(matching(t) for t in self.received), timeout,
                        f"outputs stamped {stamp.sec}.{stamp.nanosec:09d}")
        return {t: matching(t)[-1] for t in self.received}

    def exchange(self, image: Any, camera_info: Any = None, compressed: bool = False,
                 timeout: float = WAIT) -> dict[str, Any]:
        self.send(image, camera_info, compressed)
        return self.outputs_for(image.header.stamp, timeout)

    def latest_diagnostics(self, timeout: float = 10.0) -> dict:
        """Key -> value of the node's status from a /diagnostics message published after
        this call (older ones may still wait in the subscription's queue)."""
        from rclpy.time import Time

        asked = self.node.get_clock().now()
        self.spin_until(
            lambda: self.diagnostics
            and Time.from_msg(self.diagnostics[-1].header.stamp) > asked,
            timeout, "/diagnostics")
        status = self.diagnostics[-1].status[0]
        return {"_level": status.level, "_name": status.name, "_message": status.message,
                "_hardware_id": status.hardware_id,
                **{kv.key: kv.value for kv in status.values}}

    def set_parameters(self, node_name: str, **values: Any) -> list[Any]:
        """Call the node's set_parameters service; return the SetParametersResults."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        client = self.node.create_client(SetParameters, f"{node_name}/set_parameters")
        try:
            self.spin_until(lambda: client.service_is_ready(), 30.0, "set_parameters service")
            request = SetParameters.Request(
                parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
            future = client.call_async(request)
            self.spin_until(future.done, 30.0, "set_parameters reply")
            return list(future.result().results)
        finally:
            self.node.destroy_client(client)

    def list_parameters(self, node_name: str) -> list[str]:
        from rcl_interfaces.srv import ListParameters

        client = self.node.create_client(ListParameters, f"{node_name}/list_parameters")
        try:
            self.spin_until(lambda: client.service_is_ready(), 30.0, "list_parameters service")
            future = client.call_async(ListParameters.Request())
            self.spin_until(future.done, 30.0, "list_parameters reply")
            return list(future.result().result.names)
        finally:
            self.node.destroy_client(client)

    def get_parameters(self, node_name: str, *names: str) -> dict[str, Any]:
        """Name -> the node's current value, through its get_parameters service."""
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python

        client = self.node.create_client(GetParameters, f"{node_name}/get_parameters")
        try:
            self.spin_until(lambda: client.service_is_ready(), 30.0, "get_parameters service")
            future = client.call_async(GetParameters.Request(names=list(names)))
            self.spin_until(future.done, 30.0, "get_parameters reply")
            return {name: parameter_value_to_python(value)
                    for name, value in zip(names, future.result().values)}
        finally:
            self.node.destroy_client(client)

    def close(self) -> None:
        self.node.destroy_node()


class CameraProbe(Probe):
    """A Probe that talks to the topics of the node's ``cameras`` (``<ns>/NAME/...``):
    publishes their images (``compressed``: on ``NAME/image/compressed``) and CameraInfo,
    and records their depth and depth/camera_info."""

    def __init__(self, cameras: tuple[str, ...], compressed: bool = False,
                 namespace: str = NAMESPACE, name: str = "probe") -> None:
        from rclpy.qos import QoSProfile
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image

        super().__init__(name, namespace, outputs=())
        ns = namespace.rstrip("/")
        qos = QoSProfile(depth=100)
        node = self.node
        image_cls, image = (CompressedImage, "image/compressed") if compressed \
            else (Image, "image")
        self.image_pubs = {c: node.create_publisher(image_cls, f"{ns}/{c}/{image}", qos)
                           for c in cameras}
        self.info_pubs = {c: node.create_publisher(CameraInfo, f"{ns}/{c}/camera_info",
                                                   qos) for c in cameras}
        self.got: dict[str, dict[str, list[Any]]] = {c: {t: [] for t in CAMERA_OUTPUTS}
                                                     for c in cameras}
        types = {"depth": Image, "depth/camera_info": CameraInfo}
        self._subs = [node.create_subscription(
            types[t], f"{ns}/{c}/{t}", lambda m, c=c, t=t: self.got[c][t].append(m), qos)
            for c in cameras for t in CAMERA_OUTPUTS]

    def wait_connected(self, compressed: bool = False, timeout: float = WAIT) -> None:
        self.spin_until(
            lambda: all(p.get_subscription_count() for p in self.image_pubs.values())
            and all(s.get_publisher_count() for s in self._subs),
            timeout, "discovery of the cameras' topics")

    def output(self, camera: str, image: Any, timeout: float = WAIT) -> dict[str, Any]:
        """Wait for ``camera``'s depth and depth/camera_info stamped like ``image``."""
        stamp = image.header.stamp

        def matching(topic: str) -> list[Any]:
            return [m for m in self.got[camera][topic] if m.header.stamp == stamp]

        self.spin_until(lambda: all(matching(t) for t in CAMERA_OUTPUTS), timeout,
                        f"{camera} outputs stamped {stamp.sec}")
        return {t: matching(t)[-1] for t in CAMERA_OUTPUTS}

    def statuses(self, timeout: float = 10.0) -> dict[str, dict[str, str]]:
        """Status name -> key-values of a /diagnostics message published after this call."""
        seen = len(self.diagnostics)
        self.spin_until(lambda: len(self.diagnostics) > seen + 1, timeout, "/diagnostics")
        return {s.name: {"_level": s.level, "_message": s.message,
                         **{kv.key: kv.value for kv in s.values}}
                for s in self.diagnostics[-1].status}

    def warm_up(self, camera: str, message: Any) -> None:
        """Publish ``message`` to ``camera`` every 3 s until its depth comes (best effort
        may lose the first messages after discovery)."""
        stamp = message.header.stamp
        self.resend_until(lambda: self.image_pubs[camera].publish(message),
                          lambda: any(m.header.stamp == stamp
                                      for m in self.got[camera]["depth"]),
                          600.0, f"{camera} warm-up depth", period=3.0)


@contextlib.contextmanager
def running_node(log_path: Path, *params: str, warm_up: Any = None,
                 outputs: tuple[str, ...] = OUTPUTS) -> Iterator[tuple[NodeProcess, Probe | None]]:
    """rclpy up and the node started; with ``warm_up`` (an Image) also a connected Probe that
    has received the warm-up frame's depth. Everything is torn down after, the node's log
    printed (pytest shows it when a test failed)."""
    import rclpy

    set_ros_env()
    rclpy.init()
    proc = NodeProcess(log_path, *params)
    probe = None if warm_up is None else Probe(outputs=outputs)
    try:
        if probe is not None:
            probe.wait_connected()
            # A best-effort subscription can miss the first messages after discovery.
            probe.resend_until_depth(warm_up, timeout=600.0, period=3.0)
        yield proc, probe
    finally:
        if probe is not None:
            probe.close()
        proc.stop(signal.SIGKILL)
        rclpy.try_shutdown()
        print(proc.log())


def image_message(rgb: np.ndarray, sec: int, encoding: str = "rgb8", frame_id: str = "cam_optical",
                  **kwargs: Any):
    """An rclpy Image of ``rgb`` in ``encoding`` stamped ``sec`` seconds (+ 0.5 s)."""
    from message_factories import encode_image, rclpy_message
    from sensor_msgs.msg import Image

    msg = rclpy_message(Image, encode_image(rgb, encoding, **kwargs))
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, 500_000_000
    msg.header.frame_id = frame_id
    return msg


def compressed_message(rgb: np.ndarray, fmt: str, sec: int, frame_id: str = "cam_optical"):
    """An rclpy CompressedImage of ``rgb`` (``fmt``: jpg or png) stamped ``sec`` s."""
    import cv2
    from sensor_msgs.msg import CompressedImage

    ok, data = cv2.imencode(f".{fmt}", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok, fmt
    msg = CompressedImage(format=fmt, data=data.tobytes())
    msg.header.stamp.sec, msg.header.frame_id = sec, frame_id
    return msg


def camera_info_message(fx: float, width: int, height: int, sec: int, fy: float | None = None,
                        frame_id: str = "cam_optical"):
    """A calibrated rclpy CameraInfo (principal point off-centre so that scaling shows)."""
    from sensor_msgs.msg import CameraInfo

    fy = fx if fy is None else fy
    cx, cy = 0.45 * width, 0.55 * height
    msg = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
    msg.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    msg.p = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    msg.d = [0.01, -0.02, 0.0, 0.0, 0.0]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, 500_000_000
    msg.header.frame_id = frame_id
    return msg
