"""Camera image messages -> pixels for the engine (numpy + OpenCV only, duck-typed).

Functions read only attributes (``msg.height``, ``msg.encoding``, ``msg.step``,
``msg.data`` ...), so rclpy messages (``data`` is an ``array.array('B')``) and rosbags
messages (``data`` is a numpy uint8 array) both work.

Images decode to what the engine takes: ``(pixels, channel_order)`` with uint8 pixels,
``channel_order`` one of ``"rgb"`` / ``"bgr"`` (H x W x 3) or ``"mono"`` (H x W). The
pixels may be a read-only view into the message's buffer (no copy when the encoding
allows it); copy them if the message buffer is going to be reused.
"""

from __future__ import annotations

import array
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

__all__ = [
    "SUPPORTED_ENCODINGS",
    "ImageDecodeError",
    "compressed_to_array",
    "image_to_array",
]


class ImageDecodeError(ValueError):
    """A message cannot be turned into pixels; the text names the problem."""


def byte_buffer(data: Any) -> np.ndarray:
    """The message's ``data`` as a flat uint8 array, without copying when possible."""
    if isinstance(data, np.ndarray):
        if data.dtype == np.uint8:
            return data.reshape(-1)
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    if isinstance(data, (bytes, bytearray, memoryview, array.array)):
        # Zero-copy over any buffer (bytes give a read-only view).
        return np.frombuffer(data, dtype=np.uint8)
    # A plain Python sequence of ints (hand-built messages).
    return np.asarray(data, dtype=np.uint8).reshape(-1)



def padded_rows(
    buf: np.ndarray, height: int, width: int, step: int, row_bytes: int
) -> np.ndarray:
    """(height, row_bytes) uint8 view of the pixel bytes, row padding cropped off."""
    return buf[: step * height].reshape(height, step)[:, :row_bytes]


def check_layout(
    kind: str, encoding: str, height: int, width: int, step: int, nbytes: int, bpp: int
) -> None:
    if height <= 0 or width <= 0:
        raise ImageDecodeError(
            f"{kind} has zero size (width={width}, height={height}, encoding {encoding!r})"
        )
    row_bytes = width * bpp
    if step < row_bytes:
        raise ImageDecodeError(
            f"{kind} step {step} is smaller than width * bytes per pixel = {width} * {bpp} "
            f"= {row_bytes} (encoding {encoding!r})"
        )
    expected = step * height
    if nbytes < expected:
        raise ImageDecodeError(
            f"{kind} data is too short: expected {expected} bytes (step {step} x height "
            f"{height}), got {nbytes} (encoding {encoding!r})"
        )



# ---------------------------------------------------------------------- raw images


@dataclass(frozen=True)
class _Encoding:
    channels: int  # samples per pixel in the message
    depth: int  # bytes per sample (1 or 2)
    kind: str  # "rgb", "bgr", "mono", "uyvy", "yuyv" or "bayer"
    drop_alpha: bool = False
    cv_code: int | None = None  # colour conversion to RGB (yuv422 and Bayer)


# OpenCV names a Bayer pattern after the 2x2 block that starts at the *second* row and
# column, ROS after the one at the origin: ROS rggb is OpenCV "BG", and so on. The tests
# check every pattern with a synthetic mosaic.
_ENCODINGS: dict[str, _Encoding] = {
    "rgb8": _Encoding(3, 1, "rgb"),
    "bgr8": _Encoding(3, 1, "bgr"),
    "rgba8": _Encoding(4, 1, "rgb", drop_alpha=True),
    "bgra8": _Encoding(4, 1, "bgr", drop_alpha=True),
    "mono8": _Encoding(1, 1, "mono"),
    "8uc1": _Encoding(1, 1, "mono"),
    "8uc3": _Encoding(3, 1, "bgr"),
    "mono16": _Encoding(1, 2, "mono"),
    "rgb16": _Encoding(3, 2, "rgb"),
    "bgr16": _Encoding(3, 2, "bgr"),
    "rgba16": _Encoding(4, 2, "rgb", drop_alpha=True),
    "bgra16": _Encoding(4, 2, "bgr", drop_alpha=True),
    "yuv422": _Encoding(2, 1, "uyvy", cv_code=cv2.COLOR_YUV2RGB_UYVY),
    "uyvy": _Encoding(2, 1, "uyvy", cv_code=cv2.COLOR_YUV2RGB_UYVY),
    "yuv422_yuy2": _Encoding(2, 1, "yuyv", cv_code=cv2.COLOR_YUV2RGB_YUYV),
    "yuyv": _Encoding(2, 1, "yuyv", cv_code=cv2.COLOR_YUV2RGB_YUYV),
    "bayer_rggb8": _Encoding(1, 1, "bayer", cv_code=cv2.COLOR_BayerBG2RGB),
    "bayer_bggr8": _Encoding(1, 1, "bayer", cv_code=cv2.COLOR_BayerRG2RGB),
    "bayer_gbrg8": _Encoding(1, 1, "bayer", cv_code=cv2.COLOR_BayerGR2RGB),
    "bayer_grbg8": _Encoding(1, 1, "bayer", cv_code=cv2.COLOR_BayerGB2RGB),
    "bayer_rggb16": _Encoding(1, 2, "bayer", cv_code=cv2.COLOR_BayerBG2RGB),
    "bayer_bggr16": _Encoding(1, 2, "bayer", cv_code=cv2.COLOR_BayerRG2RGB),
    "bayer_gbrg16": _Encoding(1, 2, "bayer", cv_code=cv2.COLOR_BayerGR2RGB),
    "bayer_grbg16": _Encoding(1, 2, "bayer", cv_code=cv2.COLOR_BayerGB2RGB),
}

