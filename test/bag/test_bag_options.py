"""``depth-pro-ros bag`` options that change the outputs' geometry, through the real CLI."""

from __future__ import annotations

import numpy as np
import pytest
from bag_builders import (
    CAMERA_INFO,
    IMAGE,
    Msg,
    camera_info_fields,
    image_fields,
    picture,
    read_bag,
    write_bag,
)

from depth_pro_ros.cli import main
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
