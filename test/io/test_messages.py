"""depth_pro_ros.io.messages against real rclpy messages and real rosbags messages."""

from __future__ import annotations

import array
import sys
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from message_factories import (
    BAYER_PATTERNS,
    encode_image,
    luma,
    rclpy_message,
    rosbags_header,
    rosbags_message,
    smooth_rgb,
)
from rosbags.typesys import Stores, get_typestore

from depth_pro_ros.io.image_decode import (
    SUPPORTED_ENCODINGS,
    ImageDecodeError,
    compressed_to_array,
    image_to_array,
)
from depth_pro_ros.io.messages import (
    camera_info_fields_scaled,
    camera_info_values,
    colorized_image_fields,
    depth_image_fields,
    depth_image_to_array,
    fill,
    image_fields,
    stamp_to_nanoseconds,
    synthesized_camera_info_fields,
)
from depth_pro_ros.io.pointcloud_msg import pointcloud2_fields

sensor_msgs = pytest.importorskip("sensor_msgs.msg")
builtin_interfaces = pytest.importorskip("builtin_interfaces.msg")

TS2 = get_typestore(getattr(Stores, "ROS2_KILTED", Stores.LATEST))
TS1 = get_typestore(Stores.ROS1_NOETIC)
RGB = smooth_rgb(24, 32)
NATIVE_BIG = sys.byteorder == "big"

BACKENDS = ("rclpy", "rosbags")


def make(backend: str, kind: str, fields: dict, typestore=TS2):
    """A real ``sensor_msgs/<kind>`` message of the backend holding ``fields``."""
    if backend == "rclpy":
        return rclpy_message(getattr(sensor_msgs, kind), fields)
    return rosbags_message(typestore, f"sensor_msgs/msg/{kind}", fields)


def as_rgb(pixels: np.ndarray, order: str) -> np.ndarray:
    if order == "rgb":
        return pixels
    if order == "bgr":
        return pixels[..., ::-1]
    raise AssertionError(order)


# ----------------------------------------------------------------------- raw Image

