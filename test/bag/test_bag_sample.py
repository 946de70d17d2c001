"""depth_pro_ros.bag.sample: the one builder of input bags (demo, benchmarks, tests),
written and read back with rosbags."""

from __future__ import annotations

import numpy as np
import pytest
from bag_builders import read_bag

from depth_pro_ros.bag.sample import (
    BagMessage,
    camera_info_message,
    image_message,
    sample_frames,
    sample_image,
    stamp_at,
    write_bag,
    zoom_pan_views,
)
from depth_pro_ros.io.image_decode import compressed_to_array, image_to_array
from depth_pro_ros.io.messages import camera_info_values


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_write_bag_orders_by_log_time_and_fills_headers_and_defaults(tmp_path, storage):
    frame = sample_frames(1, 32, 24)[0]
    k = np.array([[30.0, 0, 16], [0, 31.0, 12], [0, 0, 1]])
    messages = [
        image_message("/cam/image", frame, stamp_at(1, 10.0), frame_id="cam_optical"),
        camera_info_message("/cam/info", k, 32, 24, stamp_at(0, 10.0), log_delay_ns=2),
        BagMessage("/chatter", "std_msgs/msg/String", 5, {"data": "hello"}),  # no header
        BagMessage("/cam/info", "sensor_msgs/msg/CameraInfo", 7, {}, raw=b"\x00\x01"),
    ]
    path = write_bag(tmp_path / "bag", messages, storage=storage)
    bag = read_bag(path)
    assert bag["__order__"] == [("/chatter", 5), ("/cam/info", 7),
                                ("/cam/info", stamp_at(0, 10.0) + 2),
                                ("/cam/image", stamp_at(1, 10.0))]
    assert bag["/chatter"][0][1].data == "hello"
    assert bag["/cam/info"][0][2] == b"\x00\x01"  # raw bytes written as they are

    info = bag["/cam/info"][1][1]
    assert (info.header.stamp.sec, info.header.stamp.nanosec) == divmod(stamp_at(0, 10.0), 10**9)
    assert camera_info_values(info) == ([30.0, 0, 16, 0, 31.0, 12, 0, 0, 1], 32, 24,
                                        "camera_optical_frame")
    assert info.roi.width == 0 and not info.roi.do_rectify  # defaults: the full image
    image = bag["/cam/image"][0][1]
    assert image.header.frame_id == "cam_optical"
    pixels, order = image_to_array(image)
    assert order == "bgr"
    np.testing.assert_array_equal(pixels, frame)


def test_write_bag_replaces_an_existing_bag(tmp_path):
    frames = sample_frames(3, 32, 24)
    path = tmp_path / "bag"
    write_bag(path, [image_message("/a", f, stamp_at(i, 5.0)) for i, f in enumerate(frames)])
    write_bag(path, [image_message("/b", frames[0], stamp_at(0, 5.0))])
    bag = read_bag(path)
    assert "/a" not in bag and len(bag["/b"]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag"]  # no temporary left


def test_jpeg_frames_decode_close_to_their_pixels(tmp_path):
    frame = sample_frames(1)[0]
    message = image_message("/cam/image/compressed", frame, stamp_at(0, 1.0), jpeg=True)
    assert message.msgtype == "sensor_msgs/msg/CompressedImage"
    assert message.fields["format"] == "jpeg"
    bag = read_bag(write_bag(tmp_path / "bag", [message]))
    decoded, order = compressed_to_array(bag["/cam/image/compressed"][0][1])
    assert order == "bgr" and decoded.shape == frame.shape
    # Quality 90 on a smooth synthetic scene: a few grey levels on average.
    assert np.abs(decoded.astype(float) - frame).mean() < 3.0


def test_sample_frames_are_distinct_views_of_the_picture():
    frames = sample_frames(4)
    assert all(f.shape == (480, 640, 3) and f.dtype == np.uint8 for f in frames)
    assert all(np.abs(a.astype(int) - b).mean() > 1.0 for a, b in zip(frames, frames[1:]))
    small = sample_frames(4, 64, 48)
    assert all(f.shape == (48, 64, 3) for f in small)
    assert len(sample_frames(1)) == 1
    # The views follow the picture: the first zooms 1.1x into it, K scaled alike.
    (view, k), *_ = zoom_pan_views(sample_image(), 2)
    assert k[0, 0] == pytest.approx(525.0 * 1.1) and k[0, 0] == k[1, 1]
    np.testing.assert_array_equal(view, frames[0])
