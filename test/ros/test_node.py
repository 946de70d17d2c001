"""depth_pro_node as a real process on DDS, driven by a real rclpy test node.

One node (tiny random-weight checkpoint, CPU, the shipped config/depth_pro.yaml) serves
the whole module; frames are sent one at a time and each output is compared with the
reference pipeline (``model.infer``) run in this process on the same weights. The tests
run in file order and change the node's parameters through its real services.
"""

from __future__ import annotations

import math
import signal
import time

import numpy as np
import pytest
import yaml
from harness.node import CONFIG
from harness.probe import running_node
from harness.ros_messages import camera_info_message, image_message
from message_factories import smooth_rgb
from model_factories import ReferenceRuns, tiny_model

from depth_pro_ros.io.messages import depth_image_to_array
from depth_pro_ros.io.pointcloud_msg import pointcloud2_to_array
from depth_pro_ros.ros.parameters import PARAMETERS

NODE = "/cam/depth_pro_node"
W, H = 64, 48


@pytest.fixture(scope="module")
def node(tiny_checkpoint, tmp_path_factory):
    # The warm-up frame's odd size keeps it out of the focal EMA of the tests (the EMA
    # restarts when the size changes).
    warm_up = image_message(smooth_rgb(24, 32), sec=1)
    with running_node(tmp_path_factory.mktemp("node") / "node.log",
                      f"checkpoint:={tiny_checkpoint}", "device:=cpu", "points_rgb:=true",
                      warm_up=warm_up) as running:
        yield running


@pytest.fixture(scope="module")
def model():
    return tiny_model()


_next_sec = iter(range(100, 10_000))


def _picture(seed: int, width: int = W, height: int = H) -> np.ndarray:
    """Distinct smooth pictures, so that FoV estimates differ from frame to frame."""
    rng = np.random.default_rng(seed)
    smooth = smooth_rgb(height, width, base=tuple(int(v) for v in rng.integers(20, 200, 3)))
    noise = rng.integers(0, 56, (height, width, 3))
    return (smooth + noise).clip(0, 255).astype(np.uint8)


def _send(probe, rgb, info=None, **kwargs):
    sec = next(_next_sec)
    image = image_message(rgb, sec, **kwargs)
    if info is not None:
        info.header.stamp = image.header.stamp
    return image, probe.exchange(image, info)


REFERENCE = ReferenceRuns()


def _raw_focal(model, rgb) -> float:
    """The FoV head's focal estimate for ``rgb`` by the reference pipeline."""
    return REFERENCE.focal(model, rgb)


def _reference(model, rgb, fx: float) -> np.ndarray:
    """Depth of ``rgb`` with focal ``fx`` by the reference pipeline."""
    return REFERENCE.depth(model, rgb, fx)


def _check_points(cloud, depth, k, decimation=1):
    """x/y/z of an organized cloud against its depth image and camera matrix ``k``."""
    assert (cloud.height, cloud.width) == (math.ceil(depth.shape[0] / decimation),
                                           math.ceil(depth.shape[1] / decimation))
    assert cloud.header.frame_id == "cam_optical" and not cloud.is_dense
    values = pointcloud2_to_array(cloud)
    pts = {f.name: values[..., i] for i, f in enumerate(cloud.fields)}
    v, u = np.mgrid[0:depth.shape[0]:decimation, 0:depth.shape[1]:decimation]
    z = depth[::decimation, ::decimation]
    valid = np.isfinite(pts["z"])
    np.testing.assert_allclose(pts["z"][valid], z[valid], rtol=1e-5)
    np.testing.assert_allclose(pts["x"][valid], ((u - k[2]) * z / k[0])[valid], rtol=1e-4,
                               atol=1e-6)
    np.testing.assert_allclose(pts["y"][valid], ((v - k[5]) * z / k[4])[valid], rtol=1e-4,
                               atol=1e-6)
    return pts, valid


