"""Declared sizes of the box-structured formats: AVIF and JPEG 2000 (pure Python).

AVIF: the ``ispe`` property alone does not bound what gets decoded: the AV1 decoder allocates
the frame size of the AV1 sequence header inside the item data (a 32 KB file whose ispe
says 16 x 16 decodes an 8192 x 8192 frame). So every size is collected: each ispe, each
grid's output size, and the maximum frame size of every AV1 sequence header in every
``av01`` item and ``av1C`` property. Image sequences (a ``moov`` box: tracks) and files
without any sequence header are reported as unknown (None), so they are refused.

JPEG 2000: OpenJPEG decodes the size of the codestream's SIZ marker (the JP2 ``ihdr``
box is taken into account too), and keeps state per tile, so the tile count is
returned with it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

__all__ = ["avif_sizes", "j2k_size", "jp2_size"]

_MAX_EXTENTS = 4096  # more is no still image; bounds the work on crafted tables
_MAX_BOXES = 10_000  # per level
_MAX_ITEMS = 65_536
_MAX_OBUS = 65_536  # per item


def _boxes(d: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, box end) of the ISOBMFF boxes in ``d[start:end]``."""
    pos, count = start, 0
    while pos + 8 <= end:
        count += 1
        if count > _MAX_BOXES:
            raise ValueError("too many boxes")
        size, kind = struct.unpack_from(">I4s", d, pos)
        head = 8
        if size == 1:
            size, head = struct.unpack_from(">Q", d, pos + 8)[0], 16
        elif size == 0:
            size = end - pos
        if size < head or pos + size > end:
            return
        yield kind, pos + head, pos + size
        pos += size


def _uint(d: bytes, pos: int, nbytes: int) -> int:
    if nbytes not in (0, 4, 8):
        raise ValueError("bad iloc field size")
    return int.from_bytes(d[pos:pos + nbytes], "big") if nbytes else 0


def _item_types(d: bytes, s: int, e: int) -> dict[int, bytes]:
    version = d[s]
    pos = s + 4 + (2 if version == 0 else 4)
    types = {}
    for kind, bs, _ in _boxes(d, pos, e):
        if kind == b"infe" and d[bs] >= 2:
            wide = d[bs] >= 3
            item = _uint(d, bs + 4, 4) if wide else struct.unpack_from(">H", d, bs + 4)[0]
            at = bs + (10 if wide else 8)  # after item_ID and item_protection_index
            types[item] = d[at:at + 4]
    return types


def _item_extents(d: bytes, s: int, e: int) -> dict[int, tuple[int, list[tuple[int, int]]]]:
    """item ID -> (construction method, [(offset, length)]) from an ``iloc`` box."""
    version = d[s]
    pos = s + 4
    off_size, len_size = d[pos] >> 4, d[pos] & 15
    base_size, idx_size = d[pos + 1] >> 4, (d[pos + 1] & 15) if version in (1, 2) else 0
    pos += 2
    if version < 2:
        count, pos = struct.unpack_from(">H", d, pos)[0], pos + 2
    else:
        count, pos = _uint(d, pos, 4), pos + 4
    if count > _MAX_ITEMS:
        raise ValueError("too many items")
    items, total = {}, 0
    for _ in range(count):
        if pos >= e:
            raise ValueError("iloc truncated")
        if version < 2:
            item, pos = struct.unpack_from(">H", d, pos)[0], pos + 2
        else:
            item, pos = _uint(d, pos, 4), pos + 4
        method = 0
        if version in (1, 2):
            method, pos = struct.unpack_from(">H", d, pos)[0] & 15, pos + 2
        pos += 2  # data_reference_index
        base, pos = _uint(d, pos, base_size), pos + base_size
        n_ext, pos = struct.unpack_from(">H", d, pos)[0], pos + 2
        total += n_ext
        if total > _MAX_EXTENTS:
            raise ValueError("too many iloc extents")
        extents = []
        for _ in range(n_ext):
            pos += idx_size
            off, pos = _uint(d, pos, off_size), pos + off_size
            length, pos = _uint(d, pos, len_size), pos + len_size
            extents.append((base + off, length))
        items[item] = (method, extents)
    return items


