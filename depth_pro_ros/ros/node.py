"""``depth_pro_node``: a thin rclpy adapter over the stream and engine layers.

One path per frame: image message -> the camera's ``CameraSession`` (decode, focal
choice, prompt or anchoring step) -> the shared ``DepthEngine`` (latest frame per
camera, cameras in turn, equal sizes batched, worker thread) -> the session's outputs
-> the camera's publishers, with the source image's header on every output. The
publishers and the image subscription come from the stream layer's tables
(``OUTPUT_TOPICS``, ``INPUT_TRANSPORTS``). Topics are relative so that users remap
them or push the node into a camera namespace; with the ``cameras`` parameter every
camera's topics sit under its name.
"""

from __future__ import annotations

import copy
import dataclasses
import faulthandler
import importlib
import sys
import time
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField

from depth_pro_ros.engine import DepthResult, Frame, create_engine, resolve_device
from depth_pro_ros.io.messages import fill
from depth_pro_ros.model import CheckpointError
from depth_pro_ros.ros.errors import StartupError
from depth_pro_ros.ros.guard import Reporter, guard_services, shown, spin
from depth_pro_ros.ros.health import CameraHealth, anchor_values, engine_values
from depth_pro_ros.ros.parameters import check_model, declare_parameters, settings_from
from depth_pro_ros.ros.rig import rig_starter
from depth_pro_ros.ros.throttle import ErrorThrottle
from depth_pro_ros.stream import FrameContext, FrameSkipped
from depth_pro_ros.stream.outputs import topics_for
from depth_pro_ros.stream.session import CameraSession
from depth_pro_ros.stream.transport import transport_of

__all__ = ["DepthProNode", "main"]

#: Seconds between two log lines about the same problem.
ERROR_THROTTLE_S = 5.0
_MAX_LINE = 1000  # characters of a problem report before it is cut
_LEVELS = {"OK": DiagnosticStatus.OK, "WARN": DiagnosticStatus.WARN,
           "ERROR": DiagnosticStatus.ERROR}


def message_class(msgtype: str) -> type:
    """The rclpy class of a message type name (``sensor_msgs/msg/Image``)."""
    package, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def _sensor_qos() -> QoSProfile:
    """A profile of its own for one input, equal to rclpy's sensor-data preset: rclpy
    applies ``qos_overrides.<topic>...`` parameters to the object it is given, in place, so
    a shared one would carry an image override to the CameraInfo subscription (and to
    rclpy's preset for the whole process)."""
    return copy.copy(qos_profile_sensor_data)


def _reliability(qos: QoSProfile) -> str:
    return "reliable" if qos.reliability == QoSReliabilityPolicy.RELIABLE else "best effort"


class _Camera:
    """One camera: its session (streams and trackers), publishers and health."""

    def __init__(self, node: Node, session: CameraSession, kind: str) -> None:
        self.name, self.session, self.health = session.name, session, CameraHealth()
        self.stream, self.anchor = session.stream, session.anchor
        self.told_no_focal = False
        # A profile per publisher: rclpy may change the one it is given (QoS overrides).
        self.pubs = {row.name: node.create_publisher(message_class(row.msgtype),
                                                     self.topic(row.name), QoSProfile(depth=5))
                     for row in topics_for(kind)}

    def topic(self, relative: str) -> str:
        """The camera's relative topic name for ``relative`` (``NAME/relative``)."""
        return f"{self.name}/{relative}" if self.name else relative

    def label(self, text: str) -> str:
        """``text`` naming the camera when the node serves several."""
        return f"camera '{self.name}': {text}" if self.name else text


