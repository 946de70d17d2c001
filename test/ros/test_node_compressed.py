"""depth_pro_node on compressed input with a fixed focal, lazy mode and SIGTERM."""

from __future__ import annotations

import signal

import cv2
import numpy as np
import pytest
from harness.probe import Probe, running_node
from message_factories import smooth_rgb
from model_factories import tiny_model
from sensor_msgs.msg import CompressedImage

from depth_pro_ros.io.messages import depth_image_to_array
from depth_pro_ros.model import infer

FX = 50.0


@pytest.fixture(scope="module")
def node(tiny_checkpoint, tmp_path_factory):
    with running_node(tmp_path_factory.mktemp("node") / "node.log",
                      f"checkpoint:={tiny_checkpoint}", "device:=cpu",
                      "input_transport:=compressed", "focal_source:=fixed",
                      f"fixed_focal_px:={FX}", "lazy:=true", "publish_points:=false") as running:
        yield running[0]


def _compressed(rgb: np.ndarray, fmt: str, sec: int) -> CompressedImage:
    ok, data = cv2.imencode(f".{fmt}", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    msg = CompressedImage(format=fmt, data=data.tobytes())
    msg.header.stamp.sec, msg.header.frame_id = sec, "cam_optical"
    return msg


def test_lazy_node_skips_inference_without_subscribers(node):
    watcher = Probe("watcher", outputs=())  # sees /diagnostics only
    try:
        watcher.wait_connected(compressed=True)
        frame = _compressed(smooth_rgb(48, 64), "png", sec=1)
        watcher.resend_until(
            lambda: watcher.send(frame, compressed=True),
            lambda: watcher.diagnostics and dict(
                (kv.key, kv.value) for kv in watcher.diagnostics[-1].status[0].values)
            ["lazy_skipped"] != "0", 60.0, "a lazily skipped frame", period=1.0)
        diag = watcher.latest_diagnostics()
        assert int(diag["lazy_skipped"]) >= 1 and diag["frames_out"] == "0"
    finally:
        watcher.close()


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_compressed_input_gives_reference_depth_with_the_fixed_focal(node, fmt):
    probe = Probe(f"probe_{fmt}", outputs=("depth", "depth/camera_info"))
    try:
        probe.wait_connected(compressed=True)
        rgb = smooth_rgb(48, 64)
        msg = _compressed(rgb, fmt, sec=10 if fmt == "png" else 11)  # tell late frames apart
        probe.resend_until_depth(msg, compressed=True)
        out = probe.outputs_for(msg.header.stamp)
        decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(msg.data, np.uint8),
                                            cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        if fmt == "png":
            np.testing.assert_array_equal(decoded, rgb)  # lossless: the same pixels
        expected = infer(tiny_model(), decoded, f_px=FX).depth.numpy()
        np.testing.assert_allclose(depth_image_to_array(out["depth"]), expected, rtol=1e-5)
        info = out["depth/camera_info"]
        assert info.header == msg.header and list(info.k) == [FX, 0, 32, 0, FX, 24, 0, 0, 1]
    finally:
        probe.close()


def test_undecodable_jpeg_is_skipped_and_good_frames_continue(node):
    probe = Probe("probe_bad", outputs=("depth", "points"))
    try:
        probe.wait_connected(compressed=True)
        bad = CompressedImage(format="jpeg", data=b"\xff\xd8\xff\xe0 not a jpeg")
        bad.header.stamp.sec = 20
        # Resent until logged: the first message after discovery may be lost (best effort).
        probe.resend_until(lambda: probe.send(bad, compressed=True),
                           lambda: "could not be decoded" in node.log(), 60.0,
                           "the decode error", period=2.0)
        good = _compressed(smooth_rgb(48, 64), "png", sec=21)
        probe.resend_until_depth(good, compressed=True)
        assert all(m.header.stamp.sec != 20 for m in probe.received["depth"])
        assert not probe.received["points"]  # publish_points:=false
    finally:
        probe.close()


def _damaged_jpeg(sec: int) -> CompressedImage:
    """A JPEG whose scan data has three flipped bytes: it decodes, and libjpeg complains."""
    msg = _compressed(smooth_rgb(48, 64), "jpg", sec)
    data = bytearray(msg.data)
    scan = bytes(data).find(b"\xff\xda")
    rng = np.random.default_rng(0)  # seed checked to give "Corrupt JPEG data"
    for _ in range(3):
        data[int(rng.integers(scan + 20, len(data) - 2))] ^= 0xFF
    msg.data = bytes(data)
    return msg


def _jpeg_bomb(sec: int) -> CompressedImage:
    """A few hundred bytes of JPEG whose frame header declares 8000 x 8000 pixels."""
    msg = _compressed(np.zeros((8, 8, 3), np.uint8), "jpg", sec)
    data = bytearray(msg.data)
    sof = bytes(data).find(b"\xff\xc0")
    data[sof + 5: sof + 9] = (8000).to_bytes(2, "big") * 2
    msg.data = bytes(data)
    return msg


def test_codec_complaints_and_bombs_reach_the_log_not_the_console(node):
    probe = Probe("probe_codec", outputs=("depth",))
    try:
        probe.wait_connected(compressed=True)
        damaged, bomb = _damaged_jpeg(30), _jpeg_bomb(31)
        # Until its depth arrives: on a busy machine the latest-frame policy may drop a copy.
        probe.resend_until_depth(damaged, compressed=True, period=2.0)  # it decoded
        assert "image decoder: Corrupt JPEG data" in node.log()
        probe.resend_until(lambda: probe.send(bomb, compressed=True),
                           lambda: "declares 8000 x 8000" in node.log(), 60.0,
                           "the too_large error", period=2.0)
        good = _compressed(smooth_rgb(48, 64), "png", sec=32)
        probe.resend_until_depth(good, compressed=True)
        assert all(m.header.stamp.sec != 31 for m in probe.received["depth"])
        lines = [line for line in node.log().splitlines() if "Corrupt JPEG" in line]
        assert lines and all(line.startswith("[WARN]") for line in lines), lines
    finally:
        probe.close()


def test_sigterm_shuts_down_cleanly(node):
    assert node.stop(signal.SIGTERM) == 0
    assert "Traceback" not in node.log(), node.log()
