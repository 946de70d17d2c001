"""Small random-weight models for tests (shared by the engine, node, bag and CLI tests),
and the reference ``infer`` with its forward passes cached."""

from __future__ import annotations

import numpy as np
import torch

from depth_pro_ros.model.stand_in import random_model


def tiny_model() -> torch.nn.Module:
    """The tiny Depth Pro with fixed random weights whose outputs look plausible (a ~60
    degree FoV that varies with the picture, depth that varies across the image): the
    product's stand-in, ``depth-pro-ros checkpoint --random tiny``."""
    return random_model("depth_pro", "tiny")


def tiny_depth_anything(head: str = "metric", prompt: bool = False,
                        seed: int | None = None) -> torch.nn.Module:
    """A tiny random-weight Depth Anything: V2 ``head`` relative, or metric up to 20 m (the
    indoor release), or Prompt Depth Anything; output that varies across the image and
    stays in range (the product's stand-in, ``checkpoint --random tiny --model-type ...``)."""
    if prompt:
        if head != "metric":
            raise ValueError("Prompt Depth Anything has a metric head")
        model_type = "prompt_depth_anything"
    else:
        model_type = {"metric": "depth_anything_v2_metric_indoor",
                      "relative": "depth_anything_v2"}[head]
    return random_model(model_type, "tiny", seed)


class ReferenceRuns:
    """``model.infer`` with each (model, image) run through the network once.

    The first call for an image estimates its focal (the FoV head runs) and keeps the
    network's canonical inverse depth; depth at any focal is then ``infer``'s own metric
    conversion of it, with no other forward pass (the depth branch does not depend on
    whether the FoV branch runs, so this equals ``infer(model, rgb, f_px)``).
    """

    def __init__(self) -> None:
        self._runs: dict[tuple, tuple] = {}

    def run(self, model, rgb):
        """``(infer(model, rgb), the network's canonical inverse depth (1, 1, S, S))``,
        computed once per model and image."""
        import hashlib

        from depth_pro_ros.model import infer

        rgb = np.ascontiguousarray(rgb)
        key = (id(model), rgb.shape, hashlib.sha1(rgb.tobytes()).hexdigest())
        if key not in self._runs:
            captured = []
            hook = model.register_forward_hook(lambda _m, _a, out: captured.append(out[0]))
            try:
                prediction = infer(model, rgb)
            finally:
                hook.remove()
            self._runs[key] = (model, prediction, captured[0])  # model: keeps its id valid
        return self._runs[key][1:]

    def focal(self, model, rgb) -> float:
        """The FoV head's focal estimate for ``rgb`` (px)."""
        return self.run(model, rgb)[0].focal_px

    def depth(self, model, rgb, f_px: float) -> np.ndarray:
        """Depth of ``rgb`` with focal ``f_px``."""
        from depth_pro_ros.model import metric_depth

        _, inverse_depth = self.run(model, rgb)
        height, width = rgb.shape[:2]
        return metric_depth(inverse_depth, width, height,
                            torch.tensor([float(f_px)]))[0].numpy()
