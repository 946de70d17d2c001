"""Synthetic sensor_msgs payloads for tests: every input encoding, built with numpy alone.

``encode_image(rgb, encoding)`` turns a known RGB picture into Image fields (a dict)
for any encoding that ``depth_pro_ros.io.image_decode.image_to_array`` reads, including the
YUV 4:2:2 packings (BT.601, limited range, as OpenCV decodes them) and the four Bayer
mosaics. ``rclpy_message`` / ``rosbags_message`` wrap the dicts into real messages.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from depth_pro_ros.io.messages import fill

#: Low byte written under every 16-bit sample; decoders must ignore it (they keep v >> 8).
LOW_BYTE = 0xA5
#: Value of the row padding bytes, so that a decoder that reads them shows it.
PAD_BYTE = 0xEE

BAYER_PATTERNS = ("rggb", "bggr", "gbrg", "grbg")


def smooth_rgb(height: int = 24, width: int = 32, base=(200, 90, 40)) -> np.ndarray:
    """A smooth, clearly coloured H x W x 3 uint8 RGB test picture."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    r = base[0] + 30 * u / max(width - 1, 1)
    g = base[1] + 40 * v / max(height - 1, 1)
    b = base[2] + 20 * (u + v) / max(width + height - 2, 1)
    return np.clip(np.rint(np.stack([r, g, b], axis=-1)), 0, 255).astype(np.uint8)


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 grey level of an RGB uint8 picture (what mono test images hold)."""
    weights = np.array([0.299, 0.587, 0.114])
    return np.clip(np.rint(rgb.astype(np.float64) @ weights), 0, 255).astype(np.uint8)


def _yuv601(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Limited-range BT.601 Y, U, V (float) of an RGB uint8 picture."""
    c = rgb.astype(np.float64) / 255.0
    r, g, b = c[..., 0], c[..., 1], c[..., 2]
    y = 16 + 65.481 * r + 128.553 * g + 24.966 * b
    u = 128 - 37.797 * r - 74.203 * g + 112.0 * b
    v = 128 + 112.0 * r - 93.786 * g - 18.214 * b
    return y, u, v


def encode_yuv422(rgb: np.ndarray, order: str) -> np.ndarray:
    """H x W x 3 RGB -> H x (2W) packed 4:2:2 bytes, ``order`` "uyvy" or "yuyv"."""
    h, w = rgb.shape[:2]
    assert w % 2 == 0
    y, u, v = _yuv601(rgb)
    # One chroma sample per horizontal pixel pair: the mean of the pair.
    u2 = 0.5 * (u[:, 0::2] + u[:, 1::2])
    v2 = 0.5 * (v[:, 0::2] + v[:, 1::2])
    y0, y1 = y[:, 0::2], y[:, 1::2]
    if order == "uyvy":
        quads = np.stack([u2, y0, v2, y1], axis=-1)
    elif order == "yuyv":
        quads = np.stack([y0, u2, y1, v2], axis=-1)
    else:
        raise ValueError(order)
    return np.clip(np.rint(quads), 0, 255).astype(np.uint8).reshape(h, 2 * w)