EXACT_COLOUR = ["rgb8", "bgr8", "rgba8", "bgra8", "8UC3", "rgb16", "bgr16", "rgba16", "bgra16"]
EXACT_MONO = ["mono8", "8UC1", "mono16"]
YUV = ["yuv422", "uyvy", "yuv422_yuy2", "yuyv"]
BAYER = [f"bayer_{p}{bits}" for p in BAYER_PATTERNS for bits in (8, 16)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("padding", [0, 5])
@pytest.mark.parametrize("encoding", EXACT_COLOUR + EXACT_MONO)
def test_direct_encodings_decode_exactly(backend, padding, encoding):
    bigendians = (False, True) if encoding.endswith("16") else (False,)
    for big in bigendians:
        msg = make(backend, "Image", encode_image(RGB, encoding, bigendian=big, padding=padding))
        pixels, order = image_to_array(msg)
        assert pixels.dtype == np.uint8
        if encoding in EXACT_MONO:
            assert order == "mono"
            np.testing.assert_array_equal(pixels, luma(RGB))
        else:
            expected_order = "rgb" if encoding.startswith("rgb") else "bgr"
            assert order == expected_order
            assert pixels.shape == RGB.shape
            np.testing.assert_array_equal(as_rgb(pixels, order), RGB)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("padding", [0, 6])
@pytest.mark.parametrize("encoding", YUV)
def test_yuv422_encodings(backend, padding, encoding):
    msg = make(backend, "Image", encode_image(RGB, encoding, padding=padding))
    pixels, order = image_to_array(msg)
    assert order == "rgb" and pixels.shape == RGB.shape and pixels.dtype == np.uint8
    diff = np.abs(pixels.astype(int) - RGB.astype(int))
    assert diff.max() <= 4, diff.max()
    assert diff.mean() <= 1.5


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("padding", [0, 3])
@pytest.mark.parametrize("encoding", BAYER)
def test_bayer_encodings_demosaic_to_the_right_colours(backend, padding, encoding):
    msg = make(backend, "Image", encode_image(RGB, encoding, bigendian=True, padding=padding))
    pixels, order = image_to_array(msg)
    assert order == "rgb" and pixels.shape == RGB.shape
    centre = (slice(4, -4), slice(4, -4))
    diff = np.abs(pixels[centre].astype(int) - RGB[centre].astype(int))
    assert diff.max() <= 4, diff.max()


@pytest.mark.parametrize("pattern", BAYER_PATTERNS)
def test_bayer_check_would_catch_a_wrong_pattern(pattern):
    """Decoding a mosaic as any other pattern gives visibly wrong colours."""
    for other in BAYER_PATTERNS:
        if other == pattern:
            continue
        fields = encode_image(RGB, f"bayer_{pattern}8")
        fields["encoding"] = f"bayer_{other}8"
        pixels, _ = image_to_array(make("rosbags", "Image", fields))
        centre = (slice(4, -4), slice(4, -4))
        assert np.abs(pixels[centre].astype(int) - RGB[centre].astype(int)).max() > 40


def test_raw_decoding_does_not_copy():
    fields = encode_image(RGB, "rgb8", padding=3)
    msg = make("rclpy", "Image", fields)
    assert isinstance(msg.data, array.array)
    pixels, _ = image_to_array(msg)
    msg.data[0] = 7  # the decoded pixels are a view of the message buffer
    assert pixels[0, 0, 0] == 7

    bag_msg = make("rosbags", "Image", encode_image(RGB, "bgra8"))
    pixels, _ = image_to_array(bag_msg)
    assert np.shares_memory(pixels, bag_msg.data)
    mono16, _ = image_to_array(make("rosbags", "Image", encode_image(RGB, "mono16")))
    assert mono16.base is not None


def test_bytes_data_is_accepted():
    fields = encode_image(RGB, "rgb8")
    msg = SimpleNamespace(**{**fields, "data": fields["data"].tobytes()})  # bytes-like data
    pixels, _ = image_to_array(msg)
    np.testing.assert_array_equal(pixels, RGB)


def test_encoding_names_are_case_insensitive():
    fields = encode_image(RGB, "8UC1")
    fields["encoding"] = "8uc1"
    pixels, order = image_to_array(make("rclpy", "Image", fields))
    assert order == "mono"
    np.testing.assert_array_equal(pixels, luma(RGB))


def _error(fields: dict, backend: str = "rclpy") -> str:
    with pytest.raises(ImageDecodeError) as info:
        image_to_array(make(backend, "Image", fields))
    assert isinstance(info.value, ValueError)
    return str(info.value)


@pytest.mark.parametrize("backend", BACKENDS)
def test_image_errors_name_the_problem(backend):
    good = encode_image(RGB, "rgb8")

    text = _error({**good, "encoding": "32FC9"}, backend)
    assert "'32FC9'" in text and "rgb8" in text and "bayer_rggb8" in text

    text = _error({**good, "width": 0}, backend)
    assert "zero size" in text and "width=0" in text
    text = _error({**good, "height": 0, "data": np.zeros(0, np.uint8)}, backend)
    assert "zero size" in text and "height=0" in text

    text = _error({**good, "step": 32 * 3 - 1}, backend)
    assert "step 95" in text and "96" in text

    short = good["data"][:-10]
    text = _error({**good, "data": short}, backend)
    assert f"expected {24 * 96} bytes" in text and f"got {24 * 96 - 10}" in text

    for enc in ("yuv422", "yuv422_yuy2", "uyvy", "yuyv"):
        odd = {**good, "encoding": enc, "width": 31, "step": 62, "data": good["data"][: 62 * 24]}
        text = _error(odd, backend)
        assert "odd" in text and "31" in text


def test_supported_encodings_listed():
    for name in (
        "rgb8",
        "bgr8",
        "rgba8",
        "bgra8",
        "mono8",
        "mono16",
        "8UC1",
        "8UC3",
        "yuv422",
        "uyvy",
        "yuv422_yuy2",
        "yuyv",
        "bayer_rggb8",
        "bayer_bggr8",
        "bayer_gbrg8",
        "bayer_grbg8",
    ):
        assert name in SUPPORTED_ENCODINGS


# ---------------------------------------------------------------- CompressedImage


def _compressed(backend: str, payload: bytes | np.ndarray, fmt: str):
    data = np.frombuffer(bytes(payload), dtype=np.uint8)
    return make(backend, "CompressedImage", {"format": fmt, "data": data})


@pytest.mark.parametrize("backend", BACKENDS)
def test_compressed_jpeg_and_png_round_trip(backend):
    bgr = np.ascontiguousarray(RGB[..., ::-1])
    ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    for fmt in ("jpeg", "bgr8; jpeg compressed bgr8", "rgb8; jpeg compressed bgr8"):
        pixels, order = compressed_to_array(_compressed(backend, jpeg, fmt))
        assert order == "bgr" and pixels.shape == RGB.shape
        assert np.abs(pixels.astype(int) - bgr.astype(int)).mean() < 3

    ok, png = cv2.imencode(".png", bgr)
    pixels, order = compressed_to_array(_compressed(backend, png, "rgb8; png compressed bgr8"))
    assert order == "bgr"
    np.testing.assert_array_equal(pixels, bgr)

    ok, png = cv2.imencode(".png", luma(RGB))
    pixels, order = compressed_to_array(_compressed(backend, png, "png"))
    assert order == "mono"
    np.testing.assert_array_equal(pixels, luma(RGB))

    bgra = np.concatenate([bgr, np.full((*RGB.shape[:2], 1), 9, np.uint8)], axis=-1)
    ok, png = cv2.imencode(".png", bgra)
    pixels, order = compressed_to_array(_compressed(backend, png, "bgra8; png compressed bgra8"))
    assert order == "bgr"
    np.testing.assert_array_equal(pixels, bgr)

    ok, png = cv2.imencode(".png", luma(RGB).astype(np.uint16) * 256 + 200)
    pixels, order = compressed_to_array(_compressed(backend, png, "mono16; png compressed mono16"))
    assert order == "mono" and pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels, luma(RGB))


