"""The input side: open a ROS 1 ``.bag`` or a ROS 2 bag (sqlite3 / mcap) read-only, and
work out which topics are cameras, CameraInfo and copies.

``rosbags.highlevel.AnyReader`` only reads: ROS 1 files are opened ``rb``, sqlite3
databases as ``immutable=1`` URIs and mcap files ``rb``, so the input is never changed;
the recovery readers (:mod:`depth_pro_ros.bag.mcap_recovery`,
:mod:`depth_pro_ros.bag.ros1_recovery`) open files ``rb`` too.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from depth_pro_ros.bag.errors import BagInputError
from depth_pro_ros.bag.mcap_recovery import McapChunkReader, McapRecoveryReader, mcap_files
from depth_pro_ros.bag.paths import bag_problem
from depth_pro_ros.bag.recovery import InputBag
from depth_pro_ros.bag.sqlite_rows import Sqlite3RowReader
from depth_pro_ros.stream.transport import INPUT_TRANSPORTS, InputTransport

__all__ = [
    "CAMERA_INFO_TYPE",
    "Camera",
    "camera_namespace",
    "open_input",
    "resolve_cameras",
    "resolve_copies",
    "time_window",
]

CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"


@dataclass
class Camera:
    """One image topic, where its CameraInfo comes from and where its outputs go."""

    image_topic: str
    transport: InputTransport  # the row of the topic's message type
    namespace: str  # "" for the root namespace; outputs are "<namespace>/depth" ...
    info_topic: str | None
    image_connections: list[Any] = field(default_factory=list)
    info_connections: list[Any] = field(default_factory=list)

    def output_topic(self, relative: str) -> str:
        return f"{self.namespace}/{relative}"


def camera_namespace(topic: str, suffix: str = "") -> str:
    """The namespace of an image topic: ``/cam0/image_raw`` -> ``/cam0``.

    A compressed topic published by image_transport (``/cam0/image_raw/compressed``)
    belongs to the camera of its base topic, so its namespace is ``/cam0`` as well:
    ``suffix`` is the transport's (``compressed``; empty for raw images).
    """
    base = topic.rstrip("/")
    if suffix and base.endswith(f"/{suffix}"):
        base = base[: -len(suffix) - 1]
    parent = posixpath.dirname(base)
    return "" if parent in ("", "/") else parent


def open_input(path: Path, default_typestore: Any = None) -> InputBag:
    """The input bag, opened read-only: a ROS 1 ``.bag`` file, a ROS 2 bag folder, or a
    bare ``.mcap`` / ``.db3`` file. Raises :class:`BagInputError` with the reason.

    rosbags' ``AnyReader`` is tried first. An MCAP bag it refuses -- truncated (no
    summary section), or a folder without ``metadata.yaml`` -- and a ROS 1 bag without a
    usable index are recovered by reading their records sequentially; the returned
    :class:`InputBag` says so in ``note``. A complete MCAP bag is read chunk by chunk and
    a sqlite3 bag row by row, so that damaged chunks / rows are skipped
    (``InputBag.damage``).
    """
    from rosbags.highlevel import AnyReader

    if not os.path.lexists(path):
        raise BagInputError(f"input bag not found: {path}")
    problem = bag_problem(path)  # FIFOs, devices, loops: refused before any open()
    if problem is not None:
        raise BagInputError(f"cannot read the input bag: {problem}")
    if path.is_file() and path.suffix not in (".bag", ".mcap", ".db3"):
        raise BagInputError(
            f"cannot read {path}: expected a ROS 1 .bag file or a ROS 2 bag folder "
            "(metadata.yaml with .mcap or .db3 files)")
    mcaps = mcap_files(path) if path.is_dir() or path.suffix == ".mcap" else []
    if path.is_dir() and not (path / "metadata.yaml").is_file():
        if mcaps:  # rosbag2 writes metadata.yaml when it closes the bag
            return _recover_mcap(path, mcaps, default_typestore, "no metadata.yaml")
        raise BagInputError(f"cannot read {path}: a ROS 2 bag folder holds a metadata.yaml")
    try:
        reader = AnyReader([path], default_typestore=default_typestore)
        reader.open()
    except Exception as exc:  # noqa: BLE001 -- rosbags raises many types for broken files
        problem = str(exc) if isinstance(exc, (OSError, ValueError, KeyError)) or \
            type(exc).__name__.endswith("ReaderError") else f"{type(exc).__name__}: {exc}"
        if mcaps:
            return _recover_mcap(path, mcaps, default_typestore, problem)
        if path.suffix == ".bag":
            return _recover_ros1(path, problem)
        raise BagInputError(f"cannot read bag {path}: {problem}{_corrupt_hint(problem)}") \
            from None
    mcap = _storage_files(path, ".mcap")
    sqlite = _storage_files(path, ".db3")
    try:
        if mcap:
            return InputBag(McapChunkReader(reader, mcap), path)
        if sqlite:
            return InputBag(Sqlite3RowReader(reader, sqlite), path)
    except (OSError, ValueError, ImportError):
        pass  # rosbags reads it but our index does not: keep rosbags' reading
    return InputBag(reader, path)


def _recover_mcap(path: Path, files: list[Path], default_typestore: Any,
                  problem: str) -> InputBag:
    try:
        reader = McapRecoveryReader(files, default_typestore, problem,
                                    _metadata_count(path))
    except (OSError, ValueError) as exc:
        raise BagInputError(f"cannot read bag {path}: {problem} (recovery: {exc})") from None
    except ImportError as exc:
        raise BagInputError(f"cannot read bag {path}: {problem}; recovering it needs the "
                            f"'{exc.name}' package (pip install mcap)") from None
    if not any(c.msgcount for c in reader.connections):
        hint = reader.cut_hint()
        reader.close()
        raise BagInputError(f"cannot read bag {path}: {problem}; no readable message was "
                            f"found in its .mcap file(s){hint}")
    return InputBag(reader, path, reader.describe())


def _metadata_count(path: Path) -> int | None:
    """The message count ``metadata.yaml`` gives for the bag folder ``path`` (None:
    none, or unreadable; the folder's files were checked by ``bag_problem``)."""
    meta = path / "metadata.yaml"
    if not path.is_dir() or not meta.is_file():
        return None
    from ruamel.yaml import YAML

    try:
        if meta.stat().st_size > 16 << 20:  # rosbag2 writes kilobytes
            return None
        count = YAML(typ="safe").load(meta.read_text())["rosbag2_bagfile_information"][
            "message_count"]
    except Exception:  # noqa: BLE001 -- malformed metadata: the count is unknown
        return None
    return count if isinstance(count, int) and count >= 0 else None


def _recover_ros1(path: Path, problem: str) -> InputBag:
    from depth_pro_ros.bag.ros1_recovery import Ros1RecoveryReader

    hint = (f"cannot read bag {path}: {problem}; reading it without its index recovered "
            f"nothing either: if it is not indexed (recording cut short), run "
            f"`rosbag reindex {path}` (ROS 1) and retry")
    try:
        reader = Ros1RecoveryReader(path)
    except (OSError, ValueError):
        raise BagInputError(hint) from None
    if not reader.connections:
        reader.close()
        raise BagInputError(hint)
    return InputBag(reader, path, reader.describe())


def _storage_files(path: Path, suffix: str) -> list[Path] | None:
    """The ``suffix`` files of a complete ROS 2 bag, in order, when they hold the
    messages as written; None for other storage or rosbag2's file or message compression
    (rosbags undoes that itself)."""
    if not path.is_dir():
        return [path] if path.suffix == suffix else None
    from ruamel.yaml import YAML

    try:
        info = YAML(typ="safe").load((path / "metadata.yaml").read_text())
        info = info["rosbag2_bagfile_information"]
        mode = str(info.get("compression_mode") or "").lower()
        files = [path / Path(name).name for name in info["relative_file_paths"]]
    except Exception:  # noqa: BLE001 -- rosbags read it; do not second-guess
        return None
    if mode not in ("", "none") or not files or not all(f.suffix == suffix for f in files):
        return None
    return files


def _corrupt_hint(problem: str) -> str:
    if "malformed" in problem or "not a database" in problem:
        return ("; the database is corrupt: `sqlite3 BAG.db3 .recover | sqlite3 NEW.db3` "
                "may rescue its readable rows")
    return ""


def topic_listing(reader: Any, types: set[str] | None = None) -> str:
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
                            + topic_listing(reader, set(INPUT_TRANSPORTS)))
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
                                + topic_listing(reader, set(INPUT_TRANSPORTS)))
        if info.msgtype not in INPUT_TRANSPORTS:
            known = " or ".join(t.replace("/msg/", "/") for t in INPUT_TRANSPORTS)
            raise BagInputError(f"topic {topic} holds {info.msgtype or 'several types'}, not "
                                f"{known}")
        transport = INPUT_TRANSPORTS[info.msgtype]
        namespace = camera_namespace(topic, transport.suffix)
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
                    "there: " + topic_listing(reader, {CAMERA_INFO_TYPE}))
            if tinfo.msgtype != CAMERA_INFO_TYPE:
                raise BagInputError(f"topic {info_topic} holds {tinfo.msgtype or 'several types'}"
                                    ", not sensor_msgs/CameraInfo")
            info_connections = list(tinfo.connections)
        cameras.append(Camera(topic, transport, namespace, info_topic,
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
                                "there: " + topic_listing(reader))
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
