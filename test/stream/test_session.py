"""depth_pro_ros.stream.session and the stream tables: one camera's per-frame choices
(prompt or anchoring step, refused results), the output / input tables and the topic
table of docs/node.md that they drive."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from message_factories import rclpy_message

from depth_pro_ros.engine import DepthResult, Intrinsics
from depth_pro_ros.engine.anchor import AnchorInput, AnchorSettings
from depth_pro_ros.stream import FocalSettings, FrameSkipped, OutputOptions, Transport
from depth_pro_ros.stream.anchor import AnchorOptions
from depth_pro_ros.stream.outputs import OUTPUT_TOPICS, topics_for
from depth_pro_ros.stream.session import CameraSession
from depth_pro_ros.stream.transport import INPUT_TRANSPORTS, transport_of

sensor_msgs = pytest.importorskip("sensor_msgs.msg")

NODE_DOC = Path(__file__).resolve().parents[2] / "docs" / "node.md"
H, W = 6, 8


def _image(stamp_s: int = 1) -> object:
    msg = rclpy_message(sensor_msgs.Image, {
        "height": H, "width": W, "encoding": "rgb8", "is_bigendian": 0, "step": 3 * W,
        "data": np.full(H * W * 3, 90, np.uint8)})
    msg.header.stamp.sec = stamp_s
    msg.header.frame_id = "cam"
    return msg


def _session(**kwargs) -> CameraSession:
    return CameraSession("front", Transport.RAW, FocalSettings(focal_source="fov_head"),
                         **kwargs)


def test_a_frame_carries_its_camera_and_fov_request():
    session = _session(estimate_fov=True)
    (frame,) = session.add_image(_image(), 1.0)
    assert frame.source == "front" and frame.estimate_fov
    assert (frame.meta.camera, frame.meta.seq, frame.meta.stamp_ns) == ("front", 0, 10**9)
    assert frame.anchor is None and frame.prompt is None


def test_an_anchored_camera_gives_its_frames_the_anchoring_step():
    session = _session(anchor=AnchorOptions(source="depth"))
    (frame,) = session.add_image(_image(), 1.0)
    assert isinstance(frame.anchor, AnchorInput) and frame.prompt is None


def test_a_prompt_model_skips_a_frame_without_a_paired_anchor():
    session = _session(anchor=AnchorOptions(source="depth",
                                            settings=AnchorSettings(min_points=3)),
                       needs_prompt=True)
    with pytest.raises(FrameSkipped) as info:
        session.add_image(_image(), 1.0)
    assert info.value.reason == "no_prompt" and "no anchor paired" in str(info.value)
    depth = rclpy_message(sensor_msgs.Image, {
        "height": 2, "width": 2, "encoding": "32FC1", "is_bigendian": 0, "step": 8,
        "data": np.array([1, 2, 3, 4], np.float32).view(np.uint8)})
    depth.header.stamp.sec = 1
    depth.header.frame_id = "cam"
    session.add_anchor(depth, 1.0)
    (frame,) = session.add_image(_image(), 1.0)
    assert frame.prompt.shape == (2, 2) and frame.anchor is None


def test_an_unanchored_camera_refuses_anchor_messages():
    with pytest.raises(ValueError, match="no anchor input"):
        _session().add_anchor(object(), 0.0)


def test_outputs_refuse_failed_and_unanchored_relative_results():
    session = _session()
    (frame,) = session.add_image(_image(), 1.0)
    with pytest.raises(FrameSkipped) as info:
        session.outputs(DepthResult(meta=frame.meta, error="boom"), OutputOptions())
    assert info.value.reason == "inference" and "boom" in str(info.value)
    relative = DepthResult(meta=frame.meta, relative=np.ones((H, W), np.float32))
    with pytest.raises(FrameSkipped) as info:
        session.outputs(relative, OutputOptions())
    assert info.value.reason == "unanchored" and "allow_relative" in str(info.value)
    (out,) = session.outputs(relative, OutputOptions(relative=True))
    assert out.topic == "depth/relative"
    metric = DepthResult(meta=frame.meta, depth=np.ones((H, W), np.float32),
                         intrinsics=Intrinsics.from_focal(10.0, W, H))
    assert [m.topic for m in session.outputs(metric, OutputOptions(colorized=True))] == [
        "depth", "depth/camera_info", "depth/colorized"]


def test_topics_follow_the_model_kind_and_the_options():
    assert [t.name for t in topics_for("metric")] == [
        "depth", "depth/camera_info", "points", "depth/colorized"]
    assert "depth/relative" in [t.name for t in topics_for("relative")]
    assert [t.name for t in topics_for("relative", OutputOptions(points=True))] == [
        "depth", "depth/camera_info", "points"]


def test_transports_are_found_by_name_and_message_type():
    for msgtype, row in INPUT_TRANSPORTS.items():
        assert row.msgtype == msgtype and transport_of(row.transport.value) is row
    assert transport_of("compressed").topic == "image/compressed"
    assert transport_of(Transport.RAW).topic == "image"


def _doc_topics() -> dict[str, str]:
    """docs/node.md's topic table: topic (with " (in)" for inputs) -> message type."""
    text = NODE_DOC.read_text()
    table = text[text.index("| topic | type | content |"):].split("\n\n")[0]
    rows = {}
    for line in table.splitlines():
        match = re.match(r"\| `([^`]+)`( \(in\))? \| `([a-z_]+)/([A-Za-z0-9]+)` \|", line)
        if match:
            rows[match[1] + (match[2] or "")] = f"{match[3]}/msg/{match[4]}"
    return rows


def test_the_docs_topic_table_lists_the_output_table():
    outputs = {name: msgtype for name, msgtype in _doc_topics().items()
               if not name.endswith(" (in)") and not name.startswith("/")}
    assert outputs == {row.name: row.msgtype for row in OUTPUT_TOPICS.values()}


def test_the_docs_topic_table_lists_the_input_transports():
    inputs = _doc_topics()
    for row in INPUT_TRANSPORTS.values():
        assert inputs.get(f"{row.topic} (in)") == row.msgtype
