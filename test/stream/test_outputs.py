"""depth_pro_ros.stream.outputs: real depth results -> the messages published beside them.

Two forward passes of the tiny saved model on the CPU, shared by the whole module: one frame
whose focal comes from a CameraInfo (through ``CameraStream``) with a point cloud, one
whose focal is the FoV estimate without. Fields are loaded into real rclpy and rosbags
messages and read back with the project's decoders.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
from harness.engine import process_one
from message_factories import encode_image, rclpy_message, rosbags_header, smooth_rgb
from rosbags.typesys import Stores, get_typestore

from depth_pro_ros.engine import DepthResult, EngineConfig, Intrinsics, create_engine
from depth_pro_ros.io.colorize import colorize_depth
from depth_pro_ros.io.messages import camera_info_values, depth_image_to_array
from depth_pro_ros.io.pointcloud_msg import point_fields, pointcloud2_to_array
from depth_pro_ros.stream import CameraStream, FocalSettings, OutputOptions, build_outputs
from depth_pro_ros.stream.outputs import OUTPUT_TOPICS

sensor_msgs = pytest.importorskip("sensor_msgs.msg")

TS = get_typestore(getattr(Stores, "ROS2_KILTED", Stores.LATEST))
H, W = 48, 64  # input image; the engine's output_scale 0.5 gives 24 x 32 depth
DH, DW = 24, 32

# A calibration at twice the input size (4x the depth size), with distortion and a
# non-zero P Tx, so that a passthrough is told apart from a synthesized CameraInfo.
CAL_K = [200.0, 0.0, 62.0, 0.0, 208.0, 47.0, 0.0, 0.0, 1.0]
CAL_P = [200.0, 0.0, 62.0, -12.0, 0.0, 208.0, 47.0, 0.0, 0.0, 0.0, 1.0, 0.0]
CAL_D = [0.1, -0.05, 0.001, 0.002, 0.0]


def _calibration():
    msg = rclpy_message(sensor_msgs.CameraInfo, {
        "height": 2 * H, "width": 2 * W, "distortion_model": "plumb_bob",
        "d": np.array(CAL_D), "k": np.array(CAL_K), "r": np.eye(3).reshape(-1),
        "p": np.array(CAL_P), "binning_x": 2, "binning_y": 2,
    })
    msg.header.stamp.sec, msg.header.frame_id = 7, "cam"
    return msg


def _image(rgb):
    msg = rclpy_message(sensor_msgs.Image, encode_image(rgb, "rgb8"))
    msg.header.stamp.sec, msg.header.frame_id = 7, "cam"
    return msg


@pytest.fixture(scope="module")
def runs(tiny_checkpoint):
    """(result with CameraInfo focal + points, result with FoV estimate, no points)."""
    config = EngineConfig(device="cpu", points=True, output_scale=0.5)
    engine = create_engine(str(tiny_checkpoint), config)
    try:
        calibrated = CameraStream(FocalSettings(focal_source="camera_info"))
        info = _calibration()
        calibrated.add_camera_info(info, 0.0)
        frame = calibrated.prepare(_image(smooth_rgb(H, W)), "raw", 0.1)
        assert frame.meta.camera_info is info
        with_info = process_one(engine, frame)

        engine.reconfigure(points=False)
        estimating = CameraStream(FocalSettings(focal_source="fov_head"))
        frame = estimating.prepare(_image(smooth_rgb(H, W, base=(60, 150, 220))), "raw", 0.2)
        estimated = process_one(engine, frame)
    finally:
        engine.close()
    assert with_info.ok and estimated.ok, (with_info.error, estimated.error)
    return with_info, estimated


def _by_topic(outputs):
    topics = [m.topic for m in outputs]
    assert len(set(topics)) == len(topics)
    return {m.topic: m for m in outputs}


def _rclpy(out):
    cls = getattr(sensor_msgs, out.msgtype.rsplit("/", 1)[1])
    return rclpy_message(cls, out.fields, point_field=sensor_msgs.PointField)


def _rosbags(out):
    """The rosbags message of an output, after a CDR round trip."""
    fields = dict(out.fields)
    if out.msgtype.endswith("CameraInfo"):
        fields["roi"] = TS.types["sensor_msgs/msg/RegionOfInterest"](
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    if out.msgtype.endswith("PointCloud2"):
        fields["fields"] = point_fields(fields["fields"], TS.types["sensor_msgs/msg/PointField"])
    msg = TS.types[out.msgtype](header=rosbags_header(TS), **fields)
    return TS.deserialize_cdr(TS.serialize_cdr(msg, out.msgtype), out.msgtype)


# ----------------------------------------------------------------- the results


def test_the_results_are_what_the_outputs_describe(runs):
    with_info, estimated = runs
    assert with_info.focal_source == "camera_info" and estimated.focal_source == "fov_head"
    assert with_info.depth.shape == estimated.depth.shape == (DH, DW)
    # The CameraInfo's K scaled by 1/4 (2x calibration, 0.5 output scale).
    assert with_info.intrinsics == Intrinsics(50.0, 52.0, 15.5, 11.75, DW, DH)
    assert with_info.points_shape == (DH, DW) and estimated.points is None
    assert with_info.meta.camera_info is not None and estimated.meta.camera_info is None


# ---------------------------------------------------------------- topics, types


def test_topics_and_types(runs):
    with_info, estimated = runs
    everything = OutputOptions(points=True, colorized=True)
    outputs = build_outputs(with_info, everything, with_info.meta.camera_info)
    assert [m.topic for m in outputs] == ["depth", "depth/camera_info", "points",
                                          "depth/colorized"]
    assert [m.msgtype for m in outputs] == [
        "sensor_msgs/msg/Image", "sensor_msgs/msg/CameraInfo", "sensor_msgs/msg/PointCloud2",
        "sensor_msgs/msg/Image"]
    for out in outputs:
        assert OUTPUT_TOPICS[out.topic].msgtype == out.msgtype
        assert out.msgtype in TS.types
        assert "header" not in out.fields  # the caller copies the image's header
        _rclpy(out)  # every field fits a real rclpy message ...
        _rosbags(out)  # ... and a serializable rosbags one

    # Points are built only when asked for, and only when the result has them.
    assert [m.topic for m in build_outputs(with_info, OutputOptions())] == [
        "depth", "depth/camera_info"]
    assert [m.topic for m in build_outputs(estimated, everything)] == [
        "depth", "depth/camera_info", "depth/colorized"]


# --------------------------------------------------------------------- depth


@pytest.mark.parametrize("encoding", ["32FC1", "16UC1"])
def test_depth_decodes_back_to_the_result(runs, encoding):
    result = runs[0]
    depth = result.depth.copy()
    depth[0, 0] = np.nan
    depth[3, 5] = np.nan
    holed = dataclasses.replace(result, depth=depth)
    out = _by_topic(build_outputs(holed, OutputOptions(depth_encoding=encoding)))["depth"]
    assert out.fields["encoding"] == encoding
    assert (out.fields["height"], out.fields["width"]) == (DH, DW)
    for msg in (_rclpy(out), _rosbags(out)):
        back = depth_image_to_array(msg)
        assert back.shape == (DH, DW) and back.dtype == np.float32
        np.testing.assert_array_equal(np.isnan(back), np.isnan(depth))
        if encoding == "32FC1":
            np.testing.assert_array_equal(back, depth)  # bit exact, NaN where NaN
        else:
            np.testing.assert_allclose(back, depth, atol=0.0005 + 1e-6)  # millimetres
    assert not np.isnan(result.depth).any()  # the shared result was left alone


# ---------------------------------------------------------------- camera_info


def test_camera_info_passthrough_is_rescaled(runs):
    result = runs[0]
    out = _by_topic(build_outputs(result, OutputOptions(), result.meta.camera_info))
    info = out["depth/camera_info"].fields
    assert (info["width"], info["height"]) == (DW, DH)
    np.testing.assert_allclose(info["k"], [50, 0, 15.5, 0, 52, 11.75, 0, 0, 1])
    np.testing.assert_allclose(info["p"], [50, 0, 15.5, -3, 0, 52, 11.75, 0, 0, 0, 1, 0])
    np.testing.assert_array_equal(info["d"], CAL_D)
    np.testing.assert_array_equal(info["r"], np.eye(3).reshape(-1))
    assert info["distortion_model"] == "plumb_bob"
    assert info["binning_x"] == info["binning_y"] == 0
    # The published K is the one the depth was computed with.
    k = result.intrinsics
    assert list(info["k"][[0, 4, 2, 5]]) == [k.fx, k.fy, k.cx, k.cy]
    assert camera_info_values(_rosbags(out["depth/camera_info"]))[:3] == (
        list(info["k"]), DW, DH)


def _synthesized(result):
    out = _by_topic(build_outputs(result, OutputOptions()))  # no CameraInfo given
    info = out["depth/camera_info"].fields
    assert (info["width"], info["height"]) == (DW, DH)
    np.testing.assert_array_equal(info["d"], np.zeros(5))
    np.testing.assert_array_equal(info["r"], np.eye(3).reshape(-1))
    assert info["distortion_model"] == "plumb_bob"
    assert info["binning_x"] == info["binning_y"] == 0
    msg = _rclpy(out["depth/camera_info"])
    assert list(msg.d) == [0.0] * 5
    np.testing.assert_array_equal(msg.k, info["k"])
    return info


def test_camera_info_is_synthesized_from_the_estimated_focal(runs):
    estimated = runs[1]
    info = _synthesized(estimated)
    f = estimated.intrinsics.fx
    cx, cy = DW / 2, DH / 2  # the principal point at the centre
    assert estimated.intrinsics.fy == f
    np.testing.assert_allclose(info["k"], [f, 0, cx, 0, f, cy, 0, 0, 1])
    np.testing.assert_allclose(info["p"], [f, 0, cx, 0, 0, f, cy, 0, 0, 0, 1, 0])
    # The focal is the head's estimate (at the input width), scaled to the depth.
    assert f == pytest.approx(estimated.focal_estimate_px * DW / W, rel=1e-6)
    # 2 * atan(W / 2 / f) is the FoV the head estimated (for the input width).
    f_input = estimated.intrinsics.fx * W / DW
    fov = np.degrees(2 * np.arctan(W / 2 / f_input))
    assert fov == pytest.approx(estimated.fov_deg, rel=1e-4)


def test_without_the_camera_info_message_the_given_intrinsics_are_synthesized(runs):
    with_info = runs[0]
    info = _synthesized(with_info)  # distortion and P's Tx are not invented
    np.testing.assert_allclose(info["k"], [50, 0, 15.5, 0, 52, 11.75, 0, 0, 1])
    np.testing.assert_allclose(info["p"], [50, 0, 15.5, 0, 0, 52, 11.75, 0, 0, 0, 1, 0])


# --------------------------------------------------------------------- points


def test_points_are_organized_and_consistent_with_depth_and_camera_info(runs):
    result = runs[0]
    out = _by_topic(build_outputs(result, OutputOptions(points=True),
                                  result.meta.camera_info))
    fields = out["points"].fields
    assert (fields["height"], fields["width"]) == (DH, DW)
    assert [name for name, *_ in fields["fields"]] == ["x", "y", "z"]
    assert fields["is_dense"] is False
    k = np.asarray(out["depth/camera_info"].fields["k"])
    fx, cx, fy, cy = k[0], k[2], k[4], k[5]
    depth = result.depth
    v, u = np.mgrid[0:DH, 0:DW].astype(np.float64)
    for msg in (_rclpy(out["points"]), _rosbags(out["points"])):
        xyz = pointcloud2_to_array(msg)
        assert xyz.shape == (DH, DW, 3)
        z = xyz[..., 2]
        assert np.isfinite(z).all()
        np.testing.assert_array_equal(z, depth)
        np.testing.assert_allclose(xyz[..., 0], (u - cx) * depth / fx, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(xyz[..., 1], (v - cy) * depth / fy, rtol=1e-5, atol=1e-6)
    # Left of the principal point x < 0, below it y > 0.
    assert xyz[0, 0, 0] < 0 < xyz[0, -1, 0] and xyz[0, 0, 1] < 0 < xyz[-1, 0, 1]


# ------------------------------------------------------------------- colorized


def test_colorized_preview(runs):
    result = runs[1]
    depth = result.depth
    lo, hi = float(np.min(depth)), float(np.max(depth))
    assert lo < hi

    def preview(**options):
        out = _by_topic(build_outputs(result, OutputOptions(colorized=True, **options)))
        fields = out["depth/colorized"].fields
        assert fields["encoding"] == "bgr8" and fields["step"] == 3 * DW
        assert (fields["height"], fields["width"]) == (DH, DW)
        msg = _rclpy(out["depth/colorized"])
        assert bytes(msg.data) == fields["data"].tobytes()
        return np.asarray(fields["data"]).reshape(DH, DW, 3)

    auto = preview()
    np.testing.assert_array_equal(auto, colorize_depth(depth)[0])
    assert len(np.unique(auto.reshape(-1, 3), axis=0)) > 3  # the depth varies a little

    # A fixed range is honoured: everything nearer than it is the warm end of the map,
    # everything farther the cold end.
    turbo = cv2.applyColorMap(np.array([[0, 255]], np.uint8), cv2.COLORMAP_TURBO)[0]
    near = preview(colorize_min=hi + 1.0, colorize_max=hi + 2.0)
    assert (near == turbo[1]).all()
    far = preview(colorize_min=lo / 4, colorize_max=lo / 2)
    assert (far == turbo[0]).all()
    mid = (lo + hi) / 2
    np.testing.assert_array_equal(preview(colorize_min=mid, colorize_max=hi),
                                  colorize_depth(depth, mid, hi)[0])
    # Only the maximum fixed: the minimum still comes from the frame.
    np.testing.assert_array_equal(preview(colorize_max=hi + 1.0),
                                  colorize_depth(depth, None, hi + 1.0)[0])


# --------------------------------------------------------------------- options


@pytest.mark.parametrize(
    "kwargs, text",
    [
        ({"depth_encoding": "16UC3"}, "depth_encoding"),
        ({"colorize_min": -1.0}, "colorize_min and colorize_max must be >= 0"),
        ({"colorize_max": float("nan")}, "colorize_min and colorize_max must be >= 0"),
        ({"colorize_min": 5.0, "colorize_max": 5.0}, "colorize_max"),
        ({"colorize_min": 5.0, "colorize_max": 2.0}, "must exceed colorize_min"),
    ],
)
def test_output_options_reject_invalid_values(kwargs, text):
    with pytest.raises(ValueError, match=text):
        OutputOptions(**kwargs)


def test_valid_output_options_are_kept_and_applied(runs):
    result = runs[0]
    depth = result.depth
    lo, hi = float(np.min(depth)), float(np.max(depth))
    everything = OutputOptions(depth_encoding="16UC1", points=True, colorized=True)
    assert (everything.depth_encoding, everything.points, everything.colorized) == (
        "16UC1", True, True)
    out = _by_topic(build_outputs(result, everything))
    assert set(out) == {"depth", "depth/camera_info", "points", "depth/colorized"}
    assert out["depth"].fields["encoding"] == "16UC1"
    # One bound fixed, the other automatic (0); both fixed; the preview honours each.
    for kwargs, (near, far) in [({"colorize_min": lo}, (lo, None)),
                                ({"colorize_max": hi}, (None, hi)),
                                ({"colorize_min": lo, "colorize_max": hi}, (lo, hi))]:
        options = OutputOptions(colorized=True, **kwargs)
        assert (options.colorize_min, options.colorize_max) == (near or 0.0, far or 0.0)
        fields = _by_topic(build_outputs(result, options))["depth/colorized"].fields
        np.testing.assert_array_equal(np.asarray(fields["data"]).reshape(DH, DW, 3),
                                      colorize_depth(depth, near, far)[0])


def test_failed_results_have_no_outputs(runs):
    with pytest.raises(ValueError, match="failed result: focal estimate rejected"):
        build_outputs(DepthResult(meta=None, error="focal estimate rejected"), OutputOptions())
    with pytest.raises(ValueError, match="no outputs for a result without depth"):
        build_outputs(dataclasses.replace(runs[0], depth=None), OutputOptions())


def test_a_result_without_intrinsics_gives_the_depth_and_its_preview_only(runs):
    """A model whose depth needs no focal (Depth Anything), with no focal known."""
    result = dataclasses.replace(runs[0], intrinsics=None, points=None, points_shape=None)
    out = _by_topic(build_outputs(result, OutputOptions(points=True, colorized=True)))
    assert set(out) == {"depth", "depth/colorized"}
    np.testing.assert_array_equal(depth_image_to_array(_rclpy(out["depth"])), result.depth)


def test_an_unanchored_relative_result_goes_to_depth_relative_as_it_is():
    relative = np.array([[0.0, 0.5, 2.0], [np.nan, 1.0, 3.0]], np.float32)
    result = DepthResult(meta=None, relative=relative)
    assert build_outputs(result, OutputOptions()) == []  # refused without allow_relative
    (out,) = build_outputs(result, OutputOptions(points=True, colorized=True, relative=True))
    assert (out.topic, out.msgtype, out.fields["encoding"]) == (
        "depth/relative", "sensor_msgs/msg/Image", "32FC1")
    values = np.frombuffer(out.fields["data"].tobytes(), np.float32).reshape(2, 3)
    np.testing.assert_array_equal(values, relative)  # 0 (far) kept, not made invalid
