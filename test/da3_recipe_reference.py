"""Depth Anything 3's recipe for one image, from the released ``depth-anything-3`` package's
own rules, for the recipe, engine, CLI, bag and node tests: its input processor
(``InputProcessor._process_one`` with ``upper_bound_resize``, replayed step by step with
cv2 on uint8 as it runs them: the module itself imports PIL and torchvision), the network,
and its post-processing functions (``DepthAnything3Net._process_mono_sky_estimation``,
``apply_metric_scaling``, ``compute_sky_mask``). Then this project's conventions: the depth
back at the image size (bilinear, ``align_corners=True``), sky NaN (``sky_mask``), relative
depth published as inverse depth."""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

PATCH = 14
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def reference_input(rgb: np.ndarray, size: int = 504) -> np.ndarray:
    """The uint8 RGB image the input processor gives the network (before ToTensor)."""
    h, w = rgb.shape[:2]
    if max(h, w) != size:
        scale = size / max(h, w)
        nw, nh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
        rgb = cv2.resize(rgb, (nw, nh),
                         interpolation=cv2.INTER_CUBIC if scale > 1.0 else cv2.INTER_AREA)
    h, w = rgb.shape[:2]

    def nearest(x: int) -> int:
        down = x // PATCH * PATCH
        up = down + PATCH
        return up if abs(up - x) <= abs(x - down) else down

    nw, nh = max(1, nearest(w)), max(1, nearest(h))
    if (nw, nh) != (w, h):
        enlarge = nw > w or nh > h
        rgb = cv2.resize(rgb, (nw, nh),
                         interpolation=cv2.INTER_CUBIC if enlarge else cv2.INTER_AREA)
    return rgb


def reference_post(depth: torch.Tensor, sky: torch.Tensor | None, width: int, height: int,
                   f_px: float | None, metric: bool, sky_mask: bool,
                   out_size: tuple[int, int]) -> np.ndarray:
    """One view's network depth and sky (h, w) at the network's size -> the published map:
    DA3's sky fill (``sky_mask`` off) or NaN sky, metres for ``metric`` (the focal scaled to
    the network input as the input processor scales intrinsics), else inverse depth."""
    from addict import Dict
    from depth_anything_3.model.da3 import DepthAnything3Net
    from depth_anything_3.utils.alignment import apply_metric_scaling, compute_sky_mask

    net_h, net_w = depth.shape
    d = depth.float()[None, None]
    if sky is not None and not sky_mask:
        out = DepthAnything3Net._process_mono_sky_estimation(  # self is not used
            None, Dict(depth=d.clone(), sky=sky.float()[None, None]))
        d = out.depth
    if metric:
        k = torch.eye(3)[None, None].clone()
        k[..., 0, 0] = f_px * net_w / width
        k[..., 1, 1] = f_px * net_h / height
        d = apply_metric_scaling(d, k)
    value = F.interpolate(d, size=out_size, mode="bilinear", align_corners=True)[0, 0]
    if not metric:
        value = 1.0 / value
    if sky is not None and sky_mask:
        s = F.interpolate(sky.float()[None, None], size=out_size, mode="bilinear",
                          align_corners=True)[0, 0]
        value = torch.where(compute_sky_mask(s, threshold=0.3), value, torch.nan)
    return value.numpy()


@torch.no_grad()
def reference_depth(model: torch.nn.Module, rgb: np.ndarray, f_px: float | None = None,
                    sky_mask: bool = True, size: int = 504) -> np.ndarray:
    """``model`` (a DepthAnything3) on one uint8 RGB image by the package's recipe."""
    image = reference_input(rgb, size)
    x = (image.astype(np.float32) / 255.0 - MEAN) / STD
    out = model(torch.from_numpy(x).permute(2, 0, 1)[None, None])
    sky = out["sky"][0, 0] if "sky" in out else None
    return reference_post(out["depth"][0, 0], sky, rgb.shape[1], rgb.shape[0], f_px,
                          model.config.metric, sky_mask, rgb.shape[:2])


def metric_with_sky(rgb: np.ndarray, size: int, seed: int | None = None) -> torch.nn.Module:
    """The tiny DA3METRIC stand-in with its sky head's bias moved so that about half of
    ``rgb``'s pixels are sky (the stand-in's has almost none)."""
    from depth_pro_ros.model.stand_in import random_model

    model = random_model("depth_anything_3_metric", "tiny", seed)
    x = (reference_input(rgb, size).astype(np.float32) / 255.0 - MEAN) / STD
    stack = model.head.scratch.sky_output_conv2
    logits = []  # before the head's ReLU, which zeroes the stand-in's (negative) sky
    hook = stack.register_forward_hook(lambda _m, _a, out: logits.append(out))
    with torch.no_grad():
        model(torch.from_numpy(x).permute(2, 0, 1)[None, None])
        hook.remove()
        stack[-1].bias.add_(0.3 - logits[0].median())
    return model
