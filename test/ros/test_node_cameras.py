"""depth_pro_node serving three cameras with one model, over real DDS.

One node (tiny random-weight checkpoint, CPU) with ``cameras: [front, left, rear]``:
``front`` and ``left`` send rgb8 images of one size (so they can share a batch),
``front`` with a CameraInfo; ``rear`` sends bgr8 images of another size, without one.
Every output is compared with the reference pipeline (``model.infer``) run in this process
on the same weights, with the camera's own focal. The tests run in file order.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from harness.node import NAMESPACE
from harness.probe import WAIT, CameraProbe, running_node
from harness.ros_messages import camera_info_message, image_message
from message_factories import smooth_rgb
from model_factories import ReferenceRuns, tiny_model

from depth_pro_ros.io.messages import depth_image_to_array

NODE = f"{NAMESPACE}/depth_pro_node"
CAMERAS = ("front", "left", "rear")
SIZE = {"front": (64, 48), "left": (64, 48), "rear": (80, 60)}  # (width, height)
ENCODING = {"front": "rgb8", "left": "rgb8", "rear": "bgr8"}
FRONT_FX = 55.0
EMA_ALPHA = 0.3
# Batched and single forward passes sum in a different order: the depth of a frame that
# ran in a batch is compared with the single-frame reference to this relative tolerance
# (test/engine/test_sources.py measures the difference).
BATCH_RTOL = 1e-4
_next_sec = iter(range(100, 100_000))


REFERENCE = ReferenceRuns()


@pytest.fixture(scope="module")
def node(tiny_checkpoint, tmp_path_factory):
    with running_node(tmp_path_factory.mktemp("node") / "node.log",
                      f"checkpoint:={tiny_checkpoint}", "device:=cpu",
                      "cameras:=[front, left, rear]", f"focal_ema_alpha:={EMA_ALPHA}",
                      "publish_points:=false", "publish_colorized:=false",
                      # Every slow frame must reach the node for the starvation test.
                      f"qos_overrides.{NAMESPACE}/rear/image.subscription.reliability:=reliable",
                      ) as (proc, _):
        probe = CameraProbe(CAMERAS)
        try:
            probe.wait_connected()
            for camera in CAMERAS:
                # An odd size keeps the warm-up out of the focal EMA of the tests (it
                # restarts when the size changes).
                probe.warm_up(camera, image_message(smooth_rgb(24, 32), next(_next_sec),
                                                    frame_id=camera))
            yield proc, probe
        finally:
            probe.close()


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def _picture(seed: int, camera: str) -> np.ndarray:
    rng = np.random.default_rng(seed)
    width, height = SIZE[camera]
    smooth = smooth_rgb(height, width, base=tuple(int(v) for v in rng.integers(20, 200, 3)))
    return (smooth + rng.integers(0, 56, (height, width, 3))).clip(0, 255).astype(np.uint8)


def _image(camera: str, rgb: np.ndarray):
    return image_message(rgb, next(_next_sec), encoding=ENCODING[camera], frame_id=camera)


def _front_info(image):
    info = camera_info_message(FRONT_FX, *SIZE["front"], sec=0, frame_id="front")
    info.header.stamp = image.header.stamp
    return info


def _send(probe: CameraProbe, camera: str, image, info=None) -> None:
    if info is not None:
        probe.info_pubs[camera].publish(info)
    probe.image_pubs[camera].publish(image)


def _depth(out) -> np.ndarray:
    return depth_image_to_array(out["depth"])


def _check_front(model, rgb, out, image) -> None:
    """front's outputs: its own header, its CameraInfo passed through, depth at its fx."""
    assert out["depth"].header == image.header
    info = out["depth/camera_info"]
    assert info.header == image.header and info.k[0] == FRONT_FX
    expected = REFERENCE.depth(model, rgb, FRONT_FX)
    np.testing.assert_allclose(_depth(out), expected, rtol=BATCH_RTOL)


def _check_estimated(model, rgb, out, image, focal: float) -> None:
    """A camera without CameraInfo: synthesized CameraInfo with ``focal``, depth at it."""
    assert out["depth"].header == image.header
    k = out["depth/camera_info"].k
    assert k[0] == pytest.approx(focal, rel=BATCH_RTOL)
    expected = REFERENCE.depth(model, rgb, k[0])
    np.testing.assert_allclose(_depth(out), expected, rtol=BATCH_RTOL)


