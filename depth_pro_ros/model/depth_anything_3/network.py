"""The Depth Anything 3 network: the DA3 ViT (:mod:`.backbone`), the camera encoder and
decoder (:mod:`.camera`) and a DPT or DualDPT head (:mod:`.heads`).

State dict: the released ``model.safetensors`` keys without their leading ``model.``, so
that ``load_state_dict(strict=True)`` takes a release's tensors as they are:

==========================  ==========================================================
``backbone.pretrained.*``   the ViT (``cls_token``, ``camera_token`` for any-view models,
                            ``pos_embed``, ``patch_embed.proj``, ``blocks.N.{norm1,
                            attn.qkv, attn.q_norm, attn.k_norm, attn.proj, ls1.gamma,
                            norm2, mlp.fc1|fc2 or mlp.w12|w3, ls2.gamma}``, ``norm``)
``head.*``                  the DPT / DualDPT head (:mod:`.heads`)
``cam_enc.*``               ``pose_branch.fc1|fc2``, ``token_norm``, ``trunk.N.*`` (as
                            the ViT's blocks, no QK-norm), ``trunk_norm``
``cam_dec.*``               ``backbone.0|2``, ``fc_t``, ``fc_qvec``, ``fc_fov.0``
==========================  ==========================================================

DA3NESTED (:class:`NestedDepthAnything3`) holds the two networks as ``da3.*`` (any-view)
and ``da3_metric.*`` (metric), each named as above.

``attn.qkv`` is held as separate q, k, v (:mod:`..common.vit`) and written joined.
DualDPT's four ray stacks share one LayerNorm, which the release's file (safetensors'
``save_model``) stores once; :mod:`.hf_layout` gives it its other names. The
release of DA3-GIANT also stores a 3D-Gaussian head (``gs_head.*``) that no depth output
uses: it is not built here (a reader drops those keys by name).

The forward gives the network's raw outputs (DA3NESTED's: aligned to metres, as its
release does in the network); DA3's post-processing (sky filled with a far depth, metric
scaling of DA3METRIC by the focal) is the recipe's.
"""

from __future__ import annotations

import torch
from torch import nn

from ..common.config import build_network
from .backbone import ViT3
from .camera import CameraDecoder, CameraEncoder, pose_decoding
from .config import DepthAnything3Config, NestedDepthAnything3Config
from .heads import SKY_THRESHOLD, DPTHead, DualDPTHead
from .recipe import METRIC_FOCAL

__all__ = ["DepthAnything3", "NestedDepthAnything3", "create_depth_anything_3"]

# DA3NESTED's alignment uses pixels above these (metres, any-view depth units).
_MIN_METRES = 1e-2
_MIN_DEPTH = 1e-3


