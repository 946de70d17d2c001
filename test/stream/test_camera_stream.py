"""depth_pro_ros.stream.camera: decoding, CameraInfo pairing and focal tracking.

Everything here runs without the network: ``CameraStream.prepare`` only decodes the image
and decides the focal; the engine's part (calling ``Frame.focal_filter`` with the FoV
estimate) is played by the tests. Messages are real rclpy and rosbags messages.
"""

from __future__ import annotations

import math
import threading
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from message_factories import (
    encode_image,
    luma,
    rclpy_message,
    rosbags_header,
    rosbags_message,
    smooth_rgb,
)
from rosbags.typesys import Stores, get_typestore

from depth_pro_ros.engine import Frame
from depth_pro_ros.io.image_decode import DEFAULT_MAX_INPUT_PIXELS
from depth_pro_ros.stream import (
    CAMERA_INFO_SYNC,
    CameraStream,
    FocalSettings,
    FrameContext,
    FrameSkipped,
    Transport,
)

sensor_msgs = pytest.importorskip("sensor_msgs.msg")

TS = get_typestore(getattr(Stores, "ROS2_KILTED", Stores.LATEST))
BACKENDS = ("rclpy", "rosbags")
RAW, COMPRESSED = Transport.RAW, Transport.COMPRESSED
H, W = 24, 32
RGB = smooth_rgb(H, W)
S = 1_000_000_000  # ns per second
T0 = 100 * S  # a base image stamp


# ------------------------------------------------------------------------- helpers


def _set_stamp(msg, stamp_ns: int, frame_id: str = "cam") -> None:
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), S)
    msg.header.frame_id = frame_id


def image(
    backend: str = "rclpy", stamp_ns: int = T0, rgb=RGB, enc="rgb8", padding=0, **override
):
    """A real sensor_msgs/Image holding ``rgb`` in ``enc``; ``override`` replaces fields."""
    fields = {**encode_image(rgb, enc, padding=padding), **override}
    if backend == "rclpy":
        msg = rclpy_message(sensor_msgs.Image, fields)
        _set_stamp(msg, stamp_ns)
        return msg
    sec, nanosec = divmod(stamp_ns, S)
    return rosbags_message(TS, "sensor_msgs/msg/Image", fields,
                           header=rosbags_header(TS, sec, nanosec))


def compressed(backend: str, payload, fmt: str, stamp_ns: int = T0):
    data = np.frombuffer(bytes(payload), dtype=np.uint8)
    fields = {"format": fmt, "data": data}
    if backend == "rclpy":
        msg = rclpy_message(sensor_msgs.CompressedImage, fields)
        _set_stamp(msg, stamp_ns)
        return msg
    sec, nanosec = divmod(stamp_ns, S)
    return rosbags_message(TS, "sensor_msgs/msg/CompressedImage", fields,
                           header=rosbags_header(TS, sec, nanosec))


def camera_info(
    backend: str = "rclpy",
    stamp_ns: int = T0,
    fx: float = 40.0,
    fy: float | None = None,
    width: int = W,
    height: int = H,
    cx: float | None = None,
    cy: float | None = None,
    k=None,
):
    """A real sensor_msgs/CameraInfo; ``k`` overrides the K built from fx/fy/cx/cy."""
    fy = fx if fy is None else fy
    cx = width / 2 - 0.5 if cx is None else cx
    cy = height / 2 - 0.5 if cy is None else cy
    k = np.array([fx, 0, cx, 0, fy, cy, 0, 0, 1], float) if k is None else np.asarray(k, float)
    p = np.array([fx, 0, cx, 0, 0, fy, cy, 0, 0, 0, 1, 0], float)
    fields = {
        "height": height, "width": width, "distortion_model": "plumb_bob",
        "d": np.zeros(5), "k": k, "r": np.eye(3).reshape(-1), "p": p,
        "binning_x": 0, "binning_y": 0,
    }
    if backend == "rclpy":
        msg = rclpy_message(sensor_msgs.CameraInfo, fields)
        _set_stamp(msg, stamp_ns)
        return msg
    roi = TS.types["sensor_msgs/msg/RegionOfInterest"](
        x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    sec, nanosec = divmod(stamp_ns, S)
    return rosbags_message(TS, "sensor_msgs/msg/CameraInfo", {**fields, "roi": roi},
                           header=rosbags_header(TS, sec, nanosec))


def stream(hold_unpaired: bool = False, history: int | None = 64, **settings) -> CameraStream:
    return CameraStream(FocalSettings(**settings), history=history, hold_unpaired=hold_unpaired)


def focal_of(frame: Frame) -> float | None:
    return None if frame.intrinsics is None else frame.intrinsics.fx


def skipped(st: CameraStream, msg, received: float = 0.0, compressed_: bool = False):
    with pytest.raises(FrameSkipped) as info:
        st.prepare(msg, COMPRESSED if compressed_ else RAW, received)
    return info.value


# ------------------------------------------------------------------------ decoding


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "encoding, order, expected",
    [("rgb8", "rgb", RGB), ("bgr8", "bgr", RGB[..., ::-1]), ("mono8", "mono", luma(RGB)),
     ("rgba8", "rgb", RGB), ("mono16", "mono", luma(RGB))],
)
def test_prepare_decodes_raw_images(backend, encoding, order, expected):
    st = stream(focal_source="fov_head")
    msg = image(backend, T0 + 7, enc=encoding)
    frame = st.prepare(msg, RAW, 3.25)
    assert isinstance(frame, Frame)
    assert frame.channel_order == order
    np.testing.assert_array_equal(frame.image, expected)
    frame.validate()  # the engine accepts it as is
    assert frame.estimate_fov is False
    meta = frame.meta
    assert isinstance(meta, FrameContext)
    assert meta.header is msg.header and meta.stamp_ns == T0 + 7 and meta.received == 3.25
    assert meta.camera_info is None and meta.camera is None and meta.seq == 0


