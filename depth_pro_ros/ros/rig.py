"""The node's rig mode (``multiview: rig``): a :class:`~depth_pro_ros.stream.rig_worker.
RigWorker` in place of the engine, the estimated camera poses on ``rig/poses`` and the
rig's own status on ``/diagnostics``.

``rig/poses`` (geometry_msgs/PoseArray) holds one pose per camera of ``cameras``, in that
order: its camera-to-rig transform (metres with ``rig_extrinsics``, else the network's
units), NaN for a camera missing from the group. Its header: the group's oldest stamp,
and frame ``rig`` with ``rig_extrinsics`` (their frame), else the first view's optical
frame (the rig frame is then that camera's).
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Callable

import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Pose, PoseArray
from rclpy.node import Node
from rclpy.qos import QoSProfile

from depth_pro_ros.engine import DepthResult, EngineConfig, load_model
from depth_pro_ros.engine.rig import RigEngine, RigOutput
from depth_pro_ros.model import rotation_to_quaternion
from depth_pro_ros.ros.parameters import NodeSettings
from depth_pro_ros.stream.errors import RigConfigError
from depth_pro_ros.stream.rig import RigGroup, load_rig_extrinsics
from depth_pro_ros.stream.rig_worker import RigWorker

__all__ = ["RIG_FRAME", "rig_starter"]

RIG_FRAME = "rig"  # the poses' frame with rig_extrinsics


def rig_starter(node: Node, settings: NodeSettings) -> Callable[..., RigWorker]:
    """A function with ``create_engine``'s arguments that starts ``node``'s rig mode.

    It raises ``ValueError`` (the node refuses to start) for fewer than two cameras, an
    unusable ``rig_extrinsics`` file or a model that is not any-view.
    """

    def start(checkpoint: str, config: EngineConfig,
              on_result: Callable[[DepthResult], None], model_type: str) -> RigWorker:
        cameras = tuple(settings.values["cameras"])
        if len(cameras) < 2:
            raise ValueError("multiview rig needs two or more cameras in the 'cameras' "
                             "parameter")
        path = settings.values["rig_extrinsics"]
        poses = None
        if path:
            try:
                poses = load_rig_extrinsics(path, cameras)
            except RigConfigError as exc:
                raise ValueError(f"parameter 'rig_extrinsics': {exc}") from None
        loaded = load_model(checkpoint, config.device, config.precision, model_type)
        rig = RigEngine(loaded.model, dataclasses.replace(
            config, device=str(loaded.device), precision=loaded.precision))
        status = _RigStatus(node, cameras, poses is not None)
        return RigWorker(rig, cameras, settings.values["rig_slop"], on_result,
                         status.on_group, poses)

    return start


class _RigStatus:
    """Publishes each group's poses and, once a second, the rig's diagnostics."""

    def __init__(self, node: Node, cameras: tuple[str, ...], known: bool) -> None:
        self.node, self.cameras, self.known = node, cameras, known
        self.groups = 0
        self.missing: Counter[str] = Counter()
        self.pub = node.create_publisher(PoseArray, "rig/poses", QoSProfile(depth=5))
        self.diagnostics = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        node.create_timer(1.0, self.publish_status)

    def on_group(self, group: RigGroup, output: RigOutput | None) -> None:
        """Count the group's missing cameras; publish its poses (worker thread)."""
        self.groups += 1
        self.missing.update(group.missing)
        if output is None:
            return
        first = next(iter(group.views.values())).meta
        msg = PoseArray()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(group.stamp_ns, 10**9)
        msg.header.frame_id = RIG_FRAME if self.known else first.header.frame_id
        by_camera = dict(zip(group.views, output.camera_to_rig))
        msg.poses = [_pose(by_camera.get(c)) for c in self.cameras]
        self.pub.publish(msg)

    def publish_status(self) -> None:
        missing = ", ".join(f"{c} {self.missing[c]}" for c in self.cameras if self.missing[c])
        values = {"cameras": " ".join(self.cameras), "groups": self.groups,
                  **{f"missing {c}": self.missing[c] for c in self.cameras}}
        status = DiagnosticStatus(
            level=DiagnosticStatus.OK, name=f"{self.node.get_name()}: rig",
            message=f"rig of {len(self.cameras)} cameras, {self.groups} group(s)"
            + (f"; groups without: {missing}" if missing else ""),
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.node.get_clock().now().to_msg()
        self.diagnostics.publish(array)


def _pose(matrix: np.ndarray | None) -> Pose:
    """A 4 x 4 transform as a Pose (NaN without one)."""
    pose = Pose()
    if matrix is None:
        for field in (pose.position, pose.orientation):
            for axis in "xyz":
                setattr(field, axis, math.nan)
        pose.orientation.w = math.nan
        return pose
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in matrix[:3, 3])
    x, y, z, w = rotation_to_quaternion(torch.from_numpy(matrix[:3, :3])).tolist()
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = x, y, z, w
    return pose
