"""Small test bags in every input format, built with rosbags alone (no ROS).

A bag is described as a list of :class:`Msg` (topic, type, log time, fields); the same
list gives byte-for-byte the same content as a ROS 1 ``.bag``, a ROS 2 sqlite3 folder
or a ROS 2 mcap folder. ``raw`` replaces the serialized bytes (corrupt messages).
ROS 2 bags are written by the package's own builder (``depth_pro_ros.bag.sample``);
ROS 1 bags, which the package never writes, here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from message_factories import encode_image, smooth_rgb
from rosbags.rosbag1 import Writer as Writer1
from rosbags.typesys import Stores, get_typestore

from depth_pro_ros.bag.sample import BagMessage
from depth_pro_ros.bag.sample import write_bag as write_ros2_bag

FORMATS = ("ros1", "sqlite3", "mcap")
ROS1 = get_typestore(Stores.ROS1_NOETIC)
ROS2 = get_typestore(Stores.ROS2_HUMBLE)

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
IMU = "sensor_msgs/msg/Imu"


@dataclass
class Msg(BagMessage):
    """A :class:`BagMessage` (topic, type, log time in ns, fields, header stamp, frame,
    ``raw`` bytes to write instead) whose frame is ``cam`` unless given."""

    frame_id: str = "cam"


def picture(seed: int, height: int = 48, width: int = 64) -> np.ndarray:
    """A smooth RGB picture that differs from seed to seed."""
    rng = np.random.default_rng(seed)
    base = tuple(int(v) for v in rng.integers(20, 160, 3))
    rgb = smooth_rgb(height, width, base=base).astype(np.int16)
    rgb[height // 3: height // 2, width // 4: width // 2] += 60  # a "box"
    return np.clip(rgb, 0, 255).astype(np.uint8)


def image_fields(rgb: np.ndarray, encoding: str = "rgb8") -> dict[str, Any]:
    return encode_image(rgb, encoding)


def compressed_fields(rgb: np.ndarray, fmt: str = "png") -> dict[str, Any]:
    ok, buf = cv2.imencode(f".{fmt}", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return {"format": f"rgb8; {fmt} compressed bgr8" if fmt == "png" else fmt,
            "data": buf.reshape(-1)}


def camera_info_fields(fx: float, fy: float, cx: float, cy: float, width: int,
                       height: int) -> dict[str, Any]:
    return {
        "height": height, "width": width, "distortion_model": "plumb_bob",
        "d": np.array([0.1, -0.05, 0.0, 0.0, 0.0]),
        "k": np.array([fx, 0, cx, 0, fy, cy, 0, 0, 1], dtype=np.float64),
        "r": np.eye(3).reshape(-1),
        "p": np.array([fx, 0, cx, 0, 0, fy, cy, 0, 0, 0, 1, 0], dtype=np.float64),
        "binning_x": 0, "binning_y": 0,
    }


def imu_fields(i: int) -> dict[str, Any]:
    return {"angular_velocity_covariance": np.zeros(9), "linear_acceleration_covariance":
            np.full(9, 0.5), "orientation_covariance": np.eye(3).reshape(-1) * i}


def _message(store, m: Msg):
    types = store.types
    cls = types[m.msgtype]
    kwargs = dict(m.fields)
    ros1 = store is ROS1
    if m.msgtype == CAMERA_INFO:
        if ros1:
            for name in ("d", "k", "r", "p"):
                kwargs[name.upper()] = kwargs.pop(name)
        kwargs.setdefault("roi", types["sensor_msgs/msg/RegionOfInterest"](
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
    if m.msgtype == IMU:
        q = types["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)
        v = types["geometry_msgs/msg/Vector3"]
        kwargs.update(orientation=q, angular_velocity=v(x=0.1, y=0.2, z=0.3),
                      linear_acceleration=v(x=0.0, y=0.0, z=9.81))
    if "header" in cls.__dataclass_fields__:
        stamp_ns = m.log_time if m.stamp is None else m.stamp
        sec, nsec = divmod(stamp_ns, 1_000_000_000)
        stamp = types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec)
        header = types["std_msgs/msg/Header"]
        extra = {"seq": 0} if ros1 else {}
        kwargs["header"] = header(stamp=stamp, frame_id=m.frame_id, **extra)
    return cls(**kwargs)


def serialize(fmt: str, m: Msg) -> bytes:
    if m.raw is not None:
        return m.raw
    store = ROS1 if fmt == "ros1" else ROS2
    msg = _message(store, m)
    if fmt == "ros1":
        return bytes(store.serialize_ros1(msg, m.msgtype))
    return bytes(store.serialize_cdr(msg, m.msgtype))


def write_bag(path: Path, fmt: str, messages: list[Msg]) -> Path:
    """Write ``messages`` (any order; written by log time) as a ``fmt`` bag at ``path``.

    ``path`` gets a ``.bag`` suffix for ROS 1; ROS 2 bags are folders.
    """
    if fmt != "ros1":
        serialized = [dataclasses.replace(m, raw=serialize(fmt, m)) for m in messages]
        return write_ros2_bag(path, serialized, storage=fmt, typestore=ROS2)
    path = path.with_suffix(".bag")
    _write_all(Writer1(path), messages, "ros1")
    return path


def read_bag(path: Path) -> dict[str, list[tuple[int, Any, bytes]]]:
    """topic -> [(log time, message or None if corrupt, raw bytes)] of any bag, in
    log-time order; ``__types__``: topic -> type, ``__order__``: [(topic, log time)]."""
    from rosbags.highlevel import AnyReader

    out: dict[str, list] = {}
    with AnyReader([path]) as reader:
        for conn, t, raw in reader.messages():
            try:
                msg = reader.deserialize(raw, conn.msgtype)
            except Exception:  # noqa: BLE001 -- corrupt test messages
                msg = None
            out.setdefault(conn.topic, []).append((t, msg, bytes(raw)))
        out["__types__"] = {c.topic: c.msgtype for c in reader.connections}
        out["__order__"] = [(c.topic, t) for c, t, _ in reader.messages()]
    return out


def snapshot(path: Path) -> dict[str, tuple[bytes, int]]:
    """Bytes and mtimes (ns) of every file under ``path`` (or of the file itself)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in files}