def test_prepare_crops_row_padding_and_names_the_camera_and_counts_images():
    st = CameraStream(FocalSettings(focal_source="fov_head"), name="front")
    st.prepare(image("rosbags", enc="bgr8"), RAW, 0.5)
    frame = st.prepare(image("rosbags", enc="bgr8", padding=7), RAW, 1.0)
    np.testing.assert_array_equal(frame.image, RGB[..., ::-1])
    assert (frame.meta.camera, frame.meta.seq) == ("front", 1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_prepare_decodes_compressed_images(backend):
    st = stream(focal_source="fov_head")
    bgr = np.ascontiguousarray(RGB[..., ::-1])
    ok, png = cv2.imencode(".png", bgr)
    assert ok
    frame = st.prepare(compressed(backend, png, "png", T0 + 5), COMPRESSED, 2.0)
    assert frame.channel_order == "bgr" and frame.meta.stamp_ns == T0 + 5
    np.testing.assert_array_equal(frame.image, bgr)  # png is lossless

    ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    frame = st.prepare(compressed(backend, jpeg, "bgr8; jpeg compressed bgr8"), COMPRESSED, 2.0)
    assert frame.channel_order == "bgr" and frame.image.shape == (H, W, 3)
    assert np.abs(frame.image.astype(int) - bgr.astype(int)).mean() < 3.0
    frame.validate()

    grey = luma(RGB)
    ok, mono_png = cv2.imencode(".png", grey)
    frame = st.prepare(compressed(backend, mono_png, "mono8; png compressed mono8"),
                       COMPRESSED, 2.0)
    assert frame.channel_order == "mono"
    np.testing.assert_array_equal(frame.image, grey)


@pytest.mark.parametrize("backend", BACKENDS)
def test_prepare_skips_images_that_do_not_decode(backend):
    st = stream(focal_source="auto")
    good = encode_image(RGB, "rgb8")
    cases = {
        "unsupported image encoding": image(backend, encoding="xyz9"),
        "too short": image(backend, data=good["data"][: good["step"] * H - 1]),
        "zero size": image(backend, height=0, data=good["data"][:0]),
        "step": image(backend, step=W * 3 - 1),
    }
    for text, msg in cases.items():
        exc = skipped(st, msg)
        assert exc.reason == "decode" and text in str(exc), (text, str(exc))

    ok, jpeg = cv2.imencode(".jpg", RGB)
    for payload, text in ((jpeg.tobytes()[:20], "could not be decoded"),
                          (b"\x00not a picture", "could not be decoded"),
                          (b"", "no data")):
        exc = skipped(st, compressed(backend, payload, "jpeg"), compressed_=True)
        assert exc.reason == "decode" and text in str(exc)
    exc = skipped(st, compressed(backend, jpeg, "16UC1; compressedDepth png"), compressed_=True)
    assert exc.reason == "decode" and "depth transport" in str(exc)

    # Nothing of the failures stuck: the same stream still turns a good image into a frame.
    assert st.prepare(image(backend), RAW, 0.0).image.shape == (H, W, 3)
    assert st.pop_messages() == ["no camera_info for this image, using the FoV estimate"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_images_declaring_too_many_pixels_are_skipped_as_too_large(backend):
    st = CameraStream(FocalSettings(focal_source="fov_head"), max_input_pixels=H * W - 1)
    exc = skipped(st, image(backend))
    assert (exc.reason, exc.kind) == ("too_large", "too_large")
    assert f"{W} x {H}" in str(exc) and "max_input_pixels" in str(exc)
    ok, png = cv2.imencode(".png", RGB)
    exc = skipped(st, compressed(backend, png, "png"), compressed_=True)
    assert (exc.reason, exc.kind) == ("too_large", "too_large") and "PNG" in str(exc)

    # A 600-byte JPEG declaring 8000 x 8000 under the default limit (50 MP), and a raw
    # image declaring 100000 x 100000 with 10 bytes of data.
    st = stream(focal_source="fov_head")
    assert st.max_input_pixels == DEFAULT_MAX_INPUT_PIXELS
    ok, jpeg = cv2.imencode(".jpg", RGB[:8, :8])
    bomb = bytearray(jpeg.tobytes())
    sof = bomb.index(b"\xff\xc0")
    bomb[sof + 5:sof + 9] = (8000).to_bytes(2, "big") * 2
    exc = skipped(st, compressed(backend, bomb, "jpeg"), compressed_=True)
    assert exc.reason == "too_large" and "8000 x 8000" in str(exc)
    huge = image(backend, height=100_000, width=100_000, step=300_000,
                 data=np.zeros(10, np.uint8))
    assert skipped(st, huge).reason == "too_large"
    assert st.pop_warnings() == []

    # The limit can be lifted or changed at any time; bad values are refused.
    st.max_input_pixels = None
    assert st.prepare(image(backend), RAW, 0.0).image.shape == (H, W, 3)
    st.max_input_pixels = H * W
    assert st.prepare(image(backend), RAW, 0.0).image.shape == (H, W, 3)
    for bad in (0, -5, 2.5, "many", True):
        with pytest.raises(ValueError, match="max_input_pixels"):
            st.max_input_pixels = bad
    assert st.max_input_pixels == H * W


@pytest.mark.parametrize("backend", BACKENDS)
def test_decode_failures_carry_the_kind_of_problem(backend):
    st = stream(focal_source="fov_head")
    good = encode_image(RGB, "rgb8")
    for encoding in ("xyz9", "abc1", "weird16"):  # many encodings, one kind
        exc = skipped(st, image(backend, encoding=encoding))
        assert (exc.reason, exc.kind) == ("decode", "unsupported_encoding")
    exc = skipped(st, image(backend, data=good["data"][:10]))
    assert (exc.reason, exc.kind) == ("decode", "too_short")
    exc = skipped(st, compressed(backend, b"\x00not a picture", "jpeg"), compressed_=True)
    assert (exc.reason, exc.kind) == ("decode", "unknown_format")
    exc = skipped(st, compressed(backend, b"", "jpeg"), compressed_=True)
    assert (exc.reason, exc.kind) == ("decode", "empty")
    exc = skipped(st, object())
    assert (exc.reason, exc.kind) == ("decode", "malformed")
    # Skips that are no decode failure: the kind is the reason.
    st = stream(focal_source="camera_info")
    exc = skipped(st, image(backend))
    assert exc.reason == exc.kind == "no_camera_info"
    assert FrameSkipped("x", "decode").kind == "decode"


@pytest.mark.parametrize("backend", BACKENDS)
def test_codec_warnings_are_kept_for_pop_warnings_not_printed(backend, capfd):
    st = stream(focal_source="fov_head")
    ok, jpeg = cv2.imencode(".jpg", RGB, [cv2.IMWRITE_JPEG_QUALITY, 95])
    data = jpeg.tobytes()
    sof = data.index(b"\xff\xc0")
    noisy = data[:sof] + b"\x00\x01junk" + data[sof:]  # decodes, with a libjpeg warning
    frame = st.prepare(compressed(backend, noisy, "jpeg"), COMPRESSED, 0.0)
    assert frame.image.shape == (H, W, 3)
    ok, png = cv2.imencode(".png", RGB)
    broken = bytearray(png.tobytes())
    broken[60] ^= 0x55
    exc = skipped(st, compressed(backend, bytes(broken), "png"), compressed_=True)
    assert (exc.reason, exc.kind) == ("decode", "undecodable")
    warnings = st.pop_warnings()
    assert len(warnings) == 2, warnings
    assert warnings[0].startswith("Corrupt JPEG data") and "libpng error" in warnings[1]
    assert st.pop_warnings() == []
    assert capfd.readouterr().err == ""


def test_prepare_skips_malformed_message_objects():
    st = stream(focal_source="fov_head")
    good = encode_image(RGB, "rgb8")
    stamp = SimpleNamespace(sec=1, nanosec=2)
    malformed = [
        object(),  # no header at all
        camera_info(),  # a real message of the wrong type: no encoding / step / data
        SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=1)), **good),
        SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=None, nanosec=0)),
                        **good),
        SimpleNamespace(header=SimpleNamespace(stamp=stamp), **{**good, "data": None}),
        SimpleNamespace(header=SimpleNamespace(stamp=stamp), **{**good, "height": "tall"}),
    ]
    for msg in malformed:
        exc = skipped(st, msg)
        assert exc.reason == "decode" and "malformed image message" in str(exc), str(exc)
    exc = skipped(st, SimpleNamespace(header=SimpleNamespace(stamp=stamp)), compressed_=True)
    assert exc.reason == "decode" and "malformed image message" in str(exc)
    # A duck-typed message that is complete works (ROS 1 secs/nsecs spelling too).
    ros1 = SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(secs=3, nsecs=4)),
                           **good)
    assert st.prepare(ros1, RAW, 0.0).meta.stamp_ns == 3 * S + 4


