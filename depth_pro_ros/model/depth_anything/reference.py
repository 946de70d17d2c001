"""The Depth Anything family's reference implementation: one image -> depth, in pure torch.

It follows the original code; the tests compare it with the originals' OpenCV
preprocessing (test/model/depth_anything/test_reference.py), and the streaming engine's
batch recipe (:mod:`.recipe`) runs the same functions on batches on the device.

Depth Anything V2 (``DepthAnythingV2.infer_image`` in the original repository): RGB / 255;
``Resize(keep_aspect_ratio=True, ensure_multiple_of=14, resize_method="lower_bound")`` to
:func:`.preprocess.depth_anything_input_size` with cv2 ``INTER_CUBIC`` (here torch's
bicubic, the same a = -0.75 kernel); ImageNet mean / std; the network; bilinear
``align_corners=True`` back to the image size.

Prompt Depth Anything (PromptDA's ``load_image`` / ``load_depth`` / ``PromptDA.predict``):
RGB / 255; when the longer side exceeds 1008, shrunk with cv2 ``INTER_AREA`` (here
:func:`.preprocess.area_weights`, the same coverage weights) to
:func:`.preprocess.prompt_depth_anything_input_size` (longer side 1008, both sides
floored to multiples of 14); ImageNet mean / std. The prompt is a metric depth map in
metres at its own resolution (the release's example is a 192 x 256 ARKit LiDAR map read
from a millimetre PNG and divided by 1000), passed as is: the network normalises it by
its min / max and denormalises its output with them. The original stops at the network's
resolution; here, as for V2, the output is resized back to the image size with bilinear
``align_corners=True``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .network import DepthAnything
from .preprocess import (
    PROMPT_MAX_SIZE,
    depth_anything_input_size,
    prepare_depth_anything_input,
    prompt_depth_anything_input_size,
)

__all__ = ["infer_depth_anything"]


def _rgb_array(image: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) RGB image, got {image.dtype} "
                         f"{image.shape}")
    return image


def _prompt_tensor(prompt: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    p = torch.as_tensor(np.asarray(prompt) if not isinstance(prompt, torch.Tensor) else prompt)
    if p.ndim == 3 and p.shape[0] == 1:
        p = p[0]
    if p.ndim != 2 or p.numel() == 0:
        raise ValueError(f"expected a prompt depth (h, w) in metres, got {tuple(p.shape)}")
    return p.to(device=device, dtype=torch.float32)[None, None]


@torch.inference_mode()
def infer_depth_anything(
    model: DepthAnything,
    image: np.ndarray | torch.Tensor,
    input_size: int | None = None,
    prompt: np.ndarray | torch.Tensor | None = None,
) -> torch.Tensor:
    """Depth of one image by the family's original arithmetic (module docstring).

    ``image`` is a uint8 (H, W, 3) RGB array or tensor. ``input_size`` is V2's shorter-side
    bound (None: the training size, 518) or Prompt Depth Anything's longer-side limit
    (None: 1008). ``prompt`` (h, w) metric depth in metres, any resolution, is required by
    a Prompt Depth Anything model and refused by the others.

    Returns:
        (H, W) float32 on the model's device: relative inverse depth (relative V2) or
        metres (metric V2, Prompt Depth Anything).
    """
    config = model.config
    param = next(model.parameters())
    rgb = torch.from_numpy(np.ascontiguousarray(_rgb_array(image)))
    height, width = rgb.shape[:2]
    if config.prompt:
        if prompt is None:
            raise ValueError("Prompt Depth Anything needs a prompt depth (h, w) in metres")
        size = prompt_depth_anything_input_size(
            height, width, input_size or PROMPT_MAX_SIZE, config.patch_size)
        p = _prompt_tensor(prompt, param.device)
    else:
        if prompt is not None:
            raise ValueError("this model takes no prompt (it is not a Prompt Depth Anything "
                             "model)")
        size = depth_anything_input_size(
            height, width, input_size or config.default_input_size, config.patch_size)
        p = None
    x = prepare_depth_anything_input(rgb.to(param.device)[None], size, param.dtype,
                                     interpolation="area" if config.prompt else "bicubic")
    out = model(x, p) if p is not None else model(x)
    out = F.interpolate(out.float(), size=(height, width), mode="bilinear", align_corners=True)
    return out[0, 0]
