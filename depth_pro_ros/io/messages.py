"""Other sensor_msgs-shaped messages <-> numpy (numpy only, duck-typed).

Functions only read attributes (``msg.k``, ``msg.data``, ``msg.header.stamp`` ...), so
rclpy messages, rosbags messages and ROS 1 messages read through rosbags (CameraInfo
``K``/``D``/``R``/``P``, stamps ``secs/nsecs``) all work. Nothing here imports ROS.
Camera images are decoded by :mod:`depth_pro_ros.io.image_decode`; point clouds are
in :mod:`depth_pro_ros.io.pointcloud_msg`.

Building messages goes the other way round: ``*_fields`` functions return a dict of
plain field values. Numeric arrays in those dicts (``data``, ``k``, ``d`` ...) are numpy
arrays, which is what rosbags needs (``Image(header=h, **fields)``); :func:`fill` sets
them on an rclpy message instance, converting to the ``array.array`` / numpy types the
generated setters accept without per-element Python work. Headers are never part of
the dicts: the call site copies the source header.
"""

from __future__ import annotations

import array
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from depth_pro_ros.io.image_decode import (
    ImageDecodeError,
    byte_buffer,
    check_layout,
    lookup_encoding,
    padded_rows,
)
from depth_pro_ros.io.pointcloud_msg import point_fields

__all__ = [
    "DEPTH_ENCODINGS",
    "camera_info_fields_scaled",
    "camera_info_values",
    "colorized_image_fields",
    "compressed_image_fields",
    "depth_image_fields",
    "depth_image_to_array",
    "fill",
    "image_fields",
    "relative_image_fields",
    "stamp_to_nanoseconds",
    "synthesized_camera_info_fields",
]

_NATIVE_BIGENDIAN = sys.byteorder == "big"


def _field(msg: Any, *names: str) -> Any:
    """The first attribute of ``msg`` among ``names`` (ROS 2 and ROS 1 spellings)."""
    for name in names:
        if hasattr(msg, name):
            return getattr(msg, name)
    raise AttributeError(f"{type(msg).__name__} has none of the fields {', '.join(names)}")


def _float_list(values: Any, name: str, length: int | None = None) -> list[float]:
    out = [float(v) for v in np.asarray(values, dtype=np.float64).reshape(-1)]
    if length is not None and len(out) != length:
        raise ValueError(f"CameraInfo {name} must have {length} elements, got {len(out)}")
    return out



# --------------------------------------------------------------------- camera info


def camera_info_values(msg: Any) -> tuple[list[float], int, int, str]:
    """``(k, width, height, frame_id)`` of a CameraInfo (``k`` or ROS 1 ``K``, 9 floats).

    No validation beyond the length of K: ``engine.focal.intrinsics_from_camera_info``
    decides whether the values are usable.
    """
    k = _float_list(_field(msg, "k", "K"), "K", 9)
    header = getattr(msg, "header", None)
    frame_id = str(getattr(header, "frame_id", "")) if header is not None else ""
    return k, int(msg.width), int(msg.height), frame_id


def synthesized_camera_info_fields(
    fx: float, fy: float, cx: float, cy: float, width: int, height: int
) -> dict[str, Any]:
    """CameraInfo fields of an ideal pinhole camera (no distortion, identity R)."""
    fx, fy, cx, cy = float(fx), float(fy), float(cx), float(cy)
    return {
        "height": int(height),
        "width": int(width),
        "distortion_model": "plumb_bob",
        "d": np.zeros(5, dtype=np.float64),
        "k": np.array([fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0], dtype=np.float64),
        "r": np.eye(3, dtype=np.float64).reshape(-1),
        "p": np.array([fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0], dtype=np.float64),
        "binning_x": 0,
        "binning_y": 0,
    }


def camera_info_fields_scaled(msg: Any, width: int, height: int) -> dict[str, Any]:
    """The fields of CameraInfo ``msg`` for the same view resized to ``width x height``.

    K's first row and P's first row are multiplied by ``width / msg.width``, the second
    rows by ``height / msg.height`` (what image_proc's resize does); the distortion
    model, D and R are copied. Binning is reset to 0 (K now describes the output pixels)
    and the ROI is left out, i.e. stays at its default (full image). Output keys use the
    ROS 2 lower-case names whatever the input spelling.

    Raises:
        ValueError: the CameraInfo has a zero size, a target size is not positive, or K
            / P have the wrong length.
    """
    src_w, src_h = int(msg.width), int(msg.height)
    width, height = int(width), int(height)
    if src_w <= 0 or src_h <= 0:
        raise ValueError(f"CameraInfo has zero size (width={src_w}, height={src_h})")
    if width <= 0 or height <= 0:
        raise ValueError(f"target image size must be > 0 (width={width}, height={height})")
    sx, sy = width / src_w, height / src_h
    k = np.array(_float_list(_field(msg, "k", "K"), "K", 9)).reshape(3, 3)
    p = np.array(_float_list(_field(msg, "p", "P"), "P", 12)).reshape(3, 4)
    k[0] *= sx
    k[1] *= sy
    p[0] *= sx
    p[1] *= sy
    return {
        "height": height,
        "width": width,
        "distortion_model": str(msg.distortion_model),
        "d": np.array(_float_list(_field(msg, "d", "D"), "D"), dtype=np.float64),
        "k": k.reshape(-1),
        "r": np.array(_float_list(_field(msg, "r", "R"), "R", 9), dtype=np.float64),
        "p": p.reshape(-1),
        "binning_x": 0,
        "binning_y": 0,
    }


