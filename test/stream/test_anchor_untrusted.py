"""AnchorStream against anchors that cannot be trusted (issue 24): a depth image in
another frame, anchors declaring more than max_input_pixels, lying cloud layouts, and
scale_shift anchors that do not determine the fit (refused on a relative model, scale
on a metric one)."""

from __future__ import annotations

import numpy as np
import pytest
from harness.memory import traced_peak
from test_anchor_stream import (
    SCALE,
    H,
    K,
    S,
    W,
    _back_project,
    _cloud_msg,
    _depth,
    _image_msg,
    _options,
    _sparse,
)

from depth_pro_ros.engine.anchor import anchor_step
from depth_pro_ros.stream.anchor import AnchorStream


@pytest.fixture(scope="module")
def typestore():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.LATEST)


def test_a_depth_anchor_in_another_frame_is_refused(typestore):
    """A depth image cannot be moved by a transform (it holds no points): one in the
    lidar's frame is never used for the camera's image, and the problem says what to do."""
    depth = _depth()
    anchor = _sparse(depth.numpy(), 0.05)
    stream = AnchorStream(_options("depth", transform=(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)))
    stream.add(_image_msg(typestore, anchor, 9, frame_id="lidar_link"), received=9.0)
    outcome = anchor_step(stream.input_for("cam_optical", 9 * S, 9.0), depth, K)
    assert outcome.scale is None and outcome.fit is None
    assert "'lidar_link'" in outcome.problem and "'cam_optical'" in outcome.problem
    assert "registered to the camera" in outcome.problem
    assert "depth_image_proc/register" in outcome.problem
    assert stream.pop_problems() == [outcome.problem]
    with pytest.raises(ValueError, match="anchor depth image in frame 'lidar_link'"):
        stream.prompt_for("cam_optical", 9 * S, 9.0, K, (H, W))
    # The same anchor in the image's frame is used.
    stream.add(_image_msg(typestore, anchor, 10, frame_id="cam_optical"), received=10.0)
    used = anchor_step(stream.input_for("cam_optical", 10 * S, 10.0), depth, K)
    assert used.scale == pytest.approx(SCALE, rel=1e-4)


def test_anchors_declaring_more_than_max_pixels_are_refused_before_decoding(typestore):
    """Depth images and clouds are bounded like camera images (max_input_pixels)."""
    depth = _depth().numpy()
    stream = AnchorStream(_options("depth"), max_pixels=1000)
    with pytest.raises(ValueError, match="anchor ignored: depth anchor .* 64 x 48 = 3,072 "
                                         "pixels, more than the limit of 1,000"):
        stream.add(_image_msg(typestore, depth, 1), 1.0)
    stream.add(_image_msg(typestore, depth[::2, ::2].copy(), 1), 1.0)  # 768 pixels: used
    lying = _image_msg(typestore, depth[:2, :2].copy(), 2)
    lying.height, lying.width, lying.step = 10**6, 10**6, 4 * 10**6
    with pytest.raises(ValueError, match="more than the limit"):
        stream.add(lying, 2.0)
    clouds = AnchorStream(_options("points"), max_pixels=1000)
    points = _back_project(depth, np.ones((H, W), bool), K)
    with pytest.raises(ValueError, match="3,072 points, more than the limit of 1,000"):
        clouds.add(_cloud_msg(typestore, points, 3), 3.0)
    clouds.add(_cloud_msg(typestore, points[:1000], 3), 3.0)
    assert stream.state(3.0)["unreadable"] == 2 and clouds.state(3.0)["unreadable"] == 1


def test_a_lying_cloud_layout_costs_nothing_and_is_refused_in_one_line(typestore):
    """The issue's cloud, smaller: point_step 1 and ~1000 one-byte fields at offset 0
    (before the fix the reader allocated points x fields float32: 12 MB here, 1.15 GB
    for the issue's 300 kB message)."""
    msg = _cloud_msg(typestore, np.ones((3000, 3), np.float32), 4)
    point_field = typestore.types["sensor_msgs/msg/PointField"]
    msg.fields = [point_field(name=n, offset=0, datatype=1, count=1)
                  for n in ["x", "y", "z"] + [f"f{i}" for i in range(997)]]
    msg.point_step, msg.row_step = 1, 3000
    stream = AnchorStream(_options("points"))
    with traced_peak() as peak, pytest.raises(ValueError) as info:
        stream.add(msg, 4.0)
    assert peak.bytes < 100_000, peak.bytes
    assert str(info.value).startswith("anchor ignored: PointCloud2 declares 1000 fields")
    assert "\n" not in str(info.value) and stream.state(4.0)["unreadable"] == 1


