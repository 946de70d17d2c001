"""depth_pro_node refuses bad start-up parameters with one clear line and exit code 2.

The refusals run the node's own entry point (``depth_pro_ros.ros.node.main``, what
``ros2 run`` calls) in this process with the command line a launch would give it:
rclpy parses the arguments, the node declares its parameters, the refusal is logged
and ``main`` returns the exit status, all as in a node process but without a Python
and torch start-up per case. One case runs the node as a real process, to show the
process itself exits with status 2 and that line.
"""

from __future__ import annotations

import pytest
from harness.node import NodeProcess, run_in_process


def _refusal(capfd) -> str:
    """What the node wrote; it must be the one 'cannot start' line and no traceback."""
    out, err = capfd.readouterr()
    log = out + err
    fatal = [line for line in log.splitlines() if "cannot start" in line]
    assert len(fatal) == 1 and "Traceback" not in log, log
    return log


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
def test_bad_startup_parameters_exit_with_the_reason(tiny_checkpoint, capfd, params, message):
    if not params[0].startswith("checkpoint"):
        params = (f"checkpoint:={tiny_checkpoint}", *params)
    assert run_in_process(*params) == 2
    log = _refusal(capfd)
    assert message in log, log


def test_missing_checkpoint_says_where_to_get_weights(tmp_path, monkeypatch):
    """Without a checkpoint parameter the node takes the command line's default
    ($DEPTH_PRO_CHECKPOINT here); its message is the command line's
    (weights.missing_checkpoint_message): where the weights come from, where they go, and
    the random stand-in command. A real node process: its exit status is 2."""
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
    assert "Traceback" not in log, log
    for line in missing_checkpoint_message(missing).splitlines():
        assert line in log, log
    assert STAND_IN_COMMAND in log and "checkpoint:=PATH" in log, log
