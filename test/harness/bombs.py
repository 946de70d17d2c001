"""Encoded picture payloads whose headers declare far more pixels than they hold
(header bombs): a few dozen to a few hundred bytes each. :mod:`harness.malformed` sends
them as compressed images; the bag tool's damaged-bag tests write them into bags."""

from __future__ import annotations

import struct

import cv2
import numpy as np

__all__ = ["encode", "header_bombs"]


def encode(ext: str, pixels: np.ndarray, *params: int) -> bytes:
    """``pixels`` encoded by OpenCV as ``ext`` (``.jpg``, ``.png``) with ``params``."""
    ok, buf = cv2.imencode(ext, pixels, list(params))
    if not ok:
        raise RuntimeError(f"OpenCV cannot encode {ext}")
    return buf.tobytes()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    import zlib

    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload)))


def header_bombs(side: int) -> dict[str, bytes]:
    """Payloads by format whose headers declare ``side`` x ``side`` pixels (JPEG: at most
    65535); keys png, jpeg, tiff, bmp, webp, pnm, pgm_comment."""
    png = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", side, side,
                                                                  8, 2, 0, 0, 0))
           + _png_chunk(b"IDAT", bytes(64)))
    jpeg = bytearray(encode(".jpg", np.zeros((8, 8, 3), np.uint8)))
    sof = bytes(jpeg).find(b"\xff\xc0")
    jpeg[sof + 5: sof + 9] = struct.pack(">HH", min(side, 65535), min(side, 65535))
    tiff_entries = [(256, 4, side), (257, 4, side), (258, 3, 8), (259, 3, 1),
                    (262, 3, 2), (273, 4, 8), (277, 3, 3), (279, 4, 1)]
    ifd = struct.pack("<H", len(tiff_entries)) + b"".join(
        struct.pack("<HHII", tag, kind, 1, value) if kind == 4
        else struct.pack("<HHIHH", tag, kind, 1, value, 0) for tag, kind, value in tiff_entries)
    tiff = b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00" * 4
    bmp_info = struct.pack("<IiiHHIIiiII", 40, side, side, 1, 24, 0, 0, 2835, 2835, 0, 0)
    bmp = b"BM" + struct.pack("<IHHI", 54 + 32, 0, 0, 54) + bmp_info + bytes(32)
    vp8x = (b"VP8X" + struct.pack("<I", 10) + bytes(4) + (side - 1).to_bytes(3, "little")
            + (side - 1).to_bytes(3, "little"))
    webp = b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x
    return {
        "png": png, "jpeg": bytes(jpeg), "tiff": tiff, "bmp": bmp, "webp": webp,
        "pnm": f"P6\n{side} {side}\n255\n".encode() + bytes(32),
        "pgm_comment": f"P5\n#fuzz\n{side}\n#x\n{side}\n255\n".encode() + bytes(32),
    }
