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

``attn.qkv`` is held as separate q, k, v (:mod:`..common.vit`) and written joined.
DualDPT's four ray stacks share one LayerNorm, which the release's file (safetensors'
``save_model``) stores once; :mod:`.hf_layout` gives it its other names. The
release of DA3-GIANT also stores a 3D-Gaussian head (``gs_head.*``) that no depth output
uses: it is not built here (a reader drops those keys by name).

The forward gives the network's raw outputs; DA3's post-processing (sky filled with a far
depth, metric scaling by the focal) is the recipe's.
"""

from __future__ import annotations

import torch
from torch import nn

from ..common.config import build_network
from .backbone import ViT3
from .camera import CameraDecoder, CameraEncoder, pose_decoding
from .config import DepthAnything3Config
from .heads import DPTHead, DualDPTHead

__all__ = ["DepthAnything3", "create_depth_anything_3"]


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


def create_depth_anything_3(
    config: DepthAnything3Config,
    device: str | torch.device = "cpu",
    precision: str | torch.dtype = torch.float32,
) -> DepthAnything3:
    """Build a Depth Anything 3 network in eval mode on ``device`` with parameters in
    ``precision`` (PyTorch's default initialisation; ``device="meta"`` allocates nothing)."""
    return build_network(DepthAnything3, config, device, precision)
