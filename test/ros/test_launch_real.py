"""``ros2 launch depth_pro_ros depth.launch.py`` for real: colcon-built beside the upstream
launch tooling, ``install/setup.sh`` sourced, the node (tiny random-weight checkpoint)
answering over DDS on loopback at the topics the README names.

The workspace is built once for the module and every launch the selected tests need is
started at once (they use separate topics), so their start-ups overlap; each test then
talks to its own. Skipped, saying why, where ``../shared/ros2-launch`` or colcon is absent.
"""

from __future__ import annotations

import ast
import time

import numpy as np
import pytest
import rclpy
import yaml
from anchor_helpers import FX, H, W, cloud, points_of
from harness.node import CONFIG, REPO, set_ros_env
from harness.probe import CameraProbe, Probe
from harness.ros_messages import camera_info_message, compressed_message, image_message
from launch_workspace import Launch, Workspace, missing_tooling
from message_factories import rclpy_message, smooth_rgb
from sensor_msgs.msg import Image, PointCloud2

from depth_pro_ros.io.messages import depth_image_fields, depth_image_to_array
from depth_pro_ros.model.weights import WEIGHTS_URL

_MISSING = missing_tooling()
if _MISSING:
    pytest.skip(_MISSING, allow_module_level=True)

ANCHOR_SCALE = 2.5  # anchors are this times the node's own unanchored depth
ANCHOR_RTOL = 1e-3  # a scale fit to exact inliers recovers it to float precision
# Seconds before a best-effort message (one sent right after discovery may be lost) is sent
# again: longer than a CPU frame, so that the node does not compute duplicates.
RESEND = 8.0


def launches_used(*names: str):
    """Mark a test with the launches (keys of ``_scenarios``) it talks to."""
    def mark(test):
        test.launches = names
        return test
    return mark


def _scenarios(checkpoint, folder) -> dict[str, tuple[tuple[str, ...], dict[str, str]]]:
    """Launch name -> (ros2 launch arguments, extra environment)."""
    shipped = yaml.safe_load(CONFIG.read_text())["/**"]["ros__parameters"]
    # A user's copy of the shipped file; the checkpoint and the transport are set in a
    # section for this node only, the rest for every node.
    own = folder / "own.yaml"
    own.write_text(yaml.safe_dump({
        "/**": {"ros__parameters": {**shipped, "publish_colorized": False}},
        "/pf/depth_pro_node": {"ros__parameters": {"checkpoint": str(checkpoint),
                                                   "input_transport": "compressed"}},
    }))
    # A file whose checkpoint, transport and anchor the typed arguments replace.
    overridden = folder / "overridden.yaml"
    overridden.write_text(yaml.safe_dump({"/**": {"ros__parameters": {
        **shipped, "checkpoint": "/nonexistent/depth_pro.pt", "input_transport": "compressed",
        "anchor_source": "depth", "focal_source": "fixed", "fixed_focal_px": FX,
        "anchor_ema_alpha": 1.0, "publish_colorized": False}}}))
    return {
        "defaults": ((), {}),
        "checkpoint_only": ((f"checkpoint:={checkpoint}",), {}),
        "remapped": (("namespace:=/solo", "image_topic:=/x/image_raw",
                      "camera_info_topic:=/x/camera_info", "anchor_source:=depth",
                      "anchor_depth_topic:=/x/depth_registered"),
                     {"DEPTH_PRO_CHECKPOINT": str(checkpoint)}),
        "cameras": ((f"checkpoint:={checkpoint}", "namespace:=/robot",
                     "cameras:=[front, left]", "use_compressed:=true"), {}),
        "params_file": (("namespace:=/pf", f"params_file:={own}"), {}),
        "params_overridden": (("namespace:=/over", f"params_file:={overridden}",
                               f"checkpoint:={checkpoint}", "use_compressed:=false",
                               "anchor_source:=points", "anchor_points_topic:=/lidar/points"),
                              {}),
    }


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, request) -> Workspace:
    """The built workspace; the tiny checkpoint is written while colcon builds."""
    ws = Workspace(tmp_path_factory.mktemp("launch_ws"))
    ws.start_build()
    request.getfixturevalue("tiny_checkpoint")
    ws.wait_built()
    print(f"colcon build: {ws.build_seconds:.1f} s")
    return ws


