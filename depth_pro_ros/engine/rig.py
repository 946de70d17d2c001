"""Rig mode: one joint forward of an any-view Depth Anything 3 model over the views of a
camera rig (one frame per camera, grouped by stamp in :mod:`depth_pro_ros.stream.rig`).

* One network size per forward (DA3 attends across the views' tokens): the group's size
  is the first view's network input (the recipe's size rule); a view of another size is
  prepared at its own size, then resized bilinearly (antialiased) to the group's. Its
  aspect may change: the intrinsics scale per axis, and the depth is resized back to the
  view's own output size, so no part of a view is cropped (the reference's input
  processor centre-crops instead, which would leave part of an image without depth).
* Known cameras: when every view has intrinsics (CameraInfo, scaled to the network
  input per axis) and a camera-to-rig transform, both go to the camera encoder, the
  extrinsics normalised as the reference's API does (the first view at the origin,
  translations divided by the median camera distance, at least 0.1); else the network
  estimates every camera (it takes known cameras for all views or none).
* Per view: the recipe's output rules (relative inverse depth, sky), the focal from the
  camera decoder's FoV (as one view per frame; through the frame's focal filter) unless
  the view has its own intrinsics, anchoring and points - the engine's post-processing
  (:class:`~depth_pro_ros.engine.stages.Stages`) itself.
* Poses: each view's camera-to-rig transform, from the decoder's world-to-camera ones as
  seen from the first view (``T_0 = E_0 E_i^-1``). Without known extrinsics the rig
  frame is the first view's camera frame, in the network's units; with them it is the
  extrinsics' frame (the first view's known pose times ``T_0``, translations scaled back
  by the normalisation's distance).

Runs synchronously on the caller's thread (the torch backend: the model's device and
dtype).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from depth_pro_ros.engine.backends import AUTO, create_backend
from depth_pro_ros.engine.batch import Batch
from depth_pro_ros.engine.focal import Intrinsics
from depth_pro_ros.engine.stages import Stages, hwc
from depth_pro_ros.engine.types import DepthResult, EngineConfig, Frame
from depth_pro_ros.model import recipe_for

__all__ = ["RigEngine", "RigOutput", "normalise_extrinsics"]

_TORCH = "torch"  # the backend that runs the joint forward (a torch network)
_MIN_MEDIAN_DISTANCE = 0.1  # the reference's clamp of the normalising distance


@dataclass
class RigOutput:
    """One group's results: ``results`` per view (in the group's order), ``camera_to_rig``
    (V, 4, 4) each view's estimated pose in the rig frame, ``known_cameras`` whether the
    views' intrinsics and extrinsics went to the camera encoder, ``network_size`` (h, w)
    of the joint forward."""

    results: list[DepthResult]
    camera_to_rig: np.ndarray
    known_cameras: bool
    network_size: tuple[int, int]


def normalise_extrinsics(world_to_camera: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, V, 4, 4) world-to-camera -> the same relative to the first view, translations
    divided by the median camera distance from it (at least 0.1), as the reference's API
    gives them to its network; and that distance (B,)."""
    relative = world_to_camera @ torch.linalg.inv(world_to_camera[:, :1])
    centres = torch.linalg.inv(relative)[..., :3, 3].norm(dim=-1)
    distance = centres.median(dim=1).values.clamp(min=_MIN_MEDIAN_DISTANCE)
    relative = relative.clone()
    relative[..., :3, 3] /= distance[:, None, None]
    return relative, distance