def _nearly_constant(fraction: float = 0.2) -> np.ndarray:
    """The issue's anchor: 5 m +- 0.1 % on a fifth of the pixels."""
    rng = np.random.default_rng(24)
    pick = rng.random((H, W)) < fraction
    out = np.full((H, W), np.nan, np.float32)
    out[pick] = 5.0 * (1.0 + 1e-3 * rng.standard_normal(int(pick.sum())))
    return out


def test_a_relative_model_keeps_its_last_fit_when_scale_shift_is_not_determined(typestore):
    """A relative network has no metric scale: no fallback to scale; the frame's fit is
    rejected with the reason, and the last accepted fit holds until the timeout."""
    depth = _depth()
    truth = 1.0 / (1.0 / depth.numpy() / 1.3 + 0.05)
    good = np.where(np.random.default_rng(5).random((H, W)) < 0.2, truth, np.nan)
    stream = AnchorStream(_options("depth", fit="scale_shift"))
    stream.add(_image_msg(typestore, good.astype(np.float32), 10), received=10.0)
    first = anchor_step(stream.input_for("cam", 10 * S, 10.0), depth, K, relative=True)
    assert first.fit.ok and first.scale == pytest.approx(1.3, rel=1e-3)
    stream.add(_image_msg(typestore, _nearly_constant(), 11), received=11.0)
    flat = anchor_step(stream.input_for("cam", 11 * S, 11.0), depth, K, relative=True)
    assert not flat.fit.ok and flat.fit.kind == "scale_shift"
    assert flat.problem.startswith("anchor fit rejected: scale_shift not determined by the "
                                   "anchor") and "nearly constant" in flat.problem
    assert (flat.scale, flat.shift) == (first.scale, first.shift)  # the last good fit
    state = stream.state(11.0)
    assert state["fits_rejected"] == 1 and state["last_fit"] is flat.fit
    assert stream.pop_problems() == [flat.problem]


def test_a_metric_model_falls_back_to_scale_and_says_why(typestore):
    """scale_shift asked, but the anchor sees one wall (4.9-5.1 m): a metric network's
    depth is anchored by a scale alone, and the fallback is reported and diagnosed."""
    from depth_pro_ros.ros.health import anchor_values

    depth = _depth()
    wall = (depth.numpy() >= 4.9) & (depth.numpy() <= 5.1)
    noise = 1.0 + 0.01 * np.random.default_rng(6).standard_normal((H, W))  # a LiDAR's 1 %
    anchor = np.where(wall, SCALE * depth.numpy() * noise, np.nan).astype(np.float32)
    stream = AnchorStream(_options("depth", fit="scale_shift"))
    stream.add(_image_msg(typestore, anchor, 12), received=12.0)
    outcome = anchor_step(stream.input_for("cam", 12 * S, 12.0), depth, K)
    assert outcome.fit.ok and outcome.fit.kind == "scale" and outcome.shift == 0.0
    assert outcome.scale == pytest.approx(SCALE, rel=1e-2)
    assert outcome.problem.startswith("anchor fit fell back to scale: scale_shift not "
                                      "determined by the anchor")
    diag = anchor_values(stream.state(12.0))
    assert diag["anchor_fit"] == "scale_shift" and diag["anchor_fit_used"] == "scale"
    assert diag["anchor_fit_reason"] == outcome.fit.fallback
    # Relative, the same anchor is refused instead.
    relative = anchor_step(stream.input_for("cam", 12 * S, 12.0), depth, K, relative=True)
    assert not relative.fit.ok and "not determined" in relative.problem


def test_a_cameras_max_input_pixels_bounds_its_anchors_too(typestore):
    """CameraSession hands its max_input_pixels to the anchor stream, at start-up and on
    a runtime change."""
    from depth_pro_ros.stream import FocalSettings
    from depth_pro_ros.stream.session import CameraSession

    focal = FocalSettings(focal_source="fov_head")
    session = CameraSession("front", "raw", focal, _options("depth"), max_input_pixels=1000)
    anchor = _image_msg(typestore, _depth().numpy(), 1)  # 64 x 48 = 3072 pixels
    with pytest.raises(ValueError, match="more than the limit of 1,000"):
        session.add_anchor(anchor, 1.0)
    session.configure(focal, _options("depth"), 4000, False)
    session.add_anchor(anchor, 1.0)
    assert session.anchor.state(1.0)["unreadable"] == 1