# ------------------------------------------------------------------ outputs
def test_depth_without_camera_info_matches_reference(node, model):
    _, probe = node
    rgb = _picture(1)
    image, out = _send(probe, rgb)
    depth_msg, info = out["depth"], out["depth/camera_info"]

    assert depth_msg.header == image.header and info.header == image.header
    assert (depth_msg.encoding, depth_msg.width, depth_msg.height) == ("32FC1", W, H)
    depth = depth_image_to_array(depth_msg)
    # Synthesized CameraInfo: fx = fy = the estimate, principal point at the centre.
    k = np.array(info.k)
    assert (info.width, info.height) == (W, H)
    assert k[0] == k[4] and (k[2], k[5]) == (W / 2, H / 2)
    assert list(info.p) == [k[0], 0, W / 2, 0, 0, k[0], H / 2, 0, 0, 0, 1, 0]
    assert not any(info.d) and list(info.r) == [1, 0, 0, 0, 1, 0, 0, 0, 1]
    assert k[0] == pytest.approx(_raw_focal(model, rgb), rel=1e-5)  # first estimate

    expected = _reference(model, rgb, k[0])
    assert np.isfinite(depth).all()
    np.testing.assert_allclose(depth, expected, rtol=1e-5)

    pts, valid = _check_points(out["points"], depth, k)
    assert valid.all()  # default range 0-100 m holds every depth of this model
    # points_rgb:=true at start-up: the image colour packed as 0x00RRGGBB in a float32.
    packed = np.ascontiguousarray(pts["rgb"]).view(np.uint32)
    unpacked = np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], axis=-1)
    np.testing.assert_array_equal(unpacked, rgb)
    colorized = out["depth/colorized"]
    assert (colorized.encoding, colorized.width, colorized.height) == ("bgr8", W, H)
    assert colorized.header == image.header


def test_synthesized_focal_is_the_ema_of_the_estimates(node, model):
    _, probe = node
    alpha = 0.4
    # A new alpha restarts the EMA, so the expected sequence starts here.
    assert all(r.successful for r in probe.set_parameters(NODE, focal_ema_alpha=alpha))
    ratio = None
    pictures = [_picture(seed) for seed in (11, 12, 13)]
    raws = [_raw_focal(model, rgb) for rgb in pictures]
    assert np.ptp(raws) > 1e-3 * raws[0], "the test needs distinct estimates"
    for rgb, raw in zip(pictures, raws):
        _, out = _send(probe, rgb)
        ratio = raw / W if ratio is None else alpha * raw / W + (1 - alpha) * ratio
        fx = out["depth/camera_info"].k[0]
        assert fx == pytest.approx(ratio * W, rel=1e-5)
        np.testing.assert_allclose(depth_image_to_array(out["depth"]),
                                   _reference(model, rgb, fx), rtol=1e-5)
    # A new image size restarts the EMA at that frame's own estimate.
    big = _picture(14, 80, 60)
    _, out = _send(probe, big)
    assert out["depth/camera_info"].width == 80
    assert out["depth/camera_info"].k[0] == pytest.approx(_raw_focal(model, big), rel=1e-5)


def test_camera_info_focal_is_used_and_rescaled(node, model):
    proc, probe = node
    rgb = _picture(21)
    # A CameraInfo for twice the image size: K is scaled by 1/2 to fit the image.
    info = camera_info_message(300.0, 2 * W, 2 * H, sec=0)
    _, out = _send(probe, rgb, info)
    out_info = out["depth/camera_info"]
    assert (out_info.width, out_info.height) == (W, H)
    np.testing.assert_allclose(out_info.k, [150, 0, 0.45 * W, 0, 150, 0.55 * H, 0, 0, 1])
    np.testing.assert_allclose(out_info.p[:3], [150, 0, 0.45 * W])
    assert list(out_info.d) == list(info.d)
    depth_150 = depth_image_to_array(out["depth"])
    np.testing.assert_allclose(depth_150, _reference(model, rgb, 150.0), rtol=1e-5)
    _check_points(out["points"], depth_150, out_info.k)

    # Depth is proportional to the focal length.
    _, out = _send(probe, rgb, camera_info_message(600.0, 2 * W, 2 * H, sec=0))
    assert out["depth/camera_info"].k[0] == pytest.approx(300.0)
    np.testing.assert_allclose(depth_image_to_array(out["depth"]), 2 * depth_150, rtol=1e-5)
    proc.wait_for_log("camera_info is fresh")