class RigEngine:
    """Runs an any-view Depth Anything 3 ``model`` jointly over the views of a rig; see
    the module docstring. ``config``'s device and backend are the model's (torch).

    Raises:
        ValueError: a model without a camera decoder (not any-view), a backend other
            than torch, or a ``config.input_size`` the model cannot use.
    """

    def __init__(self, model: torch.nn.Module, config: EngineConfig = EngineConfig()) -> None:
        if not getattr(getattr(model, "config", None), "camera", False):
            raise ValueError("rig mode needs an any-view Depth Anything 3 model (DA3-SMALL, "
                             "-BASE, -LARGE, -GIANT): this one takes one view at a time")
        if config.backend not in (AUTO, _TORCH):
            raise ValueError(f"rig mode runs on the torch backend, not {config.backend!r}")
        self.recipe = recipe_for(model, config.input_size, config.sky_mask)
        self.config = dataclasses.replace(config, backend=_TORCH)
        backend = create_backend(model, self.recipe, self.config)
        self._model = model
        self._stages = Stages(self.recipe, backend, overlap=False)

    def run(self, frames: list[Frame], camera_to_rig: list[np.ndarray] | None = None
            ) -> RigOutput:
        """One joint forward over ``frames`` (one per camera, the first is the reference
        view) and each view's results; ``camera_to_rig`` the views' known 4 x 4 poses.

        Raises:
            ValueError: no frames, a malformed frame, or poses not one per frame.
        """
        if not frames:
            raise ValueError("a rig group needs at least one view")
        if camera_to_rig is not None and len(camera_to_rig) != len(frames):
            raise ValueError(f"{len(camera_to_rig)} camera-to-rig transforms for "
                             f"{len(frames)} views")
        for frame in frames:
            frame.validate()
        started = time.perf_counter()
        stages, device = self._stages, self._stages.device
        h, w = frames[0].image.shape[:2]
        size = self.recipe.network_size(h, w)
        images = [torch.tensor(hwc(f.image), device=device) for f in frames]  # a copy: a
        # decoded message may be read-only
        x = torch.cat([self._prepare(img, f.channel_order, size)
                       for img, f in zip(images, frames)])[None]
        known = camera_to_rig is not None and all(f.intrinsics is not None for f in frames)
        intrinsics = extrinsics = distance = None
        if known:
            intrinsics = torch.tensor(np.stack([_matrix(f.intrinsics.scaled_to(size[1], size[0]))
                                                for f in frames]), dtype=torch.float32)[None]
            rig_to_camera = np.linalg.inv(np.stack(camera_to_rig))
            extrinsics, distance = normalise_extrinsics(
                torch.tensor(rig_to_camera, dtype=torch.float32)[None])
            intrinsics, extrinsics = intrinsics.to(device), extrinsics.to(device)
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = self._model(x, intrinsics, extrinsics)
        raw, fov = self.recipe.views_output(out, size[1], estimate_fov=True)
        work = Batch(list(frames), [started] * len(frames), started)
        work.images, work.raw, work.fov_host = images, raw, fov.cpu()
        work.cpu_ms.update(inference=1e3 * (time.perf_counter() - t0),
                           preprocess=1e3 * (t0 - started))
        stages.post(work, self.config)
        _, results = stages.finish(work)
        poses = _camera_to_rig(out["extrinsics"][0].float().cpu(), camera_to_rig,
                               None if distance is None else float(distance[0]))
        return RigOutput(results, poses, known, size)

    def _prepare(self, image: torch.Tensor, order: str, size: tuple[int, int]) -> torch.Tensor:
        """One view's network input (1, 3, h, w) at the group's ``size``."""
        x = self.recipe.prepare(image[None], order, self._stages.backend.dtype)
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False,
                              antialias=True).to(x.dtype)
        return x


def _camera_to_rig(world_to_camera: torch.Tensor, known: list[np.ndarray] | None,
                   distance: float | None) -> np.ndarray:
    """(V, 3, 4) estimated world-to-camera -> (V, 4, 4) camera-to-rig (module docstring)."""
    e = torch.eye(4, dtype=torch.float64).repeat(len(world_to_camera), 1, 1)
    e[:, :3] = world_to_camera.double()
    to_first = (e[0] @ torch.linalg.inv(e)).numpy()  # camera i -> first camera
    if known is None or distance is None:
        return to_first
    to_first[:, :3, 3] *= distance
    return known[0] @ to_first


def _matrix(k: Intrinsics) -> np.ndarray:
    return np.array([[k.fx, 0.0, k.cx], [0.0, k.fy, k.cy], [0.0, 0.0, 1.0]])