@pytest.fixture(scope="module")
def launches(workspace, tiny_checkpoint, tmp_path_factory, request) -> dict[str, Launch]:
    """Every launch the selected tests of this module use, started together."""
    wanted = set().union(*(getattr(item.function, "launches", ())
                           for item in request.session.items if item.module is request.module))
    folder = tmp_path_factory.mktemp("launches")
    scenarios = _scenarios(tiny_checkpoint, folder)
    set_ros_env()
    rclpy.init()
    started = {name: Launch(workspace, folder / f"{name}.log", *scenarios[name][0],
                            env=scenarios[name][1]) for name in sorted(wanted)}
    try:
        yield started
    finally:
        for launch in started.values():
            launch.interrupt()
        for launch in started.values():
            launch.stop()
            print(f"---- ros2 launch ... {' '.join(launch.arguments)}\n{launch.log()}")
        rclpy.try_shutdown()


def _depth_at(probe: Probe, stamp):
    return next((m for m in probe.received["depth"] if m.header.stamp == stamp), None)


def _anchored_frame(probe: Probe, send_anchor, rgb: np.ndarray, info, sec: int):
    """The anchor (``send_anchor(header)``), then ``rgb`` (and ``info``) stamped ``sec``;
    the depth message for it, or None if none came within ``RESEND`` s."""
    image = image_message(rgb, sec)
    send_anchor(image.header)
    pause = time.monotonic() + 0.3  # the anchor first, as from a sensor streaming both
    probe.spin_until(lambda: time.monotonic() > pause, what="a pause")
    if info is not None:
        info.header = image.header
    probe.send(image, info)
    deadline = time.monotonic() + RESEND
    probe.spin_until(lambda: _depth_at(probe, image.header.stamp) is not None
                     or time.monotonic() > deadline, what="an anchored depth")
    return _depth_at(probe, image.header.stamp)


def _anchored_depth(probe: Probe, send_anchor, rgb: np.ndarray, unanchored: np.ndarray,
                    info=None, attempts: int = 4) -> np.ndarray:
    """Frames with an anchor ``ANCHOR_SCALE`` x ``unanchored``, one at a time, until a
    depth is so scaled (an unscaled one: the anchor was lost; none: the image was)."""
    for sec in range(2, 2 + attempts):
        msg = _anchored_frame(probe, send_anchor, rgb, info, sec)
        if msg is not None:
            depth = depth_image_to_array(msg)
            if np.allclose(depth, ANCHOR_SCALE * unanchored, rtol=ANCHOR_RTOL):
                return depth
    raise AssertionError(f"no depth scaled {ANCHOR_SCALE}x by the anchor in {attempts} "
                         "frames")


@launches_used("defaults")
def test_the_defaults_alone_start_the_node_which_says_where_the_weights_go(
        launches, workspace):
    launch = launches["defaults"]
    launch.wait(60.0)  # the node gives up, and the launch ends with it
    log = launch.log()
    weights = workspace.home / ".cache" / "depth_pro_ros" / "depth_pro.pt"
    assert "Caught exception in launch" not in log, log
    assert f"cannot start: checkpoint {weights}: no such file or folder" in log, log
    assert WEIGHTS_URL in log and "checkpoint:=PATH" in log, log  # how to get them
    assert "exit code 2" in log, log


