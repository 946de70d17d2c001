"""Rig mode's pure logic: grouping frames by stamp, and the strict extrinsics file."""

from __future__ import annotations

import math

import numpy as np
import pytest

from depth_pro_ros.stream.errors import RigConfigError
from depth_pro_ros.stream.rig import RigGrouper, load_rig_extrinsics

MS = 1_000_000  # nanoseconds


def _feed(grouper: RigGrouper, frames: list[tuple[str, int]]) -> list:
    out = []
    for camera, stamp in frames:
        out += grouper.add(camera, stamp, f"{camera}@{stamp}")
    return out


def test_frames_within_the_slop_form_one_group_released_when_complete():
    grouper = RigGrouper(["left", "front", "right"], slop=0.010)
    assert grouper.add("front", 100 * MS, "f") == []
    assert grouper.add("left", 105 * MS, "l") == []
    (group,) = grouper.add("right", 95 * MS, "r")  # earlier stamp, still within 10 ms
    assert list(group.views) == ["left", "front", "right"]  # the rig's order
    assert group.views == {"left": "l", "front": "f", "right": "r"}
    assert group.missing == () and group.stamp_ns == 95 * MS and grouper.held == 0


def test_a_group_missing_a_camera_is_released_once_a_frame_is_past_the_slop():
    grouper = RigGrouper(["a", "b", "c"], slop=0.010)
    # c is silent at 100 ms; its frame at 150 ms shows no frame can join the 100 ms group.
    assert _feed(grouper, [("a", 100 * MS), ("b", 103 * MS), ("a", 110 * MS)]) == []
    first, second = grouper.add("c", 150 * MS, "c@150")
    assert first.views == {"a": f"a@{100 * MS}", "b": f"b@{103 * MS}"}
    assert first.missing == ("c",)
    # a@110 opened a group of its own (a was taken); 150 ms is past its slop as well.
    assert second.views == {"a": f"a@{110 * MS}"} and second.missing == ("b", "c")
    assert grouper.held == 1  # c@150 waits for its partners


def test_release_order_and_slop_boundary():
    grouper = RigGrouper(["a", "b"], slop=0.010)
    released = _feed(grouper, [("a", 0), ("a", 5 * MS), ("b", 10 * MS), ("b", 16 * MS)])
    # b@10 joins the oldest group it fits within 10 ms (a@0, exactly at the slop): it is
    # complete. b@16 is 11 ms after a@5: a@5's group is past the slop, released alone.
    assert [(g.views, g.missing) for g in released] == [
        ({"a": "a@0", "b": f"b@{10 * MS}"}, ()), ({"a": f"a@{5 * MS}"}, ("b",))]
    released = grouper.add("a", 30 * MS, "a@30")  # 14 ms after b@16: too late to join
    assert [(g.stamp_ns, g.missing) for g in released] == [(16 * MS, ("a",))]
    (last,) = grouper.flush()
    assert last.views == {"a": "a@30"} and last.missing == ("b",) and grouper.held == 0


def test_grouping_depends_only_on_the_order_of_the_frames():
    rng = np.random.default_rng(0)
    frames = [(str(c), int(t)) for t in range(0, 1000 * MS, 33 * MS)
              for c in rng.permutation(["a", "b", "c"])
              if rng.random() > 0.1]
    frames = [(c, t + int(rng.integers(-3 * MS, 3 * MS))) for c, t in frames]

    def run() -> list:
        grouper = RigGrouper(["a", "b", "c"], slop=0.005)
        return [(g.stamp_ns, g.views, g.missing) for g in _feed(grouper, frames)
                + grouper.flush()]

    first = run()
    assert first == run()
    assert sum(len(views) for _, views, _ in first) == len(frames)  # no frame lost
    assert any(missing for _, _, missing in first)  # the 10 % dropped show as missing


def test_grouper_refuses_bad_settings_and_strangers():
    with pytest.raises(ValueError, match="distinct"):
        RigGrouper(["a", "a"], 0.01)
    with pytest.raises(ValueError, match="rig_slop"):
        RigGrouper(["a"], math.nan)
    with pytest.raises(ValueError, match="not in the rig"):
        RigGrouper(["a"], 0.01).add("z", 0, None)


def _rot_z(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def _matrix(rotation: np.ndarray, t=(0.1, 0.0, 0.0)) -> list:
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = rotation, t
    return m.tolist()


def _write(tmp_path, text: str):
    path = tmp_path / "rig.yaml"
    path.write_text(text)
    return path


def test_extrinsics_file_loads_every_camera(tmp_path):
    import yaml

    data = {"left": _matrix(_rot_z(30)), "right": _matrix(np.eye(3), (-0.1, 0, 0))}
    path = _write(tmp_path, yaml.safe_dump(data))
    loaded = load_rig_extrinsics(path, ["left", "right"])
    assert list(loaded) == ["left", "right"]
    np.testing.assert_allclose(loaded["left"], data["left"], rtol=0, atol=1e-15)


@pytest.mark.parametrize("data, camera, match", [
    ({"left": "M", "right": "M", "rear": "M"}, "rear", "not one of the rig's cameras"),
    ({"left": "M"}, "right", "no transform"),
    ({"left": "M", "right": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]}, "right", "shape"),
    ({"left": "M", "right": [[1, 0, 0, 0]] * 3 + [[0, 0, 1, 1]]}, "right", "last row"),
    ({"left": "M", "right": "SCALED"}, "right", "not a rotation"),
    ({"left": "M", "right": "MIRRORED"}, "right", "not a rotation"),
    ({"left": "M", "right": [["x"] * 4] * 4}, "right", "not a matrix"),
])
def test_extrinsics_file_errors_name_file_and_camera(tmp_path, data, camera, match):
    import yaml

    values = {"M": _matrix(_rot_z(10)), "SCALED": _matrix(1.01 * np.eye(3)),
              "MIRRORED": _matrix(np.diag([1.0, 1.0, -1.0]))}
    data = {k: values.get(v, v) if isinstance(v, str) else v for k, v in data.items()}
    path = _write(tmp_path, yaml.safe_dump(data))
    with pytest.raises(RigConfigError, match=match) as info:
        load_rig_extrinsics(path, ["left", "right"])
    assert str(path) in str(info.value) and repr(camera) in str(info.value)


def test_extrinsics_tolerance_takes_a_rotation_typed_with_four_decimals(tmp_path):
    import yaml

    rounded = np.round(_rot_z(33), 4)
    path = _write(tmp_path, yaml.safe_dump({"a": _matrix(rounded)}))
    assert load_rig_extrinsics(path, ["a"])["a"][0, 0] == rounded[0, 0]
    with pytest.raises(RigConfigError, match="cannot read"):
        load_rig_extrinsics(tmp_path / "absent.yaml", ["a"])
    with pytest.raises(RigConfigError, match="mapping"):
        load_rig_extrinsics(_write(tmp_path, "[1, 2]"), ["a"])
