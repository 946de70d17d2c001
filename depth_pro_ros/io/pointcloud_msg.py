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
from typing import Any

import numpy as np

from depth_pro_ros.io.image_decode import byte_buffer, padded_rows

__all__ = [
    "POINTFIELD_DATATYPES",
    "point_fields",
    "pointcloud2_fields",
    "pointcloud2_to_array",
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


def pointcloud2_to_array(msg: Any) -> np.ndarray:
    """Read a PointCloud2 as (height, width, n_fields) float32, fields in message order.

    FLOAT32 fields are copied bit for bit (a packed ``rgb`` field keeps its bits); other
    sample types are converted by value. Honours ``row_step`` padding and
    ``is_bigendian``; fields with ``count > 1`` are not supported. Meant for tests and
    tools, not the hot path.
    """
    height, width = int(msg.height), int(msg.width)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    order = ">" if bool(msg.is_bigendian) else "<"
    names, formats, offsets = [], [], []
    for field in msg.fields:
        if int(field.count) != 1:
            raise ValueError(f"PointField {field.name!r} has count {field.count}; only 1 is read")
        base = POINTFIELD_DATATYPES.get(int(field.datatype))
        if base is None:
            raise ValueError(f"PointField {field.name!r} has unknown datatype {field.datatype}")
        names.append(str(field.name))
        formats.append(base.newbyteorder(order) if base.itemsize > 1 else base)
        offsets.append(int(field.offset))
    dtype = np.dtype(
        {"names": names, "formats": formats, "offsets": offsets, "itemsize": point_step}
    )
    buf = byte_buffer(msg.data)
    if row_step < point_step * width:
        raise ValueError(f"PointCloud2 row_step {row_step} < point_step * width")
    if buf.size < row_step * height:
        raise ValueError(
            f"PointCloud2 data is too short: expected {row_step * height} bytes, got {buf.size}"
        )
    rows = padded_rows(buf, height, width, row_step, point_step * width)
    points = np.ascontiguousarray(rows).view(dtype).reshape(height, width)
    out = np.empty((height, width, len(names)), dtype=np.float32)
    for i, name in enumerate(names):
        out[..., i] = points[name]
    return out


def point_fields(specs: Sequence[tuple], point_field: Any) -> list[Any]:
    """PointField messages (of class ``point_field``) from ``pointcloud2_fields`` tuples."""
    return [point_field(name=n, offset=o, datatype=t, count=c) for n, o, t, c in specs]
