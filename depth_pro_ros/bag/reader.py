"""The input side: open a ROS 1 ``.bag`` or a ROS 2 bag (sqlite3 / mcap) read-only, and
work out which topics are cameras, CameraInfo and copies.

``rosbags.highlevel.AnyReader`` only reads: ROS 1 files are opened ``rb``, sqlite3
databases as ``immutable=1`` URIs and mcap files ``rb``, so the input is never changed.
"""

from __future__ import annotations

import posixpath
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from depth_pro_ros.bag.errors import BagInputError

__all__ = [
    "CAMERA_INFO_TYPE",
    "IMAGE_TYPES",
    "Camera",
    "camera_namespace",
    "open_input",
    "resolve_cameras",
    "resolve_copies",
    "time_window",
]

#: Image message types the tool reads -> whether they are compressed.
IMAGE_TYPES = {"sensor_msgs/msg/Image": False, "sensor_msgs/msg/CompressedImage": True}
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"


@dataclass
class Camera:
    """One image topic, where its CameraInfo comes from and where its outputs go."""

    image_topic: str
    compressed: bool
    namespace: str  # "" for the root namespace; outputs are "<namespace>/depth" ...
    info_topic: str | None
    image_connections: list[Any] = field(default_factory=list)
    info_connections: list[Any] = field(default_factory=list)

    def output_topic(self, relative: str) -> str:
        return f"{self.namespace}/{relative}"


def camera_namespace(topic: str, compressed: bool) -> str:
    """The namespace of an image topic: ``/cam0/image_raw`` -> ``/cam0``.

    A compressed topic published by image_transport (``/cam0/image_raw/compressed``)
    belongs to the camera of its base topic, so its namespace is ``/cam0`` as well.
    """
    base = topic.rstrip("/")
    if compressed and base.endswith("/compressed"):
        base = base[: -len("/compressed")]
    parent = posixpath.dirname(base)
    return "" if parent in ("", "/") else parent


