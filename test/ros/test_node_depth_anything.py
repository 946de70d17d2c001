"""depth_pro_node with Depth Anything V2 (metric, relative) and Prompt Depth Anything
checkpoints, over DDS: the published depth is the reference pipeline's
(``model.infer_depth_anything``), computed in this process (tolerance as in
test/engine/test_families.py), and the node refuses settings with which a model gives no output.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import numpy as np
import pytest
from harness.node import NAMESPACE, run_in_process
from harness.probe import Probe, running_node
from harness.ros_messages import camera_info_message, image_message
from message_factories import rclpy_message
from model_factories import tiny_depth_anything
from sensor_msgs.msg import Image

from depth_pro_ros.io.messages import depth_image_fields, depth_image_to_array
from depth_pro_ros.model import infer_depth_anything
from depth_pro_ros.stream.anchor import dense_prompt

RTOL = 1e-4
NODE = f"{NAMESPACE}/depth_pro_node"
INPUT = 56
H, W = 42, 70
NEXT_SEC = iter(range(200, 10_000))


def _rgb(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 200, W, dtype=np.float32)[None, :, None]
    return (ramp + rng.integers(0, 55, (H, W, 3))).clip(0, 255).astype(np.uint8)


def _params(checkpoint, *extra: str) -> tuple[str, ...]:
    return (f"checkpoint:={checkpoint}", "device:=cpu", f"input_size:={INPUT}",
            "publish_colorized:=false", *extra)


def _start_failure(capfd, checkpoint, *extra: str) -> str:
    """Run the node (its entry point, in this process) with settings it must refuse;
    return what it wrote (exit status 2)."""
    code = run_in_process(*_params(checkpoint, *extra))
    out, err = capfd.readouterr()
    assert code == 2, out + err
    return out + err


@contextlib.contextmanager
def _anchor_probe() -> Iterator[tuple[Probe, object]]:
    """A Probe recording ``depth`` with a publisher on the node's ``anchor/depth``, both
    connected."""
    probe = Probe(outputs=("depth",))
    pub = probe.node.create_publisher(Image, f"{NAMESPACE}/anchor/depth", 10)
    try:
        probe.wait_connected()
        probe.spin_until(lambda: pub.get_subscription_count() > 0, 30.0, "anchor discovery")
        yield probe, pub
    finally:
        probe.close()


def _anchored_depth(probe: Probe, pub, rgb: np.ndarray, anchor_depth: np.ndarray,
                    what: str) -> np.ndarray:
    """Publish the anchor, then an image of ``rgb`` with the same stamp, until that image's
    depth comes; return it."""
    image = image_message(rgb, next(NEXT_SEC))
    anchor = rclpy_message(Image, depth_image_fields(anchor_depth, "32FC1"))
    anchor.header = image.header

    def send() -> None:
        pub.publish(anchor)
        pause = time.monotonic() + 0.2
        probe.spin_until(lambda: time.monotonic() > pause, what="a pause")
        probe.image_pub.publish(image)

    def mine() -> list:
        return [m for m in probe.received["depth"] if m.header.stamp == image.header.stamp]

    probe.resend_until(send, mine, 120.0, what)
    return depth_image_to_array(mine()[0])


def test_metric_model_publishes_depth_without_a_focal_then_all_outputs_with_one(
        da_checkpoints, tmp_path):
    model = tiny_depth_anything("metric")
    warm = image_message(_rgb(0), 1)
    with running_node(tmp_path / "node.log", *_params(da_checkpoints["metric"]),
                      warm_up=warm, outputs=("depth", "depth/camera_info", "points")) as (
            proc, probe):
        rgb = _rgb(1)
        image = image_message(rgb, next(NEXT_SEC))
        probe.image_pub.publish(image)
        probe.spin_until(lambda: any(m.header.stamp == image.header.stamp
                                     for m in probe.received["depth"]), what="depth")
        depth = depth_image_to_array(
            [m for m in probe.received["depth"] if m.header.stamp == image.header.stamp][0])
        np.testing.assert_allclose(depth, infer_depth_anything(model, rgb, INPUT).numpy(),
                                   rtol=RTOL)
        # Without a focal: depth only, said once.
        assert not probe.received["depth/camera_info"] and not probe.received["points"]
        log = proc.log()
        assert log.count("no focal length") == 1
        assert "Depth Anything V2 (custom, metric up to 20 m, input 56) ready" in log
        diag = probe.latest_diagnostics()
        assert diag["model"].startswith("Depth Anything V2 (custom, metric")
        assert diag["focal_source"] == "none"

        # A CameraInfo brings depth/camera_info and points, and the same depth.
        out = probe.exchange(image_message(rgb, next(NEXT_SEC)),
                             camera_info_message(60.0, W, H, 0))
        np.testing.assert_allclose(depth_image_to_array(out["depth"]), depth, rtol=1e-6)
        assert list(out["depth/camera_info"].k)[0] == 60.0
        assert out["points"].width * out["points"].height == H * W

        # What start-up refuses, a runtime change is refused for, in the same words; the
        # node keeps its settings and goes on serving.
        (result,) = probe.set_parameters(NODE, focal_source="fov_head")
        assert not result.successful
        assert "focal_source fov_head needs a model with a field-of-view head" in result.reason
        assert "has none: use auto, camera_info or fixed" in result.reason
        assert probe.get_parameters(NODE, "focal_source") == {"focal_source": "auto"}
        out = probe.exchange(image_message(rgb, next(NEXT_SEC)),
                             camera_info_message(60.0, W, H, 0))
        np.testing.assert_allclose(depth_image_to_array(out["depth"]), depth, rtol=1e-6)


def test_relative_model_refuses_to_start_without_anchor_or_allow_relative(da_checkpoints,
                                                                          capfd):
    log = _start_failure(capfd, da_checkpoints["relative"])
    assert "gives relative depth only: set anchor_source (depth or points) with anchor_fit " \
        "scale_shift for metric depth, or allow_relative: true" in log
    log = _start_failure(capfd, da_checkpoints["relative"], "anchor_source:=depth")
    assert "set anchor_fit scale_shift" in log
    log = _start_failure(capfd, da_checkpoints["metric"], "focal_source:=fov_head")
    assert "has none: use auto, camera_info or fixed" in log


def test_relative_model_with_allow_relative_publishes_depth_relative(da_checkpoints, tmp_path):
    model = tiny_depth_anything("relative")
    with running_node(tmp_path / "node.log",
                      *_params(da_checkpoints["relative"], "allow_relative:=true")) as (proc, _):
        probe = Probe(outputs=("depth/relative", "depth"))
        try:
            probe.wait_connected()
            rgb = _rgb(2)
            image = image_message(rgb, next(NEXT_SEC))
            stamp = image.header.stamp
            probe.resend_until(lambda: probe.image_pub.publish(image), lambda: any(
                m.header.stamp == stamp for m in probe.received["depth/relative"]),
                120.0, "depth/relative")
            msg = [m for m in probe.received["depth/relative"] if m.header.stamp == stamp][0]
            assert msg.encoding == "32FC1"
            relative = np.frombuffer(bytes(msg.data), np.float32).reshape(H, W)
            np.testing.assert_allclose(relative,
                                       infer_depth_anything(model, rgb, INPUT).numpy(),
                                       rtol=RTOL, atol=1e-6)
            assert not probe.received["depth"]
        finally:
            probe.close()


def test_prompt_model_takes_its_prompt_from_the_anchor_depth(da_checkpoints, tmp_path):
    model = tiny_depth_anything("metric", prompt=True)
    rng = np.random.default_rng(4)
    with running_node(tmp_path / "node.log",
                      *_params(da_checkpoints["prompt"], "anchor_source:=depth",
                               "anchor_min_points:=3")) as (proc, _):
        with _anchor_probe() as (probe, pub):
            rgb = _rgb(3)
            prompt = (1.0 + 5.0 * rng.random((6, 10))).astype(np.float32)
            prompt[2, 3] = np.nan  # a hole: filled from the nearest measurement
            depth = _anchored_depth(probe, pub, rgb, prompt, "prompted depth")
            reference = infer_depth_anything(model, rgb, INPUT, dense_prompt(prompt)).numpy()
            np.testing.assert_allclose(depth, reference, rtol=RTOL)

            # An image with no anchor (another stamp, exact pairing not needed: the anchor
            # is older than anchor_timeout) is skipped with a reason, and counted.
            pause = time.monotonic() + 1.5
            probe.spin_until(lambda: time.monotonic() > pause, what="the anchor timeout")
            probe.image_pub.publish(image_message(rgb, next(NEXT_SEC)))
            log = proc.wait_for_log("Prompt Depth Anything needs one per frame")
            assert "image skipped: no anchor paired with the image" in log


def test_relative_model_anchored_by_scale_shift_publishes_metric_depth(da_checkpoints,
                                                                       tmp_path):
    """An image before any anchor: not published (a warning says why); with its anchor (the
    relative output under a known affine map in inverse depth): the metric depth."""
    from depth_pro_ros.engine.anchor import apply_anchor

    model = tiny_depth_anything("relative")
    params = _params(da_checkpoints["relative"], "anchor_source:=depth",
                     "anchor_fit:=scale_shift", "anchor_ema_alpha:=1.0", "anchor_sync:=exact")
    with running_node(tmp_path / "node.log", *params) as (proc, _):
        with _anchor_probe() as (probe, pub):
            lonely = image_message(_rgb(5), next(NEXT_SEC))
            probe.resend_until(lambda: probe.image_pub.publish(lonely),
                               lambda: "depth not published: no accepted anchor fit"
                               in proc.log(), 120.0, "the unanchored warning")
            rgb = _rgb(6)
            relative = infer_depth_anything(model, rgb, INPUT).numpy()
            truth = apply_anchor(np.where(relative > 0, 1.0 / relative, np.nan), 0.8, 0.05)
            anchor_depth = np.full_like(truth, np.nan)
            anchor_depth[::3, ::3] = truth[::3, ::3]
            depth = _anchored_depth(probe, pub, rgb, anchor_depth, "anchored depth")
            np.testing.assert_allclose(depth, truth, rtol=1e-3)
            # The anchored image's depth is the only one: none for the image before it.
            assert len({(m.header.stamp.sec, m.header.stamp.nanosec)
                        for m in probe.received["depth"]}) == 1
            assert all(m.header.stamp != lonely.header.stamp for m in probe.received["depth"])
            # anchor_fit scale, refused at start-up for a relative model, is refused at
            # runtime too (the same reason), and the scale_shift fit stays.
            (result,) = probe.set_parameters(NODE, anchor_fit="scale")
            assert not result.successful and "set anchor_fit scale_shift" in result.reason
            assert probe.get_parameters(NODE, "anchor_fit") == {"anchor_fit": "scale_shift"}


def test_exported_onnx_checkpoint_runs_on_onnxruntime(onnx_checkpoint, tmp_path):
    """``checkpoint:=model.onnx`` with no other parameter: the node runs the exported
    metric model on onnxruntime (backend auto) and publishes the reference pipeline's
    depth (issue 25)."""
    pytest.importorskip("onnxruntime")
    model = tiny_depth_anything("metric")
    with running_node(tmp_path / "node.log", *_params(onnx_checkpoint("metric")),
                      warm_up=image_message(_rgb(0), 1), outputs=("depth",)) as (proc, probe):
        rgb = _rgb(3)
        out = probe.exchange(image_message(rgb, next(NEXT_SEC)),
                             camera_info_message(60.0, W, H, 0))
        np.testing.assert_allclose(depth_image_to_array(out["depth"]),
                                   infer_depth_anything(model, rgb, INPUT).numpy(), rtol=RTOL)
        assert ("Depth Anything V2 (custom, metric up to 20 m, input 56) ready on cpu "
                "(fp32, backend onnxruntime)") in proc.log()
        assert probe.get_parameters(NODE, "backend") == {"backend": "auto"}
        assert probe.statuses()["depth_pro_node: engine"]["backend"] == "onnxruntime"