# ---------------------------------------------------------------------- CameraInfo


@pytest.mark.parametrize("backend", BACKENDS)
def test_add_camera_info_rejects_unusable_ones_and_keeps_the_earlier(backend):
    st = stream(focal_source="camera_info")
    assert st.add_camera_info(camera_info(backend, fx=40.0), 0.0) == []
    bad = [
        (camera_info(backend, k=np.zeros(9)), "all zero"),
        (camera_info(backend, width=0), "size must be > 0"),
        (camera_info(backend, height=0), "size must be > 0"),
        (camera_info(backend, fx=-5.0), "non-positive focal length"),
        (camera_info(backend, cx=math.nan), "non-finite"),
    ]
    if backend == "rosbags":  # rclpy's CameraInfo refuses a K of another length itself
        bad.append((camera_info(backend, k=[40.0, 0.0, 16.0, 0.0]), "K must have 9 elements"))
    bad.append((SimpleNamespace(k=camera_info().k, width=W, height=H), "header"))
    for received, (msg, text) in enumerate(bad, start=1):
        with pytest.raises(ValueError, match="camera_info ignored") as info:
            st.add_camera_info(msg, float(received))
        assert not isinstance(info.value, FrameSkipped)
        assert text in str(info.value), str(info.value)
    # Every rejected one arrived later, yet the first (good) one is still used.
    frame = st.prepare(image(backend), RAW, 100.0)
    assert focal_of(frame) == 40.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_exact_sync_pairs_identical_stamps_only(backend):
    st = stream(focal_source="camera_info", camera_info_sync="exact")
    st.add_camera_info(camera_info(backend, T0, fx=40.0), 0.0)
    st.add_camera_info(camera_info(backend, T0 + 10, fx=50.0), 0.1)
    assert focal_of(st.prepare(image(backend, T0), RAW, 5.0)) == 40.0
    assert focal_of(st.prepare(image(backend, T0 + 10), RAW, 5.0)) == 50.0
    for stamp in (T0 + 1, T0 + 9, T0 - 1, T0 + 11):
        assert skipped(st, image(backend, stamp), 5.0).reason == "no_camera_info"


