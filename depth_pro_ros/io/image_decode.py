"""Camera image messages -> pixels for the engine (numpy + OpenCV only, duck-typed).

Functions read only attributes (``msg.height``, ``msg.encoding``, ``msg.step``,
``msg.data`` ...), so rclpy messages (``data`` is an ``array.array('B')``) and rosbags
messages (``data`` is a numpy uint8 array) both work.

Images decode to what the engine takes: ``(pixels, channel_order)`` with uint8 pixels,
``channel_order`` one of ``"rgb"`` / ``"bgr"`` (H x W x 3) or ``"mono"`` (H x W). The
pixels may be a read-only view into the message's buffer (no copy when the encoding
allows it); copy them if the message buffer is going to be reused.

Untrusted input is bounded before anything is allocated: raw images by their declared
width * height, compressed ones by the size their header declares (read by
:mod:`depth_pro_ros.io.image_header`; payloads whose size cannot be read are refused).
What the codec libraries print while decoding (libjpeg's "Corrupt JPEG data", libpng
warnings, OpenCV's log) is kept off stderr and handed to the caller.
"""

from __future__ import annotations

import array
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from depth_pro_ros.io.codec_output import captured
from depth_pro_ros.io.image_header import SUPPORTED_FORMATS, declared_size, read_headers

__all__ = [
    "DEFAULT_MAX_INPUT_PIXELS",
    "SUPPORTED_ENCODINGS",
    "SUPPORTED_FORMATS",
    "ImageDecodeError",
    "ImageTooLargeError",
    "compressed_to_array",
    "declared_size",
    "decode_image_bytes",
    "image_to_array",
]

#: Default bound on width * height of an input image (50 MP: any real camera fits).
DEFAULT_MAX_INPUT_PIXELS: int = 50_000_000

# JPEG 2000 keeps per-tile state: a 200-byte codestream of 65,000 1x1 tiles takes 750 MB.
_MAX_J2K_TILES = 4096


class ImageDecodeError(ValueError):
    """A message cannot be turned into pixels; the text names the problem.

    ``kind`` is a short stable identifier of the kind of problem (``unsupported_encoding``,
    ``too_short``, ``too_large``, ``undecodable`` ...), e.g. a log-throttle key.
    """

    def __init__(self, message: str, kind: str = "undecodable") -> None:
        super().__init__(message)
        self.kind = kind


class ImageTooLargeError(ImageDecodeError):
    """The image declares more pixels than allowed (``kind`` ``too_large``)."""

    def __init__(self, what: str, width: int, height: int, limit: int) -> None:
        super().__init__(
            f"{what} declares {width} x {height} = {width * height:,} pixels, more than the "
            f"limit of {limit:,} pixels; raise the max_input_pixels parameter (bag tool: "
            f"--max-input-pixels) to accept larger images", kind="too_large")
        self.width, self.height, self.limit = width, height, limit


def _shown(text: str, limit: int = 60) -> str:
    """``repr`` of a message string, cut short: it comes from the sender."""
    return repr(text[:limit]) + ("..." if len(text) > limit else "")


def _check_pixels(what: str, width: int, height: int, max_pixels: int | None) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLargeError(what, width, height, max_pixels)


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
    kind: str, encoding: str, height: int, width: int, step: int, nbytes: int, bpp: int,
    max_pixels: int | None = None,
) -> None:
    """Refuse a raw layout that is empty, too large, has short rows or too little data."""
    if height <= 0 or width <= 0:
        raise ImageDecodeError(
            f"{kind} has zero size (width={width}, height={height}, encoding {encoding!r})",
            kind="zero_size")
    _check_pixels(f"{kind} (encoding {encoding!r})", width, height, max_pixels)
    row_bytes = width * bpp
    if step < row_bytes:
        raise ImageDecodeError(
            f"{kind} step {step} is smaller than width * bytes per pixel = {width} * {bpp} "
            f"= {row_bytes} (encoding {encoding!r})", kind="bad_step")
    expected = step * height
    if nbytes < expected:
        raise ImageDecodeError(
            f"{kind} data is too short: expected {expected} bytes (step {step} x height "
            f"{height}), got {nbytes} (encoding {encoding!r})", kind="too_short")



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
            f"unsupported image encoding {_shown(encoding)}; supported: "
            f"{', '.join(SUPPORTED_ENCODINGS)}",
            kind="unsupported_encoding")
    return spec