# -------------------------------------------------------------------- depth images

#: Depth image encodings written and read by this module.
DEPTH_ENCODINGS = ("32FC1", "16UC1")


def depth_image_fields(depth: np.ndarray, encoding: str = "32FC1") -> dict[str, Any]:
    """Image fields for a metric depth map (H x W, metres).

    * ``32FC1`` (REP 118): float32 metres in native byte order (``is_bigendian`` set
      from the host); NaN marks invalid pixels, so values <= 0 are written as NaN;
      +/-inf are kept. No copy when ``depth`` is already C-contiguous float32 without
      non-positive values.
    * ``16UC1``: millimetres rounded to the nearest integer, 0 for invalid (NaN, inf,
      <= 0); valid depths are clipped to [1, 65535] mm so that they never read as
      invalid.
    """
    depth = np.asarray(depth)
    if depth.ndim == 3 and depth.shape[2] == 1:
        depth = depth[:, :, 0]
    if depth.ndim != 2:
        raise ValueError(f"depth must be a 2-D H x W array, got shape {depth.shape}")
    height, width = depth.shape
    if encoding == "32FC1":
        values = np.ascontiguousarray(depth, dtype=np.float32)
        with np.errstate(invalid="ignore"):
            non_positive = values <= 0.0
        if non_positive.any():
            values = np.where(non_positive, np.float32(np.nan), values)
        bytes_per_pixel = 4
        is_bigendian = int(_NATIVE_BIGENDIAN)
    elif encoding == "16UC1":
        d = np.asarray(depth, dtype=np.float32)
        with np.errstate(invalid="ignore", over="ignore"):
            valid = np.isfinite(d) & (d > 0.0)
            mm = np.clip(np.rint(d * np.float32(1000.0)), 1.0, 65535.0)
        values = np.where(valid, mm, np.float32(0.0)).astype(np.uint16)
        bytes_per_pixel = 2
        is_bigendian = int(_NATIVE_BIGENDIAN)
    else:
        raise ValueError(
            f"unsupported depth encoding {encoding!r}; use one of {', '.join(DEPTH_ENCODINGS)}"
        )
    return {
        "height": int(height),
        "width": int(width),
        "encoding": encoding,
        "is_bigendian": is_bigendian,
        "step": int(width * bytes_per_pixel),
        "data": values.reshape(-1).view(np.uint8),
    }


def relative_image_fields(relative: np.ndarray) -> dict[str, Any]:
    """32FC1 image fields for a relative inverse depth map (H x W, unitless, 0 = far):
    the values as they are, NaN where the model gave none."""
    values = np.ascontiguousarray(relative, dtype=np.float32)
    if values.ndim != 2:
        raise ValueError(f"relative depth must be a 2-D H x W array, got shape "
                         f"{values.shape}")
    height, width = values.shape
    return {"height": int(height), "width": int(width), "encoding": "32FC1",
            "is_bigendian": int(_NATIVE_BIGENDIAN), "step": int(width * 4),
            "data": values.reshape(-1).view(np.uint8)}


def depth_image_to_array(msg: Any) -> np.ndarray:
    """Read a ``32FC1`` (metres) or ``16UC1`` (millimetres) depth image as float32 metres.

    Honours ``step`` and ``is_bigendian``. 16UC1 zeros (invalid) become NaN. The result
    is a new native-order array.

    Raises:
        ImageDecodeError: another encoding, or a broken layout (see :func:`image_to_array`).
    """
    encoding = str(msg.encoding).strip().upper()
    if encoding not in DEPTH_ENCODINGS:
        raise ImageDecodeError(
            f"unsupported depth encoding {msg.encoding!r}; supported: {', '.join(DEPTH_ENCODINGS)}",
            kind="unsupported_encoding")
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    bpp = 4 if encoding == "32FC1" else 2
    buf = byte_buffer(msg.data)
    check_layout("depth image", encoding, height, width, step, buf.size, bpp)
    order = ">" if bool(msg.is_bigendian) else "<"
    dtype = np.dtype(order + ("f4" if encoding == "32FC1" else "u2"))
    raw = padded_rows(buf, height, width, step, width * bpp).view(dtype)
    if encoding == "32FC1":
        return raw.astype(np.float32)
    metres = raw.astype(np.float32) / np.float32(1000.0)
    metres[raw == 0] = np.nan
    return metres


