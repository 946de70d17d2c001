"""Depth Anything 3's cameras: known cameras -> camera tokens (the encoder), camera tokens
-> each view's pose and intrinsics (the decoder), and the 9-number pose encoding between.

Facts from the released ``depth-anything-3`` package (0.1.1), code of this project:

* Pose encoding (per view, fp32): the camera-to-world translation (3), its rotation as a
  unit quaternion x, y, z, w with w >= 0 (4), the vertical and horizontal fields of view
  ``2 atan(H / 2 / fy)``, ``2 atan(W / 2 / fx)`` (2). Decoding puts the principal point
  at the image centre.
* Extrinsics are world-to-camera, as the network takes them (B, V, 4, 4) and gives them
  (B, V, 3, 4); intrinsics are pixel matrices (B, V, 3, 3) of the network's input size.
* Encoder (``cam_enc``): an MLP 9 -> C/2 -> C (GELU), a LayerNorm, a trunk of
  ``camera_depth`` transformer blocks attending across the views (``camera_heads`` heads,
  LayerScale, torch's default LayerNorm eps) and a LayerNorm; C is the ViT's width.
* Decoder (``cam_dec``): two Linear + ReLU layers on the hooked camera token of the last
  hooked block (width 2C with ``cat_token``), then linear translation and quaternion
  heads and a Linear + ReLU field-of-view head.
"""

from __future__ import annotations

import torch
from torch import nn

from .backbone import TORCH_EPS, Block
from .config import DepthAnything3Config

__all__ = ["CameraDecoder", "CameraEncoder", "invert_rigid", "pose_decoding",
           "pose_encoding", "quaternion_to_rotation", "rotation_to_quaternion"]

_MIN_MAGNITUDE = 0.1  # a quaternion component below it is never divided by


def invert_rigid(transform: torch.Tensor) -> torch.Tensor:
    """The inverse of rigid transforms (..., 3|4, 4): ``[R^T | -R^T t]`` (a 4th row kept)."""
    r_t = transform[..., :3, :3].mT
    top = torch.cat([r_t, -r_t @ transform[..., :3, 3:]], dim=-1)
    return torch.cat([top, transform[..., 3:, :]], dim=-2)


