"""The bag tool with a Depth Anything 3 checkpoint (the tiny DA3METRIC stand-in, its sky
head set to cover part of the pictures) and ``sky_mask`` off: the depth written is the
released package's recipe on the same weights (test/da3_recipe_reference.py) with DA3's
far value in the sky, metres from each frame's CameraInfo focal; the summary names the
model."""

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
from da3_recipe_reference import metric_with_sky, reference_depth

from depth_pro_ros.bag import BagOptions, process_bag
from depth_pro_ros.io.messages import depth_image_to_array
from depth_pro_ros.model import save_checkpoint

pytest.importorskip("depth_anything_3.utils.alignment")

S = 1_000_000_000
T0 = 9_000 * S
# 42 x 56 pictures at input size 56 are the network input as they are (no resize): the
# preparation is exact, so the depth agrees to float rounding of the same operations.
H, W, INPUT, FX = 42, 56, 56, 55.0
FRAMES = 2
TOPIC, INFO = "/cam/image_raw", "/cam/camera_info"
RTOL = 1e-5


def test_metric_model_without_sky_mask_writes_the_reference_depth(tmp_path):
    rgbs = [picture(40 + i, H, W) for i in range(FRAMES)]
    model = metric_with_sky(rgbs[0], INPUT)
    checkpoint = save_checkpoint(model, tmp_path / "da3.pt")
    msgs = []
    for i, rgb in enumerate(rgbs):
        t = T0 + i * S // 4
        msgs.append(Msg(INFO, CAMERA_INFO, t - 1_000_000,
                        camera_info_fields(FX, FX, W / 2, H / 2, W, H), stamp=t))
        msgs.append(Msg(TOPIC, IMAGE, t, image_fields(rgb), stamp=t))
    bag = write_bag(tmp_path / "in", "mcap", msgs)
    summary = process_bag(BagOptions(
        input=bag, output=tmp_path / "out", checkpoint=checkpoint, image_topics=[TOPIC],
        device="cpu", progress=False, copy_topics="none", input_size=INPUT, sky_mask=False))
    depths = [depth_image_to_array(m) for _, m, _ in read_bag(tmp_path / "out")["/cam/depth"]]
    assert len(depths) == FRAMES
    for rgb, depth in zip(rgbs, depths):
        np.testing.assert_allclose(depth, reference_depth(model, rgb, FX, sky_mask=False,
                                                          size=INPUT), rtol=RTOL)
    # The sky is there (NaN with the mask), and got DA3's far value instead.
    assert np.isnan(reference_depth(model, rgbs[0], FX, size=INPUT)).any()
    assert np.isfinite(depths[0]).all()
    assert summary.model == "Depth Anything 3 (custom, metric, input 56)"
