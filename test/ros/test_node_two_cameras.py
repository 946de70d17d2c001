"""depth_pro_node with two compressed cameras: ``cameras: [port, starboard]``.

``port`` sends JPEG at 64x48 with a CameraInfo, ``starboard`` PNG at 80x60 without one;
each depth is compared with the reference pipeline on the decoded pixels with the camera's
own focal, over real DDS.
"""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
from harness.probe import CameraProbe, running_node
from harness.ros_messages import camera_info_message
from message_factories import smooth_rgb
from model_factories import ReferenceRuns, tiny_model
from sensor_msgs.msg import CompressedImage

from depth_pro_ros.io.messages import depth_image_to_array

CAMERAS = ("port", "starboard")
PORT_FX = 45.0
# Both frames may run in one batch or one after the other (see test_node_cameras.py).
BATCH_RTOL = 1e-4


REFERENCE = ReferenceRuns()


def _compressed(rgb: np.ndarray, fmt: str, sec: int, frame_id: str) -> CompressedImage:
    ok, data = cv2.imencode(f".{fmt}", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    msg = CompressedImage(format=fmt, data=data.tobytes())
    msg.header.stamp.sec, msg.header.frame_id = sec, frame_id
    return msg


def _decoded(msg: CompressedImage) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(msg.data, np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def probe(tiny_checkpoint, tmp_path_factory):
    with running_node(tmp_path_factory.mktemp("node") / "node.log",
                      f"checkpoint:={tiny_checkpoint}", "device:=cpu",
                      "cameras:=[port, starboard]", "input_transport:=compressed",
                      "publish_points:=false") as _:
        probe = CameraProbe(CAMERAS, compressed=True)
        try:
            probe.wait_connected()
            for camera in CAMERAS:
                probe.warm_up(camera, _compressed(smooth_rgb(24, 32), "png", 1, camera))
            yield probe
        finally:
            probe.close()


def test_two_compressed_cameras_each_with_its_own_focal(probe):
    model = tiny_model()
    port = _compressed(smooth_rgb(48, 64, base=(30, 160, 90)), "jpg", 10, "port")
    starboard = _compressed(smooth_rgb(60, 80, base=(180, 40, 120)), "png", 10, "starboard")
    info = camera_info_message(PORT_FX, 64, 48, sec=0, frame_id="port")
    info.header.stamp = port.header.stamp
    probe.info_pubs["port"].publish(info)
    pause = time.monotonic() + 0.3
    probe.spin_until(lambda: time.monotonic() > pause, what="a pause")
    probe.image_pubs["port"].publish(port)
    probe.image_pubs["starboard"].publish(starboard)
    out = {"port": probe.output("port", port), "starboard": probe.output("starboard", starboard)}

    assert out["port"]["depth"].header == port.header
    assert out["starboard"]["depth"].header == starboard.header
    assert list(out["port"]["depth/camera_info"].k) == list(info.k)  # passed through
    star_fx = REFERENCE.focal(model, _decoded(starboard))  # its first estimate at this size
    star_k = out["starboard"]["depth/camera_info"].k
    assert star_k[0] == pytest.approx(star_fx, rel=BATCH_RTOL) and star_k[2] == 40.0
    for camera, msg, fx in (("port", port, PORT_FX), ("starboard", starboard, star_k[0])):
        expected = REFERENCE.depth(model, _decoded(msg), fx)
        np.testing.assert_allclose(depth_image_to_array(out[camera]["depth"]), expected,
                                   rtol=BATCH_RTOL)
    statuses = probe.statuses()
    assert [statuses[f"depth_pro_node: depth {c}"]["focal_source"] for c in CAMERAS] == [
        "camera_info", "fov_head"]
    assert statuses["depth_pro_node: engine"]["max_batch_size"] == "2"
