"""Reading untrusted image and array files header first (numpy + standard library).

A file may declare far more than it holds (a 193-byte ``.npy`` declaring 200000 x 200000
floats) or hold far more than it declares (a 64 x 48 PNG followed by a gigabyte of
anything). Either way the tools must not allocate or read gigabytes: the header is read
first, its declared pixels are checked against the caller's limit, and a file larger than
its declared image can need is refused before the rest is read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

import numpy as np

from depth_pro_ros.io.image_decode import ImageDecodeError, ImageTooLargeError
from depth_pro_ros.io.image_header import declared_size, read_headers

__all__ = ["HEAD_BYTES", "image_file_bytes", "max_file_bytes", "read_npy"]

#: The first bytes read of an image file: every supported header's size lies within them
#: (except TIFF directories written at the end, which fall back to the pixel limit).
HEAD_BYTES = 1 << 20
# An encoded image is at most this many bytes per pixel (4 float32 channels, uncompressed
# TIFF / PFM), plus metadata (EXIF, ICC profiles, XMP: a few MB at most).
_BYTES_PER_PIXEL = 16
_METADATA_BYTES = 16 << 20
# numpy's own bound on a .npy header (np.lib.format's default max_header_size).
_NPY_HEADER_MAX = 10_000


def max_file_bytes(pixels: int) -> int:
    """The largest file an image of ``pixels`` pixels can legitimately take."""
    return pixels * _BYTES_PER_PIXEL + _METADATA_BYTES


def _open_regular(path: Path, what: str) -> tuple[BinaryIO, int]:
    """``path`` opened for reading without blocking (a FIFO or device is refused, never
    waited on) and its size."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ValueError(f"{what}: no such file") from None
    except OSError as exc:
        raise ValueError(f"{what}: {exc.strerror or exc}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise ValueError(f"{what}: not a regular file")
    return os.fdopen(fd, "rb"), st.st_size


def _read_exactly(f: BinaryIO, count: int, what: str) -> bytes:
    data = f.read(count)
    if len(data) != count:  # the file shrank while it was read
        raise ValueError(f"{what}: the file changed while it was read")
    return data


def image_file_bytes(path: str | os.PathLike, what: str, max_pixels: int | None) -> bytes:
    """The bytes of an encoded image file, read header first.

    The first :data:`HEAD_BYTES` are read; when the file is longer, the size its header
    declares must be at most ``max_pixels`` (None: no bound) and the file at most
    :func:`max_file_bytes` of it (of ``max_pixels`` when the head declares no size) before
    the rest is read. The bytes are not decoded here (see ``decode_image_bytes``).

    Raises:
        ValueError: the file is missing, not a regular file, unreadable or empty, or it
            is larger than the image it declares can be (an ``ImageTooLargeError`` when the
            header declares too many pixels); the message starts with ``what``.
    """
    f, size = _open_regular(Path(path), what)
    with f:
        if size == 0:
            raise ValueError(f"{what}: the file is empty")
        try:
            head = f.read(HEAD_BYTES)
            if len(head) < size:
                _check_long_file(head, size, what, max_pixels)
                data = head + _read_exactly(f, size - len(head), what)
            else:
                data = head
        except OSError as exc:
            raise ValueError(f"{what}: {exc.strerror or exc}") from None
    _check_short_file(head, size, what)
    return data


def _check_short_file(head: bytes, size: int, what: str) -> None:
    """An uncompressed format (PNM, PAM, PFM) must hold the samples its header declares:
    the decoder allocates the whole image before it finds the data missing."""
    for _, header in read_headers(head):
        if header is None or header.format not in ("PNM", "PAM", "PFM", "BMP"):
            continue
        kind = head[1:2]
        if header.format == "BMP":
            need = _bmp_pixel_bytes(head, header.width, header.height)
        elif header.format == "PFM":
            need = header.pixels * (3 if kind == b"F" else 1) * 4
        elif kind in (b"1", b"4"):  # bitmaps: a bit per pixel at least
            need = (header.width + 7) // 8 * header.height
        else:  # a byte per sample at least (ASCII digits or binary)
            need = header.pixels * (header.channels or (3 if kind in (b"3", b"6") else 1))
        if size < need:
            raise ImageDecodeError(
                f"{what}: its {header.format} header declares {header.width} x "
                f"{header.height} pixels ({need:,} bytes of samples at least), but the file "
                f"is {size:,} bytes: truncated, refused before decoding", kind="too_short")


def _check_long_file(head: bytes, size: int, what: str, max_pixels: int | None) -> None:
    declared = declared_size(head)
    if declared is not None:
        width, height = declared
        if max_pixels is not None and width * height > max_pixels:
            raise ImageTooLargeError(f"{what}: its header", width, height, max_pixels)
        bound, declares = max_file_bytes(width * height), f"its header declares {width} x {height}"
    elif max_pixels is not None:
        bound, declares = max_file_bytes(max_pixels), f"the pixel limit is {max_pixels:,}"
    else:
        return
    if size > bound:
        raise ImageDecodeError(
            f"{what}: the file is {size:,} bytes, more than an image can take when "
            f"{declares} (at most {bound:,} bytes); refused before reading it (data appended "
            "to an image, or not an image)", kind="too_large")


def _bmp_pixel_bytes(head: bytes, width: int, height: int) -> int:
    """Bytes of an uncompressed (BI_RGB) BMP's rows after the headers; 0 when compressed
    or unknown (RLE rows may be shorter)."""
    if len(head) < 34 or int.from_bytes(head[14:18], "little") < 40:
        return 0
    bits = int.from_bytes(head[28:30], "little")
    if int.from_bytes(head[30:34], "little") != 0 or bits not in (1, 4, 8, 16, 24, 32):
        return 0
    return (width * bits + 31) // 32 * 4 * height


def read_npy(path: str | os.PathLike, what: str, max_elements: int | None) -> np.ndarray:
    """A ``.npy`` array, its header checked before the data is read: a plain numeric dtype
    (no objects), at most ``max_elements`` elements (None: no bound), and a file exactly
    as long as the header and the data it declares.

    Raises:
        ValueError: with ``what`` and the reason.
    """
    f, size = _open_regular(Path(path), what)
    with f:
        try:
            version = np.lib.format.read_magic(f)
            reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = reader(f, max_header_size=_NPY_HEADER_MAX)
        except (ValueError, OSError, SyntaxError, TypeError) as exc:
            raise ValueError(f"{what}: not a readable .npy file ({exc})") from None
        if dtype.hasobject or dtype.kind not in "biuf" or dtype.subdtype is not None:
            raise ValueError(f"{what}: holds {dtype} values; expected plain numbers")
        count = int(np.prod(shape, dtype=object))
        if max_elements is not None and count > max_elements:
            raise ImageTooLargeError(f"{what}: its .npy header", *_sides(shape), max_elements)
        expected = f.tell() + count * dtype.itemsize
        if size != expected:
            raise ValueError(
                f"{what}: its header declares {dtype} {tuple(shape)} ({expected:,} bytes with "
                f"the header), but the file is {size:,} bytes (truncated, or more appended)")
        data = np.frombuffer(_read_exactly(f, count * dtype.itemsize, what), dtype=dtype)
    return data.reshape(shape, order="F" if fortran else "C")


def _sides(shape: tuple[int, ...]) -> tuple[int, int]:
    """(width, height) of an array shape for the too-large message (1-D: 1 row)."""
    if len(shape) >= 2:
        return int(np.prod(shape[1:], dtype=object)), int(shape[0])
    return (int(shape[0]) if shape else 1), 1