# --------------------------------------------------------------------------------------
# Damaged bags: corrupt chunks, truncated files, broken databases (the header bombs come
# from test/harness/bombs.py, which the node fuzzing uses too).
# Each function damages a real bag on disk the way a crash or a bad disk would.


def write_mcap_zstd(path: Path, messages: list[Msg]) -> Path:
    """Like ``write_bag(path, "mcap", messages)`` with zstd-compressed chunks."""
    from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin
    from rosbags.rosbag2 import Writer as Writer2

    writer = Writer2(path, version=9, storage_plugin=StoragePlugin.MCAP)
    writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    _write_all(writer, messages, "mcap")
    return path


def _write_all(writer: Any, messages: list[Msg], fmt: str) -> None:
    """Write ``messages`` by log time through an open-able rosbags writer."""
    store = ROS1 if fmt == "ros1" else ROS2
    with writer:
        conns = {}
        for m in sorted(messages, key=lambda m: m.log_time):
            key = (m.topic, m.msgtype)
            if key not in conns:
                conns[key] = writer.add_connection(m.topic, m.msgtype, typestore=store)
            writer.write(conns[key], m.log_time, serialize(fmt, m))


def mcap_file(bag: Path) -> Path:
    """The (single) .mcap file of a bag folder."""
    (found,) = [p for p in bag.iterdir() if p.suffix == ".mcap"]
    return found


def mcap_records(path: Path) -> list[tuple[int, int, int]]:
    """``(offset, opcode, length)`` of the top-level records of an MCAP file, up to and
    including the footer (MCAP spec: opcode u8, length u64, body)."""
    import struct

    data = path.read_bytes()
    pos, out = 8, []
    while pos + 9 <= len(data):
        op, length = struct.unpack_from("<BQ", data, pos)
        out.append((pos, op, length))
        pos += 9 + length
        if op == 0x02:
            break
    return out


def mcap_chunk_messages(path: Path) -> list[list[tuple[int, int]]]:
    """Per chunk of an MCAP file, its messages as ``(channel id, log time)``."""
    import struct

    data = path.read_bytes()
    out = []
    for offset, op, length in mcap_records(path):
        if op != 0x06:
            continue
        body = data[offset + 9: offset + 9 + length]
        (size,) = struct.unpack_from("<Q", body, 16)
        (clen,) = struct.unpack_from("<I", body, 28)
        compression = body[32: 32 + clen].decode()
        raw = body[32 + clen + 8:]
        if compression == "zstd":
            import zstandard

            raw = zstandard.ZstdDecompressor().decompress(raw, max_output_size=size)
        pos, msgs = 0, []
        while pos < len(raw):
            rop, rlen = struct.unpack_from("<BQ", raw, pos)
            if rop == 0x05:
                cid, _, log_time = struct.unpack_from("<HIQ", raw, pos + 9)
                msgs.append((cid, log_time))
            pos += 9 + rlen
        out.append(msgs)
    return out


def add_mcap_chunk_crcs(path: Path) -> None:
    """Fill in each chunk's CRC of its uncompressed records, as rosbag2's own MCAP writer
    does (rosbags writes 0, "no checksum")."""
    import struct
    import zlib

    data = bytearray(path.read_bytes())
    for offset, op, _ in mcap_records(path):
        if op != 0x06:
            continue
        body = offset + 9
        (clen,) = struct.unpack_from("<I", data, body + 28)
        assert data[body + 32: body + 32 + clen] == b"", "only for uncompressed chunks"
        (size,) = struct.unpack_from("<Q", data, body + 32 + clen)
        records = data[body + 32 + clen + 8: body + 32 + clen + 8 + size]
        struct.pack_into("<I", data, body + 24, zlib.crc32(records))
    path.write_bytes(bytes(data))


