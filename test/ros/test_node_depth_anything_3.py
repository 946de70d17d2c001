"""depth_pro_node with a Depth Anything 3 checkpoint (the tiny DA3METRIC stand-in, its sky
head set to cover about half the picture) over DDS: the published depth is the released
package's recipe on the same weights (test/da3_recipe_reference.py) with the fixed focal,
sky NaN (REP 118); the ready line and the diagnostics name the model."""

from __future__ import annotations

import numpy as np
import pytest
from da3_recipe_reference import metric_with_sky, reference_depth
from harness.probe import running_node
from harness.ros_messages import image_message

from depth_pro_ros.io.messages import depth_image_to_array
from depth_pro_ros.model import save_checkpoint

pytest.importorskip("depth_anything_3.utils.alignment")

# A 42 x 56 image at input size 56 is the network input as it is (no resize): the
# preparation is exact, so the depth agrees to float rounding of the same operations.
H, W, INPUT, FOCAL = 42, 56, 56, 40.0
RTOL = 1e-5


def _rgb(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 200, W, dtype=np.float32)[None, :, None]
    return (ramp + rng.integers(0, 55, (H, W, 3))).clip(0, 255).astype(np.uint8)


def test_metric_model_publishes_the_reference_depth_with_sky_nan(tmp_path):
    rgb = _rgb(1)
    model = metric_with_sky(rgb, INPUT)
    checkpoint = save_checkpoint(model, tmp_path / "da3.pt")
    params = (f"checkpoint:={checkpoint}", "device:=cpu", f"input_size:={INPUT}",
              "publish_colorized:=false", "focal_source:=fixed", f"fixed_focal_px:={FOCAL}")
    with running_node(tmp_path / "node.log", *params, warm_up=image_message(_rgb(0), 1),
                      outputs=("depth",)) as (proc, probe):
        depth = depth_image_to_array(probe.exchange(image_message(rgb, 2))["depth"])
        expected = reference_depth(model, rgb, FOCAL, size=INPUT)
        np.testing.assert_array_equal(np.isnan(depth), np.isnan(expected))
        assert 0.2 < np.isnan(depth).mean() < 0.8  # sky and ground both there
        np.testing.assert_allclose(depth, expected, rtol=RTOL)
        assert "Depth Anything 3 (custom, metric, input 56) ready" in proc.log()
        assert probe.latest_diagnostics()["model"].startswith("Depth Anything 3 (custom, metric")
