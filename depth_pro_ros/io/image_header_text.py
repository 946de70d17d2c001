"""Declared sizes of the formats with text headers: PNM (PBM/PGM/PPM), PAM, PFM and
Radiance HDR, read as OpenCV's decoders read them (comments, whitespace and line limits
included). Used by :mod:`depth_pro_ros.io.image_header`; sizes only, as plain tuples.
"""

from __future__ import annotations

import re

__all__ = ["hdr_size", "pnm_header"]

# Whitespace and "#" comments (up to the end of their line), as the PNM readers skip them.
_SKIP = re.compile(rb"(?:[ \t\n\r\v\f]+|#[^\n\r]*[\n\r])*")
_DIGITS = re.compile(rb"[0-9]+")


_MAX_PNM_HEADER = 65_536  # a header with longer comments is refused


def _numbers(d: bytes, pos: int, count: int) -> list[int] | None:
    """``count`` decimal numbers from ``pos``, skipping whitespace and ``#`` comments;
    they must end within the first ``_MAX_PNM_HEADER`` bytes."""
    view = d[:_MAX_PNM_HEADER]
    out: list[int] = []
    while len(out) < count:
        m = _DIGITS.match(view, _SKIP.match(view, pos).end())
        if m is None or (m.end() == len(view) < len(d)):  # none, or maybe cut by the view
            return None  # anything else: the decoder fails or reads it differently
        out.append(int(m.group()))
        pos = m.end()
    return out


def pnm_header(d: bytes) -> tuple[str, int, int, int, int] | None:
    """``(format, width, height, channels, max_value)`` of a PNM, PAM or PFM header
    (``d`` starts with ``P`` and a type digit or ``f``/``F``); channels 0: fixed by the
    format, max_value 0: the full range. None when the decoder would not read a size."""
    if d[1:2] == b"7":
        return _pam(d)
    if d[1:2] in (b"f", b"F"):
        size = _numbers(d, 2, 2)
        return None if size is None else ("PFM", size[0], size[1], 0, 0)
    bitmap = d[1:2] in (b"1", b"4")
    size = _numbers(d, 2, 2 if bitmap else 3)
    if size is None:
        return None
    return "PNM", size[0], size[1], 0, 0 if bitmap else size[2]


_PAM_FIELD = re.compile(rb"^[ \t\r\v\f]*([A-Za-z]+)[ \t\r\v\f]*([+-]?\d*)")


def _pam(d: bytes) -> tuple[str, int, int, int, int] | None:
    fields: dict[bytes, int] = {}
    end = d.find(b"ENDHDR", 0, _MAX_PNM_HEADER)
    if end < 0:
        return None
    for line in d[3:end].split(b"\n"):
        m = _PAM_FIELD.match(line)
        if m is None:
            continue
        key = m.group(1).upper()
        if key == b"ENDHDR":
            break
        if m.group(2) and m.group(2) not in (b"+", b"-"):
            fields[key] = max(fields.get(key, 0), int(m.group(2)))  # repeats: the largest
    if b"WIDTH" not in fields or b"HEIGHT" not in fields:
        return None
    return ("PAM", fields[b"WIDTH"], fields[b"HEIGHT"], max(1, fields.get(b"DEPTH", 1)),
            fields.get(b"MAXVAL", 0))


# ------------------------------------------------------------------- Radiance HDR

_MAX_HDR_LINES = 1000  # real headers have a handful
_HDR_SIZE = re.compile(rb"-Y\s*([+-]?\d+)\s*\+X\s*([+-]?\d+)")


def hdr_size(d: bytes) -> tuple[int, int] | None:
    """``(width, height)`` of a Radiance HDR header, read line by line as its decoder
    does; None when the decoder would not read a size."""
    pos = 0

    def line() -> bytes | None:  # what fgets(buf, 128) returns, cut at a NUL
        nonlocal pos
        if pos >= len(d):
            return None
        end = d.find(b"\n", pos, pos + 127)
        chunk = d[pos:end + 1] if end >= 0 else d[pos:pos + 127]
        pos += len(chunk)
        return chunk.split(b"\0", 1)[0]

    buf = line()
    if buf is None or not buf.startswith(b"#?"):
        return None
    found_format = False
    for _ in range(_MAX_HDR_LINES):
        buf = line()
        if buf is None:
            return None
        if buf in (b"", b"\n"):
            break
        found_format |= buf.startswith(b"FORMAT=")
    else:
        return None
    size = line() if found_format and buf == b"\n" else None
    m = _HDR_SIZE.match(size or b"")
    if m is None:
        return None
    height, width = int(m.group(1)), int(m.group(2))
    return max(width, 0), max(height, 0)
