"""Small random-weight models for tests (shared by the engine, node, bag and CLI tests),
and the reference recipe with its forward passes cached."""

from __future__ import annotations

import numpy as np
import torch

from depth_pro_ros.model import DepthProConfig, create_model


def tiny_model() -> torch.nn.Module:
    """The tiny config with fixed random weights whose outputs look plausible.

    Random weights give a negative FoV and nearly constant depth; shifting the FoV
    head's bias (and scaling its weights) and scaling the depth head gives a ~60
    degree FoV that varies with the picture and depth that varies
    across the image, so tests can tell pixels and frames apart.
    """
    torch.manual_seed(3)
    model = create_model(DepthProConfig.tiny())
    with torch.no_grad():
        model.fov.head[-1].bias.fill_(60.0)
        model.fov.head[-1].weight.mul_(30.0)  # estimates that differ between pictures
        model.head[-2].weight.mul_(20.0)
        model.head[-2].bias.fill_(0.3)
    return model


def tiny_depth_anything(head: str = "metric", prompt: bool = False,
                        seed: int = 5) -> torch.nn.Module:
    """A tiny random-weight Depth Anything (V2 ``head`` relative / metric, or Prompt
    Depth Anything) whose output varies across the image and stays in range: the last
    1x1 convolution is scaled up and its bias set, so the relative head's ReLU keeps most
    pixels positive and the metric sigmoid is not saturated."""
    from depth_pro_ros.model import DepthAnythingConfig, create_depth_anything

    max_depth = 20.0 if head == "metric" and not prompt else 1.0
    torch.manual_seed(seed)
    model = create_depth_anything(DepthAnythingConfig.tiny(head=head, max_depth=max_depth,
                                                           prompt=prompt))
    last = [m for m in model.modules()
            if isinstance(m, torch.nn.Conv2d) and m.out_channels == 1][-1]
    with torch.no_grad():
        last.weight.mul_(8.0)
        last.bias.fill_(0.5 if head == "metric" else 2.0)
    return model


class ReferenceRecipe:
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