def test_stale_camera_info_falls_back_to_the_estimate(node, model):
    proc, probe = node
    assert all(r.successful for r in probe.set_parameters(NODE, camera_info_timeout=0.5))
    # Stale once no CameraInfo came for longer than the timeout, or than 3 CameraInfo
    # periods where the node knows the period (the last test's came 1 s apart by stamp):
    # by arrival (the pause) and by stamps (the image is stamped 10 s later).
    time.sleep(3.5)
    for _ in range(10):
        next(_next_sec)
    rgb = _picture(31)
    _, out = _send(probe, rgb)
    fx = out["depth/camera_info"].k[0]
    assert out["depth/camera_info"].k[2] == W / 2  # synthesized again
    assert fx != pytest.approx(300.0 / 2)
    np.testing.assert_allclose(depth_image_to_array(out["depth"]),
                               _reference(model, rgb, fx), rtol=1e-5)
    proc.wait_for_log("falling back to the FoV estimate")


def test_runtime_options_16uc1_decimation_and_depth_range(node, model):
    _, probe = node
    rgb = _picture(41)
    fx = 40.0
    # max_depth at the median depth cuts the far half of the points.
    expected = _reference(model, rgb, fx)
    max_depth = float(np.median(expected[::2, ::2]))  # of the points kept
    results = probe.set_parameters(NODE, depth_encoding="16UC1", points_decimation=2,
                                   max_depth=max_depth, fixed_focal_px=fx,
                                   focal_source="fixed")  # set one by one, in this order
    assert all(r.successful for r in results), [r.reason for r in results]
    try:
        _, out = _send(probe, rgb)
    finally:
        probe.set_parameters(NODE, depth_encoding="32FC1", points_decimation=1,
                             max_depth=100.0, focal_source="auto")
    depth_msg = out["depth"]
    assert depth_msg.encoding == "16UC1" and depth_msg.step == 2 * W
    mm = np.frombuffer(bytes(depth_msg.data), dtype="<u2").reshape(H, W)
    # The node's float32 depth and this process's differ in the last bits (another
    # process, maybe another CPU), so a value near a half millimetre can round either way.
    # They agree within rtol 1e-5 (as checked in metres above) and 16UC1 saturates at
    # 65.535 m, so they differ by < 0.66 mm before rounding: +-1 mm after it, and exactly
    # almost everywhere.
    diff = np.abs(mm.astype(np.int64) - np.clip(np.rint(expected * 1000), 1, 65535))
    assert diff.max() <= 1 and np.mean(diff == 0) > 0.9, (diff.max(), np.mean(diff == 0))
    assert out["depth/camera_info"].k[0] == fx
    # The points hold full-precision depth, not the millimetres of the image.
    pts, valid = _check_points(out["points"], expected, out["depth/camera_info"].k,
                               decimation=2)
    # Points within the same rtol 1e-5 of max_depth may fall on either side of it in the node.
    kept = expected[::2, ::2]
    far, near = kept > max_depth * (1 + 1e-5), kept < max_depth * (1 - 1e-5)
    assert far.sum() > 0.4 * far.size and near.sum() > 0.4 * near.size
    assert np.isnan(pts["x"][far]).all() and np.isnan(pts["z"][far]).all()
    assert valid[near].all()


# ------------------------------------------------------------------ parameters
@pytest.mark.parametrize(("values", "reason"), [
    ({"focal_ema_alpha": 0.0}, "focal_ema_alpha"),
    ({"focal_source": "guess"}, "focal_source"),
    ({"fixed_focal_px": 0.0, "focal_source": "fixed"}, "fixed_focal_px"),  # set in order
    ({"depth_encoding": "8UC1"}, "depth_encoding"),
    ({"camera_info_sync": "nearest"}, "camera_info_sync"),
    ({"min_depth": 200.0}, "max_depth"),
    ({"points_decimation": 0}, "points_decimation"),
    ({"checkpoint": "/other.pt"}, "read-only"),
])
def test_invalid_parameter_changes_are_rejected_with_the_reason(node, values, reason):
    _, probe = node
    results = probe.set_parameters(NODE, **values)
    assert not all(r.successful for r in results)
    assert any(reason in r.reason for r in results), [r.reason for r in results]