def _raw_focal(model, rgb) -> float:
    return REFERENCE.focal(model, rgb)


# ------------------------------------------------------------------ outputs
def test_each_camera_matches_the_reference_with_its_own_focal(node, model):
    _, probe = node
    pictures = {camera: _picture(1, camera) for camera in CAMERAS}
    images = {camera: _image(camera, pictures[camera]) for camera in CAMERAS}
    # CameraInfo first (topics are not ordered with each other), then the images.
    probe.info_pubs["front"].publish(_front_info(images["front"]))
    pause = time.monotonic() + 0.3
    probe.spin_until(lambda: time.monotonic() > pause, what="a pause")
    for camera in ("rear", "front", "left"):
        _send(probe, camera, images[camera])
    outs = {camera: probe.output(camera, images[camera]) for camera in CAMERAS}

    _check_front(model, pictures["front"], outs["front"], images["front"])
    for camera in ("left", "rear"):  # first estimate at this size: the raw one
        _check_estimated(model, pictures[camera], outs[camera], images[camera],
                         _raw_focal(model, pictures[camera]))
        info = outs[camera]["depth/camera_info"]
        assert (info.width, info.height) == SIZE[camera]
        assert (info.k[2], info.k[5]) == (SIZE[camera][0] / 2, SIZE[camera][1] / 2)
    assert {out["depth"].header.frame_id for out in outs.values()} == set(CAMERAS)


def test_each_camera_has_its_own_focal_ema(node, model):
    """left changes size (its EMA restarts); rear's EMA goes on over its two frames."""
    _, probe = node
    first_rear = _picture(1, "rear")  # sent by the previous test
    left_small = _picture(5, "left")[:36, :48].copy()
    image = _image("left", left_small)
    _send(probe, "left", image)
    _check_estimated(model, left_small, probe.output("left", image), image,
                     _raw_focal(model, left_small))

    second_rear = _picture(6, "rear")
    image = _image("rear", second_rear)
    _send(probe, "rear", image)
    raws = [_raw_focal(model, rgb) for rgb in (first_rear, second_rear)]
    assert abs(raws[1] - raws[0]) > 1e-3 * raws[0], "the test needs distinct estimates"
    ema = (1 - EMA_ALPHA) * raws[0] + EMA_ALPHA * raws[1]
    _check_estimated(model, second_rear, probe.output("rear", image), image, ema)


def test_frames_of_equal_size_from_two_cameras_run_as_one_batch(node, model):
    """rear keeps the network busy while front and left arrive: they run together."""
    _, probe = node
    for attempt in range(10):
        pictures = {camera: _picture(100 + attempt, camera) for camera in CAMERAS}
        images = {camera: _image(camera, pictures[camera]) for camera in CAMERAS}
        probe.info_pubs["front"].publish(_front_info(images["front"]))
        pause = time.monotonic() + 0.3
        probe.spin_until(lambda pause=pause: time.monotonic() > pause, what="a pause")
        for camera in ("rear", "front", "left"):
            _send(probe, camera, images[camera])
        outs = {camera: probe.output(camera, images[camera]) for camera in CAMERAS}
        _check_front(model, pictures["front"], outs["front"], images["front"])
        left_k = outs["left"]["depth/camera_info"].k[0]
        np.testing.assert_allclose(
            _depth(outs["left"]), REFERENCE.depth(model, pictures["left"], left_k),
            rtol=BATCH_RTOL)
        sizes = probe.statuses()["depth_pro_node: engine"]["batch_sizes"]
        if any(entry.split("x")[0] != "1" for entry in sizes.split()):
            return
    raise AssertionError(f"no batch of two frames in 10 attempts: batch_sizes {sizes!r}")