def _leb128(d: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for i in range(8):
        byte = d[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos + i + 1
    raise ValueError("leb128 too long")


class _Bits:
    def __init__(self, d: bytes, start: int, end: int) -> None:
        self.d, self.pos, self.end = d, start * 8, end * 8

    def f(self, n: int) -> int:
        if self.pos + n > self.end:
            raise ValueError("sequence header truncated")
        value = 0
        for _ in range(n):
            value = (value << 1) | ((self.d[self.pos >> 3] >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return value

    def uvlc(self) -> None:
        zeros = 0
        while not self.f(1):
            zeros += 1
            if zeros > 32:
                raise ValueError("uvlc too long")
        if zeros < 32:
            self.f(zeros)


def _sequence_header(d: bytes, start: int, end: int) -> tuple[int, int]:
    """max_frame_width/height of an AV1 sequence_header_obu (AV1 spec 5.5.1)."""
    b = _Bits(d, start, end)
    b.f(3)  # seq_profile
    b.f(1)  # still_picture
    if b.f(1):  # reduced_still_picture_header
        b.f(5)  # seq_level_idx[0]
    else:
        decoder_model = buffer_delay_bits = 0
        if b.f(1):  # timing_info_present_flag
            b.f(32)
            b.f(32)
            if b.f(1):  # equal_picture_interval
                b.uvlc()
            decoder_model = b.f(1)
            if decoder_model:
                buffer_delay_bits = b.f(5) + 1
                b.f(32)
                b.f(5)
                b.f(5)
        display_delay = b.f(1)
        for _ in range(b.f(5) + 1):  # operating points
            b.f(12)  # operating_point_idc
            if b.f(5) > 7:  # seq_level_idx
                b.f(1)  # seq_tier
            if decoder_model and b.f(1):
                b.f(buffer_delay_bits)
                b.f(buffer_delay_bits)
                b.f(1)
            if display_delay and b.f(1):
                b.f(4)
    width_bits, height_bits = b.f(4) + 1, b.f(4) + 1
    return b.f(width_bits) + 1, b.f(height_bits) + 1


def _av1_sizes(d: bytes, start: int, end: int) -> list[tuple[int, int]]:
    """Frame size bounds of the sequence header OBUs in ``d[start:end]``."""
    sizes, pos = [], start
    for _ in range(_MAX_OBUS):
        if pos >= end:
            return sizes
        head = d[pos]
        if head & 0x80:  # forbidden bit: not an OBU stream
            return sizes
        kind, has_ext, has_size = (head >> 3) & 15, (head >> 2) & 1, (head >> 1) & 1
        pos += 1 + has_ext
        if has_size:
            size, pos = _leb128(d, pos)
        else:
            size = end - pos
        if kind == 1:
            sizes.append(_sequence_header(d, pos, min(pos + size, end)))
        pos += size
    raise ValueError("too many OBUs")


def avif_sizes(d: bytes) -> tuple[list[tuple[int, int]], int] | None:
    """Every (width, height) an AVIF file declares and its bit depth (8, 10 or 12), or
    None when the size cannot be bounded."""
    meta = None
    for kind, s, e in _boxes(d, 0, len(d)):
        if kind == b"moov":
            return None
        if kind == b"meta":
            meta = (s + 4, e)  # a full box
    if meta is None:
        return None
    types: dict[int, bytes] = {}
    extents: dict[int, tuple[int, list[tuple[int, int]]]] = {}
    idat_start = None
    sizes: list[tuple[int, int]] = []
    seq_sizes: list[tuple[int, int]] = []
    bits = 8
    for kind, s, e in _boxes(d, *meta):
        if kind == b"iinf":
            types = _item_types(d, s, e)
        elif kind == b"iloc":
            extents = _item_extents(d, s, e)
        elif kind == b"idat":
            idat_start = s
        elif kind == b"iprp":
            for ckind, cs, ce in _boxes(d, s, e):
                if ckind != b"ipco":
                    continue
                for pkind, ps, pe in _boxes(d, cs, ce):
                    if pkind == b"ispe":
                        sizes.append(struct.unpack_from(">II", d, ps + 4))
                    elif pkind == b"av1C":  # byte 2: high_bitdepth, twelve_bit flags
                        depth = 12 if d[ps + 2] & 0x20 else 10 if d[ps + 2] & 0x40 else 8
                        bits = max(bits, depth)
                        seq_sizes += _av1_sizes(d, ps + 4, pe)
    for item, kind in types.items():
        if kind not in (b"av01", b"grid") or item not in extents:
            continue
        method, parts = extents[item]
        if method not in (0, 1) or (method == 1 and idat_start is None):
            continue
        shift = idat_start if method == 1 else 0
        data = b"".join(d[shift + off:shift + off + (length or len(d))] for off, length in parts)
        if kind == b"av01":
            seq_sizes += _av1_sizes(data, 0, len(data))
        elif len(data) >= 8:  # ImageGrid: 16- or 32-bit output size after 4 bytes
            fmt = ">II" if data[1] & 1 else ">HH"
            sizes.append(struct.unpack_from(fmt, data, 4))
    if not seq_sizes:
        return None
    return sizes + seq_sizes, bits


# ------------------------------------------------------------------ JPEG 2000


def j2k_size(d: bytes, pos: int = 0) -> tuple[int, int, int, int, int] | None:
    """(width, height, components, tiles, bits) of the codestream at ``pos`` (SOC, SIZ);
    bits is the largest component precision."""
    if d[pos:pos + 4] != b"\xff\x4f\xff\x51":
        return None
    x, y, x0, y0, tw, th, tx0, ty0, comps = struct.unpack_from(">IIIIIIIIH", d, pos + 8)
    tiles = 1
    if tw and th and x > tx0 and y > ty0:
        tiles = -(-(x - tx0) // tw) * -(-(y - ty0) // th)
    first = pos + 46  # Ssiz, XRsiz, YRsiz per component
    bits = max(((b & 0x7F) + 1 for b in d[first:first + 3 * min(comps, 16):3]), default=8)
    return max(x - x0, 0), max(y - y0, 0), comps, tiles, bits


def jp2_size(d: bytes) -> tuple[int, int, int, int, int] | None:
    """Like :func:`j2k_size` for a JP2 file: the larger of ``ihdr`` and the codestream."""
    sizes, channels = [], 0
    for kind, s, e in _boxes(d, 0, len(d)):
        if kind == b"jp2h":
            for sub, ss, _ in _boxes(d, s, e):
                if sub == b"ihdr":
                    h, w, nc = struct.unpack_from(">IIH", d, ss)
                    sizes.append((w, h))
                    channels = max(channels, nc)
        elif kind == b"jp2c":  # OpenJPEG reads boxes up to the codestream
            code = j2k_size(d, s)
            if code is None:
                return None
            w, h = max(sizes + [code[:2]], key=lambda wh: wh[0] * wh[1])
            return w, h, max(channels, code[2]), code[3], code[4]
    return None
