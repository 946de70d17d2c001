"""The parameter table: its validation, its ROS descriptors, the YAML file and docs/node.md."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import yaml

from depth_pro_ros.ros.parameters import PARAMETERS, descriptor, settings_from

REPO = Path(__file__).resolve().parents[2]
DEFAULTS = {spec.name: spec.value for spec in PARAMETERS}


def _values(**changes):
    return {**DEFAULTS, "checkpoint": "/weights/depth_pro.pt", **changes}


def test_config_yaml_holds_every_parameter_with_its_default_and_a_comment():
    text = (REPO / "config" / "depth_pro.yaml").read_text()
    config = yaml.safe_load(text)["/**"]["ros__parameters"]
    assert config == DEFAULTS and list(config) == list(DEFAULTS)
    lines = text.splitlines()
    for name in DEFAULTS:
        index = next(i for i, line in enumerate(lines) if line.strip().startswith(f"{name}:"))
        # Each key has a comment right above it (or shares the one of the key above).
        above = lines[index - 1].strip()
        assert above.startswith("#") or re.match(r"\w+:", above), name


def test_readme_documents_every_parameter():
    # The full table lives in docs/node.md (the README has the most-used rows only).
    reference = (REPO / "docs" / "node.md").read_text()
    for name in DEFAULTS:
        assert re.search(rf"^\| `{name}` \|", reference, re.M), \
            f"{name} missing from docs/node.md"


def test_an_empty_checkpoint_is_the_command_lines_default(monkeypatch, tmp_path):
    from depth_pro_ros.model.weights import CHECKPOINT_ENV, DEFAULT_CHECKPOINT

    monkeypatch.delenv(CHECKPOINT_ENV, raising=False)
    assert settings_from(_values(checkpoint="  ")).values["checkpoint"] == \
        str(DEFAULT_CHECKPOINT.expanduser())
    monkeypatch.setenv(CHECKPOINT_ENV, str(tmp_path / "w.pt"))
    assert settings_from(_values(checkpoint="")).values["checkpoint"] == str(tmp_path / "w.pt")


def test_defaults_build_settings():
    settings = settings_from(_values())
    assert settings.focal.focal_source == "auto" and settings.engine.policy == "latest"
    assert settings.outputs.points and settings.outputs.colorized
    assert settings.engine.points and settings.engine.max_depth == 100.0
    assert not settings.engine.cuda_graphs and settings.engine.graph_cache_size == 8


def test_cuda_graph_parameters_reach_the_engine_config():
    engine = settings_from(_values(cuda_graphs=True, graph_cache_size=3)).engine
    assert engine.cuda_graphs and engine.graph_cache_size == 3


@pytest.mark.parametrize(("changes", "message"), [
    ({"precision": "int8"}, "'precision' must be one of auto, fp32, fp16, bf16"),
    ({"input_transport": "theora"}, "'input_transport' must be one of raw, compressed"),
    ({"focal_source": "magic"}, "'focal_source' must be one of"),
    ({"focal_ema_alpha": 0.0}, "focal_ema_alpha must be in (0, 1]"),
    ({"focal_ema_alpha": 1.5}, "focal_ema_alpha must be in (0, 1]"),
    ({"fixed_focal_px": math.nan}, "'fixed_focal_px' must be in"),
    ({"focal_source": "fixed"}, "needs fixed_focal_px > 0"),
    ({"camera_info_timeout": 0.0}, "'camera_info_timeout' must be in"),
    ({"sync_slop": -1.0}, "'sync_slop' must be in"),
    ({"points_decimation": 0}, "'points_decimation' must be in [1, 64]"),
    ({"min_depth": 5.0, "max_depth": 5.0}, "'max_depth' (5.0) must exceed 'min_depth'"),
    ({"colorize_min": 5.0, "colorize_max": 2.0}, "colorize_max (2.0) must exceed"),
    ({"depth_encoding": "mono8"}, "'depth_encoding' must be one of 32FC1, 16UC1"),
    ({"cameras": ["front", "/abs"]}, "'/abs' is not a relative topic name"),
    ({"cameras": ["front", ""]}, "'' is not a relative topic name"),
    ({"cameras": ["rig/left", "front", "rig/left"]}, "names rig/left more than once"),
    ({"max_batch_size": -1}, "'max_batch_size' must be in [0, 64]"),
    ({"graph_cache_size": 0}, "'graph_cache_size' must be in [1, 64]"),
    ({"graph_cache_size": 65}, "'graph_cache_size' must be in [1, 64]"),
])
def test_invalid_values_are_rejected_naming_the_parameter(changes, message):
    with pytest.raises(ValueError) as info:
        settings_from(_values(**changes))
    assert message in str(info.value)


def test_descriptors_carry_description_range_and_read_only():
    by_name = {spec.name: descriptor(spec) for spec in PARAMETERS}
    assert all(d.description for d in by_name.values())
    assert by_name["checkpoint"].read_only and by_name["device"].read_only
    assert not by_name["focal_source"].read_only
    assert "fixed" in by_name["focal_source"].additional_constraints
    # (0, 1] has an open end that a ROS range cannot show: it is said in words instead.
    assert not by_name["focal_ema_alpha"].floating_point_range
    assert by_name["focal_ema_alpha"].additional_constraints == "0 < focal_ema_alpha <= 1"
    (rng,) = by_name["camera_info_timeout"].floating_point_range
    assert (rng.from_value, rng.to_value) == (0.01, 3600.0)
    (irng,) = by_name["points_decimation"].integer_range
    assert (irng.from_value, irng.to_value, irng.step) == (1, 64, 1)


@pytest.mark.parametrize(("cameras", "max_batch", "expected_names", "expected_batch"), [
    ([], 0, ("",), 1),  # one camera on the node's own topics
    (None, 0, ("",), 1),  # ROS leaves an empty string array unset
    (["front", "left", "rig/rear"], 0, ("front", "left", "rig/rear"), 3),
    (["front", "left"], 1, ("front", "left"), 1),
])
def test_cameras_and_the_batch_size(cameras, max_batch, expected_names, expected_batch):
    settings = settings_from(_values(cameras=cameras, max_batch_size=max_batch))
    assert settings.cameras == expected_names
    assert settings.engine.batch_size == expected_batch
    assert settings.engine_changes["batch_size"] == expected_batch