def test_a_fast_camera_never_starves_a_slow_one(node):
    """front floods at about 20 Hz; rear sends its next frame once the last one is served.

    With one waiting slot for all cameras, the flood would replace each rear frame before
    the network got to it; with a slot per camera and turns, every rear frame is served
    within a turn, and only front's frames are dropped (by its own newer ones).
    """
    _, probe = node
    before = probe.statuses()
    front_rgb, rear_rgb = _picture(7, "front"), _picture(8, "rear")
    for _ in range(3):
        slow = _image("rear", rear_rgb)
        _send(probe, "rear", slow)

        def served(slow=slow) -> bool:
            _send(probe, "front", _image("front", front_rgb))
            return any(m.header.stamp == slow.header.stamp for m in probe.got["rear"]["depth"])

        probe.spin_until(served, WAIT, "the slow camera's depth", period=0.05)
    after = probe.statuses()
    front, rear = (after[f"depth_pro_node: depth {c}"] for c in ("front", "rear"))
    front0, rear0 = (before[f"depth_pro_node: depth {c}"] for c in ("front", "rear"))
    assert int(front["dropped_frames"]) > int(front0["dropped_frames"])
    assert rear["dropped_frames"] == rear0["dropped_frames"]


def test_a_camera_sending_only_malformed_messages_never_touches_the_others(node, model):
    proc, probe = node
    before = probe.statuses()
    for i in range(3):
        broken = _image("rear", _picture(9, "rear"))
        broken.encoding = "no_such_encoding"
        short = _image("rear", _picture(9, "rear"))
        short.data = bytes(short.data)[:100]
        bad_info = camera_info_message(0.0, *SIZE["rear"], sec=0, frame_id="rear")
        probe.info_pubs["rear"].publish(bad_info)
        _send(probe, "rear", broken)
        _send(probe, "rear", short)
        rgb = _picture(20 + i, "front")
        image = _image("front", rgb)
        probe.info_pubs["front"].publish(_front_info(image))
        pause = time.monotonic() + 0.3
        probe.spin_until(lambda pause=pause: time.monotonic() > pause, what="a pause")
        _send(probe, "front", image)
        _check_front(model, rgb, probe.output("front", image), image)
        left = _image("left", _picture(30 + i, "left"))
        _send(probe, "left", left)
        probe.output("left", left)
    after = probe.statuses()
    rear, rear0 = after["depth_pro_node: depth rear"], before["depth_pro_node: depth rear"]
    assert int(rear["decode_errors"]) >= int(rear0["decode_errors"]) + 6
    assert int(rear["camera_info_errors"]) >= int(rear0["camera_info_errors"]) + 1
    for camera in ("front", "left"):
        status = after[f"depth_pro_node: depth {camera}"]
        assert status["skipped_frames"] == status["camera_info_errors"] == "0", status
        # Not "running (N frames skipped or failed)"; on a slow machine the status may say
        # that no input came for a while, which is not an error.
        assert "skipped or failed" not in status["_message"], status
    log = proc.log()
    assert "camera 'rear': image skipped" in log and "camera 'rear': camera_info ignored" in log
    assert "camera 'front': image skipped" not in log
    assert "camera 'left': image skipped" not in log


def test_diagnostics_one_status_per_camera_and_the_engines(node):
    _, probe = node
    statuses = probe.statuses()
    assert list(statuses) == [f"depth_pro_node: depth {c}" for c in CAMERAS] + [
        "depth_pro_node: engine"]
    focal_sources = {"front": "camera_info", "left": "fov_head", "rear": "fov_head"}
    for camera in CAMERAS:
        status = statuses[f"depth_pro_node: depth {camera}"]
        assert status["camera"] == camera and int(status["frames_out"]) >= 3
        assert status["focal_source"] == focal_sources[camera]
    engine = statuses["depth_pro_node: engine"]
    assert engine["cameras"] == "front left rear" and engine["max_batch_size"] == "3"
    assert int(engine["batches"]) >= 1 and float(engine["inference_ms_per_batch_median"]) > 0


def test_a_parameter_change_applies_to_every_camera(node):
    _, probe = node
    assert all(r.successful for r in probe.set_parameters(NODE, depth_encoding="16UC1"))
    try:
        for camera in ("left", "rear"):
            image = _image(camera, _picture(40, camera))
            probe.resend_until(lambda camera=camera, image=image: _send(probe, camera, image),
                               lambda camera=camera, image=image: any(
                                   m.header.stamp == image.header.stamp
                                   for m in probe.got[camera]["depth"]),
                               WAIT, f"{camera} depth", period=5.0)
            assert probe.output(camera, image)["depth"].encoding == "16UC1"
    finally:
        probe.set_parameters(NODE, depth_encoding="32FC1")
