"""depth_pro_ros.io.pointcloud_msg against real rclpy and rosbags PointCloud2 messages."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest
from harness.memory import traced_peak
from message_factories import rclpy_message, rosbags_message
from rosbags.typesys import Stores, get_typestore

from depth_pro_ros.io.pointcloud_msg import (
    POINTFIELD_DATATYPES,
    check_pointcloud2,
    point_fields,
    pointcloud2_fields,
    pointcloud2_to_array,
    pointcloud2_xyz,
    pointfield_datatype,
)

sensor_msgs = pytest.importorskip("sensor_msgs.msg")

TS2 = get_typestore(getattr(Stores, "ROS2_KILTED", Stores.LATEST))
NATIVE_BIG = sys.byteorder == "big"
BACKENDS = ("rclpy", "rosbags")
# The sensor_msgs/PointField constant of each numpy sample type.
CONSTANT_NAMES = {np.int8: "INT8", np.uint8: "UINT8", np.int16: "INT16", np.uint16: "UINT16",
                  np.int32: "INT32", np.uint32: "UINT32", np.float32: "FLOAT32",
                  np.float64: "FLOAT64"}


def _message(backend: str, fields: dict):
    """A real PointCloud2 of the backend (rosbags: after a CDR round trip)."""
    if backend == "rclpy":
        return rclpy_message(sensor_msgs.PointCloud2, fields, point_field=sensor_msgs.PointField)
    fields = dict(fields)
    fields["fields"] = point_fields(fields["fields"], TS2.types["sensor_msgs/msg/PointField"])
    msg = rosbags_message(TS2, "sensor_msgs/msg/PointCloud2", fields)
    return TS2.deserialize_cdr(TS2.serialize_cdr(msg, msg.__msgtype__), msg.__msgtype__)


def _record(with_rgb: bool, height: int = 3, width: int = 4) -> np.ndarray:
    names = ["x", "y", "z"] + (["rgb"] if with_rgb else [])
    dtype = np.dtype(
        {
            "names": names,
            "formats": [np.float32] * len(names),
            "offsets": [4 * i for i in range(len(names))],
            "itemsize": 4 * len(names),
        }
    )
    record = np.zeros(height * width, dtype)
    n = height * width
    record["x"] = np.arange(n, dtype=np.float32) * 0.5
    record["y"] = -np.arange(n, dtype=np.float32)
    record["z"] = 1.0 + np.arange(n, dtype=np.float32)
    record["z"][5] = record["x"][5] = record["y"][5] = np.nan
    if with_rgb:
        packed = (np.arange(n, dtype=np.uint32) * 0x010203) & 0x00FFFFFF
        record["rgb"] = packed.view(np.float32)
    return record


# ------------------------------------------------------------ the datatype table


@pytest.mark.parametrize("backend", BACKENDS)
def test_datatype_table_matches_the_pointfield_constants(backend):
    point_field = sensor_msgs.PointField if backend == "rclpy" else \
        TS2.types["sensor_msgs/msg/PointField"]
    assert set(POINTFIELD_DATATYPES.values()) == {np.dtype(t) for t in CONSTANT_NAMES}
    for sample, name in CONSTANT_NAMES.items():
        code = getattr(point_field, name)
        assert POINTFIELD_DATATYPES[code] == np.dtype(sample)
        assert pointfield_datatype(np.dtype(sample)) == code
        # The byte order does not change the code.
        assert pointfield_datatype(np.dtype(sample).newbyteorder(">")) == code


@pytest.mark.parametrize("sample", [np.float16, np.int64, np.complex64, "U4"])
def test_types_a_point_cloud_cannot_hold_are_refused(sample):
    with pytest.raises(ValueError, match="cannot hold"):
        pointfield_datatype(np.dtype(sample))
    record = np.zeros(2, [("x", np.float32), ("bad", sample)])
    with pytest.raises(ValueError, match="field 'bad' has a type PointCloud2 cannot hold"):
        pointcloud2_fields(record, 1, 2)


# ------------------------------------------------------------ fields and reading


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("with_rgb", [False, True])
def test_pointcloud2_fields_and_round_trip(backend, with_rgb):
    record = _record(with_rgb)
    fields = pointcloud2_fields(record, 3, 4)
    step = 16 if with_rgb else 12
    float32 = sensor_msgs.PointField.FLOAT32
    expected = [("x", 0, float32, 1), ("y", 4, float32, 1), ("z", 8, float32, 1)]
    if with_rgb:
        expected.append(("rgb", 12, float32, 1))
    assert fields["fields"] == expected
    assert (fields["point_step"], fields["row_step"]) == (step, 4 * step)
    assert fields["is_dense"] is False and fields["is_bigendian"] == NATIVE_BIG
    assert fields["data"].size == 12 * step and np.shares_memory(fields["data"], record)

    msg = _message(backend, fields)
    cloud = pointcloud2_to_array(msg)
    assert cloud.shape == (3, 4, len(expected)) and cloud.dtype == np.float32
    for i, (name, *_rest) in enumerate(expected):
        # Bit-exact comparison (NaN and packed colours included).
        np.testing.assert_array_equal(
            cloud[..., i].reshape(-1).view(np.uint32), record[name].view(np.uint32)
        )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("order", ["<", ">"])
def test_every_sample_type_round_trips_by_value(backend, order):
    """One field of each type of the table, in either byte order, read back by value."""
    samples = list(CONSTANT_NAMES)
    dtype = np.dtype([(f"f{i}", np.dtype(t).newbyteorder(order)) for i, t in enumerate(samples)])
    record = np.zeros(6, dtype)
    for i, t in enumerate(samples):
        record[f"f{i}"] = np.arange(6) * 7 - (10 if np.issubdtype(t, np.signedinteger) else 0)
    fields = pointcloud2_fields(record, 2, 3)
    assert [code for _, _, code, _ in fields["fields"]] == [
        getattr(sensor_msgs.PointField, CONSTANT_NAMES[t]) for t in samples]
    assert fields["is_bigendian"] == (order == ">")
    cloud = pointcloud2_to_array(_message(backend, fields))
    for i in range(len(samples)):
        np.testing.assert_array_equal(cloud[..., i].reshape(-1),
                                      record[f"f{i}"].astype(np.float32))


def test_the_engines_point_records_become_float32_fields():
    """The engine's structured points (x, y, z, packed rgb) map onto FLOAT32 PointFields."""
    from depth_pro_ros.engine import record_dtype

    for with_rgb, names in ((False, "xyz"), (True, ["x", "y", "z", "rgb"])):
        record = np.zeros(4, record_dtype(with_rgb))
        fields = pointcloud2_fields(record, 2, 2)
        float32 = sensor_msgs.PointField.FLOAT32
        assert fields["fields"] == [(n, 4 * i, float32, 1) for i, n in enumerate(names)]
        assert fields["point_step"] == 4 * len(names)


