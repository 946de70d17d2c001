"""The bag tool's promises around the data: existing outputs, interruptions, crashes,
corrupt messages, ``--strict``, errors, windows and determinism.

Single-camera ROS 2 bags of a few 64x48 frames keep the forward passes few.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from bag_builders import (
    CAMERA_INFO,
    IMAGE,
    IMU,
    Msg,
    camera_info_fields,
    image_fields,
    imu_fields,
    picture,
    read_bag,
    run_cli,
    serialize,
    snapshot,
    write_bag,
)

from depth_pro_ros.bag import BagDataError, BagOptions, process_bag

REPO = Path(__file__).resolve().parents[2]
S = 1_000_000_000
T0 = 500 * S
CAM = "/cam/image_raw"


def _frames(n: int, corrupt: dict[int, str] | None = None) -> list[Msg]:
    """``n`` frames 0.25 s apart plus an IMU message after each; ``corrupt`` index ->
    ``truncated`` (bytes cut short: cannot be deserialized) or ``short_data`` (a valid
    message whose pixel buffer is too small for its size: cannot be decoded)."""
    corrupt = corrupt or {}
    msgs = []
    for i in range(n):
        t = T0 + i * S // 4
        m = Msg(CAM, IMAGE, t, image_fields(picture(i)))
        if corrupt.get(i) == "truncated":
            m.raw = serialize("mcap", m)[:40]
        elif corrupt.get(i) == "short_data":
            m.fields = dict(m.fields, data=m.fields["data"][:100])
        msgs.append(m)
        msgs.append(Msg("/imu", IMU, t + 1_000_000, imu_fields(i)))
    return msgs


def _options(src: Path, out: Path, checkpoint: Path, **kw) -> BagOptions:
    return BagOptions(input=src, output=out, checkpoint=checkpoint, image_topics=[CAM],
                      device="cpu", progress=False, **kw)


def _old_output(path: Path) -> Path:
    """Something at OUTPUT that must survive a failed run."""
    path.mkdir()
    (path / "keep.txt").write_text("previous results")
    return path


def _no_partial(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if ".partial-" in p.name or ".replaced-" in p.name]


@pytest.fixture(scope="module")
def two_frames(tmp_path_factory):
    return write_bag(tmp_path_factory.mktemp("two") / "in", "mcap", _frames(2))


def test_existing_output_refused_then_overwrite_is_deterministic(
        two_frames, tiny_checkpoint, tmp_path):
    before = snapshot(two_frames)
    out = _old_output(tmp_path / "out")
    code, _, err = run_cli("bag", str(two_frames), "-o", str(out), "--checkpoint",
                        str(tiny_checkpoint), "--image-topic", CAM, "--device", "cpu")
    assert code == 1 and "exists; pass --overwrite" in err
    assert (out / "keep.txt").read_text() == "previous results"

    code, stdout, err = run_cli("bag", str(two_frames), "-o", str(out), "--checkpoint",
                             str(tiny_checkpoint), "--image-topic", CAM, "--device", "cpu",
                             "--batch-size", "2", "--overwrite", "--no-progress")
    assert code == 0, err
    assert "frames out:   2" in stdout and "throughput:" in stdout
    assert not (out / "keep.txt").exists() and (out / "metadata.yaml").is_file()
    first = [raw for _, _, raw in read_bag(out)["/cam/depth"]]

    # Same input, checkpoint, device, precision and batch size: identical depth.
    summary = process_bag(_options(two_frames, out, tiny_checkpoint, batch_size=2,
                                   overwrite=True))
    assert summary.frames_out == 2
    assert [raw for _, _, raw in read_bag(out)["/cam/depth"]] == first
    assert snapshot(two_frames) == before
    assert _no_partial(tmp_path)


def test_crash_inside_processing_leaves_old_output_alone(two_frames, tiny_checkpoint, tmp_path):
    before = snapshot(two_frames)
    out = _old_output(tmp_path / "out")
    calls = []

    def explode(done: int, total: int) -> None:
        calls.append((done, total))
        raise RuntimeError("simulated crash after the first frame")

    with pytest.raises(RuntimeError, match="simulated crash"):
        process_bag(_options(two_frames, out, tiny_checkpoint, overwrite=True),
                    on_progress=explode)
    assert calls == [(1, 2)]
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert _no_partial(tmp_path)
    assert snapshot(two_frames) == before


def test_ctrl_c_removes_the_partial_output(tiny_checkpoint, tmp_path):
    """SIGINT to the real command while it writes: exit 130, nothing at OUTPUT."""
    src = write_bag(tmp_path / "in", "mcap", _frames(8))
    before = snapshot(src)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "depth_pro_ros.cli", "bag", str(src), "-o", str(out),
         "--checkpoint", str(tiny_checkpoint), "--image-topic", CAM, "--device", "cpu",
         ],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # A runner started in the background (`cmd &`) ignores SIGINT, and children inherit
        # that: give the command the default disposition, as in a terminal.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while not [p for p in tmp_path.iterdir() if ".partial-" in p.name]:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the output was never started"
            time.sleep(0.05)
        time.sleep(0.5)  # let it write something
        assert proc.poll() is None, "finished before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]
    assert snapshot(src) == before


@pytest.fixture(scope="module")
def corrupt_bag(tmp_path_factory):
    msgs = _frames(4, corrupt={1: "truncated", 2: "short_data"})
    # An uncalibrated camera's CameraInfo (K all zero) is ignored, not fatal.
    msgs.append(Msg("/cam/camera_info", CAMERA_INFO, T0 + 500,
                    camera_info_fields(0, 0, 0, 0, 64, 48), stamp=T0))
    return write_bag(tmp_path_factory.mktemp("corrupt") / "in", "sqlite3", msgs)


def test_corrupt_messages_are_skipped_and_counted(corrupt_bag, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    reports = []
    summary = process_bag(_options(corrupt_bag, out, tiny_checkpoint), report=reports.append)
    assert summary.frames_in == 4 and summary.frames_out == 2
    assert dict(summary.skipped) == {"deserialize": 1, "decode": 1}
    assert summary.cameras[0].camera_info == {"unusable": 1}
    assert dict(summary.focal) == {"fov_head": 2}
    assert any("message #1" in r and "deserialize" in r for r in reports), reports
    assert any("message #2" in r for r in reports), reports
    text = summary.format()
    assert "skipped:      2 (decode 1, deserialize 1)" in text
    res = read_bag(out)
    inp = read_bag(corrupt_bag)
    assert [t for t, _, _ in res["/cam/depth"]] == [inp[CAM][i][0] for i in (0, 3)]
    # Corrupt inputs are still copied verbatim.
    assert [raw for _, _, raw in res[CAM]] == [raw for _, _, raw in inp[CAM]]


def test_strict_stops_at_the_first_bad_message(corrupt_bag, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(BagDataError, match=r"/cam/image_raw message #1 .*deserialize"):
        process_bag(_options(corrupt_bag, out, tiny_checkpoint, strict=True))
    assert not out.exists() and _no_partial(tmp_path)
    code, _, err = run_cli("bag", str(corrupt_bag), "-o", str(out), "--checkpoint",
                        str(tiny_checkpoint), "--image-topic", CAM, "--device", "cpu",
                        "--strict", "--start", "0.4")  # from frame 2: the decode error
    assert code == 1 and "message #0" in err and "counting from --start" in err, err
    assert "cannot be decoded" in err or "decode" in err or "short" in err, err
    assert not out.exists() and _no_partial(tmp_path)


def test_a_bag_where_no_image_gives_depth_exits_1(tiny_checkpoint, tmp_path):
    """Every image is unusable: the bag is written (messages copied, reasons counted) but
    the run does not report success to a script."""
    src = write_bag(tmp_path / "in", "mcap", _frames(2, corrupt={0: "truncated",
                                                                 1: "short_data"}))
    out = tmp_path / "out"
    code, stdout, err = run_cli("bag", str(src), "-o", str(out), "--checkpoint",
                                str(tiny_checkpoint), "--image-topic", CAM, "--device", "cpu",
                                "--no-progress")
    assert code == 1, (stdout, err)
    assert "frames out:   0" in stdout
    assert "none of the 2 image(s) gave depth" in err and str(out) in err
    assert len(read_bag(out)["/imu"]) == 2 and _no_partial(tmp_path)


def test_time_window(tiny_checkpoint, tmp_path):
    src = write_bag(tmp_path / "in", "mcap", _frames(4))
    out = tmp_path / "out"
    summary = process_bag(_options(src, out, tiny_checkpoint, start=0.3, end=0.6))
    assert summary.frames_in == summary.frames_out == 1
    res = read_bag(out)
    assert [t for t, _, _ in res["/cam/depth"]] == [T0 + S // 2]
    assert [t for t, _, _ in res["/imu"]] == [T0 + S // 2 + 1_000_000]


def test_input_and_option_errors_are_one_clear_line(two_frames, tiny_checkpoint, tmp_path):
    ck = str(tiny_checkpoint)
    out = str(tmp_path / "out")

    def run(*args: str) -> tuple[int, str]:
        code, _, err = run_cli("bag", *args)
        assert "Traceback" not in err
        return code, err

    code, err = run(str(two_frames), "-o", out, "--checkpoint", ck, "--image-topic", "/nope")
    assert code == 1 and "image topic /nope is not in the bag" in err and CAM in err
    code, err = run(str(two_frames), "-o", out, "--checkpoint", ck, "--image-topic", "/imu")
    assert code == 1 and "holds sensor_msgs/msg/Imu" in err
    code, err = run(str(two_frames), "-o", out, "--checkpoint", ck, "--image-topic", CAM,
                    "--camera-info-topic", "/cam/camera_info")
    assert code == 1 and "camera_info topic /cam/camera_info is not in the bag" in err
    code, err = run(str(two_frames), "-o", out, "--checkpoint", ck, "--image-topic", CAM,
                    "--copy-topics", "/imu,/tf")
    assert code == 1 and "/tf not in the bag" in err
    garbage = tmp_path / "garbage.bag"
    garbage.write_bytes(b"#ROSBAG V2.0\nthis is not a bag")
    code, err = run(str(garbage), "-o", out, "--checkpoint", ck, "--image-topic", CAM)
    assert code == 1 and "cannot read bag" in err
    empty = tmp_path / "folder"
    empty.mkdir()
    code, err = run(str(empty), "-o", out, "--checkpoint", ck, "--image-topic", CAM)
    assert code == 1 and "metadata.yaml" in err
    code, err = run(str(tmp_path / "none"), "-o", out, "--checkpoint", ck, "--image-topic", CAM)
    assert code == 1 and "input bag not found" in err
    code, err = run(str(two_frames), "-o", str(two_frames / "x"), "--checkpoint", ck,
                    "--image-topic", CAM, "--overwrite")
    assert code == 1 and "overlaps the input" in err
    code, err = run(str(two_frames), "-o", out, "--checkpoint", str(tmp_path / "no.pt"),
                    "--image-topic", CAM)
    assert code == 2 and "no such file or folder" in err
    bad = tmp_path / "bad.pt"
    bad.write_text("nope")
    code, err = run(str(two_frames), "-o", out, "--checkpoint", str(bad), "--image-topic", CAM)
    assert code == 2 and "not a PyTorch checkpoint" in err
    code, err = run(str(two_frames), "-o", out, "--checkpoint", ck, "--image-topic", CAM,
                    "--device", "vulkan")
    assert code == 2 and "vulkan" in err
    code, err = run(str(two_frames), "-o", out, "--checkpoint", ck, "--image-topic", CAM,
                    "--focal-source", "fixed")
    assert code == 2 and "fixed_focal_px" in err  # a usage error
    assert not os.path.exists(out) and _no_partial(tmp_path)


def test_focal_source_fixed_and_16uc1(two_frames, tiny_checkpoint, tmp_path):
    """A fixed focal is used as given; 16UC1 depth is millimetres of the same depth."""
    out = tmp_path / "out"
    code, stdout, err = run_cli(
        "bag", str(two_frames), "-o", str(out), "--checkpoint", str(tiny_checkpoint),
        "--image-topic", CAM, "--device", "cpu", "--focal-source", "fixed", "--focal-px", "80",
        "--depth-encoding", "16UC1", "--copy-topics", "none", "--batch-size", "2",
        "--format", "sqlite3")
    assert code == 0, err
    assert "focal source: fixed 2" in stdout
    res = read_bag(out)
    assert sorted(k for k in res if not k.startswith("__")) == ["/cam/depth",
                                                              "/cam/depth/camera_info"]
    for _, info, _ in res["/cam/depth/camera_info"]:
        np.testing.assert_allclose(info.k, [80, 0, 32, 0, 80, 24, 0, 0, 1])
    for _, depth, _ in res["/cam/depth"]:
        assert depth.encoding == "16UC1" and depth.step == 128
        assert np.frombuffer(depth.data.tobytes(), "<u2").min() > 0
