"""``depth_pro_node``: a thin rclpy adapter over the stream and engine layers.

One path per frame: image message -> ``CameraStream.prepare`` (decode, focal choice)
-> ``DepthEngine`` (latest-frame policy, worker thread) -> ``build_outputs`` -> the
publishers, with the source image's header on every output. Topics are relative so that
users remap them or push the node into a camera namespace.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import threading
import time
from collections import deque
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import (
    InvalidParameterTypeException,
    InvalidParameterValueException,
    ParameterException,
)
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField

from depth_pro_ros.engine import DepthResult, create_engine, resolve_device
from depth_pro_ros.io.messages import fill
from depth_pro_ros.model import CheckpointError
from depth_pro_ros.ros.parameters import PARAMETERS, NodeSettings, descriptor, settings_from
from depth_pro_ros.stream import CameraStream, FrameSkipped, build_outputs
from depth_pro_ros.stream.throttle import ErrorThrottle

__all__ = ["DepthProNode", "main"]

#: Seconds between two log lines about the same problem.
ERROR_THROTTLE_S = 5.0
#: Seconds of history behind the rates and latencies in /diagnostics.
STATS_WINDOW_S = 10.0

_MESSAGE_CLASSES = {"depth": Image, "depth/camera_info": CameraInfo, "points": PointCloud2,
                    "depth/colorized": Image}


class StartupError(RuntimeError):
    """The node cannot start (bad parameter, checkpoint or device); the text says why."""


class _Window:
    """Event times (and optional values) over the last ``STATS_WINDOW_S`` seconds."""

    def __init__(self) -> None:
        self._items: deque[tuple[float, float]] = deque()
        self._lock = threading.Lock()

    def add(self, value: float = 0.0) -> None:
        with self._lock:
            self._items.append((time.monotonic(), value))

    def snapshot(self) -> tuple[float, list[float]]:
        """(events per second, values) over the window."""
        cutoff = time.monotonic() - STATS_WINDOW_S
        with self._lock:
            while self._items and self._items[0][0] < cutoff:
                self._items.popleft()
            values = [v for _, v in self._items]
        return len(values) / STATS_WINDOW_S, values


class DepthProNode(Node):
    """Metric depth from a monocular camera; see the README for topics and parameters."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("depth_pro_node", **kwargs)
        self._settings = self._declare_parameters()
        self._device, self._precision = self._load_engine()
        self._stream = CameraStream(self._settings.focal, history=64, hold_unpaired=True,
                                    max_input_pixels=self._settings.values["max_input_pixels"])

        self._counts = {"frames_in": 0, "frames_out": 0, "failed": 0, "lazy_skipped": 0,
                        "camera_info_errors": 0}
        self._skips: dict[str, int] = {}
        self._last: dict[str, Any] = {}
        self._inputs, self._outputs, self._latency = _Window(), _Window(), _Window()
        self._stats_lock = threading.Lock()
        self._throttle = ErrorThrottle(ERROR_THROTTLE_S)
        # Monotonic times of the last image in and of the oldest image still waiting for a
        # depth to be published (None while none waits): what /diagnostics judges by.
        self._last_input: float | None = None
        self._waiting_since: float | None = None

        out_qos = QoSProfile(depth=5)
        self._pubs = {topic: self.create_publisher(cls, topic, out_qos)
                      for topic, cls in _MESSAGE_CLASSES.items()}
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        overrides = QoSOverridingOptions.with_default_policies()
        compressed = self._settings.values["input_transport"] == "compressed"
        self.create_subscription(
            CompressedImage if compressed else Image,
            "image/compressed" if compressed else "image",
            lambda msg: self._on_image(msg, compressed),
            qos_profile_sensor_data, qos_overriding_options=overrides,
        )
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info,
                                 qos_profile_sensor_data, qos_overriding_options=overrides)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.create_timer(1.0, self._publish_diagnostics)
        self.get_logger().info(
            f"Depth Pro ready on {self._device} ({self._precision}); subscribed to "
            f"{self.resolve_topic_name('image/compressed' if compressed else 'image')} and "
            f"{self.resolve_topic_name('camera_info')}, focal source "
            f"{self._settings.focal.focal_source}"
        )

    # ------------------------------------------------------------------ start-up
    def _declare_parameters(self) -> NodeSettings:
        values = {}
        for spec in PARAMETERS:
            try:
                param = self.declare_parameter(spec.name, spec.default, descriptor(spec))
            except InvalidParameterTypeException:
                raise StartupError(
                    f"parameter '{spec.name}' must be a {type(spec.default).__name__} "
                    f"(e.g. {spec.default!r})") from None
            except InvalidParameterValueException as exc:
                raise StartupError(f"parameter '{spec.name}': {exc}") from None
            values[spec.name] = param.value
        try:
            return settings_from(values)
        except ValueError as exc:
            raise StartupError(str(exc)) from None

    def _load_engine(self) -> tuple[str, str]:
        checkpoint = self._settings.values["checkpoint"]
        cfg = self._settings.engine
        self.get_logger().info(f"loading {checkpoint} (device {cfg.device or 'auto'}, "
                               f"precision {cfg.precision})")
        try:  # checked first, so the error names the parameter and no checkpoint is read
            resolve_device(cfg.device)
        except ValueError as exc:
            raise StartupError(f"parameter 'device': {exc}") from None
        try:
            self._engine = create_engine(checkpoint, cfg, on_result=self._on_result)
        except (CheckpointError, ValueError) as exc:
            raise StartupError(str(exc)) from None
        return self._engine.config.device, self._engine.config.precision

    # ------------------------------------------------------------------ callbacks
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_image(self, msg: Any, compressed: bool) -> None:
        self._inputs.add()
        now = time.monotonic()
        with self._stats_lock:
            self._counts["frames_in"] += 1
            self._last_input = now
            if self._waiting_since is None:
                self._waiting_since = now
        if self._settings.values["lazy"] and not any(
            pub.get_subscription_count() for pub in self._pubs.values()
        ):
            with self._stats_lock:
                self._counts["lazy_skipped"] += 1
                self._waiting_since = None  # idle by request, not stalled
            return
        try:
            frame = self._stream.prepare(msg, compressed, self._now(), meta=time.monotonic())
        except FrameSkipped as exc:
            self._skipped(exc, f"image skipped: {exc}")
            return
        finally:
            for message in self._stream.pop_messages():
                self.get_logger().info(f"focal source: {message}")
            for warning in self._stream.pop_warnings():
                self._report("codec", f"image decoder: {warning}", warning=True)
        if frame is not None:
            self._submit(frame)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            frames = self._stream.add_camera_info(msg, self._now())
        except FrameSkipped as exc:  # the CameraInfo is fine; the image held for it is not
            self._skipped(exc, f"image skipped: {exc}")
            return
        except ValueError as exc:
            with self._stats_lock:
                self._counts["camera_info_errors"] += 1
            self._error("camera_info",
                        f"{exc} (topic {self.resolve_topic_name('camera_info')})")
            return
        for frame in frames:
            self._submit(frame)

    def _submit(self, frame) -> None:
        frame.estimate_fov = bool(self._settings.values["estimate_fov"])
        try:
            self._engine.submit(frame)
        except (ValueError, RuntimeError) as exc:
            self._skipped(FrameSkipped(str(exc), "invalid_frame"), f"image skipped: {exc}")

    def _on_result(self, result: DepthResult) -> None:
        """Publish one result (runs on the engine's worker thread)."""
        try:
            self._publish(result)
        except Exception:
            if self.context.ok():
                raise
            # Ctrl-C / SIGTERM shut the context down while this frame was in flight: it
            # can no longer be published, which is expected during shutdown.

    def _publish(self, result: DepthResult) -> None:
        meta = result.meta
        if not result.ok:
            with self._stats_lock:
                self._counts["failed"] += 1
            self._error("inference", f"depth failed for the image stamped "
                        f"{meta.stamp_ns * 1e-9:.3f}: {result.error}")
            return
        options = self._settings.outputs
        if options.colorized and not self._pubs["depth/colorized"].get_subscription_count():
            options = dataclasses.replace(options, colorized=False)
        for out in build_outputs(result, options, meta.camera_info):
            msg = fill(_MESSAGE_CLASSES[out.topic](), out.fields, point_field=PointField)
            msg.header = meta.header
            self._pubs[out.topic].publish(msg)
        now = time.monotonic()
        self._outputs.add()
        self._latency.add(1e3 * (now - meta.user))
        with self._stats_lock:
            self._counts["frames_out"] += 1
            self._waiting_since = None
            self._last = {"focal_source": result.focal_source.value,
                          "focal_px": result.intrinsics.fx,
                          "focal_estimate_px": result.focal_estimate_px,
                          "width": result.depth.shape[1]}

    def _on_set_parameters(self, params: list) -> SetParametersResult:
        changes = {p.name: p.value for p in params if p.name in self._settings.values}
        if not changes:
            return SetParametersResult(successful=True)
        try:
            new = settings_from({**self._settings.values, **changes})
            self._engine.reconfigure(**new.engine_changes)
        except ValueError as exc:
            self.get_logger().warning(f"parameter change rejected: {exc}")
            return SetParametersResult(successful=False, reason=str(exc))
        self._stream.configure(new.focal)
        self._stream.max_input_pixels = new.values["max_input_pixels"]
        self._settings = new
        self.get_logger().info("parameters changed: " + ", ".join(
            f"{name}={value!r}" for name, value in changes.items()))
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ reporting
    def _skipped(self, exc: FrameSkipped, text: str) -> None:
        with self._stats_lock:
            self._skips[exc.reason] = self._skips.get(exc.reason, 0) + 1
        self._error(f"{exc.reason}:{exc.kind}", text)

    def _error(self, kind: str, text: str) -> None:
        self._report(kind, text)

    def _report(self, kind: str, text: str, warning: bool = False) -> None:
        """Log ``text`` unless a problem of the same ``kind`` was logged in the last
        ``ERROR_THROTTLE_S`` seconds (those are counted and the count is logged next)."""
        held = self._throttle.admit(kind, time.monotonic())
        if held is None:
            return
        if held:
            text += f" ({held} more like it since the last report)"
        # One call site per severity: rclpy refuses a call site whose severity changes.
        if warning:
            self.get_logger().warning(text)
        else:
            self.get_logger().error(text)

    def diagnostics_status(self) -> DiagnosticStatus:
        """The node's health: rates, latency, drops, errors and the focal in use."""
        in_rate, _ = self._inputs.snapshot()
        out_rate, _ = self._outputs.snapshot()
        _, latencies = self._latency.snapshot()
        stats = self._engine.stats
        with self._stats_lock:
            counts, skips, last = dict(self._counts), dict(self._skips), dict(self._last)
            last_input, waiting_since = self._last_input, self._waiting_since
        focal = self._stream.focal_state(last.get("width", 0)) if last else {}
        errors = sum(skips.values()) + counts["failed"] + counts["camera_info_errors"]
        values = {
            "input_rate_hz": f"{in_rate:.2f}",
            "output_rate_hz": f"{out_rate:.2f}",
            "latency_median_ms": f"{statistics.median(latencies):.1f}" if latencies else "",
            "latency_max_ms": f"{max(latencies):.1f}" if latencies else "",
            "frames_in": counts["frames_in"],
            "frames_out": counts["frames_out"],
            "dropped_frames": stats.dropped + self._stream.dropped,
            "decode_errors": skips.get("decode", 0),
            "skipped_frames": sum(skips.values()),
            "failed_frames": counts["failed"],
            "camera_info_errors": counts["camera_info_errors"],
            "lazy_skipped": counts["lazy_skipped"],
            "focal_source": last.get("focal_source", ""),
            "focal_px": f"{last['focal_px']:.2f}" if last else "",
            "focal_estimate_px": f"{last['focal_estimate_px']:.2f}"
            if last.get("focal_estimate_px") is not None else "",
            "focal_ema_px": f"{focal['ema_px']:.2f}" if focal.get("ema_px") else "",
            "device": self._device,
            "precision": self._precision,
        }
        level, message = self._health(errors, last_input, waiting_since)
        return DiagnosticStatus(
            level=level, name=f"{self.get_name()}: depth", message=message,
            hardware_id=self._device,
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()],
        )

    def _health(self, errors: int, last_input: float | None,
                waiting_since: float | None) -> tuple[bytes, str]:
        """Level and message of the status: silence after input flowed is a warning,
        images that keep arriving while no depth comes out for ``stall_timeout`` an error."""
        stall = self._settings.values["stall_timeout"]
        now = time.monotonic()
        if last_input is None:
            return DiagnosticStatus.WARN, "no images received yet"
        if now - last_input > stall:
            return DiagnosticStatus.WARN, f"no input for {now - last_input:.0f} s"
        if waiting_since is not None and now - waiting_since > stall:
            what = f"{errors} frames skipped or failed" if errors else "none skipped"
            return (DiagnosticStatus.ERROR, f"images arrive but no depth was published for "
                    f"{now - waiting_since:.0f} s ({what})")
        if errors:
            return DiagnosticStatus.OK, f"running ({errors} frames skipped or failed)"
        return DiagnosticStatus.OK, "running"

    def _publish_diagnostics(self) -> None:
        array = DiagnosticArray(status=[self.diagnostics_status()])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(array)

    def close(self) -> None:
        """Finish the frame in flight and join the engine's worker thread."""
        self._engine.close()


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run depth_pro_ros depth_pro_node``."""
    rclpy.init(args=args)
    try:
        node = DepthProNode()
    except (StartupError, ParameterException) as exc:
        rclpy.logging.get_logger("depth_pro_node").fatal(f"cannot start: {exc}")
        rclpy.try_shutdown()
        return 2
    except KeyboardInterrupt:
        rclpy.try_shutdown()
        return 0
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # Ctrl-C / SIGTERM: shut down quietly below
    finally:
        node.close()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
