"""depth_pro_node refuses bad start-up parameters with one clear line and exit code 2."""

from __future__ import annotations

import pytest
from ros_harness import NodeProcess


@pytest.mark.parametrize(("params", "message"), [
    (("checkpoint:=/nonexistent/depth_pro.pt",),
     "checkpoint /nonexistent/depth_pro.pt: no such file or folder"),
    (("focal_ema_alpha:=0.0",), "focal_ema_alpha must be in (0, 1]"),
    (("points_decimation:=0",), "parameter 'points_decimation'"),
    (("fixed_focal_px:=500",), "parameter 'fixed_focal_px' must be a float"),
    (("focal_source:=fixed",), "focal_source 'fixed' needs fixed_focal_px > 0"),
    (("device:=tpu",), "parameter 'device': invalid device 'tpu'"),
    (("cameras:=[front, front]",), "parameter 'cameras' names front more than once"),
    (("cameras:=[front, /rear]",), "parameter 'cameras': '/rear' is not a relative topic"),
    (("cameras:=front",), "parameter 'cameras' must be a list of strings (e.g. [front, left])"),
], ids=["missing_file", "alpha_zero", "decimation_zero", "int_for_float",
        "fixed_without_focal", "bad_device", "duplicate_camera", "absolute_camera",
        "camera_not_a_list"])
def test_bad_startup_parameters_exit_with_the_reason(tiny_checkpoint, tmp_path, params, message):
    if not params[0].startswith("checkpoint"):
        params = (f"checkpoint:={tiny_checkpoint}", *params)
    node = NodeProcess(tmp_path / "node.log", *params)
    assert node.wait(timeout=120) == 2
    log = node.log()
    assert message in log, log
    assert "cannot start" in log and "Traceback" not in log, log


def test_missing_checkpoint_says_where_to_get_weights(tmp_path, monkeypatch):
    """Without a checkpoint parameter the node takes the command line's default
    ($DEPTH_PRO_CHECKPOINT here); its message is the command line's
    (weights.missing_checkpoint_message): where the weights come from, where they go, and
    the random stand-in command."""
    from depth_pro_ros.model.weights import (
        CHECKPOINT_ENV,
        STAND_IN_COMMAND,
        missing_checkpoint_message,
    )

    missing = tmp_path / "none.pt"
    monkeypatch.setenv(CHECKPOINT_ENV, str(missing))
    node = NodeProcess(tmp_path / "node.log")
    assert node.wait(timeout=120) == 2
    log = node.log()
    for line in missing_checkpoint_message(missing).splitlines():
        assert line in log, log
    assert STAND_IN_COMMAND in log and "checkpoint:=PATH" in log, log