def test_pointcloud2_errors():
    with pytest.raises(ValueError, match="12 points"):
        pointcloud2_fields(_record(False), 4, 4)
    with pytest.raises(ValueError, match="structured"):
        pointcloud2_fields(np.zeros(12, np.float32), 3, 4)
    mixed = np.zeros(2, [("x", "<f4"), ("y", ">f4")])
    with pytest.raises(ValueError, match="mix byte orders"):
        pointcloud2_fields(mixed, 1, 2)
    fields = pointcloud2_fields(_record(False), 3, 4)
    short = _message("rclpy", dict(fields, data=fields["data"][:-1]))
    with pytest.raises(ValueError, match="too short"):
        pointcloud2_to_array(short)
    unknown = _message("rclpy", fields)
    unknown.fields[1].datatype = 9
    with pytest.raises(ValueError, match="unknown datatype 9"):
        pointcloud2_to_array(unknown)


# ------------------------------------------------------------ lying layouts (issue 24)


def _lying(point_step: int, fields: list[tuple], points: int, *, height: int = 1,
           row_step: int | None = None, data_bytes: int | None = None, **extra):
    """A rosbags PointCloud2 of ``points`` points whose layout may lie."""
    width = points // height
    row_step = point_step * width if row_step is None else row_step
    size = row_step * height if data_bytes is None else data_bytes
    values = dict(height=height, width=width, fields=fields, is_bigendian=False,
                  point_step=point_step, row_step=row_step,
                  data=np.zeros(size, np.uint8), is_dense=False, **extra)
    values["fields"] = point_fields(values["fields"], TS2.types["sensor_msgs/msg/PointField"])
    return rosbags_message(TS2, "sensor_msgs/msg/PointCloud2", values)


