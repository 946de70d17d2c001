"""What the anchored-node tests share: the node's parameters, pictures, anchors built
from the reference depth, and the checks of the outputs."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from harness.ros_messages import image_message
from message_factories import rclpy_message, smooth_rgb
from message_factories import sparse_anchor as make_sparse_anchor
from sensor_msgs.msg import PointCloud2, PointField

from depth_pro_ros.io.messages import depth_image_to_array
from depth_pro_ros.io.pointcloud_msg import pointcloud2_fields, pointcloud2_to_array

FX = 50.0
W, H = 64, 48
SCALE = 1.37
TIMEOUT = 3.0  # anchor_timeout
# The fit recovers the scale to float precision from exact inliers; the published depth
# is compared with the reference pipeline (computed in another process) to 1e-4.
RTOL = 1e-4
NEXT_SEC = iter(range(100, 10_000))


def node_params(checkpoint, source: str) -> tuple[str, ...]:
    return (f"checkpoint:={checkpoint}", "device:=cpu", "focal_source:=fixed",
            f"fixed_focal_px:={FX}", f"anchor_source:={source}", "anchor_ema_alpha:=1.0",
            f"anchor_timeout:={TIMEOUT}", "publish_colorized:=false")


def picture(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = smooth_rgb(H, W, base=tuple(int(v) for v in rng.integers(20, 200, 3)))
    return (smooth + rng.integers(0, 56, (H, W, 3))).clip(0, 255).astype(np.uint8)


def sparse_anchor(reference: np.ndarray, seed: int) -> np.ndarray:
    """1.37x ``reference`` at 4% of the pixels, 15% of them gross outliers, NaN elsewhere."""
    return make_sparse_anchor(reference, SCALE, seed)


def exchange(probe, pub, anchor_msg, rgb,
             paired: Callable[[dict], bool] | None = None,
             tries: int = 4) -> tuple[object, dict]:
    """Publish the anchor (if any), then the image with the same stamp; the outputs.

    The anchor goes out once, best effort, and a busy node may take the image before it:
    with ``paired`` (is this output anchored?), the pair is sent again under a new stamp
    until it holds, at most ``tries`` times; the last outputs are returned either way, so
    a node that never anchors still fails the caller's checks.
    """
    for _ in range(tries):
        image = image_message(rgb, next(NEXT_SEC))
        if anchor_msg is not None:
            anchor_msg.header = image.header
            pub.publish(anchor_msg)
            pause = time.monotonic() + 0.3
            probe.spin_until(lambda end=pause: time.monotonic() > end, what="a pause")
        probe.image_pub.publish(image)
        out = probe.outputs_for(image.header.stamp)
        if paired is None or anchor_msg is None or paired(out):
            break
    return image, out


def scaled(reference: np.ndarray) -> Callable[[dict], bool]:
    """``paired`` for :func:`exchange`: the published depth is ``SCALE * reference``."""
    return lambda out: np.allclose(depth_image_to_array(out["depth"]), SCALE * reference,
                                   rtol=RTOL)


def check_consistent(out, depth: np.ndarray) -> None:
    """Points and CameraInfo agree with the published depth (fixed focal, centre)."""
    info = out["depth/camera_info"]
    assert list(info.k) == [FX, 0, W / 2, 0, FX, H / 2, 0, 0, 1]
    cloud = pointcloud2_to_array(out["points"])
    np.testing.assert_allclose(cloud[..., 2], depth, rtol=1e-6)


def cloud(points: np.ndarray, frame_id: str = "cam_optical") -> PointCloud2:
    record = np.zeros(len(points), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    record["x"], record["y"], record["z"] = points.T
    msg = rclpy_message(PointCloud2, pointcloud2_fields(record, 1, len(points)),
                        point_field=PointField)
    msg.header.frame_id = frame_id
    return msg


def points_of(anchor: np.ndarray) -> np.ndarray:
    """The anchor's valid pixels back-projected with the node's intrinsics."""
    v, u = np.nonzero(np.isfinite(anchor))
    z = anchor[v, u]
    return np.stack([(u - W / 2) * z / FX, (v - H / 2) * z / FX, z], axis=1)
