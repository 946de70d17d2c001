"""sensor_msgs/PointCloud2 <-> numpy structured arrays (numpy only, duck-typed).

A cloud is a structured array, one record per point (e.g. the engine's
``record_dtype``: float32 x, y, z and optionally a packed ``rgb``). This module holds
the one table between numpy sample types and ``sensor_msgs/PointField`` datatype codes:
writing maps each field's dtype to its code, reading maps codes back to dtypes.

As in :mod:`depth_pro_ros.io.messages`, building returns a dict of plain field values
(``fields`` as ``(name, offset, datatype, count)`` tuples; :func:`point_fields` turns
them into PointField messages of either rclpy or rosbags) and reading only looks at
attributes, so rclpy and rosbags messages both work. Nothing here imports ROS.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from depth_pro_ros.io.image_decode import byte_buffer

__all__ = [
    "MAX_POINT_FIELDS",
    "POINTFIELD_DATATYPES",
    "CloudLayout",
    "check_pointcloud2",
    "point_fields",
    "pointcloud2_fields",
    "pointcloud2_to_array",
    "pointcloud2_xyz",
    "pointfield_datatype",
]

#: ``sensor_msgs/PointField`` datatype code -> numpy sample type (INT8 = 1 ... FLOAT64 = 8).
POINTFIELD_DATATYPES: dict[int, np.dtype] = {
    1: np.dtype(np.int8),
    2: np.dtype(np.uint8),
    3: np.dtype(np.int16),
    4: np.dtype(np.uint16),
    5: np.dtype(np.int32),
    6: np.dtype(np.uint32),
    7: np.dtype(np.float32),
    8: np.dtype(np.float64),
}
# Keyed by kind and size ("f4", "u2" ...), so that either byte order finds its code.
_CODES = {dt.str[1:]: code for code, dt in POINTFIELD_DATATYPES.items()}
_NATIVE_BIGENDIAN = sys.byteorder == "big"


def pointfield_datatype(sample: np.dtype) -> int:
    """The PointField datatype code of a numpy sample type, whatever its byte order.

    Raises:
        ValueError: a type a PointCloud2 cannot hold (e.g. float16, int64, a string).
    """
    code = _CODES.get(np.dtype(sample).str[1:])
    if code is None:
        raise ValueError(f"PointCloud2 cannot hold samples of type {np.dtype(sample)}")
    return code


def pointcloud2_fields(record: np.ndarray, height: int, width: int) -> dict[str, Any]:
    """PointCloud2 fields for a structured array of ``height * width`` points (row-major).

    ``fields`` is a list of ``(name, offset, datatype, count)`` tuples taken from the
    record's dtype (build PointField objects from them with :func:`point_fields`, or let
    ``io.messages.fill`` do it); ``point_step`` is the dtype's itemsize and ``data`` a
    uint8 view of the record (no copy when it is C-contiguous). ``is_dense`` is False:
    invalid points are NaN.
    """
    record = np.asarray(record)
    if record.dtype.names is None:
        raise ValueError(f"record must be a structured array, got dtype {record.dtype}")
    height, width = int(height), int(width)
    if record.size != height * width:
        raise ValueError(
            f"record holds {record.size} points but height * width = {height} * {width} "
            f"= {height * width}"
        )
    fields = []
    byteorders = set()
    for name in record.dtype.names:
        sample, offset = record.dtype.fields[name][:2]
        base, shape = sample.base, sample.shape
        try:
            code = pointfield_datatype(base)
        except ValueError:
            raise ValueError(f"field {name!r} has a type PointCloud2 cannot hold: {sample}") \
                from None
        if base.itemsize > 1:
            byteorders.add(base.str[0])
        fields.append((str(name), int(offset), code, int(math.prod(shape)) if shape else 1))
    if len(byteorders) > 1:
        raise ValueError(f"record fields mix byte orders: {record.dtype}")
    is_bigendian = byteorders == {">"} if byteorders else _NATIVE_BIGENDIAN
    itemsize = record.dtype.itemsize
    data = np.ascontiguousarray(record).reshape(-1).view(np.uint8)
    return {
        "height": height,
        "width": width,
        "fields": fields,
        "is_bigendian": bool(is_bigendian),
        "point_step": int(itemsize),
        "row_step": int(itemsize * width),
        "data": data,
        "is_dense": False,
    }


#: Most PointFields a cloud may declare (real drivers send a dozen or fewer); more is a
#: lying layout, refused before anything is read.
MAX_POINT_FIELDS = 256


@dataclass(frozen=True)
class _Field:
    name: str
    offset: int
    sample: np.dtype  # in the message's byte order
    count: int


@dataclass(frozen=True)
class CloudLayout:
    """A PointCloud2 layout checked against its own data (see :func:`check_pointcloud2`)."""

    height: int
    width: int
    point_step: int
    row_step: int
    fields: tuple[_Field, ...]
    data: np.ndarray  # flat uint8, at least row_step * height bytes

    @property
    def points(self) -> int:
        return self.height * self.width

    def field(self, name: str) -> _Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise ValueError(f"PointCloud2 has no {name} field (fields: "
                         f"{', '.join(f.name for f in self.fields) or 'none'})")

    def read(self, f: _Field) -> np.ndarray:
        """Field ``f`` of every point as a zero-copy strided (height, width) view."""
        if self.points == 0:
            return np.empty((self.height, self.width), f.sample)
        return np.ndarray((self.height, self.width), dtype=f.sample, buffer=self.data,
                          offset=f.offset, strides=(self.row_step, self.point_step))


def _int(value: Any, what: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"PointCloud2 {what} is not an integer: {value!r:.40}") from None
    if number < 0:
        raise ValueError(f"PointCloud2 {what} is negative: {number}")
    return number


def check_pointcloud2(msg: Any, max_points: int | None = None) -> CloudLayout:
    """Check every size a PointCloud2 declares against its data, reading nothing yet.

    ``height``, ``width``, ``point_step``, ``row_step`` must be integers >= 0 with
    ``point_step * width <= row_step`` and ``row_step * height <= len(data)``; at most
    :data:`MAX_POINT_FIELDS` fields, each of a known datatype, with ``count >= 1`` and
    lying wholly inside ``point_step``; at most ``max_points`` points (None: no limit).
    So whatever is read afterwards is bounded by the data the message really holds.

    Raises:
        ValueError: the first size that does not hold, said in one line.
    """
    height, width = _int(msg.height, "height"), _int(msg.width, "width")
    point_step, row_step = _int(msg.point_step, "point_step"), _int(msg.row_step, "row_step")
    if max_points is not None and height * width > max_points:
        raise ValueError(f"PointCloud2 declares {height} x {width} = {height * width:,} "
                         f"points, more than the limit of {max_points:,}; raise the "
                         "max_input_pixels parameter (bag tool: --max-input-pixels) to "
                         "accept larger clouds")
    declared = msg.fields
    if len(declared) > MAX_POINT_FIELDS:
        raise ValueError(f"PointCloud2 declares {len(declared)} fields, more than "
                         f"{MAX_POINT_FIELDS}")
    order = ">" if bool(msg.is_bigendian) else "<"
    fields = []
    for f in declared:
        name = str(f.name)
        shown = repr(name[:40])
        base = POINTFIELD_DATATYPES.get(_int(f.datatype, f"field {shown} datatype"))
        if base is None:
            raise ValueError(f"PointField {shown} has unknown datatype {f.datatype}")
        count = _int(f.count, f"field {shown} count")
        offset = _int(f.offset, f"field {shown} offset")
        if count < 1:
            raise ValueError(f"PointField {shown} has count {count}; it must be >= 1")
        if offset + count * base.itemsize > point_step:
            raise ValueError(f"PointField {shown} (offset {offset}, {count} x "
                             f"{base.itemsize} bytes) does not fit in point_step {point_step}")
        fields.append(_Field(name, offset, base.newbyteorder(order) if base.itemsize > 1
                             else base, count))
    if row_step < point_step * width:
        raise ValueError(f"PointCloud2 row_step {row_step} < point_step * width = "
                         f"{point_step} * {width}")
    buf = np.ascontiguousarray(byte_buffer(msg.data))  # a strided view needs one block
    if buf.size < row_step * height:
        raise ValueError(f"PointCloud2 data is too short: expected {row_step * height} "
                         f"bytes (row_step {row_step} x height {height}), got {buf.size}")
    return CloudLayout(height, width, point_step, row_step, tuple(fields), buf)


def pointcloud2_xyz(msg: Any, max_points: int | None = None) -> np.ndarray:
    """The x, y, z fields of a PointCloud2 as (N, 3) float32, row-major, nothing else read.

    The layout is checked first (:func:`check_pointcloud2`); x, y and z must each be
    declared once, with ``count`` 1, and must not overlap. Samples of any datatype are
    converted by value; non-finite points are kept. Memory: the (N, 3) result only.

    Raises:
        ValueError: a layout that does not hold, or missing / repeated / overlapping axes.
    """
    layout = check_pointcloud2(msg, max_points)
    names = [f.name for f in layout.fields]
    missing = [axis for axis in "xyz" if axis not in names]
    if missing:
        raise ValueError(f"PointCloud2 has no {', '.join(missing)} field (fields: "
                         f"{', '.join(repr(n[:40]) for n in names[:12]) or 'none'}"
                         f"{', ...' if len(names) > 12 else ''})")
    axes = [layout.field(axis) for axis in "xyz"]
    for axis, f in zip("xyz", axes):
        if names.count(axis) > 1:
            raise ValueError(f"PointCloud2 declares the {axis} field {names.count(axis)} times")
        if f.count != 1:
            raise ValueError(f"PointField {axis!r} has count {f.count}; x, y, z must have 1")
    _refuse_overlaps(axes)
    out = np.empty((layout.points, 3), dtype=np.float32)
    for i, f in enumerate(axes):
        # Straight from the strided view into the result's column: no per-field copy.
        np.copyto(out[:, i].reshape(layout.height, layout.width), layout.read(f),
                  casting="unsafe")
    return out


def _refuse_overlaps(fields: Sequence[_Field]) -> None:
    """Fields that share bytes are a broken layout; refusing them also bounds what is
    read to one sample per field and byte of a point."""
    spans = sorted((f.offset, f.offset + f.count * f.sample.itemsize, f.name) for f in fields)
    for a, b in zip(spans, spans[1:]):
        if a[1] > b[0]:
            raise ValueError(f"PointFields {a[2][:40]!r} (offset {a[0]}) and {b[2][:40]!r} "
                             f"(offset {b[0]}) overlap: a broken PointCloud2 layout")


def _float32(values: np.ndarray) -> np.ndarray:
    """``values`` as native float32: FLOAT32 samples bit for bit (a packed ``rgb`` may be
    a NaN pattern, which arithmetic could change), other types by value."""
    if values.dtype.kind == "f" and values.dtype.itemsize == 4:
        bits = values.view(np.dtype(values.dtype.str.replace("f", "u")))
        return bits.astype(np.uint32, copy=False).view(np.float32)
    return values.astype(np.float32)


def pointcloud2_to_array(msg: Any) -> np.ndarray:
    """Read a PointCloud2 as (height, width, n_fields) float32, fields in message order.

    FLOAT32 fields are copied bit for bit (a packed ``rgb`` field keeps its bits); other
    sample types are converted by value. Honours ``row_step`` padding and
    ``is_bigendian``; fields with ``count > 1`` are not supported. The layout is checked
    first (:func:`check_pointcloud2`), so the result is at most 4 bytes per field and
    point. Meant for tests and tools, not the hot path (anchors use
    :func:`pointcloud2_xyz`).
    """
    layout = check_pointcloud2(msg)
    for f in layout.fields:
        if f.count != 1:
            raise ValueError(f"PointField {f.name[:40]!r} has count {f.count}; only 1 is read")
    _refuse_overlaps(layout.fields)
    out = np.empty((layout.height, layout.width, len(layout.fields)), dtype=np.float32)
    for i, f in enumerate(layout.fields):
        out[..., i] = _float32(layout.read(f))
    return out


def point_fields(specs: Sequence[tuple], point_field: Any) -> list[Any]:
    """PointField messages (of class ``point_field``) from ``pointcloud2_fields`` tuples."""
    return [point_field(name=n, offset=o, datatype=t, count=c) for n, o, t, c in specs]
