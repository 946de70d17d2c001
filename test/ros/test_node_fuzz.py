"""depth_pro_node under fuzzing: every kind of malformed message, on both transports.

A short version of bench/fuzz_node.py over real DDS: one node per transport (tiny
checkpoint, CPU, default focal source ``auto``, a small ``max_input_pixels``) gets every
kind of `test/harness/malformed.py` case, then every kind of malformed anchor
(`test/harness/malformed_anchor.py`: PointCloud2 anchors for the raw-transport node,
started with ``anchor_source points``, depth images for the compressed one, ``depth``),
with valid frames in between that must each come back as depth. The raw node also gets
every kind of hostile parameter-service request (`test/harness/malformed_parameters.py`):
each must be answered, every change refused, and the values stay as they were. The
node's inputs are made reliable and deep so that every message reaches it.
"""

from __future__ import annotations

import dataclasses
import signal
import time

import pytest
import rclpy
from harness.malformed import MalformedMessages, build
from harness.malformed_anchor import ANCHOR_SOURCES, MalformedAnchors
from harness.malformed_parameters import MalformedParameters, call, reply_problem
from harness.node import NAMESPACE, NodeProcess, set_ros_env
from harness.probe import Probe
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

# Cases per transport: one round of the generator's kinds, which holds every kind once.
VALID_EVERY = 25  # and after the last case
MAX_INPUT_PIXELS = 1_000_000
MAX_LOG_LINES = 150  # the node throttles errors by kind: a few dozen lines are expected
CLASSES = {"image": Image, "compressed": CompressedImage, "camera_info": CameraInfo}
ANCHOR_OF = {"raw": "points", "compressed": "depth"}  # each node's anchor_source
NODE = f"{NAMESPACE}/depth_pro_node"


@pytest.fixture(scope="module", autouse=True)
def ros():
    set_ros_env()
    rclpy.init()
    yield
    rclpy.try_shutdown()


def _reliable(topic: str) -> list[str]:
    key = f"qos_overrides.{NAMESPACE}/{topic}.subscription"
    return [f"{key}.reliability:=reliable", f"{key}.depth:=100"]


def _publish(probe: Probe, messages, head_start: float = 0.05) -> None:
    """Publish in order; a CameraInfo gets a head start over the image after it (topics
    are not ordered with each other)."""
    pubs = {"image": probe.image_pub, "compressed": probe.compressed_pub,
            "camera_info": probe.info_pub}
    for message in messages:
        if message.topic in pubs:
            pubs[message.topic].publish(build(message, CLASSES))
        else:  # an anchor: the probe makes its publisher
            probe.publish(message)
        end = time.monotonic() + (head_start if message.topic == "camera_info" else 0.005)
        while time.monotonic() < end:
            rclpy.spin_once(probe.node, timeout_sec=0.005)


def _served(probe: Probe, node: NodeProcess, case) -> None:
    """The valid ``case`` comes back as depth, and the node is alive."""
    sec, nanosec = case.stamp
    probe.spin_until(
        lambda: node.proc.poll() is not None or any(
            m.header.stamp.sec == sec and m.header.stamp.nanosec == nanosec
            for m in probe.received["depth"]),
        60.0, f"the depth of the valid frame stamped {sec}")
    assert node.proc.poll() is None, node.log()


def _parameter_round(probe: Probe, node: NodeProcess) -> None:
    """One request of each kind: answered, refused, the node's values unchanged."""
    gen = MalformedParameters(seed=3)
    names = [spec.name for spec in gen.specs]
    before = probe.get_parameters(NODE, *names)
    clients: dict = {}
    problems = []
    for _ in gen.kinds():
        case = gen.malformed()
        problem = reply_problem(case, call(probe.node, NODE, case, 30.0, probe.spin, clients))
        if problem:
            problems.append(problem)
        assert node.proc.poll() is None, f"node died after {case.kind}:\n{node.log()}"
    assert not problems, problems
    after = probe.get_parameters(NODE, *names)
    assert after == before


