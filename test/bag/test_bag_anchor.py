"""``depth-pro-ros bag --anchor-topic``: depth locked to a recorded metric sensor.

Two cameras with a fixed focal: ``/cam`` anchored by a sparse registered depth image,
``/cam2`` by a point cloud in its own frame; both anchors are 1.37x the network's depth
(the reference pipeline) at 4 % of the pixels with gross outliers, stamped like their
image and logged 20 ms after it (as a LiDAR projection comes after its frame). Every
output frame must be 1.37x the reference, the summary must say so, and the input must be
untouched.
"""

from __future__ import annotations

import numpy as np
import pytest
from bag_builders import (
    IMAGE,
    ROS2,
    Msg,
    image_fields,
    picture,
    read_bag,
    run_cli,
    snapshot,
    write_bag,
)
from message_factories import sparse_anchor
from model_factories import ReferenceRuns, tiny_model

from depth_pro_ros.bag import BagInputError, BagOptions, process_bag
from depth_pro_ros.io.messages import depth_image_fields, depth_image_to_array
from depth_pro_ros.io.pointcloud_msg import point_fields, pointcloud2_fields
from depth_pro_ros.stream import FocalSettings

S = 1_000_000_000
T0 = 5_000 * S
FX = 50.0
W, H = 64, 48
SCALE = 1.37
FRAMES = 2
POINTCLOUD2 = "sensor_msgs/msg/PointCloud2"
TOPICS = ["/cam/image_raw", "/cam2/image_raw"]
ANCHORS = ["/cam/anchor/depth", "/cam2/anchor/points"]
# The fit recovers the scale to float precision from exact inliers; the bag tool's depth
# and the reference pipeline (another code path) agree to 1e-5, so 1e-4 overall.
RTOL = 1e-4


MODEL = tiny_model()
REFERENCE = ReferenceRuns()


def _reference(rgb: np.ndarray) -> np.ndarray:
    return REFERENCE.depth(MODEL, rgb, FX)


def _cloud_fields(anchor: np.ndarray) -> dict:
    """The anchor's pixels back-projected with the fixed intrinsics (centre principal
    point), as PointCloud2 fields."""
    v, u = np.nonzero(np.isfinite(anchor))
    z = anchor[v, u]
    record = np.zeros(len(z), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    record["x"], record["y"], record["z"] = (u - W / 2) * z / FX, (v - H / 2) * z / FX, z
    fields = pointcloud2_fields(record, 1, len(z))
    fields["fields"] = point_fields(fields["fields"], ROS2.types["sensor_msgs/msg/PointField"])
    return fields


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    msgs = []
    for i in range(FRAMES):
        t = T0 + i * S // 4
        for c, (topic, anchor_topic) in enumerate(zip(TOPICS, ANCHORS)):
            rgb = picture(10 * c + i)
            frame = topic.split("/")[1]
            msgs.append(Msg(topic, IMAGE, t + c * 1_000_000, image_fields(rgb), stamp=t,
                            frame_id=frame))
            anchor = sparse_anchor(_reference(rgb), SCALE, seed=10 * c + i)
            fields, msgtype = (depth_image_fields(anchor, "32FC1"), IMAGE) if c == 0 else (
                _cloud_fields(anchor), POINTCLOUD2)
            msgs.append(Msg(anchor_topic, msgtype, t + 20_000_000 + c * 1_000_000, fields,
                            stamp=t, frame_id=frame))
    return write_bag(tmp_path_factory.mktemp("anchor") / "in", "mcap", msgs)


def _options(bag, out, checkpoint, **kw) -> BagOptions:
    return BagOptions(input=bag, output=out, checkpoint=checkpoint, image_topics=TOPICS,
                      device="cpu", progress=False, copy_topics="none",
                      focal=FocalSettings(focal_source="fixed", fixed_focal_px=FX), **kw)


def test_every_frame_is_rescaled_to_its_anchor(bag, tiny_checkpoint, tmp_path):
    before = snapshot(bag)
    summary = process_bag(_options(bag, tmp_path / "out", tiny_checkpoint,
                                   anchor_topics=ANCHORS))
    out = read_bag(tmp_path / "out")
    for c, topic in enumerate(TOPICS):
        ns = topic.rsplit("/", 1)[0]
        depths = [depth_image_to_array(m) for _, m, _ in out[f"{ns}/depth"]]
        assert len(depths) == FRAMES
        for i, depth in enumerate(depths):
            np.testing.assert_allclose(depth, SCALE * _reference(picture(10 * c + i)),
                                       rtol=RTOL)
        infos = out[f"{ns}/depth/camera_info"]
        assert all(m.k[0] == FX for _, m, _ in infos)  # the intrinsics do not change
        stats = summary.cameras[c].anchor_stats()
        assert stats["topic"] == ANCHORS[c]
        assert (stats["anchored"], stats["fits_ok"], stats["fits_rejected"]) == (FRAMES,
                                                                                 FRAMES, 0)
        assert stats["scale_median"] == pytest.approx(SCALE, rel=RTOL)
        assert stats["residual_median"] < 1e-4  # the inliers are exact
    text = summary.format()
    assert "/cam anchors: /cam/anchor/depth: 2 frame(s) anchored, 0 not" in text
    assert "scale median 1.3700" in text
    assert snapshot(bag) == before


@pytest.mark.parametrize(("anchors", "message"), [
    (["/cam/anchor/depth"], "give --anchor-topic once per --image-topic"),
    (["/cam/anchor/depth", "/nowhere"], "anchor topic /nowhere is not in the bag"),
    (["/cam/anchor/depth", "/cam2/image_raw"], None),  # an Image: a (bad) depth anchor
])
def test_anchor_topic_errors(bag, tiny_checkpoint, tmp_path, anchors, message):
    if message is None:
        # A colour image where a depth image belongs: every anchor message is refused
        # (counted, reported), the frames go out unanchored.
        lines = []
        summary = process_bag(_options(bag, tmp_path / "out", tiny_checkpoint,
                                       anchor_topics=anchors), report=lines.append)
        stats = summary.cameras[1].anchor_stats()
        assert stats["unreadable"] == FRAMES and stats["unanchored"] == FRAMES
        assert any("unsupported depth encoding 'rgb8'" in line for line in lines)
        return
    with pytest.raises(BagInputError, match=message):
        process_bag(_options(bag, tmp_path / "out", tiny_checkpoint, anchor_topics=anchors))
    assert not (tmp_path / "out").exists()


def test_the_command_line(bag, tiny_checkpoint, tmp_path):
    base = ["bag", str(bag), "-o", str(tmp_path / "out"), "--checkpoint",
            str(tiny_checkpoint), "--device", "cpu", "--image-topic", TOPICS[0],
            "--focal-source", "fixed", "--focal-px", str(FX), "--no-progress"]
    code, _, err = run_cli(*base, "--anchor-topic", ANCHORS[0], "--anchor-ema-alpha", "0")
    assert code == 2 and "ema_alpha must be in (0, 1]" in err
    code, stdout, err = run_cli(*base, "--anchor-topic", ANCHORS[0], "--anchor-fit", "scale",
                             "--anchor-timeout", "2", "--anchor-sync", "exact")
    assert code == 0, err
    assert "/cam anchors: /cam/anchor/depth: 2 frame(s) anchored" in stdout