def _peak_bytes(call) -> tuple[object, int]:
    """``call()``'s result (or the exception it raised) and its peak traced allocation."""
    with traced_peak() as peak:
        try:
            result = call()
        except ValueError as exc:
            result = exc
    return result, peak.bytes


INT8, FLOAT32 = 1, 7
XYZ = [("x", 0, FLOAT32, 1), ("y", 4, FLOAT32, 1), ("z", 8, FLOAT32, 1)]


def test_only_x_y_z_are_read_from_a_cloud_with_many_fields():
    """250 one-byte fields besides x, y, z: the anchor reader allocates the (N, 3) result
    only, never points x fields (which is 85 times more here)."""
    extra = [(f"f{i}", 12 + i, INT8, 1) for i in range(250)]
    msg = _lying(262, XYZ + extra, 20_000)
    xyz, peak = _peak_bytes(lambda: pointcloud2_xyz(msg))
    assert isinstance(xyz, np.ndarray) and xyz.shape == (20_000, 3)
    assert peak < 2 * xyz.nbytes, peak  # points x 253 fields x 4 bytes would be 20 MB


@pytest.mark.parametrize(("point_step", "fields", "points", "kw", "message"), [
    # The example, smaller: ~1000 one-byte fields at offset 0, point_step 1.
    (1, [(f"f{i}", 0, INT8, 1) for i in range(1000)], 3000, {}, "1000 fields, more than 256"),
    (1, [(a, 0, INT8, 1) for a in "xyz"], 30_000, {}, "overlap"),
    (12, XYZ + [("i", 13, FLOAT32, 1)], 3000, {}, "'i' .* does not fit in point_step 12"),
    (12, XYZ[:2] + [("z", 8, FLOAT32, 10**9)], 3000, {}, "does not fit in point_step"),
    (12, XYZ[:2] + [("z", 8, FLOAT32, 0)], 3000, {}, "count 0"),
    (12, XYZ[:2] + [("z", 8, 99, 1)], 3000, {}, "unknown datatype 99"),
    (12, XYZ, 3000, {"row_step": 12}, "row_step 12 < point_step \\* width"),
    (12, XYZ, 3000, {"data_bytes": 100}, "too short: expected 36000 bytes"),
    (12, XYZ, 3000, {"height": 3000, "row_step": 0, "data_bytes": 0}, "row_step 0 <"),
    (12, XYZ + XYZ[:1], 3000, {}, "x field 2 times"),
    (12, XYZ[:2], 3000, {}, "no z field"),
])
def test_lying_cloud_layouts_are_refused_before_anything_is_read(point_step, fields,
                                                                 points, kw, message):
    msg = _lying(point_step, fields, points, **kw)
    error, peak = _peak_bytes(lambda: pointcloud2_xyz(msg))
    assert isinstance(error, ValueError), error
    assert re.search(message, str(error)) and "\n" not in str(error)
    assert peak < 64_000, peak  # the checks allocate nothing the size of the cloud


def test_declared_sizes_beyond_the_limits_are_refused():
    """height x width above max_points, and sizes too large for any data, say so in one
    line before any allocation (a 10**12-point cloud of 12 bytes)."""
    huge = _lying(12, XYZ, 3, data_bytes=12)
    huge.height, huge.width, huge.row_step = 10**6, 10**6, 12 * 10**6
    with pytest.raises(ValueError, match="more than the limit of 1,000"):
        pointcloud2_xyz(huge, max_points=1000)
    error, peak = _peak_bytes(lambda: pointcloud2_xyz(huge))
    assert "too short" in str(error) and peak < 64_000
    negative = _lying(12, XYZ, 3)
    negative.point_step = -12
    with pytest.raises(ValueError, match="point_step is negative"):
        check_pointcloud2(negative)


def test_the_full_reader_refuses_overlapping_fields():
    """pointcloud2_to_array (tools, tests) allocates 4 bytes per field and point: fields
    sharing bytes would let a small cloud declare any amount of that."""
    msg = _lying(4, [(f"f{i}", 0, INT8, 1) for i in range(200)], 3000)
    error, peak = _peak_bytes(lambda: pointcloud2_to_array(msg))
    assert isinstance(error, ValueError) and "overlap" in str(error)
    assert peak < 64_000, peak  # 3000 x 200 x 4 bytes = 2.4 MB before the fix