def test_exact_sync_prefers_the_newest_of_equal_stamps():
    st = stream(focal_source="camera_info", camera_info_sync="exact")
    st.add_camera_info(camera_info(stamp_ns=T0, fx=40.0), 0.0)
    st.add_camera_info(camera_info(stamp_ns=T0, fx=45.0), 0.5)
    assert focal_of(st.prepare(image(stamp_ns=T0), RAW, 1.0)) == 45.0


def test_approximate_sync_pairs_the_nearest_within_slop():
    st = stream(focal_source="camera_info", camera_info_sync="approximate", sync_slop=0.02)
    ms = 1_000_000
    # Added out of stamp order: pairing is by stamp, not by arrival.
    st.add_camera_info(camera_info(stamp_ns=T0 + 100 * ms, fx=50.0), 0.0)
    st.add_camera_info(camera_info(stamp_ns=T0, fx=40.0), 0.1)
    expect = {
        T0: 40.0, T0 + 15 * ms: 40.0, T0 - 20 * ms: 40.0,  # slop bound is inclusive
        T0 + 90 * ms: 50.0, T0 + 120 * ms: 50.0, T0 + 80 * ms: 50.0,
    }
    for stamp, fx in expect.items():
        frame = st.prepare(image(stamp_ns=stamp), RAW, 1.0)
        assert focal_of(frame) == fx, stamp
    for stamp in (T0 + 21 * ms, T0 + 50 * ms, T0 + 79 * ms, T0 - 21 * ms, T0 + 121 * ms):
        assert skipped(st, image(stamp_ns=stamp), 1.0).reason == "no_camera_info"

    # In auto mode an unpaired image falls back to the estimate instead of being skipped.
    auto = stream(focal_source="auto", camera_info_sync="approximate", sync_slop=0.02)
    auto.add_camera_info(camera_info(stamp_ns=T0, fx=40.0), 0.0)
    assert focal_of(auto.prepare(image(stamp_ns=T0 + 10 * ms), RAW, 0.1)) == 40.0
    far = auto.prepare(image(stamp_ns=T0 + 30 * ms), RAW, 0.1)
    assert far.intrinsics is None and far.meta.camera_info is None


def test_latest_sync_uses_the_newest_received_by_the_image_time():
    st = stream(focal_source="camera_info", camera_info_sync="latest")
    first, second = camera_info(stamp_ns=0, fx=40.0), camera_info(stamp_ns=5 * S, fx=50.0)
    st.add_camera_info(first, 1.0)
    st.add_camera_info(second, 3.0)
    # The stamps are ignored; only the time each message was received counts.
    assert skipped(st, image(stamp_ns=T0), 0.5).reason == "no_camera_info"
    frame = st.prepare(image(stamp_ns=T0), RAW, 1.0)
    assert focal_of(frame) == 40.0 and frame.meta.camera_info is first
    # `second` is already known but was received after this image: not used.
    frame = st.prepare(image(stamp_ns=T0), RAW, 2.9)
    assert focal_of(frame) == 40.0 and frame.meta.camera_info is first
    frame = st.prepare(image(stamp_ns=0), RAW, 3.0)
    assert focal_of(frame) == 50.0 and frame.meta.camera_info is second
    # camera_info mode never times out: a calibration is static.
    assert focal_of(st.prepare(image(), RAW, 1e6)) == 50.0


def test_history_bounds_the_camera_infos_kept():
    st = stream(focal_source="camera_info", camera_info_sync="exact", history=2)
    for i in range(3):
        st.add_camera_info(camera_info(stamp_ns=T0 + i, fx=40.0 + i), float(i))
    assert skipped(st, image(stamp_ns=T0), 5.0).reason == "no_camera_info"  # evicted
    assert focal_of(st.prepare(image(stamp_ns=T0 + 1), RAW, 5.0)) == 41.0
    assert focal_of(st.prepare(image(stamp_ns=T0 + 2), RAW, 5.0)) == 42.0


@pytest.mark.parametrize("source", ["camera_info", "auto"])
def test_camera_info_of_another_aspect_ratio_skips_the_frame(source):
    st = stream(focal_source=source)
    st.add_camera_info(camera_info(width=640, height=640, fx=500.0), 0.0)
    exc = skipped(st, image(), 0.5)
    assert exc.reason == "camera_info_mismatch"
    assert "640x640" in str(exc) and f"{W}x{H}" in str(exc)


@pytest.mark.parametrize(("fx", "scale"), [(5e-324, 0.5), (1.5e308, 2)],
                         ids=["underflows", "overflows"])
