"""Rig mode's joint forward (engine/rig.py) against the released package's network run
jointly on the same views and stand-in weights: a synthetic scene (a textured wall and
floor) rendered with numpy from three poses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from da3_recipe_reference import reference_post

from depth_pro_ros.engine import EngineConfig, FocalSource, Frame
from depth_pro_ros.engine.focal import Intrinsics
from depth_pro_ros.engine.rig import RigEngine
from depth_pro_ros.model.depth_anything_3.recipe import prepare_input
from depth_pro_ros.model.stand_in import random_model

pytest.importorskip("depth_anything_3.model.da3")

H, W, SIZE = 42, 56, 56  # images and network input: 42 x 56 (multiples of 14)
# Our network equals the reference's to ~1e-6 relative in fp32 (test_da3_network: <= 1e-5
# per output); the inverse and the bilinear resize keep that order, so 1e-4 relative
# leaves a margin without hiding a wrong view order, size or camera (those change the
# depth by percents: see the one-view comparison).
RTOL = 1e-4


def _pose(x: float, yaw_deg: float) -> np.ndarray:
    """Camera-to-world (the rig frame): at (x, 0, 0), turned about the vertical axis
    (y down, z forward: REP 103 optical frame)."""
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    pose = np.eye(4)
    pose[:3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
    pose[0, 3] = x
    return pose


def _render(pose: np.ndarray, k: Intrinsics, h: int = H, w: int = W) -> np.ndarray:
    """The scene seen by a pinhole camera: a wall at z = 4 m and a floor at y = 1 m with a
    smooth colour texture of the hit point (uint8 RGB)."""
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    rays = np.stack([(u - k.cx) / k.fx, (v - k.cy) / k.fy, np.ones_like(u)], axis=-1)
    d = rays @ pose[:3, :3].T
    o = pose[:3, 3]
    t_wall = (4.0 - o[2]) / d[..., 2]
    with np.errstate(divide="ignore"):
        t_floor = np.where(d[..., 1] > 1e-6, (1.0 - o[1]) / d[..., 1], np.inf)
    p = o + np.minimum(t_wall, t_floor)[..., None] * d
    colour = [np.sin(3 * p[..., 0]) * np.cos(2 * p[..., 2]), np.cos(4 * p[..., 0] + p[..., 1]),
              np.sin(5 * p[..., 1] + 2 * p[..., 2])]
    return np.clip(128 + 100 * np.stack(colour, axis=-1), 0, 255).astype(np.uint8)


K = Intrinsics(fx=45.0, fy=45.0, cx=27.5, cy=20.5, width=W, height=H)
POSES = [_pose(-0.3, 12.0), _pose(0.0, 0.0), _pose(0.3, -12.0)]
IMAGES = [_render(p, K) for p in POSES]


@pytest.fixture(scope="module")
def networks(tmp_path_factory):
    """The any-view stand-in and the reference's network holding its weights."""
    from da3_reference import build_reference, load_into_reference, save_released

    model = random_model("depth_anything_3", "tiny")
    ref = build_reference(model.config)
    load_into_reference(ref, save_released(
        model, tmp_path_factory.mktemp("rig") / "model.safetensors"))
    return model, ref


def _reference(ref, intrinsics=None, extrinsics=None) -> dict[str, torch.Tensor]:
    x = torch.cat([prepare_input(torch.from_numpy(img)[None], SIZE) for img in IMAGES])
    with torch.no_grad():
        return ref(x[None], extrinsics=extrinsics, intrinsics=intrinsics)


def _relative(out, i: int) -> np.ndarray:
    return reference_post(out["depth"][0, i], None, W, H, None, False, True, (H, W))


