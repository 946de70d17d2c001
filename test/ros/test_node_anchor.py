"""depth_pro_node anchored by a registered depth image (``anchor/depth``), over DDS.

The node (tiny checkpoint, CPU, fixed focal, no EMA on the fits) gets anchors 1.37x the
network's depth at 4 % of the pixels with gross outliers; the published depth must be
1.37x the unanchored reference pipeline (``model.infer``), with points and CameraInfo
consistent with it, and unanchored again once anchors stop. Tests run in file order.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from anchor_helpers import (
    FX,
    NEXT_SEC,
    RTOL,
    SCALE,
    TIMEOUT,
    check_consistent,
    exchange,
    node_params,
    picture,
    scaled,
    sparse_anchor,
)
from harness.node import NAMESPACE
from harness.probe import running_node
from harness.ros_messages import image_message
from message_factories import rclpy_message, smooth_rgb
from model_factories import tiny_model
from sensor_msgs.msg import Image

from depth_pro_ros.io.messages import depth_image_fields, depth_image_to_array
from depth_pro_ros.model import infer


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def depth_node(tiny_checkpoint, tmp_path_factory):
    with running_node(tmp_path_factory.mktemp("node") / "node.log",
                      *node_params(tiny_checkpoint, "depth"),
                      warm_up=image_message(smooth_rgb(24, 32), 1),
                      outputs=("depth", "depth/camera_info", "points")) as (proc, probe):
        pub = probe.node.create_publisher(Image, f"{NAMESPACE}/anchor/depth", 10)
        probe.spin_until(lambda: pub.get_subscription_count() > 0, 30.0, "anchor discovery")
        yield proc, probe, pub


def test_a_sparse_depth_anchor_scales_the_published_depth(depth_node, model):
    proc, probe, pub = depth_node
    rgb = picture(1)
    reference = infer(model, rgb, f_px=FX).depth.numpy()
    anchor = sparse_anchor(reference, seed=2)
    msg = rclpy_message(Image, depth_image_fields(anchor, "32FC1"))
    _, out = exchange(probe, pub, msg, rgb, paired=scaled(reference))
    depth = depth_image_to_array(out["depth"])
    np.testing.assert_allclose(depth, SCALE * reference, rtol=RTOL)
    check_consistent(out, depth)
    diag = probe.latest_diagnostics()
    assert diag["anchor_source"] == "depth" and diag["anchor_fit"] == "scale"
    assert float(diag["anchor_scale"]) == pytest.approx(SCALE, rel=RTOL)
    inliers, points = map(int, diag["anchor_inliers"].split("/"))
    assert points == int(np.isfinite(anchor).sum()) and inliers < points
    assert "anchoring: anchored: scale 1.37" in proc.log()


def test_anchors_stop_then_unanchored_depth_after_the_timeout(depth_node, model):
    proc, probe, pub = depth_node
    pause = time.monotonic() + TIMEOUT + 0.5
    probe.spin_until(lambda: time.monotonic() > pause, what="the anchor timeout")
    rgb = picture(3)
    _, out = exchange(probe, pub, None, rgb)
    np.testing.assert_allclose(depth_image_to_array(out["depth"]),
                               infer(model, rgb, f_px=FX).depth.numpy(), rtol=1e-5)
    log = proc.wait_for_log("publishing unanchored depth")
    assert log.count("anchors stopped for") == 1




def test_a_depth_anchor_in_another_frame_is_refused_naming_both_frames(depth_node, model):
    """A depth image in the LiDAR's frame cannot be transformed: never used, one error
    that names both frames and what to publish instead (issue 24)."""
    proc, probe, pub = depth_node
    rgb = picture(5)
    reference = infer(model, rgb, f_px=FX).depth.numpy()
    msg = rclpy_message(Image, depth_image_fields(sparse_anchor(reference, seed=6), "32FC1"))
    wanted = "anchor depth image in frame 'lidar_link' but the image is in 'cam_optical'"
    sent = []

    def send() -> None:  # best effort: again until the node has said it
        image = image_message(rgb, next(NEXT_SEC))
        msg.header.stamp = image.header.stamp
        msg.header.frame_id = "lidar_link"
        pub.publish(msg)
        pause = time.monotonic() + 0.3
        probe.spin_until(lambda: time.monotonic() > pause, what="a pause")
        probe.image_pub.publish(image)
        sent.append(image)

    probe.resend_until(send, lambda: wanted in proc.log(), what="the frame refusal")
    assert "depth_image_proc/register" in proc.log()
    out = probe.outputs_for(sent[-1].header.stamp)
    np.testing.assert_allclose(depth_image_to_array(out["depth"]), reference, rtol=1e-5)