def test_camera_info_whose_k_breaks_when_scaled_skips_the_frame(fx, scale):
    # Valid at its own size, but the K scaled to the image is 0 or inf: once an uncaught
    # ValueError in the node's callback (found by bench/fuzz_node.py).
    st = stream(focal_source="auto")
    st.add_camera_info(camera_info(width=W * 2, height=H * 2, fx=fx, cx=W, cy=H), 0.0)
    rgb = smooth_rgb(round(H * 2 * scale), round(W * 2 * scale))
    exc = skipped(st, image(rgb=rgb), 0.5)
    assert exc.reason == "camera_info_mismatch" and "unusable at the image size" in str(exc)
    # The stream goes on: a CameraInfo that fits serves the next frame.
    st.add_camera_info(camera_info(), 1.0)
    assert focal_of(st.prepare(image(), RAW, 1.1)) == 40.0


def test_camera_info_of_a_proportional_size_is_scaled():
    st = stream(focal_source="camera_info")
    info = camera_info(width=4 * W, height=4 * H, fx=160.0, fy=164.0, cx=63.0, cy=47.0)
    st.add_camera_info(info, 0.0)
    frame = st.prepare(image(), RAW, 0.5)
    k = frame.intrinsics
    assert (k.fx, k.fy, k.cx, k.cy, k.width, k.height) == (40.0, 41.0, 15.75, 11.75, W, H)
    assert frame.meta.camera_info is info  # the original message, for passthrough

    # Within the 1 % aspect tolerance the sizes are scaled independently.
    st2 = stream(focal_source="camera_info")
    st2.add_camera_info(camera_info(width=3200, height=2410, fx=4000.0, cx=1600, cy=1205), 0.0)
    k = st2.prepare(image(), RAW, 0.5).intrinsics
    assert k.fx == pytest.approx(40.0) and k.cy == pytest.approx(12.0)
    assert k.fy == pytest.approx(4000.0 * H / 2410)


# ------------------------------------------------------------------ focal policies


def _at(t: float) -> int:
    """The stamp (ns) of a message taken at ``t`` s: the camera's and the node's clocks
    agree, as with a driver stamping both topics on the host."""
    return T0 + round(t * S)


def test_auto_falls_back_to_the_estimate_and_back_reporting_each_switch_once():
    st = stream(focal_source="auto", camera_info_timeout=1.0, camera_info_sync="latest")
    info = camera_info(stamp_ns=_at(10.0), fx=40.0)
    st.add_camera_info(info, 10.0)

    def image_at(t: float):
        return st.prepare(image(stamp_ns=_at(t)), RAW, t)

    fresh = image_at(10.5)
    assert focal_of(fresh) == 40.0 and fresh.meta.camera_info is info
    assert st.pop_messages() == [
        "camera_info is fresh, using its focal length instead of the FoV estimate"]
    assert focal_of(image_at(11.0)) == 40.0  # exactly at the timeout
    assert st.pop_messages() == []
    assert st.focal_state(W)["source"] == "camera_info"

    stale = image_at(11.5)
    assert stale.intrinsics is None and stale.meta.camera_info is None
    messages = st.pop_messages()
    assert messages == ["camera_info stale for 1.5 s (timeout 1.0 s), falling back to the "
                        "FoV estimate"]
    # The engine feeds the FoV estimate through the frame's filter.
    used = stale.focal_filter(30.0, W, H)
    assert used.fx == 30.0 and st.focal_state(W)["source"] == "fov_head"
    assert image_at(12.0).intrinsics is None
    assert st.pop_messages() == []  # no new switch

    newer = camera_info(stamp_ns=_at(12.2), fx=44.0)
    st.add_camera_info(newer, 12.2)
    back = image_at(12.3)
    assert focal_of(back) == 44.0 and back.meta.camera_info is newer
    assert st.pop_messages() == [
        "camera_info is fresh, using its focal length instead of the FoV estimate"]
    assert st.pop_messages() == []
    assert st.focal_state(W)["source"] == "camera_info"


def _replay(st: CameraStream, infos, images):
    """Feed (stamp s, taken in s) CameraInfo and image messages to ``st`` in the order
    they are taken in; return [(image stamp, frame)]."""
    events = sorted([(r, 0, t) for t, r in infos] + [(r, 1, t) for t, r in images])
    frames = []
    for received, is_image, t in events:
        if is_image:
            frames.append((t, st.prepare(image(stamp_ns=_at(t)), RAW, received)))
        else:
            st.add_camera_info(camera_info(stamp_ns=_at(t), fx=40.0), received)
    return frames