def encode_bayer(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """H x W x 3 RGB -> H x W mosaic; ``pattern`` names the 2x2 cell at the origin."""
    index = {"r": 0, "g": 1, "b": 2}
    mosaic = np.empty(rgb.shape[:2], dtype=rgb.dtype)
    for k, colour in enumerate(pattern):
        dy, dx = divmod(k, 2)
        mosaic[dy::2, dx::2] = rgb[dy::2, dx::2, index[colour]]
    return mosaic


def _widen(samples: np.ndarray, bigendian: bool) -> np.ndarray:
    """8-bit samples -> 16-bit (v << 8 | LOW_BYTE) in the given byte order, as bytes."""
    wide = (samples.astype(np.uint16) << 8) | LOW_BYTE
    return (
        wide.astype(">u2" if bigendian else "<u2")
        .view(np.uint8)
        .reshape(*samples.shape[:-1], samples.shape[-1] * 2)
    )


def samples_for(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """The per-pixel samples an encoding stores, H x W x C uint8 (before 16-bit widening)."""
    enc = encoding.lower()
    alpha = np.full(rgb.shape[:2] + (1,), 128, dtype=np.uint8)
    if enc.startswith(("rgba", "bgra")):
        colour = rgb if enc.startswith("rgba") else rgb[..., ::-1]
        return np.concatenate([colour, alpha], axis=-1)
    if enc.startswith("rgb"):
        return rgb
    if enc.startswith("bgr") or enc == "8uc3":
        return rgb[..., ::-1]
    if enc.startswith("mono") or enc == "8uc1":
        return luma(rgb)[..., None]
    if enc in ("yuv422", "uyvy"):
        return encode_yuv422(rgb, "uyvy").reshape(rgb.shape[0], -1, 2)
    if enc in ("yuv422_yuy2", "yuyv"):
        return encode_yuv422(rgb, "yuyv").reshape(rgb.shape[0], -1, 2)
    if enc.startswith("bayer_"):
        return encode_bayer(rgb, enc[6:10])[..., None]
    raise ValueError(f"no test encoder for {encoding!r}")


def encode_image(
    rgb: np.ndarray, encoding: str, *, bigendian: bool = False, padding: int = 0
) -> dict[str, Any]:
    """Image fields holding ``rgb`` in ``encoding``; ``padding`` extra bytes per row."""
    samples = samples_for(rgb, encoding)
    h, w = samples.shape[:2]
    wide = encoding.endswith("16")
    row = _widen(samples.reshape(h, -1), bigendian) if wide else samples.reshape(h, -1)
    step = row.shape[1] + padding
    buf = np.full((h, step), PAD_BYTE, dtype=np.uint8)
    buf[:, : row.shape[1]] = row
    return {
        "height": h,
        "width": w,
        "encoding": encoding,
        "is_bigendian": int(bigendian),
        "step": step,
        "data": buf.reshape(-1),
    }


def sparse_anchor(reference: np.ndarray, scale: float, seed: int, fraction: float = 0.04,
                  outliers: float = 0.15) -> np.ndarray:
    """A sparse metric anchor: ``scale`` x ``reference`` depth at ``fraction`` of the
    pixels, ``outliers`` of them 2-4x off (gross errors), NaN elsewhere."""
    rng = np.random.default_rng(seed)
    anchor = np.full(reference.shape, np.nan, np.float32)
    pick = rng.random(reference.shape) < fraction
    anchor[pick] = scale * reference[pick]
    bad = pick & (rng.random(reference.shape) < outliers)
    anchor[bad] *= rng.uniform(2.0, 4.0, int(bad.sum())).astype(np.float32)
    return anchor


# ------------------------------------------------------------------ message builders


def rclpy_message(cls: type, fields: dict[str, Any], *, point_field: Any = None) -> Any:
    """A real rclpy message of ``cls`` with ``fields`` set through ``fill``."""
    return fill(cls(), fields, point_field=point_field)


def rosbags_header(typestore: Any, sec: int = 12, nanosec: int = 345, frame_id: str = "cam"):
    types = typestore.types
    stamp = types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)
    header = types["std_msgs/msg/Header"]
    if "seq" in header.__dataclass_fields__:  # ROS 1
        return header(seq=0, stamp=stamp, frame_id=frame_id)
    return header(stamp=stamp, frame_id=frame_id)


def rosbags_message(typestore: Any, msgtype: str, fields: dict[str, Any], **extra: Any):
    """A rosbags dataclass message built from ``fields`` (plus a header when it has one)."""
    cls = typestore.types[msgtype]
    kwargs = dict(fields)
    if "header" in cls.__dataclass_fields__:
        kwargs.setdefault("header", rosbags_header(typestore))
    kwargs.update(extra)
    return cls(**kwargs)
