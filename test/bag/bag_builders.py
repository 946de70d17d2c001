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
    messages = sorted(messages, key=lambda m: m.log_time)
    topics = list(dict.fromkeys((m.topic, m.msgtype) for m in messages))
    path = path.with_suffix(".bag")
    with Writer1(path) as writer:
        conns = {t: writer.add_connection(t[0], t[1], typestore=ROS1) for t in topics}
        for m in messages:
            writer.write(conns[(m.topic, m.msgtype)], m.log_time, serialize(fmt, m))
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