def test_show_args_lists_every_argument_with_a_description(workspace):
    result = workspace.run("launch", "depth_pro_ros", "depth.launch.py", "--show-args")
    assert result.returncode == 0, result.stderr
    tree = ast.parse((REPO / "launch" / "depth.launch.py").read_text())
    (table,) = [s.value for s in tree.body if isinstance(s, ast.Assign)
                and getattr(s.targets[0], "id", "") == "ARGUMENTS"]
    names = [entry.elts[0].value for entry in table.elts]
    shown = [line.strip()[1:-2] for line in result.stdout.splitlines()
             if line.startswith("    '") and line.rstrip().endswith("':")]
    assert shown == names
    for name in names:  # each with a description line below its name
        after = result.stdout.split(f"'{name}':\n", 1)[1].splitlines()[0]
        assert after.strip() and not after.strip().startswith("(default"), name


@launches_used("checkpoint_only")
def test_a_checkpoint_alone_serves_one_camera_on_the_default_topics(launches, tiny_checkpoint):
    probe = Probe("launch_checkpoint_only", namespace="/")
    try:
        probe.wait_connected()  # /image and /camera_info in, /depth ... /depth/colorized out
        image = image_message(smooth_rgb(H, W), 1)
        probe.resend_until_depth(image, period=RESEND)
        out = probe.outputs_for(image.header.stamp)
        params = probe.get_parameters("/depth_pro_node", "checkpoint", "input_transport",
                                      "anchor_source", "model_type")
    finally:
        probe.close()
    assert all(m.header == image.header for m in out.values())
    assert (out["depth"].encoding, out["depth"].height, out["depth"].width) == \
        ("32FC1", H, W)
    assert params == {"checkpoint": str(tiny_checkpoint), "input_transport": "raw",
                      "anchor_source": "none", "model_type": "auto"}


@launches_used("remapped")
def test_remapped_topics_in_a_namespace_with_a_depth_anchor(launches, tiny_checkpoint):
    """The checkpoint from $DEPTH_PRO_CHECKPOINT; image, CameraInfo and anchor topics
    remapped to absolute names, outputs in the namespace."""
    probe = Probe("launch_remapped", namespace="/solo", outputs=("depth", "depth/camera_info"),
                  image_topic="/x/image_raw", camera_info_topic="/x/camera_info")
    anchor_pub = probe.node.create_publisher(Image, "/x/depth_registered", 10)
    try:
        probe.wait_connected()  # /x/image_raw in, /solo/depth out
        probe.spin_until(lambda: anchor_pub.get_subscription_count() > 0, 30.0,
                         "the node's subscription to /x/depth_registered")
        # The parameter stays empty (the shipped file's); the node takes its default.
        assert f"loading {tiny_checkpoint} " in launches["remapped"].log()
        rgb = smooth_rgb(H, W, base=(40, 150, 200))
        info = camera_info_message(45.0, W, H, sec=1)
        first = image_message(rgb, 1)
        probe.resend_until(lambda: probe.send(first, info),
                           lambda: _depth_at(probe, first.header.stamp) is not None,
                           what="unanchored depth", period=RESEND)
        out = probe.outputs_for(first.header.stamp)
        # The CameraInfo came through the remapped topic: its intrinsics are passed on.
        assert list(out["depth/camera_info"].k) == list(info.k)
        unanchored = depth_image_to_array(out["depth"])

        def send_anchor(header):
            anchor = rclpy_message(Image, depth_image_fields(
                (ANCHOR_SCALE * unanchored).astype(np.float32), "32FC1"))
            anchor.header = header
            anchor_pub.publish(anchor)

        _anchored_depth(probe, send_anchor, rgb, unanchored, info)
    finally:
        probe.close()


