"""depth_pro_node in rig mode over DDS: three cameras (``cameras: [a, b, c]``,
``multiview: rig``) of a synthetic scene (a textured wall and floor rendered with numpy
from three poses), the any-view DA3 stand-in. Each camera's published relative depth
equals RigEngine's joint forward over the three views (which test_da3_rig shows equal to
the reference package's joint forward), the poses come on rig/poses, a camera missing
from an instant leaves a NaN pose and is named in the rig's diagnostics."""

from __future__ import annotations

import math

import numpy as np
from harness.probe import CameraProbe, running_node
from harness.ros_messages import camera_info_message, image_message

from depth_pro_ros.engine import EngineConfig, Frame
from depth_pro_ros.engine.focal import Intrinsics
from depth_pro_ros.engine.rig import RigEngine
from depth_pro_ros.io.messages import depth_image_to_array
from depth_pro_ros.model import save_checkpoint
from depth_pro_ros.model.stand_in import random_model

CAMS = ("a", "b", "c")
H, W, INPUT, FX = 42, 56, 56, 45.0
RTOL = 1e-5  # the same operations in another process: float rounding only


def _render(x: float, yaw_deg: float) -> np.ndarray:
    """The scene from a camera at (x, 0, 0) turned by ``yaw_deg`` (y down, z forward)."""
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    d = np.stack([(u - W / 2) / FX, (v - H / 2) / FX, np.ones_like(u)], axis=-1) @ rot.T
    with np.errstate(divide="ignore"):
        t = np.minimum((4.0 - 0.0) / d[..., 2],
                       np.where(d[..., 1] > 1e-6, 1.0 / d[..., 1], np.inf))
    p = np.array([x, 0.0, 0.0]) + t[..., None] * d
    colour = np.stack([np.sin(3 * p[..., 0]) * np.cos(2 * p[..., 2]),
                       np.cos(4 * p[..., 0] + p[..., 1]), np.sin(5 * p[..., 1] + p[..., 2])], -1)
    return np.clip(128 + 100 * colour, 0, 255).astype(np.uint8)


VIEWS = {"a": _render(-0.3, 12.0), "b": _render(0.0, 0.0), "c": _render(0.3, -12.0)}


def _value(status, key: str) -> str:
    return next(kv.value for kv in status.values if kv.key == key)


class _RigProbe(CameraProbe):
    """CameraProbe plus each camera's depth/relative and rig/poses."""

    def __init__(self) -> None:
        from geometry_msgs.msg import PoseArray
        from rclpy.qos import QoSProfile
        from sensor_msgs.msg import Image

        super().__init__(CAMS)
        self.relative = {c: [] for c in CAMS}
        self.poses = []
        self._rig_subs = [self.node.create_subscription(
            Image, f"{self._ns}/{c}/depth/relative", lambda m, c=c: self.relative[c].append(m),
            QoSProfile(depth=100)) for c in CAMS]
        self._rig_subs.append(self.node.create_subscription(
            PoseArray, f"{self._ns}/rig/poses", self.poses.append, QoSProfile(depth=100)))

    def send(self, camera: str, sec: int) -> None:
        self.info_pubs[camera].publish(camera_info_message(FX, W, H, sec))
        self.image_pubs[camera].publish(image_message(VIEWS[camera], sec, frame_id=camera))

    def frames_in(self, since: int) -> dict[str, int]:
        """Each camera's frames taken in, from the newest camera diagnostics received
        after the first ``since`` diagnostics messages (empty: none yet)."""
        for array in reversed(self.diagnostics[since:]):
            found = {s.name.rsplit(" ", 1)[-1]: int(_value(s, "frames_in"))
                     for s in array.status if ": depth " in s.name}
            if found:
                return found
        return {}

    def stamped(self, camera: str, sec: int) -> list:
        return [m for m in self.relative[camera] if m.header.stamp.sec == sec]


