"""``bag --multiview rig``: three cameras' frames grouped by stamp, each group one joint
forward of the any-view DA3 stand-in (the depth written is RigEngine's on the same
frames: test_da3_rig checks that against the reference package); a camera missing from
an instant runs the group with the others and the summary says so; byte-identical output
between runs; the known poses of --rig-extrinsics reach the network."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from bag_builders import CAMERA_INFO, IMAGE, Msg, camera_info_fields, image_fields, picture
from bag_builders import read_bag as read

from depth_pro_ros.bag import BagOptions, process_bag
from depth_pro_ros.bag.errors import BagInputError
from depth_pro_ros.engine import EngineConfig, Frame
from depth_pro_ros.engine.focal import Intrinsics
from depth_pro_ros.engine.rig import RigEngine
from depth_pro_ros.io.messages import depth_image_to_array
from depth_pro_ros.model import save_checkpoint
from depth_pro_ros.model.stand_in import random_model

S, MS = 1_000_000_000, 1_000_000
T0 = 5_000 * S
H, W, INPUT, FX = 42, 56, 56, 50.0
CAMS = ("a", "b", "c")
# Instants 0.25 s apart, the cameras' stamps within 4 ms; c has no frame at instant 1.
STAMPS = {(i, c): T0 + i * S // 4 + k * 2 * MS for i in range(3) for k, c in enumerate(CAMS)
          if (i, c) != (1, "c")}
RTOL = 1e-6  # the same operations on the same frames: float rounding only


@pytest.fixture(scope="module")
def rig_bag(tmp_path_factory):
    root = tmp_path_factory.mktemp("rig")
    model = random_model("depth_anything_3", "tiny")
    checkpoint = save_checkpoint(model, root / "da3.pt")
    rgbs = {key: picture(10 + n, H, W) for n, key in enumerate(sorted(STAMPS))}
    msgs = []
    for (i, c), t in sorted(STAMPS.items(), key=lambda kv: kv[1]):
        msgs.append(Msg(f"/{c}/camera_info", CAMERA_INFO, t,
                        camera_info_fields(FX, FX, W / 2, H / 2, W, H), stamp=t))
        msgs.append(Msg(f"/{c}/image_raw", IMAGE, t + MS, image_fields(rgbs[i, c]), stamp=t))
    from bag_builders import write_bag

    return model, checkpoint, rgbs, write_bag(root / "in", "mcap", msgs)


def _options(rig_bag, out, **extra) -> BagOptions:
    _, checkpoint, _, bag = rig_bag
    return BagOptions(input=bag, output=out, checkpoint=checkpoint, device="cpu",
                      image_topics=[f"/{c}/image_raw" for c in CAMS], progress=False,
                      copy_topics="none", input_size=INPUT, allow_relative=True,
                      **{"multiview": "rig", "rig_slop": 0.010, **extra})


def _written(out) -> dict[str, list]:
    bag = read(out)
    return {c: bag.get(f"/{c}/depth/relative", []) for c in CAMS}


def _expected(model, rgbs, instant: int, poses=None) -> dict[str, np.ndarray]:
    cams = [c for c in CAMS if (instant, c) in STAMPS]
    k = Intrinsics(FX, FX, W / 2, H / 2, W, H)
    rig = RigEngine(model, EngineConfig(device="cpu", input_size=INPUT)).run(
        [Frame(rgbs[instant, c], intrinsics=k) for c in cams],
        None if poses is None else [poses[c] for c in cams])
    return {c: r.relative for c, r in zip(cams, rig.results)}


def test_rig_groups_run_jointly_and_a_missing_camera_is_reported(rig_bag, tmp_path):
    model, _, rgbs, _ = rig_bag
    summary = process_bag(_options(rig_bag, tmp_path / "one"))
    written = _written(tmp_path / "one")
    assert [len(written[c]) for c in CAMS] == [3, 3, 2]
    for instant in range(3):
        for c, value in _expected(model, rgbs, instant).items():
            row = [m for t, m, _ in written[c] if t == STAMPS[instant, c] + MS]
            np.testing.assert_allclose(depth_image_to_array(row[0]), value, rtol=RTOL)
    assert summary.rig_groups == 3 and summary.batch_sizes == {3: 2, 2: 1}
    assert [s.rig_missing for s in summary.cameras] == [0, 0, 1]
    assert "rig:          3 group(s)" in summary.format()
    assert "/c/image_raw missing from 1" in summary.format()
    # Byte-identical between runs.
    process_bag(_options(rig_bag, tmp_path / "two"))
    again = _written(tmp_path / "two")
    assert all([r for _, _, r in written[c]] == [r for _, _, r in again[c]] for c in CAMS)


def test_rig_extrinsics_reach_the_network_and_a_bad_file_is_refused(rig_bag, tmp_path):
    model, _, rgbs, _ = rig_bag
    poses = {f"/{c}/image_raw": np.eye(4) for c in CAMS}
    for k, key in enumerate(poses):
        poses[key][0, 3] = 0.2 * k
    path = tmp_path / "rig.yaml"
    path.write_text(yaml.safe_dump({k: v.tolist() for k, v in poses.items()}))
    process_bag(_options(rig_bag, tmp_path / "out", rig_extrinsics=path))
    written = _written(tmp_path / "out")
    by_cam = {c: poses[f"/{c}/image_raw"] for c in CAMS}
    expected = _expected(model, rgbs, 0, by_cam)
    np.testing.assert_allclose(depth_image_to_array(written["a"][0][1]), expected["a"],
                               rtol=RTOL)
    unknown = _expected(model, rgbs, 0)["a"]
    assert not np.allclose(expected["a"], unknown, rtol=1e-4)  # the poses changed it
    path.write_text(yaml.safe_dump({"/a/image_raw": np.eye(4).tolist()}))
    with pytest.raises(BagInputError, match="no transform for camera '/b/image_raw'"):
        process_bag(_options(rig_bag, tmp_path / "bad", rig_extrinsics=path))
    with pytest.raises(BagInputError, match="--rig-slop"):
        process_bag(_options(rig_bag, tmp_path / "bad", rig_slop=float("nan")))