def test_joint_forward_equals_the_reference_and_differs_from_one_view_runs(networks):
    model, ref = networks
    engine = RigEngine(model, EngineConfig(device="cpu", input_size=SIZE))
    rig = engine.run([Frame(img, meta=i) for i, img in enumerate(IMAGES)])
    expected = _reference(ref)
    assert rig.network_size == (H, W) and not rig.known_cameras
    for i, result in enumerate(rig.results):
        assert result.ok and result.meta == i and result.focal_source == FocalSource.FOV_HEAD
        np.testing.assert_allclose(result.relative, _relative(expected, i), rtol=RTOL)
        fx = float(expected["intrinsics"][0, i, 0, 0])  # the decoder's, 56 px wide input
        assert result.intrinsics.fx == pytest.approx(fx, rel=RTOL)
    # Poses: the decoder's world-to-camera E_i seen from the first view, E_0 E_i^-1.
    e = torch.eye(4).repeat(3, 1, 1)
    e[:, :3] = expected["extrinsics"][0]
    to_first = (e[0] @ torch.linalg.inv(e)).numpy()
    np.testing.assert_allclose(rig.camera_to_rig, to_first, rtol=RTOL, atol=1e-5)
    np.testing.assert_allclose(rig.camera_to_rig[0], np.eye(4), atol=1e-6)
    # The views attend to each other: each alone gives another depth (the stand-in's
    # random weights couple the views weakly: up to 0.2 %, 20 x the tolerance).
    for i, img in enumerate(IMAGES):
        alone = engine.run([Frame(img)]).results[0].relative
        assert np.abs(alone / rig.results[i].relative - 1).max() > 10 * RTOL


def test_known_cameras_go_to_the_camera_encoder_normalised_as_the_reference(networks):
    from depth_anything_3.utils.geometry import affine_inverse

    model, ref = networks
    engine = RigEngine(model, EngineConfig(device="cpu", input_size=SIZE))
    frames = [Frame(img, intrinsics=K) for img in IMAGES]
    rig = engine.run(frames, POSES)
    assert rig.known_cameras and rig.results[0].focal_source == FocalSource.CAMERA_INFO
    # The reference API's normalisation (DepthAnything3._normalize_extrinsics) written out:
    # the first view at the origin, translations over the median camera distance.
    ex = torch.linalg.inv(torch.tensor(np.stack(POSES), dtype=torch.float32))[None]
    ex = ex @ affine_inverse(ex[:, :1])
    median = torch.median(affine_inverse(ex)[..., :3, 3].norm(dim=-1)).clamp(min=0.1)
    ex[..., :3, 3] /= median
    k = torch.tensor([[K.fx, 0, K.cx], [0, K.fy, K.cy], [0, 0, 1]]).repeat(1, 3, 1, 1)
    expected = _reference(ref, k, ex)
    for i, result in enumerate(rig.results):
        np.testing.assert_allclose(result.relative, _relative(expected, i), rtol=RTOL)
        assert result.intrinsics.fx == K.fx  # the CameraInfo's, not the decoder's
    unknown = _reference(ref)  # the cameras change the depth: they did reach the encoder
    assert np.abs(rig.results[1].relative / _relative(unknown, 1) - 1).max() > 10 * RTOL
    # The rig frame is the extrinsics': the first view's pose is its known one.
    np.testing.assert_allclose(rig.camera_to_rig[0], POSES[0], atol=1e-5)
    # One view without CameraInfo: the network estimates every camera.
    frames[2] = Frame(IMAGES[2])
    assert not engine.run(frames, POSES).known_cameras


def test_a_view_of_another_size_is_resized_to_the_groups(networks):
    model, _ = networks
    engine = RigEngine(model, EngineConfig(device="cpu", input_size=SIZE))
    big = K.scaled_to(2 * W, int(1.5 * H))  # another aspect too: 63 x 112
    frames = [Frame(IMAGES[0], intrinsics=K), Frame(_render(POSES[1], big, 63, 112),
                                                    intrinsics=big)]
    rig = engine.run(frames, POSES[:2])
    assert rig.network_size == (H, W)
    assert rig.results[1].relative.shape == (63, 112)  # back at the view's own size
    assert rig.results[1].intrinsics == big
    with pytest.raises(ValueError, match="any-view"):
        RigEngine(random_model("depth_anything_3_mono", "tiny"))