def overwrite(path: Path, offset: int, data: bytes) -> None:
    """Overwrite bytes of a file in place (a bad sector, a bit flip)."""
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(data)


def truncate(path: Path, size: int) -> None:
    """Cut a file to ``size`` bytes (a recording ended by a power cut)."""
    with path.open("r+b") as f:
        f.truncate(size)


def ros1_records(path: Path) -> list[tuple[int, int, int]]:
    """``(offset, op, total length)`` of the top-level records of a ROS 1 bag (format
    2.0: header length u32, header fields ``u32 len + name=value``, data length u32,
    data)."""
    import struct

    data = path.read_bytes()
    pos, out = 13, []
    while pos + 4 <= len(data):
        (hlen,) = struct.unpack_from("<I", data, pos)
        header = data[pos + 4: pos + 4 + hlen]
        (dlen,) = struct.unpack_from("<I", data, pos + 4 + hlen)
        op = header[header.find(b"op=") + 3]
        out.append((pos, op, 8 + hlen + dlen))
        pos += 8 + hlen + dlen
    return out


def unindex_ros1(path: Path, size: int) -> None:
    """What ``rosbag record`` leaves when killed: the file ends at ``size`` (before the
    index) and the bag header's ``index_pos`` is still 0 (it is written on close)."""
    data = bytearray(path.read_bytes()[:size])
    at = data.find(b"index_pos=")
    assert 0 < at < 4096
    data[at + 10: at + 18] = bytes(8)
    path.write_bytes(bytes(data))


def break_sqlite_overflow_chain(db: Path, payload: bytes) -> int:
    """Point the overflow chain of the row holding ``payload`` at a page that does not
    exist, so that reading that row fails while the table's pages stay sound.

    sqlite stores a large BLOB's tail in overflow pages, each starting with the number of
    the next one (4 bytes, big endian); returns the page number changed.
    """
    import struct

    data = bytearray(db.read_bytes())
    page_size = struct.unpack_from(">H", data, 16)[0] or 65536
    for at in range(len(payload) // 4, 3 * len(payload) // 4, page_size // 2):
        probe = bytes(payload[at: at + 64])
        for number in range(2, len(data) // page_size + 1):
            start = (number - 1) * page_size
            page = data[start: start + page_size]
            if probe in page[4:] and struct.unpack_from(">I", page, 0)[0] != 0:
                struct.pack_into(">I", data, start, 0x7FFFFFF0)
                db.write_bytes(bytes(data))
                return number
    raise AssertionError("no overflow page with a successor holds the payload")


def write_ros1_bz2(path: Path, messages: list[Msg]) -> Path:
    """Like ``write_bag(path, "ros1", messages)`` with bz2-compressed chunks."""
    path = path.with_suffix(".bag")
    writer = Writer1(path)
    writer.set_compression(Writer1.CompressionFormat.BZ2)
    _write_all(writer, messages, "ros1")
    return path


def three_chunk_recording(frames: int = 8, t0: int = 2_000 * 1_000_000_000) -> list[Msg]:
    """A camera bag whose chunks hold few frames: ``/cam/image_raw`` (64x48, the one to
    process) with one ``/cam/camera_info`` (K for 64x48, paired with frame 0), ``/imu``,
    and ``/wide/image_raw`` (400x300, ~360 kB). rosbags closes a chunk (MCAP and ROS 1)
    once it holds more than 1 MiB, so the wide images split 8 frames, 0.25 s apart, into
    chunks of 3, 3 and 2 frames."""
    msgs = []
    for i in range(frames):
        t = t0 + i * 250_000_000
        msgs.append(Msg("/cam/image_raw", IMAGE, t, image_fields(picture(i))))
        if i == 0:
            msgs.append(Msg("/cam/camera_info", CAMERA_INFO, t + 1_000_000,
                            camera_info_fields(60.0, 60.0, 32.0, 24.0, 64, 48), stamp=t))
        msgs.append(Msg("/imu", IMU, t + 2_000_000, imu_fields(i)))
        msgs.append(Msg("/wide/image_raw", IMAGE, t + 3_000_000,
                        image_fields(picture(50 + i, 300, 400))))
    return msgs


def run_cli(*args: str) -> tuple[int, str, str]:
    """Run ``depth-pro-ros`` in this process; (status, stdout, stderr) via capture."""
    import contextlib
    import io

    from depth_pro_ros.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse usage errors
            code = exc.code
    return code, out.getvalue(), err.getvalue()
