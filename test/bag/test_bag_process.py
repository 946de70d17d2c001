"""``depth-pro-ros bag`` on small bags in every input format, checked message by message.

The same two-camera content is written as a ROS 1 .bag, a ROS 2 sqlite3 and a ROS 2 mcap
bag: ``/cam0/image_raw`` (rgb8) with ``/cam0/camera_info`` for its first frame
only, ``/cam1/image_raw/compressed`` (PNG) without CameraInfo, and ``/imu``. Each is
processed once (module fixtures; the tiny network takes about a second per frame) and
the outputs are compared with the engine run directly on the same frames.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from bag_builders import (
    CAMERA_INFO,
    COMPRESSED,
    FORMATS,
    IMAGE,
    IMU,
    Msg,
    camera_info_fields,
    compressed_fields,
    image_fields,
    imu_fields,
    picture,
    read_bag,
    snapshot,
    write_bag,
)
from harness.engine import process_one

from depth_pro_ros.bag import BagOptions, process_bag
from depth_pro_ros.engine import EngineConfig, create_engine
from depth_pro_ros.io.messages import depth_image_to_array, stamp_to_nanoseconds
from depth_pro_ros.io.pointcloud_msg import pointcloud2_to_array
from depth_pro_ros.stream import CameraStream, FocalSettings, OutputOptions

S = 1_000_000_000
T0 = 1_000 * S
CAM0, CAM1 = "/cam0/image_raw", "/cam1/image_raw/compressed"
FRAMES = 2
# CameraInfo of a 2x larger calibration (128x96): passed through scaled to 64x48.
K_BIG = (100.0, 101.0, 64.0, 48.0, 128, 96)
ALPHA = 0.1  # default --focal-ema-alpha

# Per input format: extra options, so that every option is exercised somewhere.
RUN_OPTIONS = {
    "ros1": {},
    "sqlite3": {"storage": "sqlite3"},
    "mcap": {"outputs": OutputOptions(points=True, colorized=True), "points_rgb": True},
}


def _messages() -> list[Msg]:
    msgs = []
    for i in range(FRAMES):
        t = T0 + i * S // 4
        stamp = t - 7_000_000  # captured 7 ms before logging
        msgs.append(Msg(CAM0, IMAGE, t, image_fields(picture(i)), stamp=stamp,
                        frame_id="cam0_optical"))
        if i == 0:  # CameraInfo for the first frame only, logged just after it
            msgs.append(Msg("/cam0/camera_info", CAMERA_INFO, t + 1_000_000,
                            camera_info_fields(*K_BIG), stamp=stamp, frame_id="cam0_optical"))
        msgs.append(Msg(CAM1, COMPRESSED, t + 3_000_000, compressed_fields(picture(10 + i)),
                        stamp=t, frame_id="cam1_optical"))
        msgs.append(Msg("/imu", IMU, t + 2_000_000, imu_fields(i), frame_id="imu"))
    return msgs


@pytest.fixture(scope="module")
def runs(tiny_checkpoint, tmp_path_factory):
    """fmt -> (input, output, summary, input snapshot before); processed on first use."""
    cache = {}

    def get(fmt: str):
        if fmt not in cache:
            root = tmp_path_factory.mktemp(f"bag_{fmt}")
            src = write_bag(root / "input", fmt, _messages())
            before = snapshot(src)
            out = root / "output"
            summary = process_bag(BagOptions(
                input=src, output=out, checkpoint=tiny_checkpoint, image_topics=[CAM0, CAM1],
                device="cpu", progress=False, **RUN_OPTIONS[fmt]))
            cache[fmt] = (src, out, summary, before)
        return cache[fmt]

    return get


@pytest.fixture(scope="module")
def expected(runs, tiny_checkpoint):
    """The engine and CameraStream run directly on the mcap input's frames.

    topic -> list of DepthResult in log order. The three inputs hold the same pixels,
    so these are the expected values for every format.
    """
    from rosbags.highlevel import AnyReader

    src = runs("mcap")[0]
    settings = FocalSettings(camera_info_sync="approximate", sync_slop=0.01,
                             camera_info_timeout=1.0)
    streams = {CAM0: CameraStream(settings, history=None), CAM1: CameraStream(settings)}
    out: dict[str, list] = {CAM0: [], CAM1: []}
    engine = create_engine(str(tiny_checkpoint), EngineConfig(device="cpu", policy="all"))
    try:
        with AnyReader([src]) as reader:
            for conn, t, raw in reader.messages():
                if conn.topic == "/cam0/camera_info":
                    streams[CAM0].add_camera_info(reader.deserialize(raw, conn.msgtype), t / S)
            for conn, t, raw in reader.messages():
                if conn.topic in streams:
                    msg = reader.deserialize(raw, conn.msgtype)
                    frame = streams[conn.topic].prepare(
                        msg, "compressed" if conn.topic == CAM1 else "raw", t * 1e-9)
                    out[conn.topic].append(process_one(engine, frame))
    finally:
        engine.close()
    assert all(r.ok for rs in out.values() for r in rs)
    return out


def _ema(estimates: list[float], width: int) -> list[float]:
    """The focal the EMA gives after each estimate (FocalEMA on f / W, by hand)."""
    values, ratio = [], None
    for f in estimates:
        ratio = f / width if ratio is None else ALPHA * f / width + (1 - ALPHA) * ratio
        values.append(ratio * width)
    return values


@pytest.mark.parametrize("fmt", FORMATS)
def test_one_depth_per_image_same_header_and_log_time(runs, fmt):
    src, out, summary, _ = runs(fmt)
    inp, res = read_bag(src), read_bag(out)
    for topic, ns in ((CAM0, "/cam0"), (CAM1, "/cam1")):
        images = inp[topic]
        for rel in ("depth", "depth/camera_info"):
            outs = res[f"{ns}/{rel}"]
            assert len(outs) == len(images) == FRAMES
            for (t_in, img, _), (t_out, msg, _) in zip(images, outs):
                assert t_out == t_in
                assert stamp_to_nanoseconds(msg.header.stamp) == \
                    stamp_to_nanoseconds(img.header.stamp)
                assert msg.header.frame_id == img.header.frame_id
                assert (msg.height, msg.width) == (48, 64)
    order = [t for _, t in res["__order__"]]
    assert order == sorted(order), "messages are not in log-time order"
    assert summary.frames_in == summary.frames_out == 2 * FRAMES
    assert not summary.skipped
    assert dict(summary.focal) == {"camera_info": 1, "fov_head": 3}


@pytest.mark.parametrize("fmt", FORMATS)
def test_depth_equals_the_engine_on_the_same_frames(runs, expected, fmt):
    res = read_bag(runs(fmt)[1])
    for topic, ns in ((CAM0, "/cam0"), (CAM1, "/cam1")):
        for (_, msg, _), want in zip(res[f"{ns}/depth"], expected[topic]):
            assert msg.encoding == "32FC1"
            depth = depth_image_to_array(msg)
            np.testing.assert_array_equal(depth, want.depth)
            assert np.ptp(depth) > 0  # the frames give distinct, non-constant depth


@pytest.mark.parametrize("fmt", FORMATS)
def test_camera_info_passed_through_or_synthesized(runs, expected, fmt):
    res = read_bag(runs(fmt)[1])
    infos0 = [m for _, m, _ in res["/cam0/depth/camera_info"]]
    infos1 = [m for _, m, _ in res["/cam1/depth/camera_info"]]
    fx, fy, cx, cy, w, h = K_BIG
    for info in infos0[:1]:  # passed through, scaled from 128x96 to 64x48
        np.testing.assert_allclose(info.k, [fx / 2, 0, cx / 2, 0, fy / 2, cy / 2, 0, 0, 1])
        np.testing.assert_allclose(info.d, [0.1, -0.05, 0, 0, 0])
        np.testing.assert_allclose(info.p[:3], [fx / 2, 0, cx / 2])
    # cam0 frame 1: no CameraInfo pairs (none with its stamp), so the FoV estimate.
    assert expected[CAM0][0].focal_source == "camera_info"
    est0 = expected[CAM0][1].focal_estimate_px
    assert expected[CAM0][1].focal_source == "fov_head"
    np.testing.assert_allclose(infos0[1].k, [est0, 0, 32, 0, est0, 24, 0, 0, 1], rtol=1e-9)
    np.testing.assert_allclose(infos0[1].d, np.zeros(5))
    # cam1: synthesized from the EMA of the per-frame estimates.
    estimates = [r.focal_estimate_px for r in expected[CAM1]]
    assert len(set(estimates)) == FRAMES  # the EMA is really averaging something
    for info, f in zip(infos1, _ema(estimates, 64)):
        np.testing.assert_allclose(info.k, [f, 0, 32, 0, f, 24, 0, 0, 1], rtol=1e-9)
        assert info.distortion_model == "plumb_bob"


def test_points_and_colorized_when_asked(runs, expected):
    res = read_bag(runs("mcap")[1])
    for topic, ns in ((CAM0, "/cam0"), (CAM1, "/cam1")):
        clouds, previews = res[f"{ns}/points"], res[f"{ns}/depth/colorized"]
        assert len(clouds) == len(previews) == FRAMES
        for (t, cloud, _), (t2, preview, _), want, (t3, depth, _) in zip(
                clouds, previews, expected[topic], res[f"{ns}/depth"]):
            assert t == t2 == t3 and cloud.header == depth.header == preview.header
            assert [f.name for f in cloud.fields] == ["x", "y", "z", "rgb"]
            xyzrgb = pointcloud2_to_array(cloud)
            assert xyzrgb.shape == (48, 64, 4)
            np.testing.assert_allclose(xyzrgb[..., 2], want.depth, rtol=1e-6)
            k = want.intrinsics
            u = np.arange(64)[None, :]
            np.testing.assert_allclose(xyzrgb[..., 0], (u - k.cx) * want.depth / k.fx,
                                       rtol=1e-5, atol=1e-6)
            assert preview.encoding == "bgr8" and (preview.height, preview.width) == (48, 64)
    for fmt in ("ros1", "sqlite3"):  # not asked there
        topics = read_bag(runs(fmt)[1])["__types__"]
        assert "/cam0/points" not in topics and "/cam0/depth/colorized" not in topics


@pytest.mark.parametrize("fmt", FORMATS)
def test_copied_topics_are_identical(runs, fmt):
    src, out, summary, _ = runs(fmt)
    inp, res = read_bag(src), read_bag(out)
    copied = ["/cam0/camera_info", CAM0, CAM1, "/imu"]
    assert summary.copied == sum(len(inp[t]) for t in copied)
    for topic in copied:
        assert res["__types__"][topic] == inp["__types__"][topic]
        assert [t for t, _, _ in res[topic]] == [t for t, _, _ in inp[topic]]
        if fmt != "ros1":  # ROS 2 -> ROS 2: the very same bytes
            assert [raw for _, _, raw in res[topic]] == [raw for _, _, raw in inp[topic]]
    if fmt == "ros1":  # converted to ROS 2 definitions, same values
        for (_, a, _), (_, b, _) in zip(inp["/cam0/camera_info"], res["/cam0/camera_info"]):
            np.testing.assert_array_equal(a.K, b.k)
            assert not hasattr(b.header, "seq")
        for (_, a, _), (_, b, _) in zip(inp[CAM0], res[CAM0]):
            np.testing.assert_array_equal(a.data, b.data)
            assert (a.encoding, a.step, a.header.stamp) == (b.encoding, b.step, b.header.stamp)
        for (_, a, _), (_, b, _) in zip(inp["/imu"], res["/imu"]):
            v, w = a.linear_acceleration, b.linear_acceleration
            assert (v.x, v.y, v.z) == (w.x, w.y, w.z) == (0.0, 0.0, 9.81)
            np.testing.assert_array_equal(a.orientation_covariance, b.orientation_covariance)


@pytest.mark.parametrize("fmt", FORMATS)
def test_input_unchanged_and_output_complete(runs, fmt):
    src, out, _, before = runs(fmt)
    assert snapshot(src) == before  # bytes and mtimes
    assert (out / "metadata.yaml").is_file()
    storage = RUN_OPTIONS[fmt].get("storage", "mcap")
    suffix = ".mcap" if storage == "mcap" else ".db3"
    assert [p.name for p in out.iterdir() if p.suffix == suffix] == [f"output{suffix}"]
    assert not [p for p in Path(out).parent.iterdir() if ".partial-" in p.name]
