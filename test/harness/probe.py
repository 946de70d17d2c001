"""The rclpy side of a node test or benchmark: :class:`Probe` publishes camera messages
to ``depth_pro_node`` and records what it publishes back (outputs, their arrival times,
/diagnostics); :class:`CameraProbe` does it for the node's ``cameras``;
:func:`running_node` starts a node and a connected probe for a test module.
"""

from __future__ import annotations

import contextlib
import signal
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from harness.malformed import Message, build
from harness.node import NAMESPACE, NodeProcess, set_ros_env

OUTPUTS = ("depth", "depth/camera_info", "points", "depth/colorized")
CAMERA_OUTPUTS = ("depth", "depth/camera_info")  # recorded per camera by CameraProbe
WAIT = 90.0  # seconds: a node start plus a CPU forward pass on a loaded CI machine
#: The /diagnostics status of the node's (first) camera, as opposed to the engine's.
CAMERA_STATUS = "depth_pro_node: depth"


class Probe:
    """A test-side rclpy node: publishes inputs and records the node's outputs."""

    def __init__(self, name: str = "probe", namespace: str = NAMESPACE,
                 outputs: tuple[str, ...] = OUTPUTS, image_topic: str | None = None,
                 camera_info_topic: str | None = None, depth: int = 10,
                 keep: bool = True) -> None:
        """``image_topic`` / ``camera_info_topic``: where the node reads its inputs when
        they are remapped (default ``<namespace>/image``, ``<namespace>/camera_info``).
        ``depth``: the queue of every publisher and subscription. ``keep`` False records
        only the arrival times of the outputs, not the messages (long benchmark runs)."""
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.node import Node
        from rclpy.qos import QoSProfile
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

        self.node = Node(name)
        ns = namespace.rstrip("/")
        qos = QoSProfile(depth=depth)
        image_topic = image_topic or f"{ns}/image"
        self.image_pub = self.node.create_publisher(Image, image_topic, qos)
        self.compressed_pub = self.node.create_publisher(
            CompressedImage, f"{image_topic}/compressed", qos)
        self.info_pub = self.node.create_publisher(
            CameraInfo, camera_info_topic or f"{ns}/camera_info", qos)
        types = {"depth": Image, "depth/camera_info": CameraInfo, "points": PointCloud2,
                 "depth/colorized": Image, "depth/relative": Image}
        self.received: dict[str, list[Any]] = {topic: [] for topic in outputs}
        #: header stamp (sec, nanosec) -> monotonic arrival time of its depth image
        self.arrivals: dict[tuple[int, int], float] = {}
        #: topic -> monotonic arrival times of its messages
        self.times: dict[str, list[float]] = {topic: [] for topic in outputs}
        self.diagnostics: list[Any] = []
        self.diagnostic_times: list[float] = []  # their monotonic arrival times
        self._keep = keep
        self._ns, self._depth = ns, depth
        self._subs = [
            self.node.create_subscription(types[t], f"{ns}/{t}",
                                          lambda m, t=t: self._on_output(t, m), qos)
            for t in outputs
        ]
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, qos)
        self._pubs = {"image": self.image_pub, "compressed": self.compressed_pub,
                      "camera_info": self.info_pub}
        self._classes = {"image": Image, "compressed": CompressedImage,
                         "camera_info": CameraInfo}

    def _on_output(self, topic: str, msg: Any) -> None:
        now = time.monotonic()
        self.times[topic].append(now)
        if topic == "depth":
            self.arrivals[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = now
        if self._keep:
            self.received[topic].append(msg)

    def _on_diag(self, msg: Any) -> None:
        self.diagnostics.append(msg)
        self.diagnostic_times.append(time.monotonic())

    def spin_until(self, predicate: Callable[[], Any], timeout: float = WAIT, what: str = "",
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

    def resend_until(self, send: Callable[[], Any], done: Callable[[], Any],
                     timeout: float = WAIT, what: str = "", period: float = 3.0) -> None:
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

    def statuses(self, timeout: float = 10.0) -> dict[str, dict[str, str]]:
        """Status name -> key-values of a /diagnostics message published after this call."""
        seen = len(self.diagnostics)
        self.spin_until(lambda: len(self.diagnostics) > seen + 1, timeout, "/diagnostics")
        return {s.name: {"_level": s.level, "_message": s.message,
                         **{kv.key: kv.value for kv in s.values}}
                for s in self.diagnostics[-1].status}

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

    # ------------------------------------------------------------ benchmark style
    def publish(self, message: Message) -> None:
        """Publish a :class:`harness.malformed.Message` on its topic (the anchor topics of
        :mod:`harness.malformed_anchor` too: ``anchor_points``, ``anchor_depth``)."""
        if message.topic.startswith("anchor_"):
            from harness.malformed_anchor import build as build_anchor

            if message.topic not in self._pubs:
                from rclpy.qos import QoSProfile
                from sensor_msgs.msg import Image, PointCloud2

                cls = PointCloud2 if message.topic == "anchor_points" else Image
                relative = message.topic.replace("_", "/", 1)  # anchor/points
                self._pubs[message.topic] = self.node.create_publisher(
                    cls, f"{self._ns}/{relative}", QoSProfile(depth=self._depth))
            self._pubs[message.topic].publish(build_anchor(message))
            return
        self._pubs[message.topic].publish(build(message, self._classes))

    def spin(self, seconds: float) -> None:
        """Handle incoming messages for ``seconds`` (at least once)."""
        import rclpy

        end = time.monotonic() + seconds
        while True:
            rclpy.spin_once(self.node, timeout_sec=max(0.0, min(0.05, end - time.monotonic())))
            if time.monotonic() >= end:
                return

    def wait_started(self, node: NodeProcess, topic: str, timeout: float = 300.0) -> None:
        """Until the node subscribes to ``topic`` (``image``, ``compressed`` or
        ``camera_info``) and has published /diagnostics; RuntimeError with the log's tail
        when it exits first or takes longer than ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while not (self._pubs[topic].get_subscription_count() and self.diagnostics):
            if not node.alive() or time.monotonic() > deadline:
                tail = "\n".join(node.log_lines()[-30:])
                raise RuntimeError(f"depth_pro_node did not start:\n{tail}")
            self.spin(0.1)

    def wait_depth(self, stamp: tuple[int, int], timeout: float,
                   node: NodeProcess) -> float | None:
        """Seconds until the depth image stamped ``stamp`` arrived; None after
        ``timeout`` or when the node exited."""
        start = time.monotonic()
        while stamp not in self.arrivals:
            if time.monotonic() - start > timeout or not node.alive():
                return None
            self.spin(0.02)
        return self.arrivals[stamp] - start

    def warm_up(self, node: NodeProcess, messages: tuple[Message, ...],
                timeout: float = 300.0, period: float = 5.0) -> None:
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
                raise RuntimeError("depth_pro_node served no depth:\n"
                                   + "\n".join(node.log_lines()[-30:]))

    def _camera_values(self) -> list[tuple[float, float, dict[str, str]]]:
        """(arrival, node clock stamp in s, key -> value with ``_message``) of the
        camera's status in each /diagnostics."""
        out = []
        for arrival, msg in zip(self.diagnostic_times, self.diagnostics):
            for status in msg.status:
                if status.name == CAMERA_STATUS:
                    stamp = msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec
                    values = {kv.key: kv.value for kv in status.values}
                    out.append((arrival, stamp, {**values, "_message": status.message}))
        return out

    def last_diagnostics(self) -> dict[str, str]:
        """The camera's last reported values (with ``_message``); empty before any."""
        values = self._camera_values()
        return dict(values[-1][2]) if values else {}

    def diagnostics_gaps(self, since: float = 0.0) -> dict[str, float | int | None]:
        """Largest and median gap between consecutive /diagnostics of the node (by the
        node's own stamps, so the probe's spinning does not count) after ``since``."""
        stamps = [stamp for arrival, stamp, _ in self._camera_values() if arrival >= since]
        gaps = [b - a for a, b in zip(stamps, stamps[1:])]
        return {"count": len(stamps),
                "max_gap_s": round(max(gaps), 3) if gaps else None,
                "median_gap_s": round(statistics.median(gaps), 3) if gaps else None}

    def close(self) -> None:
        """Destroy the rclpy node."""
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
