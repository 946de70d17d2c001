"""Declared image sizes read from file headers, before any decoding (pure Python).

An image bomb is a small file whose header declares a huge image; a decoder allocates
(and often fills) the whole image before it notices anything. Reading the size from the
header first lets :mod:`depth_pro_ros.io.image_decode` refuse such files before OpenCV
sees them.

Every format OpenCV decodes from memory in this build is recognised by the magic bytes its
OpenCV decoder tests, or by a looser test, and all formats whose magic matches are parsed:
legitimate files match exactly one, and a crafted file that matches several is only
accepted when every reading of it is small. Parsers read the size the way the decoder
does (libjpeg's marker scan with fill and garbage bytes, libwebp's raw bitstreams, PNM
comments, fgets-sized HDR header lines, all TIFF directories ...), never read outside the
data (struct raises instead) and consume input on every loop turn, so garbage cannot make
them hang.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, replace

import numpy as np

from depth_pro_ros.io.image_header_boxes import avif_sizes, j2k_size, jp2_size
from depth_pro_ros.io.image_header_text import hdr_size, pnm_header

__all__ = ["SUPPORTED_FORMATS", "Header", "declared_size", "read_headers"]

#: The compressed formats :func:`read_headers` reads sizes of (all OpenCV decodes here).
SUPPORTED_FORMATS: tuple[str, ...] = (
    "JPEG", "PNG (and APNG)", "WebP", "TIFF (and BigTIFF)", "BMP", "GIF",
    "PNM (PBM/PGM/PPM/PAM)", "PFM", "JPEG 2000 (JP2/J2K)", "AVIF", "Radiance HDR",
    "Sun raster",
)


@dataclass(frozen=True)
class Header:
    """What a header declares: pixel size, samples per pixel (0: fixed by the format,
    at most 4), for JPEG 2000 the number of tiles, and the largest sample value when
    OpenCV returns samples unscaled below their type's range (PNM maxval, 10/12-bit
    AVIF and JPEG 2000; 0: the full range). ``damage`` names a structural defect that
    makes decoding pointless or dangerous (the image must then not be decoded)."""

    format: str
    width: int
    height: int
    channels: int = 0
    tiles: int = 1
    max_value: int = 0
    damage: str = ""

    @property
    def pixels(self) -> int:
        return self.width * self.height


def _u16(d: bytes, pos: int, e: str = ">") -> int:
    return struct.unpack_from(e + "H", d, pos)[0]


def _u32(d: bytes, pos: int, e: str = ">") -> int:
    return struct.unpack_from(e + "I", d, pos)[0]


def _largest(fmt: str, sizes: list[tuple[int, int]], channels: int = 0) -> Header | None:
    if not sizes:
        return None
    width, height = max(sizes, key=lambda s: s[0] * s[1])
    return Header(fmt, width, height, channels)


# ------------------------------------------------------------------------ JPEG

# SOF0-3, 5-7, 9-11, 13-15 (C4 is DHT, C8 JPG, CC DAC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


_FILL = re.compile(rb"\xff*")
_MAX_JPEG_MARKERS = 10_000  # before the frame header; real files have a few dozen


def _jpeg(d: bytes) -> Header | None:
    pos, n = 2, len(d)
    for _ in range(_MAX_JPEG_MARKERS):
        # Like libjpeg: skip garbage up to an 0xFF, then fill bytes; FF00 is no marker.
        pos = d.find(b"\xff", pos)
        if pos < 0:
            return None
        pos = _FILL.match(d, pos).end()
        if pos >= n:
            return None
        marker = d[pos]
        pos += 1
        if marker in _JPEG_SOF:
            height, width = struct.unpack_from(">HH", d, pos + 3)
            return Header("JPEG", width, height)
        if marker in (0xD8, 0xD9, 0xDA):  # SOI again, EOI or a scan before any frame
            return None
        if marker == 0x00 or marker == 0x01 or 0xD0 <= marker <= 0xD7:
            continue  # stuffed zero, TEM, RSTn: no length field
        length = _u16(d, pos)
        if length < 2:
            return None
        pos += length
    return None


# --------------------------------------------------------------- PNG, GIF, BMP, Sun


_MAX_PNG_CHUNKS = 100_000  # a 50 MP image in 8 KB IDAT chunks has about 20,000


def _png(d: bytes) -> Header | None:
    if d[12:16] != b"IHDR":
        return None  # libpng requires IHDR first
    sizes = [struct.unpack_from(">II", d, 16)]
    # OpenCV's PNG reader allocates (and zero-fills) each chunk's declared length before
    # reading it: a 4 KB file with a 2 GB IDAT length takes 2 GB. So every chunk must lie
    # inside the data. APNG frames (fcTL) carry their own rectangles.
    pos, damage = 8, ""
    for _ in range(_MAX_PNG_CHUNKS):
        if pos + 8 > len(d):
            break  # the end of the data: the decoder reports a truncated file
        length, kind = struct.unpack_from(">I4s", d, pos)
        if pos + 12 + length > len(d):
            damage = (f"chunk {kind.decode('latin-1')!r} declares {length:,} bytes but "
                      f"{max(len(d) - pos - 12, 0):,} follow (truncated or damaged file)")
            break
        if kind == b"fcTL" and length >= 20:
            w, h, x, y = struct.unpack_from(">IIII", d, pos + 12)
            sizes.append((x + w, y + h))
        elif kind == b"IEND":
            break
        pos += 12 + length
    else:
        damage = f"more than {_MAX_PNG_CHUNKS:,} chunks"
    return Header("PNG", max(s[0] for s in sizes), max(s[1] for s in sizes), damage=damage)


def _gif(d: bytes) -> Header | None:
    width, height = struct.unpack_from("<HH", d, 6)  # frames must lie inside this screen
    return Header("GIF", width, height)


def _bmp(d: bytes) -> Header | None:
    size = _u32(d, 14, "<")
    if size == 12:  # OS/2 core header
        width, height = struct.unpack_from("<HH", d, 18)
    elif size >= 36:
        width, height = struct.unpack_from("<ii", d, 18)  # height < 0: top-down rows
    else:
        return None
    return Header("BMP", abs(width), abs(height))


def _sun(d: bytes) -> Header | None:
    width, height = struct.unpack_from(">II", d, 4)
    return Header("Sun raster", width, height)


# ------------------------------------------------- PNM, PAM, PFM, Radiance HDR (text)


def _pnm(d: bytes) -> Header | None:
    found = pnm_header(d)
    if found is None:
        return None
    fmt, width, height, channels, max_value = found
    return Header(fmt, width, height, channels, max_value=max_value)


def _hdr(d: bytes) -> Header | None:
    size = hdr_size(d)
    return None if size is None else Header("Radiance HDR", *size)


# ------------------------------------------------------------------------ TIFF

# Integer field types libtiff reads a size from: struct code by TIFF type.
_TIFF_INT = {1: "B", 3: "H", 4: "I", 16: "Q", 6: "b", 8: "h", 9: "i", 17: "q"}


def _tiff_ifd(d: bytes, off: int, e: str, big: bool) -> tuple[dict[int, int], int] | None:
    """Tags 256/257/277 of the directory at ``off`` and the next directory's offset."""
    count = struct.unpack_from(e + ("Q" if big else "H"), d, off)[0]
    entry, pos = (20, off + 8) if big else (12, off + 2)
    if count > 4096 or pos + count * entry > len(d):  # libtiff's sanity limit is 4096
        return None
    tags: dict[int, int] = {}
    for i in range(count):
        at = pos + i * entry
        tag, typ = struct.unpack_from(e + "HH", d, at)
        if tag not in (256, 257, 277):
            continue
        n = struct.unpack_from(e + ("Q" if big else "I"), d, at + 4)[0]
        if n != 1 or typ not in _TIFF_INT:
            return None  # libtiff refuses the directory
        value = struct.unpack_from(e + _TIFF_INT[typ], d, at + (12 if big else 8))[0]
        tags[tag] = max(tags.get(tag, 0), value)
    nxt = struct.unpack_from(e + ("Q" if big else "I"), d, pos + count * entry)[0]
    return tags, nxt


