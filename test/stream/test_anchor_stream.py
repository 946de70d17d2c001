"""AnchorStream: anchor messages paired with images, brought to the depth's size, fitted
and tracked per camera (no network: a synthetic depth stands for the network's)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from message_factories import rosbags_header, rosbags_message

from depth_pro_ros.engine.anchor import (
    AnchorSettings,
    anchor_step,
    project_points,
    resize_nearest,
)
from depth_pro_ros.engine.focal import Intrinsics
from depth_pro_ros.io.messages import depth_image_fields
from depth_pro_ros.io.pointcloud_msg import point_fields, pointcloud2_fields
from depth_pro_ros.stream.anchor import (
    AnchorOptions,
    AnchorStream,
    dense_prompt,
)

H, W = 48, 64
K = Intrinsics(50.0, 52.0, 31.0, 23.5, W, H)
SCALE = 1.37
S = 1_000_000_000


@pytest.fixture(scope="module")
def typestore():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.LATEST)


def _depth() -> torch.Tensor:
    """A smooth 'network' depth, 1-9 m."""
    v, u = np.mgrid[0:H, 0:W]
    return torch.from_numpy((1.0 + 8.0 * (u / W) * (0.5 + 0.5 * v / H)).astype(np.float32))


def _sparse(depth: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """``SCALE * depth`` at a random ``fraction`` of the pixels, NaN elsewhere."""
    rng = np.random.default_rng(seed)
    out = np.full(depth.shape, np.nan, np.float32)
    pick = rng.random(depth.shape) < fraction
    out[pick] = SCALE * depth[pick]
    return out


def _image_msg(typestore, anchor: np.ndarray, sec: int, encoding: str = "32FC1",
               frame_id: str = "cam"):
    fields = depth_image_fields(anchor, encoding)
    return rosbags_message(typestore, "sensor_msgs/msg/Image", fields,
                           header=rosbags_header(typestore, sec, 0, frame_id))


def _cloud_msg(typestore, xyz: np.ndarray, sec: int, frame_id: str = "cam"):
    record = np.zeros(len(xyz), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    record["x"], record["y"], record["z"] = xyz.T
    fields = pointcloud2_fields(record, 1, len(xyz))
    fields["fields"] = point_fields(fields["fields"],
                                    typestore.types["sensor_msgs/msg/PointField"])
    return rosbags_message(typestore, "sensor_msgs/msg/PointCloud2", fields,
                           header=rosbags_header(typestore, sec, 0, frame_id))


def _back_project(depth: np.ndarray, mask: np.ndarray, k: Intrinsics) -> np.ndarray:
    v, u = np.nonzero(mask)
    z = depth[v, u]
    return np.stack([(u - k.cx) * z / k.fx, (v - k.cy) * z / k.fy, z], axis=1)


def _options(source: str, **kw) -> AnchorOptions:
    settings = AnchorSettings(ema_alpha=kw.pop("ema_alpha", 1.0), timeout=2.0,
                              fit=kw.pop("fit", "scale"))
    return AnchorOptions(source=source, settings=settings, **kw)


def test_depth_image_anchor_at_another_resolution(typestore):
    depth = _depth()
    # The anchor at twice the resolution: nearest pixel back to 48x64.
    big = np.repeat(np.repeat(_sparse(depth.numpy(), 0.05), 2, 0), 2, 1)
    stream = AnchorStream(_options("depth"))
    stream.add(_image_msg(typestore, big, 10), received=10.0)
    outcome = anchor_step(stream.input_for("cam", 10 * S, 10.0), depth, K)
    assert outcome.problem is None and outcome.fit.ok
    assert outcome.scale == pytest.approx(SCALE, rel=1e-4) and outcome.shift == 0.0
    assert outcome.fit.points == int(np.isfinite(_sparse(depth.numpy(), 0.05)).sum())
    state = stream.state(10.5)
    assert state["scale"] == pytest.approx(SCALE, rel=1e-4) and state["fits_ok"] == 1
    assert state["age_s"] == pytest.approx(0.5)


def test_16uc1_millimetres_with_zero_as_no_measurement(typestore):
    depth = _depth()
    anchor = _sparse(depth.numpy(), 0.05)
    stream = AnchorStream(_options("depth"))
    mm = np.nan_to_num(anchor * 1000.0, nan=0.0)
    stream.add(_image_msg(typestore, mm / 1000.0, 3, encoding="16UC1"), received=3.0)
    outcome = anchor_step(stream.input_for("cam", 3 * S, 3.0), depth, K)
    # Millimetre rounding: the scale within 1e-3.
    assert outcome.fit.ok and outcome.scale == pytest.approx(SCALE, rel=1e-3)


def test_point_cloud_anchor_projected_with_the_depths_intrinsics(typestore):
    depth = _depth()
    rng = np.random.default_rng(1)
    mask = rng.random((H, W)) < 0.03
    points = _back_project(SCALE * depth.numpy(), mask, K)
    stream = AnchorStream(_options("points"))
    stream.add(_cloud_msg(typestore, points, 5), received=5.0)
    outcome = anchor_step(stream.input_for("cam", 5 * S, 5.0), depth, K)
    assert outcome.problem is None and outcome.fit.ok
    assert outcome.scale == pytest.approx(SCALE, rel=1e-4)
    assert outcome.fit.points == int(mask.sum())


def test_a_cloud_in_another_frame_is_refused_unless_transformed(typestore):
    depth = _depth()
    mask = np.random.default_rng(2).random((H, W)) < 0.03
    camera_points = _back_project(SCALE * depth.numpy(), mask, K)
    # The "lidar" frame: the camera frame turned 90 deg about z and shifted; the transform
    # lidar -> camera undoes it.
    lidar_points = np.stack([camera_points[:, 1], -camera_points[:, 0],
                             camera_points[:, 2] - 0.5], axis=1)
    refusing = AnchorStream(_options("points"))
    refusing.add(_cloud_msg(typestore, lidar_points, 7, frame_id="lidar"), received=7.0)
    outcome = anchor_step(refusing.input_for("cam", 7 * S, 7.0), depth, K)
    assert outcome.scale is None and outcome.fit is None
    assert "frame 'lidar'" in outcome.problem and "anchor_transform" in outcome.problem
    assert refusing.pop_problems() == [outcome.problem] and refusing.pop_problems() == []

    q = math.sqrt(0.5)  # +90 deg about z: (x, y) -> (-y, x)
    transform = (0.0, 0.0, 0.5, 0.0, 0.0, q, q)
    moved = AnchorStream(_options("points", transform=transform))
    moved.add(_cloud_msg(typestore, lidar_points, 7, frame_id="lidar"), received=7.0)
    outcome = anchor_step(moved.input_for("cam", 7 * S, 7.0), depth, K)
    assert outcome.problem is None and outcome.scale == pytest.approx(SCALE, rel=1e-4)


def test_pairing_timeout_and_switch_messages(typestore):
    depth = _depth()
    stream = AnchorStream(_options("depth", sync="exact"))
    stream.add(_image_msg(typestore, _sparse(depth.numpy(), 0.05), 20), received=20.0)
    # No anchor of this stamp, none accepted yet: unanchored.
    outcome = anchor_step(stream.input_for("cam", 19 * S, 20.0), depth, K)
    assert outcome.scale is None and outcome.fit is None
    anchored = anchor_step(stream.input_for("cam", 20 * S, 20.1), depth, K)
    assert anchored.scale == pytest.approx(SCALE, rel=1e-4)
    assert len(stream.pop_messages()) == 1  # anchored now
    # A frame without its own anchor keeps the last value until the timeout (2 s) ...
    assert anchor_step(stream.input_for("cam", 21 * S, 21.5), depth, K).scale == pytest.approx(
        SCALE, rel=1e-4)
    # ... then goes unanchored, said once.
    assert anchor_step(stream.input_for("cam", 23 * S, 22.5), depth, K).scale is None
    assert len(stream.pop_messages()) == 1 and stream.pop_messages() == []


def test_unreadable_anchors_are_refused_and_counted(typestore):
    stream = AnchorStream(_options("depth"))
    bad = _image_msg(typestore, np.ones((4, 4), np.float32), 1)
    bad.encoding = "rgb8"
    with pytest.raises(ValueError, match="anchor ignored: unsupported depth encoding"):
        stream.add(bad, 1.0)
    clouds = AnchorStream(_options("points"))
    no_z = _cloud_msg(typestore, np.ones((3, 3), np.float32), 1)
    no_z.fields = no_z.fields[:2]
    with pytest.raises(ValueError, match="no z field"):
        clouds.add(no_z, 1.0)
    assert stream.state(1.0)["unreadable"] == 1 and clouds.state(1.0)["unreadable"] == 1


def test_an_unusable_anchor_never_fails_the_frame(typestore):
    depth = _depth()
    stream = AnchorStream(_options("depth"))
    stream.add(_image_msg(typestore, np.full((H, W), np.nan, np.float32), 1), 1.0)
    outcome = anchor_step(stream.input_for("cam", 1 * S, 1.0), depth, K)
    assert outcome.scale is None and not outcome.fit.ok
    assert outcome.problem.startswith("anchor fit rejected")


def test_resize_nearest_keeps_holes_and_values():
    src = torch.tensor([[1.0, math.nan], [3.0, 4.0]])
    out = resize_nearest(src, (4, 4))
    expected = torch.tensor([[1.0, 1.0, math.nan, math.nan], [1.0, 1.0, math.nan, math.nan],
                             [3.0, 3.0, 4.0, 4.0], [3.0, 3.0, 4.0, 4.0]])
    assert torch.equal(torch.isnan(out), torch.isnan(expected))
    assert torch.equal(out.nan_to_num(), expected.nan_to_num())
    # Down: only source values, never an average.
    values = set(resize_nearest(torch.arange(16.0).view(4, 4), (2, 2)).flatten().tolist())
    assert values <= set(range(16))


def test_project_points_nearest_pixel_and_nearest_point():
    k = Intrinsics(10.0, 10.0, 2.0, 2.0, 5, 5)
    points = torch.tensor([
        [0.0, 0.0, 2.0],  # -> (2, 2)
        [0.0, 0.0, 1.0],  # same pixel, nearer: wins
        [0.1, -0.1, 1.0],  # -> u = 3, v = 1
        [5.0, 0.0, 1.0],  # outside
        [0.0, 0.0, -1.0],  # behind the camera
        [math.nan, 0.0, 1.0],
    ])
    image = project_points(points, k, (5, 5))
    assert image[2, 2] == 1.0 and image[1, 3] == 1.0
    assert int(torch.isfinite(image).sum()) == 2


def test_latest_pairing_never_reuses_an_anchor_older_than_the_timeout(typestore):
    depth = _depth()
    stream = AnchorStream(_options("depth", sync="latest"))
    stream.add(_image_msg(typestore, _sparse(depth.numpy(), 0.05), 30), received=30.0)
    assert anchor_step(stream.input_for("cam", 31 * S, 31.5), depth, K).fit is not None  # 1.5 s old
    late = anchor_step(stream.input_for("cam", 33 * S, 32.5), depth, K)  # 2.5 s > the 2 s timeout
    # Not fitted again; the fit of 31.5 s still holds for 2 s.
    assert late.fit is None and late.scale == pytest.approx(SCALE, rel=1e-4)
    assert anchor_step(stream.input_for("cam", 34 * S, 34.0), depth, K).scale is None


def test_a_dense_anchor_works_like_a_sparse_one(typestore):
    """An RGB-D camera's depth: every pixel measured (a few holes), 5 % of them wrong."""
    depth = _depth()
    rng = np.random.default_rng(3)
    dense = SCALE * depth.numpy()
    dense[rng.random(dense.shape) < 0.02] = np.nan  # holes
    wrong = rng.random(dense.shape) < 0.05
    dense[wrong] *= 2.5
    stream = AnchorStream(_options("depth"))
    stream.add(_image_msg(typestore, dense.astype(np.float32), 40), received=40.0)
    outcome = anchor_step(stream.input_for("cam", 40 * S, 40.0), depth, K)
    assert outcome.fit.ok and outcome.scale == pytest.approx(SCALE, rel=1e-4)
    assert outcome.fit.points == int(np.isfinite(dense).sum())
    assert outcome.fit.inliers <= outcome.fit.points - int((wrong & np.isfinite(dense)).sum())