def rotation_to_quaternion(rotation: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) -> unit quaternions (..., 4) as x, y, z, w, w >= 0.

    Each of w, x, y, z has a formula from the trace-like sums of the diagonal; the
    largest component's is used for all four (the well-conditioned one).
    """
    m = rotation.flatten(-2).unbind(-1)
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = m
    squares = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22,
                           1 - m00 + m11 - m22, 1 - m00 - m11 + m22], dim=-1)
    mag = squares.clamp(min=0).sqrt()  # 2 |w|, 2 |x|, 2 |y|, 2 |z|
    rows = torch.stack([  # each row: 2 x that component x (w, x, y, z)
        torch.stack([mag[..., 0] ** 2, m21 - m12, m02 - m20, m10 - m01], dim=-1),
        torch.stack([m21 - m12, mag[..., 1] ** 2, m10 + m01, m02 + m20], dim=-1),
        torch.stack([m02 - m20, m10 + m01, mag[..., 2] ** 2, m12 + m21], dim=-1),
        torch.stack([m10 - m01, m20 + m02, m21 + m12, mag[..., 3] ** 2], dim=-1),
    ], dim=-2) / (2 * mag.clamp(min=_MIN_MAGNITUDE))[..., None]
    best = mag.argmax(dim=-1)[..., None, None].expand(*mag.shape[:-1], 1, 4)
    wxyz = rows.gather(-2, best).squeeze(-2)
    xyzw = wxyz[..., [1, 2, 3, 0]]
    return torch.where(xyzw[..., 3:] < 0, -xyzw, xyzw)


def quaternion_to_rotation(quaternion: torch.Tensor) -> torch.Tensor:
    """Quaternions (..., 4) as x, y, z, w, any norm -> rotation matrices (..., 3, 3)."""
    x, y, z, w = quaternion.unbind(-1)
    s = 2.0 / (quaternion * quaternion).sum(-1)
    return torch.stack([
        1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w),
        s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w),
        s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y),
    ], dim=-1).unflatten(-1, (3, 3))


def pose_encoding(world_to_camera: torch.Tensor, intrinsics: torch.Tensor,
                  image_hw: tuple[int, int]) -> torch.Tensor:
    """(B, V, 4, 4) world-to-camera and (B, V, 3, 3) pixel intrinsics of an ``image_hw``
    input -> (B, V, 9) fp32 pose encodings (see the module doc)."""
    camera_to_world = invert_rigid(world_to_camera)
    height, width = image_hw
    fov_h = 2 * torch.atan((height / 2) / intrinsics[..., 1, 1])
    fov_w = 2 * torch.atan((width / 2) / intrinsics[..., 0, 0])
    return torch.cat([camera_to_world[..., :3, 3],
                      rotation_to_quaternion(camera_to_world[..., :3, :3]),
                      fov_h[..., None], fov_w[..., None]], dim=-1).float()


def pose_decoding(encoding: torch.Tensor, image_hw: tuple[int, int]
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, V, 9) pose encodings -> (B, V, 3, 4) world-to-camera extrinsics and (B, V, 3, 3)
    intrinsics of an ``image_hw`` input, the principal point at its centre."""
    rotation = quaternion_to_rotation(encoding[..., 3:7])
    camera_to_world = torch.cat([rotation, encoding[..., :3, None]], dim=-1)
    height, width = image_hw
    # A field of view of 0 would give an infinite focal: the tangent is bounded below.
    fy = (height / 2.0) / torch.tan(encoding[..., 7] / 2.0).clamp(min=1e-6)
    fx = (width / 2.0) / torch.tan(encoding[..., 8] / 2.0).clamp(min=1e-6)
    intrinsics = torch.zeros(*encoding.shape[:-1], 3, 3, device=encoding.device)
    intrinsics[..., 0, 0], intrinsics[..., 1, 1] = fx, fy
    intrinsics[..., 0, 2], intrinsics[..., 1, 2], intrinsics[..., 2, 2] = width / 2, height / 2, 1
    return invert_rigid(camera_to_world), intrinsics


class _PoseMlp(nn.Module):
    """9 -> C/2 -> C with GELU (the release's ``pose_branch``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(9, dim // 2)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(dim // 2, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class CameraEncoder(nn.Module):
    """Known cameras -> one token per view (B, V, C), which replaces the learned camera
    tokens in the ViT."""

    def __init__(self, config: DepthAnything3Config) -> None:
        super().__init__()
        dim = config.embed_dim
        self.pose_branch = _PoseMlp(dim)
        self.token_norm = nn.LayerNorm(dim, eps=TORCH_EPS)
        self.trunk = nn.Sequential(*(
            Block(dim, config.camera_heads, int(dim * config.mlp_ratio), eps=TORCH_EPS)
            for _ in range(config.camera_depth)))
        self.trunk_norm = nn.LayerNorm(dim, eps=TORCH_EPS)

    def forward(self, world_to_camera: torch.Tensor, intrinsics: torch.Tensor,
                image_hw: tuple[int, int]) -> torch.Tensor:
        encoding = pose_encoding(world_to_camera, intrinsics, image_hw)
        tokens = self.token_norm(self.pose_branch(encoding.to(self.token_norm.weight.dtype)))
        return self.trunk_norm(self.trunk(tokens))


class CameraDecoder(nn.Module):
    """Hooked camera tokens (B, V, D) -> (B, V, 9) fp32 pose encodings."""

    def __init__(self, config: DepthAnything3Config) -> None:
        super().__init__()
        dim = config.head_dim_in
        self.backbone = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim),
                                      nn.ReLU())
        self.fc_t = nn.Linear(dim, 3)
        self.fc_qvec = nn.Linear(dim, 4)
        self.fc_fov = nn.Sequential(nn.Linear(dim, 2), nn.ReLU())

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        feat = self.backbone(tokens)
        return torch.cat([self.fc_t(feat), self.fc_qvec(feat), self.fc_fov(feat)], dim=-1).float()