# ------------------------------------------------------------------ colour images


def image_fields(pixels: np.ndarray, encoding: str) -> dict[str, Any]:
    """Image fields for 8-bit pixels (rgb8, bgr8, rgba8, bgra8, mono8) or mono16.

    The channel count of ``pixels`` must match the encoding; mono16 is written in the
    host byte order. Row padding is never added (``step`` = width * bytes per pixel).
    """
    spec = lookup_encoding(encoding)
    if spec.kind not in ("rgb", "bgr", "mono"):
        raise ValueError(f"image_fields does not write encoding {encoding!r}")
    want = np.uint8 if spec.depth == 1 else np.uint16
    pixels = np.asarray(pixels)
    if pixels.dtype != want:
        raise ValueError(f"encoding {encoding!r} needs {np.dtype(want)} pixels, got {pixels.dtype}")
    shape_ok = pixels.ndim == 3 and pixels.shape[2] == spec.channels
    if spec.channels == 1:
        shape_ok = shape_ok or pixels.ndim == 2
    if not shape_ok:
        raise ValueError(
            f"encoding {encoding!r} needs {spec.channels} channel(s), got shape {pixels.shape}"
        )
    height, width = pixels.shape[:2]
    data = np.ascontiguousarray(pixels).reshape(-1).view(np.uint8)
    return {
        "height": int(height),
        "width": int(width),
        "encoding": encoding,
        "is_bigendian": int(_NATIVE_BIGENDIAN and spec.depth > 1),
        "step": int(width * spec.channels * spec.depth),
        "data": data,
    }


def colorized_image_fields(bgr: np.ndarray) -> dict[str, Any]:
    """``bgr8`` Image fields for an H x W x 3 uint8 preview (e.g. colorized depth)."""
    return image_fields(bgr, "bgr8")


def compressed_image_fields(
    bgr: np.ndarray, fmt: str = "jpeg", quality: int = 90
) -> dict[str, Any]:
    """CompressedImage fields for BGR (or mono) uint8 pixels, ``jpeg`` at ``quality`` or
    ``png``; ``format`` holds the bare codec name (``jpeg`` or ``png``)."""
    if fmt not in ("jpeg", "png"):
        raise ValueError(f"unsupported compressed format {fmt!r}; use jpeg or png")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == "jpeg" else []
    ok, buf = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", np.asarray(bgr), params)
    if not ok:
        raise ValueError(f"cannot encode pixels of shape {np.shape(bgr)} as {fmt}")
    return {"format": fmt, "data": buf.reshape(-1)}


# --------------------------------------------------------------- stamps and filling


def stamp_to_nanoseconds(stamp: Any) -> int:
    """A ROS time (``sec``/``nanosec``, or ROS 1 ``secs``/``nsecs``) as integer ns."""
    sec = _field(stamp, "sec", "secs")
    nanosec = _field(stamp, "nanosec", "nsecs")
    return int(sec) * 1_000_000_000 + int(nanosec)


def _adapt(current: Any, value: Any) -> Any:
    """Convert ``value`` to the container type ``current`` (the field's present value)."""
    if isinstance(current, array.array) and not isinstance(value, array.array):
        out = array.array(current.typecode)
        arr = np.ascontiguousarray(value, dtype=np.dtype(current.typecode))
        out.frombytes(arr.reshape(-1).view(np.uint8))  # one memcpy, no per-item work
        return out
    if isinstance(current, np.ndarray):
        return np.asarray(value, dtype=current.dtype)
    if isinstance(current, bool):
        return bool(value)
    return value


def fill(msg: Any, fields: Mapping[str, Any], *, point_field: Any = None) -> Any:
    """Set ``fields`` (a dict from a ``*_fields`` function) on ``msg``; return ``msg``.

    Values are converted to the type of the field's current value, so that numpy arrays
    land in rclpy's ``array.array`` / numpy fields in one copy. A ``fields`` entry of
    ``(name, offset, datatype, count)`` tuples (point clouds) needs ``point_field``, the
    PointField class to build them with (rclpy or rosbags).
    """
    for name, value in fields.items():
        if not hasattr(msg, name):
            raise AttributeError(f"{type(msg).__name__} has no field {name!r}")
        if name == "fields" and _is_tuple_list(value):
            if point_field is None:
                raise TypeError("fill() needs point_field=<PointField class> for 'fields'")
            value = point_fields(value, point_field)
        setattr(msg, name, _adapt(getattr(msg, name), value))
    return msg


def _is_tuple_list(value: Any) -> bool:
    return isinstance(value, Sequence) and all(isinstance(v, tuple) for v in value)
