"""Input QoS and CameraInfo freshness of depth_pro_node over real DDS (issue 22).

One node serves the module, started as a user of a reliable camera would start it: a
reliable override on its image topic (``qos_overrides./cam/image.subscription.
reliability:=reliable``, keyed by the resolved topic name) and, to keep the module fast,
``camera_info_timeout:=0.5``. The CameraInfo comes from a best-effort publisher (as from
most camera drivers), the images from a reliable one.
"""

from __future__ import annotations

import time

import pytest
from harness.probe import running_node
from harness.ros_messages import camera_info_message, image_message
from message_factories import smooth_rgb

W, H = 64, 48
FX = 500.0
OVERRIDE = "qos_overrides./cam/image.subscription.reliability:=reliable"
_next_sec = iter(range(100, 10_000))


@pytest.fixture(scope="module")
def node(tiny_checkpoint, tmp_path_factory):
    from rclpy.qos import QoSProfile, QoSReliabilityPolicy
    from sensor_msgs.msg import CameraInfo

    # An odd-sized warm-up frame (no CameraInfo) keeps the FoV estimate's EMA apart.
    with running_node(tmp_path_factory.mktemp("node_qos") / "node.log",
                      f"checkpoint:={tiny_checkpoint}", "device:=cpu", OVERRIDE,
                      "camera_info_timeout:=0.5", warm_up=image_message(smooth_rgb(24, 32), 1),
                      outputs=("depth", "depth/camera_info")) as (proc, probe):
        info_pub = probe.node.create_publisher(
            CameraInfo, "/cam/camera_info",
            QoSProfile(depth=10, reliability=QoSReliabilityPolicy.BEST_EFFORT))
        yield proc, probe, info_pub


def _wait_matched(probe, info_pub) -> None:
    probe.spin_until(lambda: info_pub.get_subscription_count() > 0, 30.0,
                     "the node's camera_info subscription to match a best-effort publisher")


def _depth_info(probe, stamp):
    return [m for m in probe.received["depth/camera_info"] if m.header.stamp == stamp]


def _pause(probe, seconds: float) -> None:
    """Spin for ``seconds`` (the node must see time pass between two messages)."""
    end = time.monotonic() + seconds
    probe.spin_until(lambda: time.monotonic() > end, what="a pause")


def test_image_override_leaves_the_camera_info_subscription_best_effort(node):
    from rclpy.qos import QoSReliabilityPolicy

    proc, probe, info_pub = node

    def reliability(topic: str):
        subs = [s for s in probe.node.get_subscriptions_info_by_topic(topic)
                if s.node_name == "depth_pro_node"]
        return subs[0].qos_profile.reliability if subs else None

    probe.spin_until(lambda: reliability("/cam/camera_info") is not None, 30.0, "discovery")
    assert reliability("/cam/image") == QoSReliabilityPolicy.RELIABLE  # the override applies
    assert reliability("/cam/camera_info") == QoSReliabilityPolicy.BEST_EFFORT  # only there
    proc.wait_for_log("subscribed to /cam/image (reliable) and /cam/camera_info (best effort)")
    _wait_matched(probe, info_pub)

    # The best-effort CameraInfo reaches the node and its K is the one used (not the FoV
    # estimate): depth/camera_info is the camera's own at the same size, copied value for
    # value, so the comparison is exact. A pair is sent again (new stamps) until the
    # first one after discovery gets through; with the CameraInfo subscription made
    # reliable by the image's override none ever would.
    sent = []

    def send() -> None:
        image = image_message(smooth_rgb(H, W), next(_next_sec))
        info = camera_info_message(FX, W, H, sec=0)
        info.header.stamp = image.header.stamp
        info_pub.publish(info)
        _pause(probe, 0.3)
        probe.image_pub.publish(image)
        sent.append((image, info))

    probe.resend_until(send, lambda: any(
        out.k[0] == FX for image, _ in sent for out in _depth_info(probe, image.header.stamp)),
        60.0, "a depth/camera_info from the CameraInfo", period=3.0)
    image, info = next((image, info) for image, info in sent
                       if any(o.k[0] == FX for o in _depth_info(probe, image.header.stamp)))
    out = _depth_info(probe, image.header.stamp)[-1]
    assert list(out.k) == list(info.k) and (out.width, out.height) == (W, H)
    assert out.k[2] == pytest.approx(0.45 * W) and out.k[2] != W / 2  # not synthesized


def test_a_1hz_camera_info_stays_in_use_between_its_messages(node):
    """CameraInfo stamped 1 s apart (four: the period is known from the fourth); an image
    0.8 s after the last one, longer than the 0.5 s camera_info_timeout: the node uses
    the CameraInfo (3 of its periods, 3 s, apply), where it used to fall back to the FoV
    estimate."""
    _, probe, info_pub = node
    _wait_matched(probe, info_pub)
    secs = [next(_next_sec) for _ in range(4)]
    for sec in secs:  # the stamps tell the period; they need not be sent 1 s apart
        info_pub.publish(camera_info_message(FX, W, H, sec=sec))
    _pause(probe, 0.8)
    image = image_message(smooth_rgb(H, W), secs[-1])
    image.header.stamp.nanosec += 300_000_000  # stamped 0.8 s after the last CameraInfo
    probe.image_pub.publish(image)
    out = probe.outputs_for(image.header.stamp)["depth/camera_info"]
    assert out.k[0] == FX and out.k[2] == pytest.approx(0.45 * W)