def test_dense_prompt_fills_holes_from_the_nearest_measurement():
    d = np.full((5, 6), np.nan, np.float32)
    d[0, 0], d[4, 5], d[2, 2] = 1.0, 3.0, 2.0
    d[1, 4] = 0.0  # 0: no measurement
    filled = dense_prompt(d)
    assert filled.dtype == np.float32 and np.isfinite(filled).all()
    v, u = np.mgrid[0:5, 0:6]
    points = [(0, 0, 1.0), (4, 5, 3.0), (2, 2, 2.0)]
    dist = np.stack([np.hypot(v - pv, u - pu) for pv, pu, _ in points])
    nearest = np.array([value for *_, value in points], np.float32)[dist.argmin(0)]
    ties = np.sort(dist, axis=0)[1] - dist.min(0) < 1e-9  # equidistant: either is right
    assert (filled == nearest)[~ties].all()
    assert np.array_equal(dense_prompt(filled), filled)  # a dense prompt is kept as is


@pytest.mark.parametrize(("depth", "kw", "message"), [
    (np.full((4, 4), np.nan, np.float32), {}, "0 measured pixels"),
    (np.where(np.eye(4) > 0, 2.0, np.nan).astype(np.float32), {}, "all measured depths are 2"),
    (np.arange(1, 17, dtype=np.float32).reshape(4, 4), {"min_points": 20}, "16 measured"),
    (np.arange(1, 17, dtype=np.float32).reshape(4, 4), {"min_depth": 16.0, "min_points": 2},
     "1 measured"),
])
def test_dense_prompt_refuses_prompts_without_information(depth, kw, message):
    with pytest.raises(ValueError, match=message):
        dense_prompt(depth, **kw)