#: Image encodings :func:`image_to_array` accepts (matched case-insensitively).
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(
    name.upper() if name[0].isdigit() else name for name in _ENCODINGS
)


def lookup_encoding(encoding: str) -> _Encoding:
    spec = _ENCODINGS.get(str(encoding).strip().lower())
    if spec is None:
        raise ImageDecodeError(
            f"unsupported image encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}"
        )
    return spec


def image_to_array(msg: Any) -> tuple[np.ndarray, str]:
    """Decode a ``sensor_msgs/Image`` into ``(uint8 pixels, channel_order)``.

    ``channel_order`` is ``"rgb"`` or ``"bgr"`` (H x W x 3) or ``"mono"`` (H x W).
    Row padding (``step`` > width * bytes per pixel) is cropped off. Without a colour
    conversion the result is a view of the message buffer (no copy):

    * rgb8 / bgr8 / mono8 as they are; 8UC1 is mono, 8UC3 is bgr (OpenCV's order);
    * rgba8 / bgra8: the alpha channel is dropped (a strided view);
    * 16-bit encodings (mono16, rgb16, bgr16, rgba16, bgra16) keep the most significant
      byte of each sample, i.e. ``v >> 8``, honouring ``is_bigendian`` (still a view);
    * yuv422 / uyvy (UYVY) and yuv422_yuy2 / yuyv (YUYV) go through OpenCV's BT.601
      conversion to RGB (the width must be even);
    * bayer_{rggb,bggr,gbrg,grbg}{8,16} are demosaiced by OpenCV to RGB (16-bit first
      reduced to 8 bits as above).

    Raises:
        ImageDecodeError: unknown encoding, zero size, ``step`` smaller than a row,
            ``data`` shorter than ``step * height``, odd width for a yuv422 encoding.
    """
    encoding = str(msg.encoding)
    spec = lookup_encoding(encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    bpp = spec.channels * spec.depth
    buf = byte_buffer(msg.data)
    check_layout("image", encoding, height, width, step, buf.size, bpp)
    if spec.kind in ("uyvy", "yuyv") and width % 2:
        raise ImageDecodeError(
            f"image width {width} is odd; encoding {encoding!r} stores pixel pairs"
        )

    rows = padded_rows(buf, height, width, step, width * bpp)
    if spec.depth == 2:
        # The high byte of each 16-bit sample: index 0 when big-endian, 1 when little.
        msb = 0 if bool(msg.is_bigendian) else 1
        pixels = rows.reshape(height, width, spec.channels, 2)[..., msb]
    else:
        pixels = rows.reshape(height, width, spec.channels)

    if spec.kind in ("rgb", "bgr"):
        return (pixels[..., :3] if spec.drop_alpha else pixels), spec.kind
    if spec.kind == "mono":
        return pixels[..., 0], "mono"
    # Colour conversions: OpenCV wants contiguous input; the output is a new array.
    if spec.kind == "bayer":
        src = np.ascontiguousarray(pixels[..., 0])
    else:
        src = np.ascontiguousarray(pixels)
    return cv2.cvtColor(src, spec.cv_code), "rgb"


# ---------------------------------------------------------------- compressed images


def compressed_to_array(msg: Any) -> tuple[np.ndarray, str]:
    """Decode a ``sensor_msgs/CompressedImage`` (jpeg, png, ...) with OpenCV.

    ``format`` is only checked for the ``compressedDepth`` transport, which holds depth,
    not a picture; the codec is recognised from the bytes. image_transport stores
    colour as BGR whatever the source encoding, so colour images come back as
    ``(H x W x 3, "bgr")`` (alpha dropped) and grey ones as ``(H x W, "mono")``;
    16-bit images are reduced to their high byte.

    Raises:
        ImageDecodeError: empty data, the compressedDepth format, or bytes OpenCV cannot
            decode.
    """
    fmt = str(getattr(msg, "format", ""))
    if "compresseddepth" in fmt.lower():
        raise ImageDecodeError(
            f"compressed image format {fmt!r} is a depth transport, not a camera image"
        )
    buf = byte_buffer(msg.data)
    if buf.size == 0:
        raise ImageDecodeError(f"compressed image (format {fmt!r}) has no data")
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise ImageDecodeError(
            f"compressed image (format {fmt!r}, {buf.size} bytes) could not be decoded"
        )
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageDecodeError(
            f"compressed image (format {fmt!r}) decodes to unsupported sample type {img.dtype}"
        )
    if img.ndim == 2:
        return img, "mono"
    channels = img.shape[2]
    if channels == 1:
        return img[:, :, 0], "mono"
    if channels in (3, 4):
        return img[:, :, :3], "bgr"
    raise ImageDecodeError(f"compressed image (format {fmt!r}) decodes to {channels} channels")