@launches_used("cameras")
def test_several_cameras_in_a_namespace_with_compressed_input(launches):
    cameras = ("front", "left")
    probe = CameraProbe(cameras, compressed=True, namespace="/robot", name="launch_cameras")
    try:
        probe.wait_connected()  # /robot/NAME/image/compressed in, /robot/NAME/depth out
        for camera in cameras:
            assert probe.node.count_subscribers(f"/robot/{camera}/image") == 0
        msgs = {camera: compressed_message(smooth_rgb(H, W), fmt, 1, frame_id=camera)
                for camera, fmt in zip(cameras, ("png", "jpg"))}
        probe.resend_until(
            lambda: [probe.image_pubs[c].publish(m) for c, m in msgs.items()],
            lambda: all(any(d.header.stamp == m.header.stamp for d in probe.got[c]["depth"])
                        for c, m in msgs.items()),
            what="both cameras' depth", period=RESEND)
        for camera, msg in msgs.items():
            out = probe.output(camera, msg)
            assert out["depth"].header == out["depth/camera_info"].header == msg.header
            assert (out["depth"].height, out["depth"].width) == (H, W)
    finally:
        probe.close()


@launches_used("params_file")
def test_a_params_file_alone_sets_the_node(launches, tiny_checkpoint):
    """The file's checkpoint and compressed transport (in a section for this node) and
    its publish_colorized: false hold; no launch argument default replaces them."""
    probe = Probe("launch_params_file", namespace="/pf",
                  outputs=("depth", "depth/camera_info", "points"))
    try:
        probe.wait_connected(compressed=True)  # /pf/image/compressed in
        assert probe.node.count_subscribers("/pf/image") == 0
        assert probe.get_parameters(
            "/pf/depth_pro_node", "checkpoint", "input_transport", "publish_colorized",
            "model_type") == {"checkpoint": str(tiny_checkpoint),
                              "input_transport": "compressed", "publish_colorized": False,
                              "model_type": "auto"}
        msg = compressed_message(smooth_rgb(H, W), "png", 1)
        probe.resend_until_depth(msg, compressed=True, period=RESEND)
        out = probe.outputs_for(msg.header.stamp)
        assert all(m.header == msg.header for m in out.values())
    finally:
        probe.close()


@launches_used("params_overridden")
def test_typed_arguments_win_over_the_params_file(launches, tiny_checkpoint):
    """checkpoint:=, use_compressed:=false and anchor_source:=points (its topic remapped)
    replace the file's values; the file's fixed focal, which no argument names, holds."""
    probe = Probe("launch_overridden", namespace="/over",
                  outputs=("depth", "depth/camera_info", "points"))
    anchor_pub = probe.node.create_publisher(PointCloud2, "/lidar/points", 10)
    try:
        probe.wait_connected()  # the raw /over/image in
        assert probe.node.count_subscribers("/over/image/compressed") == 0
        probe.spin_until(lambda: anchor_pub.get_subscription_count() > 0, 30.0,
                         "the node's subscription to /lidar/points")
        assert probe.get_parameters(
            "/over/depth_pro_node", "checkpoint", "input_transport", "anchor_source",
            "focal_source", "fixed_focal_px") == {
                "checkpoint": str(tiny_checkpoint), "input_transport": "raw",
                "anchor_source": "points", "focal_source": "fixed", "fixed_focal_px": FX}
        rgb = smooth_rgb(H, W, base=(160, 60, 30))
        first = image_message(rgb, 1)
        probe.resend_until_depth(first, period=RESEND)
        out = probe.outputs_for(first.header.stamp)
        assert list(out["depth/camera_info"].k) == [FX, 0, W / 2, 0, FX, H / 2, 0, 0, 1]
        unanchored = depth_image_to_array(out["depth"])

        def send_anchor(header):
            msg = cloud(points_of(ANCHOR_SCALE * unanchored))
            msg.header = header
            anchor_pub.publish(msg)

        _anchored_depth(probe, send_anchor, rgb, unanchored)
    finally:
        probe.close()


@launches_used("checkpoint_only", "remapped", "cameras", "params_file", "params_overridden")
def test_ctrl_c_ends_every_launch_and_its_node_cleanly(launches):
    running = {name: launch for name, launch in launches.items() if name != "defaults"}
    for launch in running.values():
        launch.interrupt()
    for name, launch in running.items():
        code = launch.stop()
        log = launch.log()
        assert code == 0, (name, log)
        assert "process has finished cleanly" in log, (name, log)