def test_auto_keeps_a_1hz_camera_info_while_the_node_takes_messages_late():
    """Issue 22: CameraInfo at 1 Hz, images at 5 Hz, the default 2 s timeout. The node
    stalls from 4.0 s to 6.6 s: the CameraInfo stamped 4, 5 and 6 s and the last five
    images (a keep-last-5 queue) wait, then are taken in one per round, each image before
    the CameraInfo of its round (an executor taking the image subscription first). The
    CameraInfo stamped 8 s is lost. The first image after the stall (stamped 5.7 s) is
    3.6 s after the last CameraInfo taken in (stamped 3 s) by arrival, above the timeout
    and above 3 periods; by stamps 2.7 s, above the timeout but within 3 periods. Every
    frame keeps the CameraInfo's focal, without a switch."""
    stall = (4.0, 6.6)
    infos = [(k, float(k)) for k in (0, 1, 2, 3, 7, 9)]  # (stamp s, taken in at s)
    images = [(t, t) for t in (0.1 + 0.2 * j for j in range(50))
              if not stall[0] <= t < stall[1]]
    for i, t in enumerate((5.7, 5.9, 6.1, 6.3, 6.5)):  # round i after the stall
        images.append((t, stall[1] + 0.05 * i))
        if i < 3:
            infos.append((4 + i, stall[1] + 0.05 * i + 0.01))
    st = stream(focal_source="auto", camera_info_sync="latest")  # default timeout, 2 s
    frames = _replay(st, infos, images)

    # Neither arrival times nor the timeout alone would keep the CameraInfo.
    def newest_info(received):
        return max((r, t) for t, r in infos if r <= received)

    assert max(r - newest_info(r)[0] for _, r in images) == pytest.approx(3.6)
    assert max(t - newest_info(r)[1] for t, r in images) == pytest.approx(2.7)
    assert len(frames) == len(images)
    assert [t for t, frame in frames if focal_of(frame) != 40.0] == []
    assert st.pop_messages() == [
        "camera_info is fresh, using its focal length instead of the FoV estimate"]

    # When the CameraInfo stops (last one stamped 9 s) the images fall back after 3 of
    # its periods, by stamps and by arrival alike.
    later = [(10.0 + 0.5 * j, 10.0 + 0.5 * j) for j in range(8)]
    frames = _replay(st, [], later)
    fallen = [t for t, frame in frames if frame.intrinsics is None]
    assert fallen == [t for t, _ in later if t - 9.0 > 3.0]
    assert st.pop_messages() == [
        "camera_info stale for 3.5 s (timeout 3.0 s: 3 CameraInfo periods of 1.00 s), "
        "falling back to the FoV estimate"]


def test_auto_with_unstamped_camera_info_judges_by_arrival_and_its_period():
    """A CameraInfo stamped zero (a static publisher) at 1 Hz is judged by arrival
    alone; its period still holds it between messages."""
    st = stream(focal_source="auto", camera_info_sync="latest", camera_info_timeout=0.5)
    for k in range(4):
        st.add_camera_info(camera_info(stamp_ns=0), float(k))
    assert focal_of(st.prepare(image(stamp_ns=_at(3.9)), RAW, 3.9)) == 40.0
    assert st.prepare(image(stamp_ns=_at(3.9)), RAW, 6.1).intrinsics is None
    # A change of focal settings keeps the period: the arrivals are replayed.
    st.configure(FocalSettings(camera_info_timeout=0.6, camera_info_sync="latest"))
    st.add_camera_info(camera_info(stamp_ns=0), 7.0)
    assert focal_of(st.prepare(image(stamp_ns=_at(9.5)), RAW, 9.5)) == 40.0


def test_auto_without_camera_info_estimates():
    st = stream(focal_source="auto")
    frame = st.prepare(image(), RAW, 0.0)
    assert frame.intrinsics is None and frame.estimate_fov is False
    assert frame.focal_filter is not None and frame.meta.camera_info is None
    assert st.pop_messages() == ["no camera_info for this image, using the FoV estimate"]
    assert st.focal_state(W) == {"source": None, "ema_px": None, "estimates": 0}


@pytest.mark.parametrize("sync", CAMERA_INFO_SYNC)
def test_camera_info_source_without_any_camera_info_skips(sync):
    st = stream(focal_source="camera_info", camera_info_sync=sync)
    exc = skipped(st, image(), 1.0)
    assert exc.reason == "no_camera_info" and f"camera_info_sync {sync}" in str(exc)


def test_fixed_focal_ignores_camera_info():
    st = stream(focal_source="fixed", fixed_focal_px=123.0)
    # Neither a matching nor a CameraInfo of another aspect ratio has any effect.
    st.add_camera_info(camera_info(fx=40.0), 0.0)
    frame = st.prepare(image(), RAW, 0.5)
    k = frame.intrinsics
    assert (k.fx, k.fy, k.cx, k.cy, k.width, k.height) == (123.0, 123.0, W / 2, H / 2, W, H)
    assert frame.meta.camera_info is None
    st.add_camera_info(camera_info(width=100, height=100), 1.0)
    assert focal_of(st.prepare(image(), RAW, 1.5)) == 123.0
    assert st.focal_state(W)["source"] == "fixed"
    assert st.pop_messages() == []


def test_fov_head_always_estimates():
    st = stream(focal_source="fov_head")
    st.add_camera_info(camera_info(fx=40.0), 0.0)
    frame = st.prepare(image(), RAW, 0.5)
    assert frame.intrinsics is None and frame.meta.camera_info is None
    st.add_camera_info(camera_info(width=100, height=100), 1.0)  # another aspect ratio
    assert st.prepare(image(), RAW, 1.5).intrinsics is None


# ------------------------------------------------------------- holding for pairing


def test_hold_unpaired_waits_for_the_matching_camera_info():
    st = stream(hold_unpaired=True, focal_source="auto", camera_info_sync="exact")
    st.add_camera_info(camera_info(stamp_ns=T0, fx=40.0), 0.0)
    msg = image(stamp_ns=T0 + 33)
    assert st.prepare(msg, RAW, 0.05) is None  # held

    assert st.add_camera_info(camera_info(stamp_ns=T0 + 1, fx=41.0), 0.06) == []  # not its own
    info = camera_info(stamp_ns=T0 + 33, fx=44.0)
    frames = st.add_camera_info(info, 0.07)
    assert len(frames) == 1
    frame = frames[0]
    assert focal_of(frame) == 44.0 and frame.meta.camera_info is info
    assert frame.meta.header is msg.header and frame.meta.stamp_ns == T0 + 33
    assert frame.meta.received == 0.05 and frame.meta.seq == 0  # its own context
    np.testing.assert_array_equal(frame.image, RGB)
    assert st.dropped == 0
    assert st.add_camera_info(camera_info(stamp_ns=T0 + 34), 0.08) == []  # nothing held now
    # An image whose CameraInfo is already there is not held.
    assert focal_of(st.prepare(image(stamp_ns=T0 + 34), RAW, 0.09)) == 40.0