@pytest.mark.parametrize("backend", BACKENDS)
def test_compressed_errors(backend):
    with pytest.raises(ImageDecodeError, match="could not be decoded"):
        compressed_to_array(_compressed(backend, b"not a jpeg at all" * 10, "jpeg"))
    ok, jpeg = cv2.imencode(".jpg", RGB)
    with pytest.raises(ImageDecodeError, match="could not be decoded"):
        compressed_to_array(_compressed(backend, jpeg.tobytes()[:20], "jpeg"))
    with pytest.raises(ImageDecodeError, match="no data"):
        compressed_to_array(_compressed(backend, b"", "jpeg"))
    with pytest.raises(ImageDecodeError, match="depth transport"):
        compressed_to_array(_compressed(backend, jpeg, "16UC1; compressedDepth png"))


# --------------------------------------------------------------------- CameraInfo

K = [500.0, 0.0, 320.0, 0.0, 510.0, 240.0, 0.0, 0.0, 1.0]
P = [500.0, 0.0, 320.0, -25.0, 0.0, 510.0, 240.0, 0.0, 0.0, 0.0, 1.0, 0.0]
D = [0.1, -0.2, 0.001, 0.002, 0.05]
R = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]


def _camera_infos():
    """The same calibration as an rclpy, a rosbags ROS 2 and a rosbags ROS 1 message."""
    ros2 = {
        "height": 480,
        "width": 640,
        "distortion_model": "plumb_bob",
        "d": np.array(D),
        "k": np.array(K),
        "r": np.array(R),
        "p": np.array(P),
        "binning_x": 0,
        "binning_y": 0,
    }
    rclpy_msg = make("rclpy", "CameraInfo", ros2)
    rclpy_msg.header.frame_id = "cam"
    roi2 = TS2.types["sensor_msgs/msg/RegionOfInterest"](
        x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
    )
    bag2 = make("rosbags", "CameraInfo", {**ros2, "roi": roi2})
    ros1 = {key.upper() if len(key) == 1 else key: value for key, value in ros2.items()}
    roi1 = TS1.types["sensor_msgs/msg/RegionOfInterest"](
        x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
    )
    bag1 = rosbags_message(TS1, "sensor_msgs/msg/CameraInfo", {**ros1, "roi": roi1})
    assert hasattr(bag1, "K") and not hasattr(bag1, "k")
    return {"rclpy": rclpy_msg, "rosbags2": bag2, "rosbags1": bag1}


@pytest.mark.parametrize("which", ["rclpy", "rosbags2", "rosbags1"])
def test_camera_info_values_read_k_or_K(which):
    msg = _camera_infos()[which]
    k, width, height, frame_id = camera_info_values(msg)
    assert k == K and all(isinstance(v, float) for v in k)
    assert (width, height, frame_id) == (640, 480, "cam")