def image_to_array(
    msg: Any, max_pixels: int | None = DEFAULT_MAX_INPUT_PIXELS
) -> tuple[np.ndarray, str]:
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

    ``max_pixels`` bounds width * height (None: no bound); it is checked before the data.

    Raises:
        ImageTooLargeError: width * height is above ``max_pixels``.
        ImageDecodeError: unknown encoding, zero size, ``step`` smaller than a row,
            ``data`` shorter than ``step * height``, odd width for a yuv422 encoding.
    """
    encoding = str(msg.encoding)
    spec = lookup_encoding(encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    bpp = spec.channels * spec.depth
    buf = byte_buffer(msg.data)
    check_layout("image", encoding, height, width, step, buf.size, bpp, max_pixels)
    if spec.kind in ("uyvy", "yuyv") and width % 2:
        raise ImageDecodeError(
            f"image width {width} is odd; encoding {encoding!r} stores pixel pairs",
            kind="odd_width")

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


def decode_image_bytes(
    buf: np.ndarray,
    flags: int,
    what: str,
    max_pixels: int | None = DEFAULT_MAX_INPUT_PIXELS,
    warnings: list[str] | None = None,
) -> np.ndarray:
    """``cv2.imdecode(buf, flags)`` for untrusted bytes, refusing bombs before decoding.

    The header must state a size (formats in ``SUPPORTED_FORMATS``), at most
    ``max_pixels`` (None: no bound) and at most 4 samples per pixel. What the codecs
    print is appended to ``warnings`` (when given) instead of reaching stderr. ``what``
    names the input; messages read ``"{what}: ..."``. Samples OpenCV leaves unscaled
    (PNM maxval, 10/12-bit AVIF and JPEG 2000) are stretched to the type's full range.

    Raises:
        ImageTooLargeError: the declared size is above ``max_pixels``.
        ImageDecodeError: for anything else that goes wrong, never another exception.
    """
    try:
        return _decode_checked(buf, flags, what, max_pixels, warnings)
    except MemoryError:
        raise ImageDecodeError(f"{what}: could not be decoded: out of memory",
                               kind="undecodable") from None


def _decode_checked(
    buf: np.ndarray, flags: int, what: str, max_pixels: int | None, warnings: list[str] | None
) -> np.ndarray:
    data = buf.tobytes()
    headers = read_headers(data)
    known = ", ".join(SUPPORTED_FORMATS)
    if not headers:
        raise ImageDecodeError(
            f"{what}: could not be decoded: it is in no supported image format "
            f"(supported: {known})", kind="unknown_format")
    for name, header in headers:
        if header is None:
            raise ImageDecodeError(
                f"{what}: could not be decoded: its {name} header is truncated or damaged, "
                f"so the image size is unknown and it was refused before decoding "
                f"(supported: {known})", kind="unknown_format")
    head = max((h for _, h in headers if h is not None), key=lambda h: h.pixels)
    declares = f"{what}: its {head.format} header"
    if head.pixels == 0:
        raise ImageDecodeError(
            f"{declares} declares an empty image ({head.width} x {head.height})",
            kind="zero_size")
    _check_pixels(declares, head.width, head.height, max_pixels)
    channels = max(h.channels for _, h in headers if h is not None)
    if channels > 4:
        raise ImageDecodeError(
            f"{declares} declares {channels} samples per pixel; at most 4 are supported",
            kind="bad_channels")
    if head.tiles > _MAX_J2K_TILES:
        raise ImageDecodeError(
            f"{declares} declares {head.tiles:,} tiles; at most {_MAX_J2K_TILES} are "
            f"supported", kind="too_complex")
    failed = f"{what}: could not be decoded as {head.format}"
    damage = next((h.damage for _, h in headers if h is not None and h.damage), "")
    if damage:
        raise ImageDecodeError(f"{failed}: {damage}", kind="undecodable")
    img, error, lines = captured(cv2.imdecode, buf, flags)
    if warnings is not None:
        warnings.extend(lines)
    if isinstance(error, MemoryError):
        raise ImageDecodeError(f"{failed}: out of memory", kind="undecodable")
    if error is not None:
        text = str(error).strip()
        raise ImageDecodeError(f"{failed}: {text.splitlines()[-1] if text else repr(error)}",
                               kind="undecodable")
    if img is None or img.size == 0:
        raise ImageDecodeError(failed + (f": {lines[-1]}" if lines else ""), kind="undecodable")
    full = {np.dtype(np.uint8): 255, np.dtype(np.uint16): 65535}.get(img.dtype, 0)
    if 0 < head.max_value < full:  # samples OpenCV left unscaled (PNM maxval, 10-bit AVIF)
        scaled = img.astype(np.float32) * (full / head.max_value) + 0.5
        img = np.minimum(scaled, full).astype(img.dtype)
    return img


def _to_uint8(img: np.ndarray, what: str) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return (img >> 8).astype(np.uint8)
    if img.dtype in (np.float32, np.float64):
        # Float formats (PFM, HDR, high bit depth AVIF) are taken as 0..1.
        finite = np.nan_to_num(img, nan=0.0, posinf=1.0, neginf=0.0)
        return (np.clip(finite, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    raise ImageDecodeError(
        f"{what}: decodes to unsupported sample type {img.dtype}", kind="bad_sample_type")


def compressed_to_array(
    msg: Any,
    max_pixels: int | None = DEFAULT_MAX_INPUT_PIXELS,
    warnings: list[str] | None = None,
) -> tuple[np.ndarray, str]:
    """Decode a ``sensor_msgs/CompressedImage`` (jpeg, png, ...) with OpenCV.

    ``format`` is only checked for the ``compressedDepth`` transport, which holds depth,
    not a picture; the codec is recognised from the bytes (see ``SUPPORTED_FORMATS``).
    image_transport stores colour as BGR whatever the source encoding, so colour images
    come back as ``(H x W x 3, "bgr")`` (alpha dropped) and grey ones as
    ``(H x W, "mono")``; 16-bit images are reduced to their high byte, float ones are
    taken as 0..1.

    The size declared in the header is checked against ``max_pixels`` (None: no bound)
    before decoding; payloads whose header states no size are refused. Warnings the
    codecs print go to ``warnings`` (when given), never to stderr.

    Raises:
        ImageTooLargeError: the header declares more than ``max_pixels`` pixels.
        ImageDecodeError: empty data, the compressedDepth format, an unknown or
            damaged header, or bytes OpenCV cannot decode. Never another exception.
    """
    fmt = str(getattr(msg, "format", ""))
    if "compresseddepth" in fmt.lower():
        raise ImageDecodeError(
            f"compressed image format {_shown(fmt)} is a depth transport, not a camera image",
            kind="depth_transport")
    buf = byte_buffer(msg.data)
    if buf.size == 0:
        raise ImageDecodeError(f"compressed image (format {_shown(fmt)}) has no data",
                               kind="empty")
    what = f"compressed image (format {_shown(fmt)}, {buf.size} bytes)"
    img = decode_image_bytes(buf, cv2.IMREAD_UNCHANGED, what, max_pixels, warnings)
    try:
        img = _to_uint8(img, what)
    except MemoryError:
        raise ImageDecodeError(f"{what}: out of memory", kind="undecodable") from None
    if img.ndim == 2:
        return img, "mono"
    channels = img.shape[2]
    if channels == 1:
        return img[:, :, 0], "mono"
    if channels in (3, 4):
        return img[:, :, :3], "bgr"
    raise ImageDecodeError(f"{what}: decodes to {channels} channels", kind="bad_channels")