class DepthProNode(Node):
    """Metric depth from one or several monocular cameras with one loaded network; see the
    docs/node.md for topics and parameters."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("depth_pro_node", **kwargs)
        self._settings = declare_parameters(self)
        self._device, self._precision = self._load_engine()
        self._throttle = ErrorThrottle(ERROR_THROTTLE_S)
        values = self._settings.values
        anchor = self._settings.anchor
        self._model = self._engine.recipe.info
        transport = transport_of(values["input_transport"])
        self._cameras = [
            _Camera(self, CameraSession(
                name, transport.transport, self._settings.focal, anchor,
                needs_prompt=self._model.needs_prompt, history=64, hold_unpaired=True,
                max_input_pixels=values["max_input_pixels"],
                estimate_fov=bool(values["estimate_fov"])), self._model.kind)
            for name in self._settings.cameras
        ]
        self._by_name = {cam.name: cam for cam in self._cameras}
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        overrides = QoSOverridingOptions.with_default_policies()
        image_topic = transport.topic
        inputs_qos: dict[str, str] = {}  # relative topic -> its reliability, for the log

        def subscribe(cls: type, topic: str, callback) -> None:
            # A profile per subscription: the overrides (keyed by the resolved topic name,
            # qos_overrides./cam/image.subscription.reliability) change it in place.
            sub = self.create_subscription(cls, topic, callback, _sensor_qos(),
                                           qos_overriding_options=overrides)
            inputs_qos[topic] = _reliability(sub.qos_profile)

        for cam in self._cameras:
            # CameraInfo first: the executor takes one message per ready subscription in
            # the order they were created, so after a busy spell the CameraInfo that waited
            # is taken in before the image that waited beside it.
            subscribe(CameraInfo, cam.topic("camera_info"),
                      lambda msg, cam=cam: self._on_camera_info(cam, msg))
            subscribe(message_class(transport.msgtype), cam.topic(image_topic),
                      lambda msg, cam=cam: self._on_image(cam, msg))
            if anchor.enabled:
                depth_anchor = anchor.source == "depth"
                subscribe(Image if depth_anchor else PointCloud2,
                          cam.topic("anchor/depth" if depth_anchor else "anchor/points"),
                          lambda msg, cam=cam: self._on_anchor(cam, msg))
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.reporter = Reporter(self, ERROR_THROTTLE_S)
        guard_services(self, self.reporter)  # after the last service (rclpy's) is created
        self.create_timer(1.0, self._publish_diagnostics)
        anchor_topic = {"depth": "anchor/depth", "points": "anchor/points"}.get(anchor.source)

        def named(relative: str) -> str:
            return f"{self.resolve_topic_name(relative)} ({inputs_qos[relative]})"

        inputs = "; ".join(f"{named(cam.topic(image_topic))} and "
                           f"{named(cam.topic('camera_info'))}"
                           + (f", anchored by {named(cam.topic(anchor_topic))}"
                              f" ({anchor.settings.fit})" if anchor_topic else "")
                           for cam in self._cameras)
        batching = (f", {len(self._cameras)} cameras, batches of up to "
                    f"{self._engine.config.batch_size}") if len(self._cameras) > 1 else ""
        self.get_logger().info(
            f"{self._model.description} ready on {self._device} ({self._precision}, "
            f"backend {self._engine.config.backend}){batching}; subscribed to {inputs}, "
            f"focal source {self._settings.focal.focal_source}")

    # ------------------------------------------------------------------ start-up
    def _load_engine(self) -> tuple[str, str]:
        values = self._settings.values
        checkpoint, cfg = values["checkpoint"], self._settings.engine
        self.get_logger().info(f"loading {checkpoint} (device {cfg.device or 'auto'}, "
                               f"precision {cfg.precision})")
        try:  # checked first, so the error names the parameter and no checkpoint is read
            resolve_device(cfg.device)
        except ValueError as exc:
            raise StartupError(f"parameter 'device': {exc}") from None
        start = rig_starter(self, self._settings) if values["multiview"] == "rig" else create_engine
        try:
            self._engine = start(checkpoint, cfg, on_result=self._on_result,
                                 model_type=values["model_type"])
        except (CheckpointError, ValueError) as exc:
            raise StartupError(str(exc)) from None
        try:  # the check a runtime parameter change meets too (_on_set_parameters)
            check_model(self._settings, self._engine.recipe.info)
        except ValueError as exc:
            self._engine.close()
            raise StartupError(str(exc)) from None
        return self._engine.config.device, self._engine.config.precision

    # ------------------------------------------------------------------ callbacks
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_image(self, cam: _Camera, msg: Any) -> None:
        cam.health.image_in()
        if self._settings.values["lazy"] and not any(
            pub.get_subscription_count() for pub in cam.pubs.values()
        ):
            cam.health.lazy_skipped()
            return
        try:
            frames = cam.session.add_image(msg, self._now())
        except FrameSkipped as exc:
            self._skipped(cam, exc)
            return
        finally:
            self._log_notes(cam)
            for warning in cam.stream.pop_warnings():
                self._report(cam, "codec", f"image decoder: {warning}", warning=True)
        for frame in frames:
            self._submit(cam, frame)

    def _on_camera_info(self, cam: _Camera, msg: CameraInfo) -> None:
        try:
            frames = cam.session.add_camera_info(msg, self._now())
        except FrameSkipped as exc:  # the CameraInfo is fine; the image held for it is not
            self._skipped(cam, exc)
            return
        except ValueError as exc:
            cam.health.camera_info_error()
            self._report(cam, "camera_info",
                         f"{exc} (topic {self.resolve_topic_name(cam.topic('camera_info'))})")
            return
        for frame in frames:
            self._submit(cam, frame)

    def _on_anchor(self, cam: _Camera, msg: Any) -> None:
        try:
            cam.session.add_anchor(msg, self._now())
        except ValueError as exc:
            self._report(cam, "anchor_message", str(exc))

    def _submit(self, cam: _Camera, frame: Frame) -> None:
        try:
            self._engine.submit(frame)
        except (ValueError, RuntimeError) as exc:
            self._skipped(cam, FrameSkipped(str(exc), "invalid_frame"))

    def _on_result(self, result: DepthResult) -> None:
        """Publish one result (runs on the engine's worker thread)."""
        try:
            self._publish(result)
        except Exception as exc:  # noqa: BLE001 - one throttled line, the next frame goes on
            # Ctrl-C / SIGTERM shut the context down while this frame was in flight: it
            # can no longer be published, which is expected during shutdown.
            if self.context.ok():
                self.reporter.error(f"publish:{type(exc).__name__}", "a result was not "
                                    f"published: {type(exc).__name__}: {shown(str(exc))}")

    def _publish(self, result: DepthResult) -> None:
        ctx: FrameContext = result.meta
        cam = self._by_name[ctx.camera]
        self._log_notes(cam)
        if cam.anchor is not None:
            for problem in cam.anchor.pop_problems():
                # The kind stops before any quoted sender text (a frame id), which varies.
                self._report(cam, "anchor:" + problem.split("'")[0].split(":")[0], problem)
        options = self._settings.outputs
        if options.colorized and not cam.pubs["depth/colorized"].get_subscription_count():
            options = dataclasses.replace(options, colorized=False)
        try:
            outputs = cam.session.outputs(result, options)
        except FrameSkipped as exc:
            if exc.reason == "inference":
                cam.health.failed()
                self._report(cam, "inference", str(exc))
            else:
                cam.health.skipped(exc.reason)
                self._report(cam, exc.reason, f"depth not published: {exc}", warning=True)
            return
        if result.depth is not None and result.intrinsics is None and not cam.told_no_focal:
            cam.told_no_focal = True
            self.get_logger().warning(cam.label(
                "no focal length (no CameraInfo, and focal_source is not fixed): publishing "
                "depth only, without depth/camera_info and points"))
        for out in outputs:
            pub = cam.pubs[out.topic]
            msg = fill(pub.msg_type(), out.fields, point_field=PointField)
            msg.header = ctx.header
            pub.publish(msg)
        cam.health.published(result, ctx.arrival)

    def _on_set_parameters(self, params: list) -> SetParametersResult:
        # rclpy lets the empty name through its undeclared-name check (it tests names for
        # truth) and would declare it: every parameter is declared at start-up.
        unknown = [shown(p.name) for p in params if not self.has_parameter(p.name)]
        if unknown:
            return SetParametersResult(
                successful=False, reason=f"parameter {unknown[0]} is not declared")
        changes = {p.name: p.value for p in params if p.name in self._settings.values}
        if not changes:
            return SetParametersResult(successful=True)
        try:  # start-up's validation, the loaded model's included
            new = settings_from({**self._settings.values, **changes}, self._model)
            self._engine.reconfigure(**new.engine_changes)
        except ValueError as exc:
            self.reporter.error("parameters", f"parameter change rejected: {exc}",
                                warning=True)
            return SetParametersResult(successful=False, reason=str(exc))
        for cam in self._cameras:
            cam.session.configure(new.focal, new.anchor, new.values["max_input_pixels"],
                                  bool(new.values["estimate_fov"]))
        self._settings = new
        self.get_logger().info("parameters changed: " + ", ".join(
            f"{name}={shown(value)}" for name, value in changes.items()))
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ reporting
    def _log_notes(self, cam: _Camera) -> None:
        for note in cam.session.pop_notes():
            self.get_logger().info(cam.label(note))

    def _skipped(self, cam: _Camera, exc: FrameSkipped) -> None:
        cam.health.skipped(exc.reason)
        self._report(cam, f"{exc.reason}:{exc.kind}", f"image skipped: {exc}")

    def _report(self, cam: _Camera, kind: str, text: str, warning: bool = False) -> None:
        """Log ``text`` unless a problem of the same ``kind`` on the same camera was logged
        in the last ``ERROR_THROTTLE_S`` seconds (those are counted and the count is
        logged next)."""
        held = self._throttle.admit(f"{cam.name}:{kind}", time.monotonic())
        if held is None:
            return
        text = cam.label(text)
        if len(text) > _MAX_LINE:  # sender strings (frame ids, encodings) can be huge
            text = f"{text[:_MAX_LINE]}... ({len(text)} characters)"
        if held:
            text += f" ({held} more like it since the last report)"
        # One call site per severity: rclpy refuses a call site whose severity changes.
        if warning:
            self.get_logger().warning(text)
        else:
            self.get_logger().error(text)

    def diagnostics(self) -> list[DiagnosticStatus]:
        """One status per camera (rates, latency, drops, errors, the focal in use), then
        the shared engine's (batches)."""
        stats = self._engine.stats
        statuses = []
        for cam in self._cameras:
            width = cam.health.last_width
            ema = cam.stream.focal_state(width)["ema_px"] if width else None
            dropped = stats.dropped_by_source[cam.name] + cam.stream.dropped
            values = {**({"camera": cam.name} if cam.name else {}),
                      **cam.health.values(dropped, ema),
                      **(anchor_values(cam.anchor.state(self._now())) if cam.anchor else {}),
                      "model": self._model.description,
                      "device": self._device, "precision": self._precision}
            level, message = cam.health.health(self._settings.values["stall_timeout"])
            statuses.append(self._status(f"depth {cam.name}" if cam.name else "depth",
                                         level, message, values))
        config = self._engine.config
        batches = engine_values(stats, config.batch_size, config.cuda_graphs)
        statuses.append(self._status(
            "engine", "OK", f"{len(self._cameras)} camera(s) on {self._device}",
            {"cameras": " ".join(cam.name for cam in self._cameras if cam.name),
             **batches, "model": self._model.description, "device": self._device,
             "precision": self._precision, "backend": config.backend}))
        return statuses

    def _status(self, what: str, level: str, message: str,
                values: dict[str, Any]) -> DiagnosticStatus:
        return DiagnosticStatus(
            level=_LEVELS[level], name=f"{self.get_name()}: {what}", message=message,
            hardware_id=self._device,
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])

    def _publish_diagnostics(self) -> None:
        array = DiagnosticArray(status=self.diagnostics())
        array.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(array)

    def close(self) -> None:
        """Finish the frame in flight and join the engine's worker thread."""
        self._engine.close()


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run depth_pro_ros depth_pro_node``."""
    # A native crash (DDS, torch) logs every thread's Python stack, not only "exit code -11".
    faulthandler.enable()
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
        spin(node, node.reporter)  # logs an exception from a callback and goes on
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # Ctrl-C / SIGTERM: shut down quietly below
    finally:
        node.close()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
