"""The accuracy gate: a backend's outputs on built-in synthetic scenes against fp32 torch.

Every path that is not fp32 torch (ONNX Runtime, fp16 / bf16 torch) is run at load on
:func:`gate_images` - two small deterministic scenes (a floor and wall with boxes, a
corridor of stripes) made from numpy arithmetic alone, so every machine makes the same
pixels - prepared by the model's own recipe, and its raw outputs are compared with fp32
torch's on the same batch.

The figure is a relative L1 error, ``mean |out - ref| / mean |ref|`` over the raw depth
output average-pooled to at most :data:`POOL` x :data:`POOL` (plus the FoV estimates'
relative error where the model has a FoV head, whichever is larger): AbsRel with the
reference's mean as the denominator, so that pixels where a relative-depth network
outputs zero cannot blow it up. Pooling keeps the references small enough for an ONNX
file's metadata (a few kB) while any real damage - a wrong weight, a dropped layer, a
precision that overflows - still moves the pooled means. The limits are the issue's:
1e-4 for fp32 runtimes, 0.5 % for fp16 / bf16, 1 % for int8 ONNX files
(:mod:`.ort_quantize`).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from depth_pro_ros.engine.errors import AccuracyGateError

__all__ = ["LIMITS", "POOL", "AccuracyGateError", "GateReference", "check", "gate_batch",
           "gate_images", "gate_outputs", "measure", "relative_l1"]

#: Largest gate figure accepted, by the precision the backend computes in.
LIMITS = {"fp32": 1e-4, "fp16": 5e-3, "bf16": 5e-3, "int8": 1e-2}
POOL = 32  # pooled output side kept as the reference
_SIZE = (96, 128)  # gate image height, width: small, 4:3 like most cameras

#: What runs one prepared batch: (x, estimate_fov, prompt) -> (raw depth, FoV or None).
RunBatch = Callable[[torch.Tensor, bool, "torch.Tensor | None"],
                    "tuple[torch.Tensor, torch.Tensor | None]"]


def gate_images() -> np.ndarray:
    """The gate scenes, (2, 96, 128, 3) uint8 RGB: the same bytes on every machine."""
    h, w = _SIZE
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    # A floor (darkening with distance) under a wall, with two boxes in front.
    room = np.where(y > 0.45 * h, 60 + 150 * (y - 0.45 * h) / (0.55 * h), 200 - 0.3 * x)
    room = np.where((abs(x - 40) < 14) & (abs(y - 60) < 16), 230.0, room)
    room = np.where((abs(x - 95) < 10) & (abs(y - 55) < 10), 30.0, room)
    # A corridor: stripes converging to a vanishing point, a lit far end.
    u, v = (x - w / 2) / w, (y - h / 2) / h
    depth = 1.0 / (np.maximum(abs(u), abs(v)) + 0.05)
    corridor = 127 + 100 * np.sin(depth * 1.7) * np.exp(-depth / 20)
    corridor = np.where(depth > 12, 250.0, corridor)
    scenes = []
    for gray, tint in ((room, (1.0, 0.9, 0.8)), (corridor, (0.8, 0.9, 1.0))):
        scenes.append(np.stack([np.clip(gray * t, 0, 255) for t in tint], axis=-1))
    return np.round(np.stack(scenes)).astype(np.uint8)


def gate_batch(recipe, device: torch.device, dtype: torch.dtype
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The gate scenes as ``recipe`` prepares them, and a prompt depth (a tilted plane,
    1 to 3 m) for models that take one."""
    images = torch.from_numpy(gate_images()).to(device)
    x = recipe.prepare(images, "rgb", dtype)
    if not recipe.info.needs_prompt:
        return x, None
    ramp = torch.linspace(1.0, 3.0, 24, device=device).reshape(1, 1, 24, 1)
    return x, ramp.expand(len(images), 1, 24, 32).contiguous()