def open_input(path: Path, default_typestore: Any = None) -> Any:
    """An open ``AnyReader`` on ``path``: a ROS 1 ``.bag`` file, a ROS 2 bag folder, or a
    bare ``.mcap`` / ``.db3`` file. Raises :class:`BagInputError` with the reason."""
    from rosbags.highlevel import AnyReader, AnyReaderError

    if not path.exists():
        raise BagInputError(f"input bag not found: {path}")
    if path.is_file() and path.suffix not in (".bag", ".mcap", ".db3"):
        raise BagInputError(
            f"cannot read {path}: expected a ROS 1 .bag file or a ROS 2 bag folder "
            "(metadata.yaml with .mcap or .db3 files)")
    if path.is_dir() and not (path / "metadata.yaml").is_file():
        raise BagInputError(f"cannot read {path}: a ROS 2 bag folder holds a metadata.yaml")
    try:
        reader = AnyReader([path], default_typestore=default_typestore)
        reader.open()
    except (AnyReaderError, OSError, sqlite3.Error, ValueError, KeyError) as exc:
        raise BagInputError(f"cannot read bag {path}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 -- rosbags raises many types for broken files
        raise BagInputError(f"cannot read bag {path}: {type(exc).__name__}: {exc}") from None
    return reader


def _topic_listing(reader: Any, types: set[str] | None = None) -> str:
    names = [f"{name} ({info.msgtype})" for name, info in sorted(reader.topics.items())
             if types is None or info.msgtype in types]
    return ", ".join(names) if names else "none"


def resolve_cameras(
    reader: Any, image_topics: list[str], info_topics: list[str] | None
) -> list[Camera]:
    """Check the requested topics and pair each image topic with its CameraInfo topic.

    ``info_topics`` is None for the default: ``<namespace>/camera_info`` when the bag has
    it. Otherwise it holds one entry per image topic, in the same order; ``none`` means
    that camera has no CameraInfo.
    """
    topics = reader.topics
    if not image_topics:
        raise BagInputError("no --image-topic given; image topics in the bag: "
                            + _topic_listing(reader, set(IMAGE_TYPES)))
    if len(set(image_topics)) != len(image_topics):
        raise BagInputError(f"an --image-topic is given twice: {image_topics}")
    if info_topics is not None and len(info_topics) != len(image_topics):
        raise BagInputError(
            f"give --camera-info-topic once per --image-topic, in the same order "
            f"({len(image_topics)} image topic(s), {len(info_topics)} camera_info topic(s); "
            "use 'none' for a camera without one)")
    cameras = []
    for i, topic in enumerate(image_topics):
        info = topics.get(topic)
        if info is None:
            raise BagInputError(f"image topic {topic} is not in the bag; image topics there: "
                                + _topic_listing(reader, set(IMAGE_TYPES)))
        if info.msgtype not in IMAGE_TYPES:
            raise BagInputError(f"topic {topic} holds {info.msgtype or 'several types'}, not "
                                "sensor_msgs/Image or sensor_msgs/CompressedImage")
        compressed = IMAGE_TYPES[info.msgtype]
        namespace = camera_namespace(topic, compressed)
        if info_topics is None:
            candidate = f"{namespace}/camera_info"
            info_topic = candidate if candidate in topics else None
        else:
            info_topic = None if info_topics[i].lower() == "none" else info_topics[i]
        info_connections = []
        if info_topic is not None:
            tinfo = topics.get(info_topic)
            if tinfo is None:
                raise BagInputError(
                    f"camera_info topic {info_topic} is not in the bag; CameraInfo topics "
                    "there: " + _topic_listing(reader, {CAMERA_INFO_TYPE}))
            if tinfo.msgtype != CAMERA_INFO_TYPE:
                raise BagInputError(f"topic {info_topic} holds {tinfo.msgtype or 'several types'}"
                                    ", not sensor_msgs/CameraInfo")
            info_connections = list(tinfo.connections)
        cameras.append(Camera(topic, compressed, namespace, info_topic,
                              list(info.connections), info_connections))
    seen: dict[str, str] = {}
    for cam in cameras:
        if cam.namespace in seen:
            raise BagInputError(
                f"image topics {seen[cam.namespace]} and {cam.image_topic} share the namespace "
                f"'{cam.namespace or '/'}', so their depth topics would collide")
        seen[cam.namespace] = cam.image_topic
    return cameras


def resolve_copies(
    reader: Any, spec: str, output_topics: set[str]
) -> tuple[list[Any], list[str]]:
    """Connections to copy for ``--copy-topics`` (``all``, ``none`` or ``a,b,c``).

    Returns the connections and, for ``all``, the input topics left out because an output
    of the same name replaces them. A listed topic that is missing or collides with an
    output is an error.
    """
    topics = reader.topics
    spec = spec.strip()
    if spec.lower() == "none":
        return [], []
    if spec.lower() == "all":
        names = sorted(topics)
        replaced = [n for n in names if n in output_topics]
        names = [n for n in names if n not in output_topics]
    else:
        names = [n.strip() for n in spec.split(",") if n.strip()]
        missing = [n for n in names if n not in topics]
        if missing:
            raise BagInputError(f"--copy-topics: {', '.join(missing)} not in the bag; topics "
                                "there: " + _topic_listing(reader))
        clash = [n for n in names if n in output_topics]
        if clash:
            raise BagInputError(f"--copy-topics: {', '.join(clash)} would collide with the "
                                "depth outputs of the same name")
        replaced = []
    connections = [c for name in dict.fromkeys(names) for c in topics[name].connections]
    return connections, replaced


def time_window(
    reader: Any, start: float | None, end: float | None
) -> tuple[int | None, int | None]:
    """``--start`` / ``--end`` (seconds from the first message) -> absolute log times (ns)."""
    for name, value in (("--start", start), ("--end", end)):
        if value is not None and not value >= 0.0:
            raise BagInputError(f"{name} must be >= 0 seconds, got {value}")
    if start is not None and end is not None and end <= start:
        raise BagInputError(f"--end ({end} s) must be later than --start ({start} s)")
    if reader.message_count == 0:
        return None, None
    origin = reader.start_time
    lo = None if start is None else origin + round(start * 1e9)
    hi = None if end is None else origin + round(end * 1e9)
    return lo, hi
