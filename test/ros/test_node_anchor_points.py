"""depth_pro_node anchored by a point cloud (``anchor/points``), over DDS: a cloud in
another frame is refused (depth stays unanchored); one in the camera's frame scales the
depth like a depth-image anchor (see test_node_anchor.py)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from anchor_helpers import (
    FX,
    NEXT_SEC,
    RTOL,
    SCALE,
    check_consistent,
    cloud,
    exchange,
    node_params,
    picture,
    points_of,
    scaled,
    sparse_anchor,
)
from harness.node import NAMESPACE
from harness.probe import running_node
from harness.ros_messages import image_message
from message_factories import smooth_rgb
from model_factories import tiny_model
from sensor_msgs.msg import PointCloud2, PointField

from depth_pro_ros.io.messages import depth_image_to_array
from depth_pro_ros.model import infer


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def points_node(tiny_checkpoint, tmp_path_factory):
    with running_node(tmp_path_factory.mktemp("node") / "node.log",
                      *node_params(tiny_checkpoint, "points"),
                      warm_up=image_message(smooth_rgb(24, 32), 2),
                      outputs=("depth", "depth/camera_info", "points")) as (proc, probe):
        pub = probe.node.create_publisher(PointCloud2, f"{NAMESPACE}/anchor/points", 10)
        probe.spin_until(lambda: pub.get_subscription_count() > 0, 30.0, "anchor discovery")
        yield proc, probe, pub


def test_a_cloud_in_another_frame_is_refused_and_depth_stays_unanchored(points_node, model):
    proc, probe, pub = points_node
    rgb = picture(4)
    reference = infer(model, rgb, f_px=FX).depth.numpy()
    msg = cloud(points_of(sparse_anchor(reference, seed=5)))
    image = image_message(rgb, next(NEXT_SEC))
    msg.header.stamp = image.header.stamp
    msg.header.frame_id = "lidar"  # _exchange would copy the image's frame
    pub.publish(msg)
    pause = time.monotonic() + 0.3
    probe.spin_until(lambda: time.monotonic() > pause, what="a pause")
    probe.image_pub.publish(image)
    out = probe.outputs_for(image.header.stamp)
    np.testing.assert_allclose(depth_image_to_array(out["depth"]), reference, rtol=1e-5)
    log = proc.wait_for_log("anchor cloud in frame 'lidar' but the image is in 'cam_optical'")
    assert "anchor_transform" in log


def test_a_point_cloud_anchor_scales_the_published_depth(points_node, model):
    _, probe, pub = points_node
    rgb = picture(6)
    reference = infer(model, rgb, f_px=FX).depth.numpy()
    _, out = exchange(probe, pub, cloud(points_of(sparse_anchor(reference, seed=7))), rgb,
                      paired=scaled(reference))
    depth = depth_image_to_array(out["depth"])
    np.testing.assert_allclose(depth, SCALE * reference, rtol=RTOL)
    check_consistent(out, depth)
    assert float(probe.latest_diagnostics()["anchor_scale"]) == pytest.approx(SCALE, rel=RTOL)


def test_a_cloud_with_a_lying_layout_costs_nothing_and_the_node_serves_on(points_node):
    """The issue's cloud, smaller: point_step 1 and 1000 one-byte fields at offset 0 over
    30 kB of data. Before the fix the node read it as points x fields float32 (+120 MB
    here, +1.15 GB for the issue's 300 kB); now it is refused from its declared layout
    with one error, and the next frame is served."""
    proc, probe, pub = points_node
    msg = cloud(np.ones((30_000, 3), np.float32))
    msg.fields = [PointField(name=name, offset=0, datatype=PointField.INT8, count=1)
                  for name in ["x", "y", "z"] + [f"f{i}" for i in range(997)]]
    msg.point_step, msg.row_step = 1, 30_000
    msg.data = bytes(30_000)
    before = proc.memory_kb()["VmHWM"]
    pub.publish(msg)
    log = proc.wait_for_log("anchor ignored: PointCloud2 declares 1000 fields")
    assert proc.memory_kb()["VmHWM"] - before < 40_000  # kB
    assert "Traceback" not in log
    image = image_message(picture(8), next(NEXT_SEC))
    probe.image_pub.publish(image)
    assert probe.outputs_for(image.header.stamp)["depth"] is not None