@dataclass(frozen=True)
class GateReference:
    """Pooled fp32 outputs on the gate batch: depth (N, 1, p, p) and FoV (N, ...) or None."""

    depth: torch.Tensor
    fov: torch.Tensor | None

    @classmethod
    def pooled(cls, depth: torch.Tensor, fov: torch.Tensor | None) -> GateReference:
        """Raw outputs (B, 1, h, w) and FoV, pooled, in fp32 on the CPU."""
        size = (min(POOL, depth.shape[-2]), min(POOL, depth.shape[-1]))
        pooled = F.adaptive_avg_pool2d(depth.float(), size)
        return cls(pooled.cpu().clone(), None if fov is None else fov.float().cpu().clone())

    def to_json(self) -> dict:
        """JSON values (float32 bytes in base64, with their shapes)."""
        def pack(t: torch.Tensor) -> dict:
            data = t.detach().cpu().float().contiguous().numpy().tobytes()
            return {"shape": list(t.shape), "float32": base64.b64encode(data).decode()}
        return {"depth": pack(self.depth), "fov": None if self.fov is None else pack(self.fov)}

    @classmethod
    def from_json(cls, data: dict) -> GateReference:
        """The inverse of :meth:`to_json`; ValueError for anything malformed."""
        def unpack(d: dict) -> torch.Tensor:
            raw = base64.b64decode(d["float32"], validate=True)
            shape = [int(n) for n in d["shape"]]
            array = np.frombuffer(raw, dtype=np.float32)
            if array.size != int(np.prod(shape)) or not np.isfinite(array).all():
                raise ValueError("gate reference data does not match its shape")
            return torch.from_numpy(array.copy()).reshape(shape)
        try:
            fov = data.get("fov")
            return cls(unpack(data["depth"]), None if fov is None else unpack(fov))
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ValueError(f"malformed gate reference: {exc}") from None


def gate_outputs(run: RunBatch, recipe, device: torch.device,
                 dtype: torch.dtype) -> GateReference:
    """What ``run`` gives on the gate batch, pooled, in fp32 on the CPU. The scenes run
    one at a time: the gate never needs more activation memory than one frame."""
    x, prompt = gate_batch(recipe, device, dtype)
    parts = []
    with torch.inference_mode():
        for i in range(len(x)):
            one = None if prompt is None else prompt[i:i + 1]
            parts.append(GateReference.pooled(*run(x[i:i + 1], recipe.info.has_fov_head,
                                                   one)))
    fovs = [p.fov for p in parts]
    return GateReference(torch.cat([p.depth for p in parts]),
                         None if fovs[0] is None else torch.cat(fovs))


def relative_l1(out: torch.Tensor, ref: torch.Tensor) -> float:
    """``mean |out - ref| / mean |ref|`` (inf for a shape mismatch or non-finite output)."""
    if out.shape != ref.shape or not torch.isfinite(out).all():
        return float("inf")
    return float((out - ref).abs().mean() / ref.abs().mean().clamp_min(1e-12))


def measure(run: RunBatch, recipe, device: torch.device, dtype: torch.dtype,
            reference: GateReference) -> float:
    """The gate figure of ``run`` against ``reference`` (depth, and FoV where there is
    one: the larger)."""
    got = gate_outputs(run, recipe, device, dtype)
    figure = relative_l1(got.depth, reference.depth)
    if reference.fov is not None:
        figure = max(figure, relative_l1(got.fov, reference.fov) if got.fov is not None
                     else float("inf"))
    return figure


def check(run: RunBatch, recipe, device: torch.device, dtype: torch.dtype,
          reference: GateReference, limit: float, what: str) -> float:
    """The gate figure of ``run`` against ``reference``; refused above ``limit``.

    Raises:
        AccuracyGateError: the figure (named with ``what``, e.g. "onnxruntime on
            model.onnx") and the limit.
    """
    figure = measure(run, recipe, device, dtype, reference)
    if not figure <= limit:
        raise AccuracyGateError(
            f"accuracy gate: {what} differs from fp32 torch by {figure:.3g} (relative "
            f"L1 on the gate images; the limit is {limit:g}); refusing to serve it "
            "(set accuracy_gate false to skip the check)")
    return figure