def test_config_file_lists_exactly_the_declared_parameters(node):
    _, probe = node
    config = yaml.safe_load(CONFIG.read_text())["/**"]["ros__parameters"]
    assert list(config) == [spec.name for spec in PARAMETERS]
    assert {spec.name: spec.value for spec in PARAMETERS} == config
    rclpy_own = {"use_sim_time", "start_type_description_service"}
    declared = {n for n in probe.list_parameters(NODE)
                if not n.startswith("qos_overrides.") and n not in rclpy_own}
    assert declared == set(config)


# ------------------------------------------------------------------ bad input
def _bad_images():
    rgb = _picture(51)
    unknown = image_message(rgb, 1)
    unknown.encoding = "rgb_magic16"
    short = image_message(rgb, 1)
    short.data = short.data[: len(short.data) // 2]
    empty = image_message(rgb, 1)
    empty.width, empty.height, empty.step, empty.data = 0, 0, 0, []
    return [(unknown, "unsupported image encoding 'rgb_magic16'"),
            (short, "image data is too short"), (empty, "zero size")]


@pytest.mark.parametrize("case", range(3), ids=["unknown_encoding", "short_data", "zero_size"])
def test_bad_image_is_skipped_and_good_frames_continue(node, case):
    proc, probe = node
    bad, text = _bad_images()[case]
    bad.header.stamp.sec = next(_next_sec)
    probe.send(bad)
    image, out = _send(probe, _picture(52))
    assert out["depth"].header == image.header
    assert all(m.header.stamp != bad.header.stamp for m in probe.received["depth"])
    proc.wait_for_log(text)


def test_broken_camera_info_is_ignored_and_good_frames_continue(node, model):
    proc, probe = node
    zero = camera_info_message(100.0, W, H, sec=0)
    zero.k = [0.0] * 9
    image, out = _send(probe, _picture(61), zero)
    assert out["depth/camera_info"].k[2] == W / 2  # estimate used, not the broken K
    proc.wait_for_log("K is all zero")

    # A CameraInfo of another aspect ratio does not fit the image: that frame is skipped.
    mismatch = camera_info_message(100.0, 2 * W, H, sec=0)
    bad_image = image_message(_picture(62), next(_next_sec))
    mismatch.header.stamp = bad_image.header.stamp
    probe.send(bad_image, mismatch)
    proc.wait_for_log("different aspect ratio")
    good = camera_info_message(100.0, W, H, sec=0)
    image, out = _send(probe, _picture(63), good)
    assert out["depth/camera_info"].k[0] == 100.0
    assert all(m.header.stamp != bad_image.header.stamp for m in probe.received["depth"])


# ------------------------------------------------------------------ diagnostics
def test_diagnostics_report_rates_latency_errors_and_focal(node):
    _, probe = node
    _send(probe, _picture(71))
    # A burst faster than the network: the latest-frame policy drops the middle frames.
    burst = [image_message(_picture(72 + i), next(_next_sec)) for i in range(4)]
    for image in burst:
        probe.send(image)
    probe.outputs_for(burst[-1].header.stamp)
    # One more frame so that the rate windows surely hold an input and an output.
    last = image_message(_picture(80), next(_next_sec))
    probe.send(last)
    diag = probe.latest_diagnostics()
    probe.outputs_for(last.header.stamp)
    assert diag["_name"] == "depth_pro_node: depth" and diag["_hardware_id"] == "cpu"
    assert diag["device"] == "cpu" and diag["precision"] == "fp32"
    assert float(diag["input_rate_hz"]) > 0 and float(diag["output_rate_hz"]) > 0
    assert 0 < float(diag["latency_median_ms"]) <= float(diag["latency_max_ms"])
    assert int(diag["dropped_frames"]) >= 1
    # Counters since start-up; earlier tests in this module sent these bad inputs.
    assert int(diag["frames_out"]) >= 2 and int(diag["frames_in"]) > int(diag["frames_out"])
    assert int(diag["decode_errors"]) >= 3
    assert int(diag["skipped_frames"]) >= 4  # the three bad images + the mismatched info
    assert int(diag["camera_info_errors"]) >= 1
    assert diag["focal_source"] in ("camera_info", "fov_head")
    assert float(diag["focal_px"]) > 0 and float(diag["focal_ema_px"]) > 0


def test_sigint_shuts_down_cleanly(node):
    proc, _ = node
    assert proc.stop(signal.SIGINT) == 0
    log = proc.log()
    assert "Traceback" not in log, log