@pytest.mark.parametrize("which", ["rclpy", "rosbags2", "rosbags1"])
def test_camera_info_fields_scaled(which):
    fields = camera_info_fields_scaled(_camera_infos()[which], 320, 120)
    assert (fields["width"], fields["height"]) == (320, 120)
    np.testing.assert_allclose(fields["k"], [250, 0, 160, 0, 127.5, 60, 0, 0, 1])
    np.testing.assert_allclose(fields["p"], [250, 0, 160, -12.5, 0, 127.5, 60, 0, 0, 0, 1, 0])
    np.testing.assert_array_equal(fields["d"], D)
    np.testing.assert_array_equal(fields["r"], R)
    assert fields["distortion_model"] == "plumb_bob"
    assert fields["binning_x"] == fields["binning_y"] == 0

    out = fill(sensor_msgs.CameraInfo(), fields)  # lands in a real rclpy message
    np.testing.assert_allclose(out.k, fields["k"])
    assert list(out.d) == D
    same = camera_info_fields_scaled(_camera_infos()[which], 640, 480)
    np.testing.assert_array_equal(same["k"], K)
    np.testing.assert_array_equal(same["p"], P)


def test_camera_info_fields_scaled_rejects_zero_sizes():
    msg = _camera_infos()["rclpy"]
    with pytest.raises(ValueError, match="target image size"):
        camera_info_fields_scaled(msg, 0, 10)
    msg.width = 0
    with pytest.raises(ValueError, match="zero size"):
        camera_info_fields_scaled(msg, 10, 10)


def test_synthesized_camera_info_fields_in_rclpy_and_rosbags():
    fields = synthesized_camera_info_fields(600.0, 601.0, 320.0, 240.0, 640, 480)
    assert fields["distortion_model"] == "plumb_bob"
    assert list(fields["d"]) == [0.0] * 5
    assert list(fields["k"]) == [600.0, 0.0, 320.0, 0.0, 601.0, 240.0, 0.0, 0.0, 1.0]
    assert list(fields["r"]) == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    assert list(fields["p"]) == [600.0, 0, 320.0, 0, 0, 601.0, 240.0, 0, 0, 0, 1.0, 0]
    assert (fields["width"], fields["height"], fields["binning_x"]) == (640, 480, 0)

    rmsg = make("rclpy", "CameraInfo", fields)
    assert camera_info_values(rmsg)[:3] == (list(fields["k"]), 640, 480)
    assert isinstance(rmsg.d, array.array) and list(rmsg.d) == [0.0] * 5

    roi = TS2.types["sensor_msgs/msg/RegionOfInterest"](
        x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
    )
    bmsg = make("rosbags", "CameraInfo", {**fields, "roi": roi})
    back = TS2.deserialize_cdr(TS2.serialize_cdr(bmsg, bmsg.__msgtype__), bmsg.__msgtype__)
    np.testing.assert_array_equal(back.p, fields["p"])


# --------------------------------------------------------------------- depth images


def _depth() -> np.ndarray:
    d = np.linspace(0.5, 20.0, 6 * 8, dtype=np.float32).reshape(6, 8)
    d[1, 2] = np.nan
    d[2, 3] = 0.0
    d[3, 4] = -1.0
    return d


@pytest.mark.parametrize("backend", BACKENDS)
def test_depth_32fc1_fields_and_round_trip(backend):
    depth = _depth()
    fields = depth_image_fields(depth, "32FC1")
    assert fields["encoding"] == "32FC1"
    assert (fields["height"], fields["width"], fields["step"]) == (6, 8, 32)
    assert fields["is_bigendian"] == int(NATIVE_BIG)
    assert fields["data"].dtype == np.uint8 and fields["data"].size == 6 * 8 * 4
    msg = make(backend, "Image", fields)
    back = depth_image_to_array(msg)
    assert back.dtype == np.float32 and back.shape == (6, 8)
    expected = depth.copy()
    expected[expected <= 0] = np.nan  # REP 118: invalid is NaN, never 0
    np.testing.assert_array_equal(back, expected)
    assert np.isnan(back[1, 2]) and np.isnan(back[2, 3]) and np.isnan(back[3, 4])


def test_depth_32fc1_does_not_copy_clean_input():
    depth = np.full((4, 5), 2.5, np.float32)
    assert np.shares_memory(depth_image_fields(depth)["data"], depth)


def test_depth_reader_honours_big_endian_and_padding():
    depth = _depth()
    rows = depth.astype(">f4").view(np.uint8).reshape(6, 32)
    padded = np.concatenate([rows, np.full((6, 4), 0xEE, np.uint8)], axis=1)
    fields = {
        "height": 6,
        "width": 8,
        "encoding": "32FC1",
        "is_bigendian": 1,
        "step": 36,
        "data": padded.reshape(-1),
    }
    back = depth_image_to_array(make("rosbags", "Image", fields))
    np.testing.assert_array_equal(back, depth)  # values taken as they are when reading