def test_hold_unpaired_keeps_only_the_newest_image():
    st = stream(hold_unpaired=True, focal_source="camera_info", camera_info_sync="exact")
    st.add_camera_info(camera_info(stamp_ns=T0), 0.0)
    assert st.prepare(image(stamp_ns=T0 + 1), RAW, 0.1) is None
    assert st.prepare(image(stamp_ns=T0 + 2), RAW, 0.2) is None
    assert st.dropped == 1
    assert st.add_camera_info(camera_info(stamp_ns=T0 + 1), 0.3) == []  # that one was dropped
    frames = st.add_camera_info(camera_info(stamp_ns=T0 + 2, fx=42.0), 0.4)
    assert [f.meta.stamp_ns for f in frames] == [T0 + 2] and focal_of(frames[0]) == 42.0
    assert st.dropped == 1


def test_hold_unpaired_applies_only_while_camera_info_flows_and_pairs_by_stamp():
    # No CameraInfo yet: auto estimates, camera_info skips; nothing is held.
    assert stream(hold_unpaired=True, camera_info_sync="exact").prepare(
        image(), RAW, 0.0).intrinsics is None
    st = stream(hold_unpaired=True, focal_source="camera_info", camera_info_sync="exact")
    assert skipped(st, image(), 0.0).reason == "no_camera_info"
    # Stale CameraInfo in auto mode: the image is not held but estimated.
    st = stream(hold_unpaired=True, camera_info_sync="exact", camera_info_timeout=1.0)
    st.add_camera_info(camera_info(stamp_ns=_at(0.0)), 0.0)
    assert st.prepare(image(stamp_ns=_at(2.0)), RAW, 2.0).intrinsics is None
    # latest mode never holds.
    st = stream(hold_unpaired=True, camera_info_sync="latest")
    st.add_camera_info(camera_info(), 1.0)
    assert st.prepare(image(), RAW, 0.5).intrinsics is None
    # fov_head and fixed never wait for a CameraInfo.
    for settings in ({"focal_source": "fov_head"},
                     {"focal_source": "fixed", "fixed_focal_px": 50.0}):
        st = stream(hold_unpaired=True, camera_info_sync="exact", **settings)
        st.add_camera_info(camera_info(stamp_ns=T0), 0.0)
        assert st.prepare(image(stamp_ns=T0 + 1), RAW, 0.1) is not None


def test_held_frame_that_does_not_fit_its_camera_info_is_reported_as_skipped():
    st = stream(hold_unpaired=True, focal_source="camera_info", camera_info_sync="exact")
    st.add_camera_info(camera_info(stamp_ns=T0), 0.0)
    assert st.prepare(image(stamp_ns=T0 + 1), RAW, 0.1) is None
    with pytest.raises(FrameSkipped) as info:
        st.add_camera_info(camera_info(stamp_ns=T0 + 1, width=64, height=64), 0.2)
    assert info.value.reason == "camera_info_mismatch"
    # The CameraInfo itself was recorded: an image of its size pairs with it.
    square = image(stamp_ns=T0 + 1, rgb=smooth_rgb(16, 16))
    assert st.prepare(square, RAW, 0.3).intrinsics.width == 16


# ---------------------------------------------------------------- the focal filter


def test_focal_filter_smooths_f_over_w_by_hand():
    st = stream(focal_source="fov_head", focal_ema_alpha=0.25)
    frame = st.prepare(image(), RAW, 0.0)
    w, h = 100, 80
    # ratio 0.8; then 0.25 * 0.4 + 0.75 * 0.8 = 0.7; then 0.25 * 1.0 + 0.75 * 0.7 = 0.775
    expected = [80.0, 70.0, 77.5]
    for f_px, want in zip([80.0, 40.0, 100.0], expected):
        k = frame.focal_filter(f_px, w, h)
        assert k.fx == pytest.approx(want) and k.fy == pytest.approx(want)
        assert (k.cx, k.cy, k.width, k.height) == (50.0, 40.0, w, h)
    state = st.focal_state(w)
    assert state["source"] == "fov_head" and state["estimates"] == 3
    assert state["ema_px"] == pytest.approx(77.5)
    assert st.focal_state(2 * w)["ema_px"] == pytest.approx(155.0)  # f / W, per width

    # Unusable estimates change nothing.
    assert frame.focal_filter(math.nan, w, h).fx == pytest.approx(77.5)
    assert frame.focal_filter(-3.0, w, h).fx == pytest.approx(77.5)
    assert st.focal_state(w)["estimates"] == 3

    # A new image size restarts the average.
    k = frame.focal_filter(90.0, 200, 160)
    assert k.fx == pytest.approx(90.0) and (k.width, k.height) == (200, 160)
    assert st.focal_state(200) == {"source": "fov_head", "ema_px": pytest.approx(90.0),
                                   "estimates": 1}
    assert frame.focal_filter(math.nan, w, h) is None  # nothing averaged for that size
    k = frame.focal_filter(110.0, 200, 160)
    assert k.fx == pytest.approx(200 * (0.25 * 0.55 + 0.75 * 0.45))


