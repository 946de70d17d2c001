"""check_model_use: which settings each model family can serve (node and bag tool)."""

from __future__ import annotations

import pytest

from depth_pro_ros.model import ModelInfo
from depth_pro_ros.stream.model_use import check_model_use

DEPTH_PRO = ModelInfo("depth_pro", "vitl16", "metric", True, True, False, 1536,
                      description="Depth Pro (vitl16, 1536x1536 input, FoV head)")
METRIC = ModelInfo("depth_anything", "vits", "metric", False, False, False, 518, 20.0,
                   description="Depth Anything V2 (vits, metric up to 20 m, input 518)")
RELATIVE = ModelInfo("depth_anything", "vits", "relative", False, False, False, 518,
                     description="Depth Anything V2 (vits, relative, input 518)")
PROMPT = ModelInfo("depth_anything", "vits", "metric", False, False, True, 1008,
                   description="Prompt Depth Anything (vits, metric from a prompt depth, "
                               "input 1008)")


def _check(info, anchored=False, anchor_fit="scale", allow_relative=False,
           focal_source="auto", **kw):
    check_model_use(info, anchored=anchored, anchor_fit=anchor_fit,
                    allow_relative=allow_relative, focal_source=focal_source, **kw)


@pytest.mark.parametrize("info", [DEPTH_PRO, METRIC])
def test_metric_models_serve_any_anchoring(info):
    for anchored in (False, True):
        for fit in ("scale", "scale_shift"):
            _check(info, anchored=anchored, anchor_fit=fit)


def test_fov_head_focal_needs_a_fov_head():
    _check(DEPTH_PRO, focal_source="fov_head")
    with pytest.raises(ValueError, match="Depth Anything V2 .* has none: use auto, "
                                         "camera_info or fixed"):
        _check(METRIC, focal_source="fov_head")


def test_relative_models_need_a_scale_shift_anchor_or_allow_relative():
    _check(RELATIVE, anchored=True, anchor_fit="scale_shift")
    _check(RELATIVE, allow_relative=True)
    _check(RELATIVE, anchored=True, anchor_fit="scale_shift", allow_relative=True)
    with pytest.raises(ValueError, match="unknown scale and shift: set anchor_fit "
                                         "scale_shift"):
        _check(RELATIVE, anchored=True, anchor_fit="scale", allow_relative=True)
    with pytest.raises(ValueError, match=r"relative depth only: set anchor_source \(depth or "
                                         r"points\) with anchor_fit scale_shift"):
        _check(RELATIVE)


def test_prompt_models_need_an_anchor_input_and_messages_use_the_callers_names():
    _check(PROMPT, anchored=True)
    names = {"anchor": "--anchor-topic", "anchor_fit": "--anchor-fit",
             "allow_relative": "--allow-relative", "focal_source": "--focal-source",
             "relative_topic": "depth/relative"}
    with pytest.raises(ValueError, match="from the anchor input: set --anchor-topic$"):
        _check(PROMPT, names=names)
