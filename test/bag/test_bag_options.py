"""``depth-pro-ros bag`` options that change the outputs' geometry, through the real CLI."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from bag_builders import (
    CAMERA_INFO,
    COMPRESSED,
    IMAGE,
    Msg,
    camera_info_fields,
    compressed_fields,
    image_fields,
    picture,
    read_bag,
    run_cli,
    write_bag,
)

from depth_pro_ros.cli import main
from depth_pro_ros.io.image_decode import ImageDecodeError, compressed_to_array
from depth_pro_ros.io.messages import depth_image_to_array

S = 1_000_000_000


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    t = 50 * S
    return write_bag(tmp_path_factory.mktemp("in") / "in", "mcap", [
        Msg("/cam/image_raw", IMAGE, t, image_fields(picture(3))),
        Msg("/cam/camera_info", CAMERA_INFO, t + 1000, camera_info_fields(80, 82, 30, 20, 64, 48),
            stamp=t),
    ])


def test_output_scale_halves_depth_and_its_camera_info(bag, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    code = main(["bag", str(bag), "-o", str(out), "--image-topic", "/cam/image_raw",
                 "--checkpoint", str(tiny_checkpoint), "--device", "cpu", "--no-progress",
                 "--output-scale", "0.5"])
    assert code == 0
    res = read_bag(out)
    (_, depth_msg, _), = res["/cam/depth"]
    (_, info, _), = res["/cam/depth/camera_info"]
    assert (depth_msg.height, depth_msg.width) == (24, 32)
    assert np.isfinite(depth_image_to_array(depth_msg)).all()
    assert (info.height, info.width) == (24, 32)
    np.testing.assert_allclose(info.k, [40, 0, 15, 0, 41, 10, 0, 0, 1])


@pytest.mark.parametrize("scale", ["0", "1.5"])
def test_output_scale_out_of_range_is_refused(bag, tiny_checkpoint, tmp_path, scale, capsys):
    code = main(["bag", str(bag), "-o", str(tmp_path / "out"), "--image-topic",
                 "/cam/image_raw", "--checkpoint", str(tiny_checkpoint), "--device", "cpu",
                 "--no-progress", "--output-scale", scale])
    assert code == 1
    assert "output_scale must be in (0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_output_scale_must_be_a_number(bag, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bag", str(bag), "-o", str(tmp_path / "out"), "--image-topic", "/cam/image_raw",
              "--output-scale", "nan"])
    assert exit_info.value.code == 2
    assert "--output-scale: must be a finite number" in capsys.readouterr().err


def _damaged_jpeg_fields() -> dict:
    """A JPEG with flipped bytes in its scan that decodes while libjpeg complains (the
    first of a seeded series of damages that does, checked with the decoder itself)."""
    fields = compressed_fields(picture(5, 24, 32), "jpg")  # under the test's pixel limit
    clean = fields["data"].tobytes()
    scan = clean.find(b"\xff\xda")
    rng = np.random.default_rng(0)
    for _ in range(200):
        data = bytearray(clean)
        for _ in range(3):
            data[int(rng.integers(scan + 20, len(data) - 2))] ^= 0xFF
        msg = SimpleNamespace(format="jpeg", data=np.frombuffer(bytes(data), np.uint8))
        warnings: list[str] = []
        try:
            compressed_to_array(msg, warnings=warnings)
        except ImageDecodeError:
            continue
        if warnings:
            return {**fields, "data": msg.data}
    raise AssertionError("no damaged JPEG that decodes with a warning")


def test_max_input_pixels_and_decoder_complaints(tiny_checkpoint, tmp_path, capsys):
    t = 60 * S
    src = write_bag(tmp_path / "in", "mcap", [
        Msg("/big/image_raw", IMAGE, t, image_fields(picture(4))),  # 64 x 48 = 3072 px
        Msg("/small/image_raw", IMAGE, t + 1, image_fields(picture(4, 24, 32))),  # 768 px
        Msg("/jpg/image_raw/compressed", COMPRESSED, t + 2, _damaged_jpeg_fields()),
    ])
    code = main(["bag", str(src), "-o", str(tmp_path / "out"), "--image-topic",
                 "/big/image_raw", "--image-topic", "/small/image_raw", "--image-topic",
                 "/jpg/image_raw/compressed", "--checkpoint", str(tiny_checkpoint),
                 "--device", "cpu", "--no-progress", "--max-input-pixels", "2000"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "more than the limit of 2,000 pixels" in captured.err
    assert "the decoder complained (Corrupt JPEG data" in captured.err
    assert "decoder warnings: 1 frame(s)" in captured.out
    assert "too_large 1" in captured.out
    res = read_bag(tmp_path / "out")
    assert "/big/depth" not in res or not res["/big/depth"]
    assert len(res["/small/depth"]) == 1 and len(res["/jpg/depth"]) == 1


def test_camera_info_count_is_that_of_the_processed_window(tiny_checkpoint, tmp_path):
    """--start / --end: the summary counts the CameraInfo used by the written frames (one
    logged just before --start included: its frame pairs with it), not every CameraInfo
    of the bag, and only the unusable ones logged inside the window."""
    t0, step = 70 * S, S // 10
    msgs = []
    for i in range(6):  # images at 0.0, 0.1, ... 0.5 s; each with its own focal length
        t = t0 + i * step
        msgs.append(Msg("/cam/image_raw", IMAGE, t, image_fields(picture(i, 24, 32))))
        info_log = t - 2_000_000 if i == 1 else t + 1000  # #1's is logged before --start
        msgs.append(Msg("/cam/camera_info", CAMERA_INFO, info_log,
                        camera_info_fields(40 + i, 40 + i, 16, 12, 32, 24), stamp=t))
    uncalibrated = camera_info_fields(0, 0, 0, 0, 32, 24)  # K all zero: unusable
    msgs.append(Msg("/cam/camera_info", CAMERA_INFO, t0 + 2 * step + 5_000, uncalibrated,
                    stamp=t0 + 2 * step + 5_000))  # inside the window
    msgs.append(Msg("/cam/camera_info", CAMERA_INFO, t0 + 5 * step + 5_000, uncalibrated,
                    stamp=t0 + 5 * step + 5_000))  # after --end
    src = write_bag(tmp_path / "in", "mcap", msgs)
    # Window [0.1 s, 0.45 s): images #1-#4.
    code, stdout, err = run_cli("bag", str(src), "-o", str(tmp_path / "out"), "--image-topic",
                                "/cam/image_raw", "--checkpoint", str(tiny_checkpoint),
                                "--device", "cpu", "--no-progress", "--start", "0.1",
                                "--end", "0.45")
    assert code == 0, err
    assert "frames out:   4" in stdout
    assert "focal source: camera_info 4" in stdout
    assert "/cam/camera_info: 4 CameraInfo used by the written frames (1 unusable)" in stdout
    res = read_bag(tmp_path / "out")
    # Each written frame carries its own CameraInfo's focal length (exact in float64).
    assert [m.k[0] for _, m, _ in res["/cam/depth/camera_info"]] == [41.0, 42.0, 43.0, 44.0]
