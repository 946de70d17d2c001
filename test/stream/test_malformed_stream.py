"""Every malformed case of test/harness/malformed.py through CameraStream, in process.

The node's fuzz test sends the same cases over DDS; here they go straight into the stream
layer (as the node's callbacks hand them over, rclpy messages after a serialization round
trip), which must refuse each with FrameSkipped or, for a CameraInfo, ValueError.
"""

from __future__ import annotations

import pytest
from harness.malformed import TRANSPORTS, MalformedMessages, build
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from depth_pro_ros.stream import CameraStream, FocalSettings, FrameSkipped, Transport

CLASSES = {"image": Image, "compressed": CompressedImage, "camera_info": CameraInfo}


def _feed(stream: CameraStream, case, now: float) -> list[str]:
    """What the stream made of each message of ``case``."""
    out = []
    for message in case.messages:
        cls = CLASSES[message.topic]
        msg = deserialize_message(serialize_message(build(message, CLASSES)), cls)
        try:
            if message.topic == "camera_info":
                stream.add_camera_info(msg, now)
                out.append("info")
            else:
                frame = stream.prepare(msg, Transport.COMPRESSED if message.topic == "compressed"
                                       else Transport.RAW, now)
                out.append("frame" if frame is not None else "held")
        except FrameSkipped as exc:
            out.append(exc.reason)
        except ValueError:
            assert message.topic == "camera_info", case.kind
            out.append("info_refused")
    return out


def test_the_generator_is_reproducible_and_rounds_hold_every_kind():
    a, b = MalformedMessages(seed=3), MalformedMessages(seed=3)
    for transport in TRANSPORTS:
        kinds = a.kinds(transport)
        first = [a.malformed(transport) for _ in kinds]
        assert sorted(c.kind for c in first) == kinds
        # repr: NaN fields compare unequal to themselves
        assert repr(first) == repr([b.malformed(transport) for _ in kinds])


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_every_malformed_case_is_refused_or_served_and_valid_frames_follow(transport):
    gen = MalformedMessages(seed=11, max_input_pixels=1_000_000)
    stream = CameraStream(FocalSettings(), hold_unpaired=True, max_input_pixels=1_000_000)
    results = {}
    for i in range(2 * len(gen.kinds(transport))):
        case = gen.malformed(transport)
        results[case.kind] = _feed(stream, case, float(i))
        assert _feed(stream, gen.valid(transport), i + 0.5) == ["info", "frame"], case.kind
    assert results["info_tiny_focal_then_half_size_image"] == ["info", "camera_info_mismatch"]
    assert results["info_huge_focal_then_double_size_image"] == ["info", "camera_info_mismatch"]
    assert results["info_k_nan"] == ["info_refused"]
    assert results["over_max_input_pixels"] == ["too_large"]
    if transport == "compressed":
        assert all(results[k] == ["too_large"] for k in results if k.startswith("bomb_"))