class DepthAnything3(nn.Module):
    """One Depth Anything 3 network (any-view or monocular); see the module doc."""

    def __init__(self, config: DepthAnything3Config) -> None:
        super().__init__()
        self.config = c = config
        # A dict of one: the release's ViT sits under ``backbone.pretrained``.
        self.backbone = nn.ModuleDict({"pretrained": ViT3(config)})
        head = DualDPTHead if c.head == "dualdpt" else DPTHead
        self.head = head(c.head_dim_in, c.fusion_features, c.neck_dims, c.patch_size)
        if c.camera:
            self.cam_enc = CameraEncoder(config)
            self.cam_dec = CameraDecoder(config)

    def forward(self, x: torch.Tensor, intrinsics: torch.Tensor | None = None,
                extrinsics: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Depth for every view of every item, jointly over an item's views.

        ``x`` (B, V, 3, H, W) is ImageNet-normalised RGB, H and W multiples of the patch
        size. ``intrinsics`` (B, V, 3, 3) in pixels of that size and ``extrinsics``
        (B, V, 4, 4) world-to-camera: known cameras (both or neither; models with a
        camera encoder only).

        Returns ``depth`` (B, V, H, W); ``confidence`` (B, V, H, W) from the DualDPT
        head; ``sky`` (B, V, H, W) from the DPT head (sky where >= 0.3); ``intrinsics``
        (B, V, 3, 3) and ``extrinsics`` (B, V, 3, 4, world-to-camera) estimated by the
        camera decoder (also when cameras were given).
        """
        c = self.config
        if x.ndim != 5 or x.shape[2] != 3:
            raise ValueError(f"expected an input (B, V, 3, H, W), got {tuple(x.shape)}")
        b, v, _, height, width = x.shape
        if height % c.patch_size or width % c.patch_size or height == 0 or width == 0:
            raise ValueError(f"input height and width must be positive multiples of the "
                             f"patch size {c.patch_size}, got {height}x{width}")
        tokens = self._camera_tokens(intrinsics, extrinsics, b, v, (height, width))
        feats, cameras = self.backbone["pretrained"](x, tokens)
        tokens_per_view = [f.flatten(0, 1) for f in feats]
        if c.head == "dualdpt":  # the cameras come from the decoder: no ray map needed
            out = self.head(tokens_per_view, height, width, rays=False)
        else:
            out = self.head(tokens_per_view, height, width)
        result = {"depth": out["depth"].unflatten(0, (b, v))}
        if "depth_conf" in out:
            result["confidence"] = out["depth_conf"].unflatten(0, (b, v))
        if "sky" in out:
            result["sky"] = out["sky"].unflatten(0, (b, v))
        if c.camera:
            extr, intr = pose_decoding(self.cam_dec(cameras[-1]), (height, width))
            result["extrinsics"], result["intrinsics"] = extr, intr
        return result

    def _camera_tokens(self, intrinsics: torch.Tensor | None, extrinsics: torch.Tensor | None,
                       b: int, v: int, image_hw: tuple[int, int]) -> torch.Tensor | None:
        """The camera encoder's tokens of known cameras, after checking them; None when
        none are given."""
        if intrinsics is None and extrinsics is None:
            return None
        if not self.config.camera:
            raise ValueError("this Depth Anything 3 model has no camera encoder: it takes "
                             "no intrinsics or extrinsics")
        if intrinsics is None or extrinsics is None:
            raise ValueError("known cameras need both intrinsics (B, V, 3, 3) and "
                             "extrinsics (B, V, 4, 4)")
        if tuple(intrinsics.shape) != (b, v, 3, 3) or tuple(extrinsics.shape) != (b, v, 4, 4):
            raise ValueError(f"expected intrinsics ({b}, {v}, 3, 3) and extrinsics "
                             f"({b}, {v}, 4, 4), got {tuple(intrinsics.shape)} and "
                             f"{tuple(extrinsics.shape)}")
        return self.cam_enc(extrinsics.float(), intrinsics.float(), image_hw)


class NestedDepthAnything3(nn.Module):
    """DA3NESTED: an any-view network (``da3.*``) whose depth and camera translations
    are brought to metres by a metric monocular one (``da3_metric.*``) run on the same
    views, as the release does:

    * the metric branch's canonical depth in metres: x focal / 300, the focal being the
      mean of fx and fy the any-view branch estimates for that view;
    * one scale per item (the release takes one over the whole batch: the same for one
      item), the least-squares fit of those metres by the any-view depth over the pixels
      that are ground (sky < 0.3), at least as confident as the median ground pixel,
      with metres > 0.01 and depth > 0.001; NaN where no pixel qualifies (an all-sky
      view: no metric scale).

    Returns the any-view outputs scaled (``depth``, ``extrinsics``' translation),
    ``confidence`` and ``intrinsics`` as they are, the metric branch's ``sky`` and the
    ``scale`` (B,). The release's sky fill (a far depth, confidence 1) is the recipe's.
    """

    def __init__(self, config: NestedDepthAnything3Config) -> None:
        super().__init__()
        self.config = config
        self.da3 = DepthAnything3(config.anyview)
        self.da3_metric = DepthAnything3(config.metric)

    def forward(self, x: torch.Tensor, intrinsics: torch.Tensor | None = None,
                extrinsics: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``x``, ``intrinsics``, ``extrinsics`` as :meth:`DepthAnything3.forward`."""
        out = self.da3(x, intrinsics, extrinsics)
        metric = self.da3_metric(x)
        focal = (out["intrinsics"][..., 0, 0] + out["intrinsics"][..., 1, 1]) / 2
        metres = metric["depth"].float() * (focal / METRIC_FOCAL)[..., None, None]
        depth, conf = out["depth"].float(), out["confidence"].float()
        ground = metric["sky"] < SKY_THRESHOLD
        # The median over each item's ground pixels (nanquantile skips the sky's NaN; it
        # takes up to 2^24 values: 66 views of 504 x 504 per call).
        median = torch.nanquantile(torch.where(ground, conf, torch.nan).flatten(1), 0.5, dim=1)
        use = ((conf >= median[:, None, None, None]) & ground & (metres > _MIN_METRES)
               & (depth > _MIN_DEPTH))
        num = torch.where(use, metres * depth, 0).flatten(1).sum(1)
        den = torch.where(use, depth * depth, 0).flatten(1).sum(1).clamp(min=1e-12)
        scale = torch.where(use.flatten(1).any(1), num / den, torch.nan)
        out["depth"] = (depth * scale[:, None, None, None]).to(out["depth"].dtype)
        extr = out["extrinsics"].clone()
        extr[..., :3, 3] *= scale[:, None, None]
        out.update(extrinsics=extr, sky=metric["sky"], scale=scale)
        return out


def create_depth_anything_3(
    config: DepthAnything3Config | NestedDepthAnything3Config,
    device: str | torch.device = "cpu",
    precision: str | torch.dtype = torch.float32,
) -> DepthAnything3 | NestedDepthAnything3:
    """Build a Depth Anything 3 network (a nested config: the nested pair) in eval mode on
    ``device`` with parameters in ``precision`` (PyTorch's default initialisation;
    ``device="meta"`` allocates nothing)."""
    network = NestedDepthAnything3 if isinstance(config, NestedDepthAnything3Config) else (
        DepthAnything3)
    return build_network(network, config, device, precision)