def test_prompt_for_pairs_the_anchor_and_projects_clouds(typestore):
    depth = _depth().numpy()
    stream = AnchorStream(_options("depth", sync="exact"))
    low = depth[::4, ::4].copy()
    low[0, :3] = np.nan
    stream.add(_image_msg(typestore, low, 30), received=30.0)
    prompt = stream.prompt_for("cam", 30 * S, 30.0, None, (H, W))
    assert prompt.shape == low.shape and np.array_equal(prompt, dense_prompt(low))
    with pytest.raises(ValueError, match="no anchor paired with the image"):
        stream.prompt_for("cam", 31 * S, 31.0, K, (H, W))

    clouds = AnchorStream(_options("points", sync="exact"))
    points = _back_project(depth, np.ones((H, W), bool), K)
    clouds.add(_cloud_msg(typestore, points, 32), received=32.0)
    with pytest.raises(ValueError, match="needs the camera's focal"):
        clouds.prompt_for("cam", 32 * S, 32.0, None, (H, W))
    projected = clouds.prompt_for("cam", 32 * S, 32.0, K, (H, W))
    # Small images keep their size (the grid's longer side is at most 256).
    assert projected.shape == (H, W)
    np.testing.assert_allclose(projected, depth, rtol=1e-5)
    with pytest.raises(ValueError, match="frame 'cam' but the image is in 'other'"):
        clouds.prompt_for("other", 32 * S, 32.0, K, (H, W))
    assert clouds.pop_problems() == []  # the caller reports prompt problems with the frame

