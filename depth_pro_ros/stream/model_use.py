"""Whether a loaded model can serve the settings it was started with (node and bag tool).

Depth Pro gives metric depth from any image. Depth Anything V2 metric models do too, but
have no FoV head; relative models give metric depth only through a ``scale_shift`` anchor
fit; Prompt Depth Anything takes its prompt from the anchor input. :func:`check_model_use`
refuses, with one line that says what to set, a combination that cannot give output.
"""

from __future__ import annotations

from collections.abc import Mapping

from depth_pro_ros.model import ModelInfo

__all__ = ["NODE_NAMES", "check_model_use"]

#: How the node calls the settings named in the messages; the bag tool passes its options.
NODE_NAMES = {
    "anchor": "anchor_source (depth or points)",
    "anchor_fit": "anchor_fit",
    "allow_relative": "allow_relative: true",
    "focal_source": "focal_source",
    "relative_topic": "depth/relative",
}


def check_model_use(
    info: ModelInfo,
    *,
    anchored: bool,
    anchor_fit: str,
    allow_relative: bool,
    focal_source: str,
    names: Mapping[str, str] = NODE_NAMES,
) -> None:
    """Raise ``ValueError`` when the model cannot give output with these settings.

    ``anchored``: an anchor input is configured; ``focal_source`` as the node's parameter.
    """
    model = info.description
    if focal_source == "fov_head" and not info.has_fov_head:
        raise ValueError(
            f"{names['focal_source']} fov_head needs a model with a field-of-view head; "
            f"{model} has none: use auto, camera_info or fixed")
    if info.needs_prompt and not anchored:
        raise ValueError(
            f"{model} takes its prompt depth from the anchor input: set {names['anchor']}")
    if info.kind != "relative":
        return
    if anchored and anchor_fit != "scale_shift":
        raise ValueError(
            f"{model} gives relative inverse depth, with an unknown scale and shift: set "
            f"{names['anchor_fit']} scale_shift")
    if not anchored and not allow_relative:
        raise ValueError(
            f"{model} gives relative depth only: set {names['anchor']} with "
            f"{names['anchor_fit']} scale_shift for metric depth, or "
            f"{names['allow_relative']} to publish its unitless relative inverse depth on "
            f"{names['relative_topic']}")