def _tiff(d: bytes) -> Header | None:
    e = "<" if d[:2] == b"II" else ">"
    magic = _u16(d, 2, e)
    if magic not in (42, 43):
        return None
    big = magic == 43
    off = struct.unpack_from(e + "Q", d, 8)[0] if big else _u32(d, 4, e)
    sizes: list[tuple[int, int]] = []
    channels, seen = 1, set()
    while off and off not in seen and len(seen) < 64:
        seen.add(off)
        try:
            ifd = _tiff_ifd(d, off, e, big)
        except struct.error:
            ifd = None
        if ifd is None or 256 not in ifd[0] or 257 not in ifd[0]:
            if not sizes:
                return None  # libtiff cannot read the first directory
            break  # only the first one is decoded; a broken later one ends the chain
        tags, off = ifd
        sizes.append((max(tags[256], 0), max(tags[257], 0)))
        channels = max(channels, tags.get(277, 1))
    return _largest("TIFF", sizes, channels)


# ------------------------------------------------------------------------ WebP


def _webp(d: bytes) -> Header | None:
    pos, n = 0, len(d)
    if d[:4] == b"RIFF":
        if d[8:12] != b"WEBP":
            return None
        pos = 12
    if d[pos:pos + 4] == b"VP8X":  # extended format: the canvas bounds every frame
        w, h = (int.from_bytes(d[pos + i:pos + i + 3], "little") for i in (12, 15))
        return Header("WebP", w + 1, h + 1) if pos + 18 <= n else None
    if pos == 0 and d[:4] == b"ALPH":  # libwebp skips leading chunks up to VP8/VP8L
        for _ in range(1000):
            if d[pos:pos + 4] in (b"VP8 ", b"VP8L") or pos + 8 > n:
                break
            size = _u32(d, pos + 4, "<")
            pos += 8 + size + (size & 1)
    if d[pos:pos + 4] in (b"VP8 ", b"VP8L"):
        pos += 8
    # Otherwise libwebp takes the bytes as a raw VP8 / VP8L bitstream.
    if pos + 5 <= n and d[pos] == 0x2F:  # VP8L: 14-bit width-1 and height-1
        bits = int.from_bytes(d[pos + 1:pos + 5], "little")
        return Header("WebP", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if pos + 10 <= n and d[pos + 3:pos + 6] == b"\x9d\x01\x2a":  # VP8 key frame
        w, h = struct.unpack_from("<HH", d, pos + 6)
        return Header("WebP", w & 0x3FFF, h & 0x3FFF)
    return None


# ---------------------------------------------------------------------- sniffing


def _avif(d: bytes) -> Header | None:
    found = avif_sizes(d)
    if found is None:
        return None
    head = _largest("AVIF", found[0])
    return None if head is None else replace(head, max_value=_max_value(found[1]))


def _max_value(bits: int) -> int:
    return (1 << bits) - 1 if bits not in (8, 16) else 0


def _j2k(d: bytes, parse=j2k_size) -> Header | None:
    size = parse(d)
    if size is None:
        return None
    width, height, comps, tiles, bits = size
    return Header("JPEG 2000", width, height, comps, tiles, _max_value(bits))


def _jp2(d: bytes) -> Header | None:
    return _j2k(d, jp2_size)


# (name, test of the first bytes, parser); the tests are at least as loose as OpenCV's.
_FORMATS = (
    ("JPEG", lambda d: d[:3] == b"\xff\xd8\xff", _jpeg),
    ("PNG", lambda d: d[:4] == b"\x89PNG", _png),
    ("WebP", lambda d: d[:4] in (b"RIFF", b"VP8 ", b"VP8L", b"VP8X", b"ALPH")
     or (d[:1] == b"\x2f" and len(d) >= 5 and d[4] >> 5 == 0)
     or d[3:6] == b"\x9d\x01\x2a", _webp),
    ("TIFF", lambda d: d[:2] in (b"II", b"MM"), _tiff),
    ("BMP", lambda d: d[:2] == b"BM", _bmp),
    ("GIF", lambda d: d[:3] == b"GIF", _gif),
    ("PNM", lambda d: d[:1] == b"P" and len(d) > 1 and d[1] in b"1234567fF", _pnm),
    ("JPEG 2000", lambda d: d[:4] == b"\xff\x4f\xff\x51", _j2k),
    ("JPEG 2000", lambda d: d[4:8] == b"jP  ", _jp2),
    ("AVIF", lambda d: d[4:8] == b"ftyp", _avif),
    ("Radiance HDR", lambda d: d[:2] == b"#?", _hdr),
    ("Sun raster", lambda d: d[:4] == b"\x59\xa6\x6a\x95", _sun),
)


def read_headers(data: bytes) -> list[tuple[str, Header | None]]:
    """One ``(format, header)`` per format whose magic bytes ``data`` starts with.

    ``header`` is None when that format's header is truncated, damaged or does not
    state the size. An empty list: no format OpenCV decodes here.
    """
    out: list[tuple[str, Header | None]] = []
    for name, test, parse in _FORMATS:
        if not test(data):
            continue
        try:
            header = parse(data)
        except (struct.error, ValueError, IndexError, OverflowError):
            header = None
        out.append((name, header))
    return out


def declared_size(data: np.ndarray | bytes) -> tuple[int, int] | None:
    """(width, height) the header of an encoded image declares, or None when unknown.

    None when no supported format matches, or the header is truncated or damaged. If
    the bytes match several formats, the largest size any of them declares.
    """
    raw = data if isinstance(data, bytes) else np.asarray(data, dtype=np.uint8).tobytes()
    headers = read_headers(raw)
    if not headers or any(h is None for _, h in headers):
        return None
    best = max((h for _, h in headers if h is not None), key=lambda h: h.pixels)
    return best.width, best.height
