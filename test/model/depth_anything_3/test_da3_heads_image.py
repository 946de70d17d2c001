"""``depth-pro-ros image`` with a Depth Anything 3 checkpoint (the tiny DA3METRIC stand-in,
its sky head set to cover about half the picture): the depth written is the released
package's recipe on the same weights (test/da3_recipe_reference.py), sky NaN
(``--no-sky-mask``: test/bag/test_bag_depth_anything_3.py)."""

from __future__ import annotations

import contextlib
import io

import cv2
import numpy as np
import pytest
from da3_recipe_reference import metric_with_sky, reference_depth

from depth_pro_ros.cli import main
from depth_pro_ros.model import save_checkpoint

pytest.importorskip("depth_anything_3.utils.alignment")

# A 42 x 56 image at input size 56 is the network input as it is (no resize): the
# preparation is exact, so the depth agrees to float rounding of the same operations.
H, W, INPUT, FOCAL = 42, 56, 56, 40.0
RTOL = 1e-5


def _main(*args) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue()


def test_image_command_writes_the_reference_depth_with_sky_nan(tmp_path):
    rng = np.random.default_rng(8)
    rgb = (np.linspace(0, 200, W)[None, :, None] + rng.integers(0, 55, (H, W, 3)))
    rgb = rgb.clip(0, 255).astype(np.uint8)
    photo = tmp_path / "p.png"
    cv2.imwrite(str(photo), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    model = metric_with_sky(rgb, INPUT)
    ckpt = save_checkpoint(model, tmp_path / "da3.pt")
    code, log = _main("image", photo, "--checkpoint", ckpt, "--device", "cpu", "--input-size",
                      INPUT, "--focal-px", FOCAL, "-o", tmp_path / "out")
    assert code == 0, log
    got = np.load(tmp_path / "out" / "p_depth.npy")
    expected = reference_depth(model, rgb, FOCAL, size=INPUT)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    assert 0.2 < np.isnan(got).mean() < 0.8  # sky and ground both there
    np.testing.assert_allclose(got, expected, rtol=RTOL)