@pytest.mark.parametrize("backend", BACKENDS)
def test_depth_16uc1_millimetres(backend):
    depth = np.array([[1.2344, 1.2346, np.nan, 0.0], [-2.0, np.inf, 70.0, 0.0002]], np.float32)
    fields = depth_image_fields(depth, "16UC1")
    assert (fields["step"], fields["encoding"]) == (8, "16UC1")
    assert fields["data"].size == 16
    mm = fields["data"].view(np.uint16).reshape(2, 4)
    np.testing.assert_array_equal(mm, [[1234, 1235, 0, 0], [0, 0, 65535, 1]])
    back = depth_image_to_array(make(backend, "Image", fields))
    np.testing.assert_allclose(back[0, :2], [1.234, 1.235], rtol=1e-6)
    assert np.isnan(back[0, 2:]).all() and np.isnan(back[1, :2]).all()
    assert back[1, 2] == pytest.approx(65.535)


def test_depth_errors():
    with pytest.raises(ValueError, match="unsupported depth encoding"):
        depth_image_fields(_depth(), "mono8")
    with pytest.raises(ValueError, match="2-D"):
        depth_image_fields(np.zeros((2, 3, 4), np.float32))
    fields = depth_image_fields(_depth())
    with pytest.raises(ImageDecodeError, match="expected 192 bytes"):
        depth_image_to_array(make("rclpy", "Image", {**fields, "data": fields["data"][:100]}))
    with pytest.raises(ImageDecodeError, match="unsupported depth encoding 'rgb8'"):
        depth_image_to_array(make("rclpy", "Image", encode_image(RGB, "rgb8")))


def test_depth_image_serialises_with_rosbags():
    fields = depth_image_fields(_depth())
    msg = make("rosbags", "Image", fields)
    raw = TS2.serialize_cdr(msg, msg.__msgtype__)
    back = depth_image_to_array(TS2.deserialize_cdr(raw, msg.__msgtype__))
    np.testing.assert_array_equal(back, depth_image_to_array(msg))


# -------------------------------------------------------------------- colour images


@pytest.mark.parametrize("backend", BACKENDS)
def test_colorized_and_plain_image_fields_round_trip(backend):
    bgr = np.ascontiguousarray(RGB[..., ::-1])
    fields = colorized_image_fields(bgr)
    assert (fields["encoding"], fields["step"], fields["is_bigendian"]) == ("bgr8", 96, 0)
    pixels, order = image_to_array(make(backend, "Image", fields))
    assert order == "bgr"
    np.testing.assert_array_equal(pixels, bgr)

    mono16 = luma(RGB).astype(np.uint16) << 8
    pixels, order = image_to_array(make(backend, "Image", image_fields(mono16, "mono16")))
    assert order == "mono"
    np.testing.assert_array_equal(pixels, luma(RGB))

    with pytest.raises(ValueError, match="channel"):
        image_fields(RGB, "mono8")
    with pytest.raises(ValueError, match="uint16"):
        image_fields(luma(RGB), "mono16")


# ------------------------------------------------------------------ stamps and fill


def test_stamps_in_all_spellings():
    rclpy_time = builtin_interfaces.Time(sec=12, nanosec=345)
    assert stamp_to_nanoseconds(rclpy_time) == 12_000_000_345
    ros1_header = rosbags_header(TS1, sec=12, nanosec=345)
    assert "seq" in ros1_header.__dataclass_fields__
    assert stamp_to_nanoseconds(ros1_header.stamp) == 12_000_000_345
    genpy_style = SimpleNamespace(secs=3, nsecs=500_000_000)  # rospy's Time spelling
    assert stamp_to_nanoseconds(genpy_style) == 3_500_000_000


def test_fill_converts_to_rclpy_types_and_rejects_unknown_fields():
    big = np.zeros((480, 640, 3), np.uint8)
    msg = fill(sensor_msgs.Image(), colorized_image_fields(big))
    assert isinstance(msg.data, array.array) and len(msg.data) == big.size
    assert msg.is_bigendian == 0 and msg.step == 1920
    with pytest.raises(AttributeError, match="no field 'nope'"):
        fill(sensor_msgs.Image(), {"nope": 1})


def test_fill_needs_the_point_field_class_for_point_cloud_fields():
    record = np.zeros(2, [("x", np.float32), ("y", np.float32), ("z", np.float32)])
    fields = pointcloud2_fields(record, 1, 2)
    with pytest.raises(TypeError, match="point_field"):
        fill(sensor_msgs.PointCloud2(), fields)
    msg = fill(sensor_msgs.PointCloud2(), fields, point_field=sensor_msgs.PointField)
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == fields["fields"]
