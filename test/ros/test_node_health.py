"""depth_pro_node under a stream of bad input: throttled logging and honest /diagnostics.

One node (tiny checkpoint, CPU, fixed focal) with a short ``stall_timeout``; the tests
run in file order over real DDS.
"""

from __future__ import annotations

import time

import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from harness.probe import running_node
from harness.ros_messages import image_message
from message_factories import smooth_rgb

STALL = 4.0  # the node's stall_timeout: well above a CPU forward pass of the tiny model (384 px)
_next_sec = iter(range(100, 10_000))


@pytest.fixture(scope="module")
def node(tiny_checkpoint, tmp_path_factory):
    with running_node(tmp_path_factory.mktemp("node") / "node.log",
                      f"checkpoint:={tiny_checkpoint}", "device:=cpu", "focal_source:=fixed",
                      "fixed_focal_px:=50.0", "publish_points:=false",
                      f"stall_timeout:={STALL}", "estimate_fov:=true", "output_scale:=0.5",
                      warm_up=_good(), outputs=("depth", "depth/camera_info")) as running:
        yield running


def _good():
    return image_message(smooth_rgb(48, 64), next(_next_sec))


def _unknown_encoding(i: int):
    msg = image_message(smooth_rgb(48, 64), next(_next_sec))
    # Letters, not digits: no two encodings differ by a number only.
    msg.encoding = "garbage_" + "".join(chr(ord("a") + int(d)) for d in str(i))
    return msg


def _status(probe, predicate, what: str, timeout: float = 30.0) -> dict:
    """The first /diagnostics status published from now on that satisfies ``predicate``."""
    seen = len(probe.diagnostics)
    found: list[dict] = []

    def check() -> bool:
        for array in probe.diagnostics[seen:]:
            status = array.status[0]
            item = {"level": status.level, "message": status.message,
                    **{kv.key: kv.value for kv in status.values}}
            if predicate(item):
                found.append(item)
                return True
        return False

    probe.spin_until(check, timeout, what)
    return found[0]


def test_output_scale_and_the_fov_estimate_beside_a_known_focal(node):
    _, probe = node
    image = _good()
    out = probe.exchange(image)
    assert (out["depth"].height, out["depth"].width) == (24, 32)
    info = out["depth/camera_info"]
    assert (info.height, info.width) == (24, 32) and info.k[0] == pytest.approx(25.0)
    diag = probe.latest_diagnostics()
    assert float(diag["focal_px"]) == pytest.approx(25.0)  # the depth image's focal
    assert float(diag["focal_estimate_px"]) > 0  # the FoV head ran beside the fixed focal


def test_max_input_pixels_refuses_larger_images_and_changes_at_runtime(node):
    proc, probe = node
    results = probe.set_parameters("/cam/depth_pro_node", max_input_pixels=1000)
    assert all(r.successful for r in results), [r.reason for r in results]
    try:
        big = _good()  # 64 x 48 = 3,072 pixels
        probe.resend_until(lambda: probe.send(big),
                           lambda: "more than the limit of 1,000 pixels" in proc.log(), 60.0,
                           "the too_large error", period=2.0)
    finally:
        probe.set_parameters("/cam/depth_pro_node", max_input_pixels=50_000_000)
    probe.resend_until_depth(_good(), period=5.0)
    assert all(m.header.stamp != big.header.stamp for m in probe.received["depth"])
    diag = probe.latest_diagnostics()
    assert int(diag["skipped_frames"]) >= 1


def test_distinct_unknown_encodings_are_one_kind_of_problem(node):
    proc, probe = node
    before = proc.log().count("unsupported image encoding")
    for i in range(60):
        probe.send(_unknown_encoding(i))
    # A good frame after them: served, and by then all 60 were handled in order.
    image = _good()
    probe.resend_until_depth(image, period=5.0)
    log = proc.log()
    assert log.count("unsupported image encoding") - before == 1, log
    # After the throttle period one more report carries the count of those held back
    # (best-effort delivery of a burst loses some of the 60, on a loaded machine most of
    # them: 9 of 60 arrived once, so only "some were held back" is certain).
    # No fixed pause: one more bad frame every half second until the throttle period
    # (the node's 5 s) has passed and the report comes; those sent before it are held too.
    resent = []

    def send_bad() -> None:
        resent.append(_unknown_encoding(1000 + len(resent)))
        probe.send(resent[-1])

    probe.resend_until(send_bad, lambda: "more like it since the last report" in proc.log(),
                       30.0, "the report of the held-back encodings", period=0.5)
    lines = [line for line in proc.log().splitlines() if "unsupported image encoding" in line]
    assert len(lines) - before == 2, lines
    held = int(lines[-1].rsplit("(", 1)[1].split()[0])
    assert 1 <= held <= 59 + len(resent) - 1, lines[-1]


def test_diagnostics_warn_when_input_stops(node):
    _, probe = node
    probe.resend_until_depth(_good(), period=5.0)
    status = _status(probe, lambda s: s["message"].startswith("no input for"),
                     "a 'no input' warning", timeout=STALL + 10.0)
    assert status["level"] == DiagnosticStatus.WARN


def test_diagnostics_error_when_images_arrive_but_no_depth_is_published(node):
    _, probe = node
    stop = time.monotonic() + 3 * STALL + 10.0
    found: list[dict] = []
    seen = len(probe.diagnostics)

    def keep_sending_bad() -> bool:
        probe.send(_unknown_encoding(0))
        for array in probe.diagnostics[seen:]:
            status = array.status[0]
            if status.level == DiagnosticStatus.ERROR:
                found.append({"message": status.message})
                return True
        return time.monotonic() > stop

    probe.spin_until(keep_sending_bad, 3 * STALL + 20.0, "an ERROR status", period=0.2)
    assert found, "no ERROR status while only bad images arrived"
    assert "no depth was published" in found[0]["message"]
    # A good frame brings it back to OK.
    probe.resend_until_depth(_good(), period=5.0)
    status = _status(probe, lambda s: s["level"] == DiagnosticStatus.OK, "an OK status")
    assert status["message"].startswith("running")