def test_rig_node_publishes_the_joint_forward_and_reports_a_missing_camera(tmp_path):
    model = random_model("depth_anything_3", "tiny")
    checkpoint = save_checkpoint(model, tmp_path / "da3.pt")
    params = (f"checkpoint:={checkpoint}", "device:=cpu", f"input_size:={INPUT}",
              "cameras:=[a, b, c]", "multiview:=rig", "rig_slop:=0.05",
              "allow_relative:=true", "publish_points:=false", "publish_colorized:=false",
              "focal_source:=camera_info")
    with running_node(tmp_path / "node.log", *params) as (proc, _):
        probe = _RigProbe()
        try:
            probe.spin_until(lambda: all(p.get_subscription_count()
                                         for p in probe.image_pubs.values())
                             and all(s.get_publisher_count() for s in probe._rig_subs),
                             120.0, "discovery")
            # Warm-up: best effort may lose the first messages after discovery.
            probe.resend_until(lambda: [probe.send(c, 1) for c in CAMS],
                               lambda: all(probe.stamped(c, 1) for c in CAMS), 600.0,
                               "warm-up depth", period=3.0)
            for c in CAMS:
                probe.send(c, 2)
            probe.spin_until(lambda: all(probe.stamped(c, 2) for c in CAMS), 60.0, "sec 2")
            # a is silent at 3 s. b and c's frames are taken in (their diagnostics say so)
            # before b's frame at 4 s releases the group: the executor may take a later
            # message of one topic before an earlier one of another.
            mark = len(probe.diagnostics)
            probe.spin_until(lambda: probe.frames_in(mark), 30.0, "camera diagnostics")
            base = probe.frames_in(mark)
            for c in ("b", "c"):
                probe.send(c, 3)
            mark = len(probe.diagnostics)
            probe.spin_until(lambda: all(probe.frames_in(mark).get(c, 0) > base[c]
                                         for c in ("b", "c")), 30.0, "frames at 3 s taken in")
            probe.send("b", 4)
            probe.spin_until(lambda: all(probe.stamped(c, 3) for c in ("b", "c")), 60.0,
                             "sec 3")
            for c in ("a", "c"):
                probe.send(c, 4)
            probe.spin_until(lambda: all(probe.stamped(c, 4) for c in CAMS), 60.0, "sec 4")
            probe.spin_until(lambda: any(
                s.name.endswith(": rig") and int(_value(s, "missing a")) >= 1
                for d in probe.diagnostics for s in d.status), 30.0, "rig diagnostics")
        finally:
            probe.close()
        log = proc.log()
    assert "Depth Anything 3 (custom, any-view, rig of 3 cameras) ready" in log
    k = Intrinsics(FX, FX, 0.45 * W, 0.55 * H, W, H)  # camera_info_message's
    expected = RigEngine(model, EngineConfig(device="cpu", input_size=INPUT)).run(
        [Frame(VIEWS[c], intrinsics=k) for c in CAMS])
    for c, result in zip(CAMS, expected.results):
        got = depth_image_to_array(probe.stamped(c, 2)[-1])
        np.testing.assert_allclose(got, result.relative, rtol=RTOL)
    by_sec = {p.header.stamp.sec: p for p in probe.poses}
    assert [p.header.frame_id for p in (by_sec[2], by_sec[3])] == ["a", "b"]  # first view
    pose_b = by_sec[2].poses[1].position
    np.testing.assert_allclose([pose_b.x, pose_b.y, pose_b.z],
                               expected.camera_to_rig[1][:3, 3], rtol=1e-4, atol=1e-6)
    q = by_sec[2].poses[1].orientation  # as a rotation matrix (the unit quaternion's)
    x, y, z, w = q.x, q.y, q.z, q.w
    rotation = [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]
    np.testing.assert_allclose(rotation, expected.camera_to_rig[1][:3, :3], atol=1e-5)
    assert math.isnan(by_sec[3].poses[0].position.x)  # a missing at 3 s
    assert not math.isnan(by_sec[3].poses[2].position.x)