@pytest.mark.parametrize("transport", ["raw", "compressed"])
def test_node_survives_every_kind_of_malformed_message(tiny_checkpoint, tmp_path, transport):
    topic = "image/compressed" if transport == "compressed" else "image"
    anchor = ANCHOR_OF[transport]
    node = NodeProcess(tmp_path / "node.log", f"checkpoint:={tiny_checkpoint}",
                       "device:=cpu", f"input_transport:={transport}",
                       f"max_input_pixels:={MAX_INPUT_PIXELS}", "publish_points:=false",
                       f"anchor_source:={anchor}", *_reliable(topic),
                       *_reliable("camera_info"),
                       *_reliable(ANCHOR_SOURCES[anchor].replace("_", "/")))
    probe = Probe(f"fuzz_{transport}", outputs=("depth",))
    gen = MalformedMessages(seed=7, max_input_pixels=MAX_INPUT_PIXELS)
    try:
        probe.wait_connected(compressed=transport == "compressed")
        # A CameraInfo whose focal underflows when scaled to the image: the frame is
        # skipped as camera_info_mismatch (this once killed the node), then good frames
        # are served again.
        tiny = gen.camera_info_then_image(transport, 128, 96, 5e-324, "tiny_focal")
        probe.resend_until(lambda: _publish(probe, tiny.messages, 0.3),
                           lambda: "unusable at the image size" in node.log(),
                           60.0, "the camera_info_mismatch skip", period=2.0)
        first = gen.valid(transport)
        _publish(probe, first.messages, 0.3)
        _served(probe, node, first)
        # Every kind of malformed anchor (and of parameter request on the raw node) first:
        # the valid frames of the image round below show the node still serves.
        anchors = MalformedAnchors(anchor, seed=5, frame_id="fuzz_optical")
        for _ in anchors.kinds():
            case = anchors.malformed()
            _publish(probe, case.messages)
            assert node.proc.poll() is None, f"node died after {case.kind}:\n{node.log()}"
        if transport == "raw":
            _parameter_round(probe, node)
        # An anchor in another frame, then a valid frame with a 5,000-character frame id:
        # served unanchored, and the refusal naming both frames is cut (checked below).
        _publish(probe, anchors.case("other_frame").messages)
        long = gen.valid(transport)
        long = dataclasses.replace(long, messages=tuple(
            dataclasses.replace(m, frame_id="f" * 5000) for m in long.messages))
        _publish(probe, long.messages, 0.3)
        _served(probe, node, long)
        kinds: set[str] = set()
        valid = 1
        cases = len(gen.kinds(transport))
        for i in range(cases):
            case = gen.malformed(transport)
            kinds.add(case.kind)
            _publish(probe, case.messages)
            assert node.proc.poll() is None, f"node died after {case.kind}:\n{node.log()}"
            if (i + 1) % VALID_EVERY == 0 or i + 1 == cases:
                good = gen.valid(transport)
                _publish(probe, good.messages, 0.3)
                _served(probe, node, good)
                valid += 1
        assert kinds == set(gen.kinds(transport))
        assert valid == 2 + (cases - 1) // VALID_EVERY
        # The skip of the tiny-focal frame is counted in /diagnostics too.
        diag = probe.latest_diagnostics()
        assert int(diag["skipped_frames"]) >= 1 and int(diag["camera_info_errors"]) >= 1
        assert int(diag["frames_out"]) >= valid
    finally:
        probe.close()
        code = node.stop(signal.SIGINT)
        print(node.log())  # shown by pytest when the test failed
    log = node.log()
    lines = log.splitlines()
    assert code == 0 and "Traceback" not in log
    assert len(lines) < MAX_LOG_LINES, f"{len(lines)} log lines"
    assert "in frame 'lidar_link' but the image is in 'fffff" in log
    assert max(map(len, lines)) < 1200
    assert any("for 128x96 is unusable at the image size 64x48" in line for line in lines), log