def test_configure_restarts_the_ema_only_for_a_new_focal_policy():
    st = stream(focal_source="auto", focal_ema_alpha=0.5)
    frame = st.prepare(image(), RAW, 0.0)
    frame.focal_filter(40.0, W, H)
    frame.focal_filter(60.0, W, H)
    assert st.focal_state(W) == {"source": "fov_head", "ema_px": 50.0, "estimates": 2}

    # Pairing settings do not touch the average.
    st.configure(FocalSettings(focal_source="auto", focal_ema_alpha=0.5,
                               camera_info_sync="exact", sync_slop=0.5))
    assert st.settings.camera_info_sync == "exact"
    assert st.focal_state(W)["estimates"] == 2

    st.configure(FocalSettings(focal_source="auto", focal_ema_alpha=0.2))
    assert st.settings.focal_ema_alpha == 0.2
    assert st.focal_state(W) == {"source": None, "ema_px": None, "estimates": 0}
    frame = st.prepare(image(), RAW, 0.0)
    assert frame.focal_filter(40.0, W, H).fx == 40.0
    assert frame.focal_filter(60.0, W, H).fx == pytest.approx(0.2 * 60.0 + 0.8 * 40.0)

    st.configure(FocalSettings(focal_source="fixed", fixed_focal_px=77.0))
    assert focal_of(st.prepare(image(), RAW, 0.0)) == 77.0
    assert st.focal_state(W)["estimates"] == 0


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"focal_source": "guess"}, "focal_source"),
        ({"focal_source": "fixed"}, "fixed_focal_px"),
        ({"focal_source": "fixed", "fixed_focal_px": -1.0}, "fixed_focal_px"),
        ({"focal_source": "fixed", "fixed_focal_px": math.inf}, "fixed_focal_px"),
        ({"focal_ema_alpha": 0.0}, "focal_ema_alpha"),
        ({"focal_ema_alpha": 1.5}, "focal_ema_alpha"),
        ({"focal_ema_alpha": math.nan}, "focal_ema_alpha"),
        ({"camera_info_timeout": 0.0}, "camera_info_timeout"),
        ({"camera_info_timeout": math.nan}, "camera_info_timeout"),
        ({"camera_info_sync": "nearest"}, "camera_info_sync"),
        ({"sync_slop": -0.01}, "sync_slop"),
        ({"sync_slop": math.nan}, "sync_slop"),
        ({"sync_slop": math.inf}, "sync_slop"),
    ],
)
def test_focal_settings_reject_invalid_values(kwargs, name):
    with pytest.raises(ValueError, match=name):
        FocalSettings(**kwargs)


def test_focal_settings_name_every_problem_and_accept_valid_values():
    with pytest.raises(ValueError) as info:
        FocalSettings(focal_ema_alpha=2.0, camera_info_sync="x", sync_slop=-1.0)
    text = str(info.value)
    assert all(n in text for n in ("focal_ema_alpha", "camera_info_sync", "sync_slop"))
    FocalSettings(focal_ema_alpha=1.0, camera_info_timeout=math.inf, sync_slop=0.0)
    FocalSettings(focal_source="auto", fixed_focal_px=0.0)  # only "fixed" needs a focal
    for sync in CAMERA_INFO_SYNC:
        FocalSettings(camera_info_sync=sync)


# --------------------------------------------------------------------- threads


@pytest.mark.parametrize("sync", ["latest", "exact"])
def test_concurrent_use_does_not_raise(sync):
    st = stream(hold_unpaired=True, history=8, focal_source="auto", camera_info_sync=sync,
                camera_info_timeout=100.0)
    n = 150
    ms = 1_000_000
    images = [image(stamp_ns=T0 + i * ms) for i in range(2 * n)]
    infos = [camera_info(stamp_ns=T0 + i * ms, fx=40.0 + i % 3) for i in range(2 * n)]
    errors: list[BaseException] = []
    frames: list[Frame] = []
    lock = threading.Lock()
    start = threading.Barrier(4)

    def guarded(fn):
        def run():
            start.wait()
            try:
                fn()
            except BaseException as exc:  # reported by the assertion below
                errors.append(exc)
        return threading.Thread(target=run)

    def feed_images(offset):
        for i in range(offset, 2 * n, 2):
            frame = st.prepare(images[i], RAW, i * 1e-3)
            if frame is not None:
                with lock:
                    frames.append(frame)

    def feed_infos():
        for i in range(0, 2 * n, 2):
            got = st.add_camera_info(infos[i], i * 1e-3)
            with lock:
                frames.extend(got)

    def filter_and_query():
        probe = Frame(image=RGB, focal_filter=None)
        for i in range(n):
            with lock:
                probe = frames[-1] if frames else probe
            if probe.focal_filter is not None:
                probe.focal_filter(30.0 + i % 5, W, H)
            st.focal_state(W)
            st.pop_messages()

    threads = [guarded(lambda: feed_images(0)), guarded(lambda: feed_images(1)),
               guarded(feed_infos), guarded(filter_and_query)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    for frame in frames:
        frame.validate()
        assert frame.intrinsics is None or frame.intrinsics.fx in (40.0, 41.0, 42.0)
    # Every image became a frame, was replaced while held, or is the one still held.
    accounted = len(frames) + st.dropped
    assert 2 * n - 1 <= accounted <= 2 * n
    if sync == "latest":
        assert len(frames) == 2 * n and st.dropped == 0
