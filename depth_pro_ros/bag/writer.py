"""The output side: a ROS 2 bag (mcap or sqlite3) that appears only once it is complete.

The bag is written inside a temporary sibling folder of OUTPUT, ``.NAME.partial-XXXX/``
(the bag itself is ``.NAME.partial-XXXX/NAME``, so that its storage file already has its
final name), and moved to OUTPUT by one ``rename`` in :meth:`OutputBag.commit`. Any
failure or Ctrl-C before that removes the temporary folder; a process killed outright
leaves only the clearly named ``.partial`` folder, never a complete-looking OUTPUT.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from depth_pro_ros.bag.errors import BagInputError, BagOutputError
from depth_pro_ros.io.pointcloud_msg import point_fields

if TYPE_CHECKING:
    from depth_pro_ros.stream.outputs import OutputTopic

__all__ = ["OUTPUT_MARK", "STORAGE_FORMATS", "OutputBag", "check_output_path", "output_typestore",
           "resolved_path", "write_failure"]

STORAGE_FORMATS = ("mcap", "sqlite3")
#: The ``custom_data`` key of ``metadata.yaml`` naming the input an output was made from:
#: ``bags`` never takes a bag that carries it as an input.
OUTPUT_MARK = "depth_pro_ros.input"


def check_output_path(output: Path, inputs: Path, overwrite: bool) -> None:
    """Refuse an existing OUTPUT without ``overwrite``, and any OUTPUT overlapping INPUT."""
    out, src = resolved_path(output), resolved_path(inputs)
    if out == src or src in out.parents or out in src.parents:
        raise BagInputError(f"output {output} overlaps the input {inputs}; choose another path")
    if output.exists() or output.is_symlink():
        if not overwrite:
            raise BagInputError(f"output {output} exists; pass --overwrite to replace it")
        if not output.is_dir() and not output.is_file():
            raise BagInputError(f"output {output} exists and is not a file or folder")


def resolved_path(path: Path) -> Path:
    """``path.resolve()``; a symlink loop (RuntimeError before Python 3.13) or an
    unreadable folder gives the absolute path instead (the reader refuses the loop)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return Path(os.path.abspath(path))


#: Errors that only writing can raise (the input is opened read-only): the disk is full,
#: a quota or a file size limit is reached, the filesystem is read-only.
_WRITE_ERRNOS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
                 errno.EFBIG: "a file size limit is reached",
                 errno.EROFS: "the filesystem is mounted read-only"}


#: What a storage plugin raises for a failed write (sqlite3 has its own error type).
_WRITE_ERRORS = (OSError, sqlite3.Error)


def write_failure(output: Path, exc: Exception) -> str:
    """One line for a filesystem error (``OSError``, or sqlite3's own error for the same
    causes) met while ``output`` was written; the partial output is removed by then."""
    errnum = getattr(exc, "errno", None)
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    why = _WRITE_ERRNOS.get(errnum)
    if why is None and not isinstance(exc, OSError):  # sqlite3 gives no errno
        why = "the disk may be full or a file size limit reached" if "disk" in reason \
            else None
        reason = f"sqlite3: {reason}"
    if why is not None:
        return (f"cannot write {output}: {reason} -- {why}; nothing was written at "
                f"{output} (free space or choose another place, and run again)")
    return f"filesystem error ({reason}); nothing was written at {output}"


def output_typestore(reader: Any) -> Any:
    """Types for the output bag: ROS 2 definitions for everything written.

    A ROS 2 input keeps its own definitions (copied messages stay byte-identical); types
    the outputs need and the input lacks come from rosbags' latest ROS 2 store. A ROS 1
    input gets the ROS 2 definitions of the standard types (its messages are converted,
    as ``rosbags-convert`` does) plus its own custom types.
    """
    from rosbags.typesys import Stores, get_typestore

    ros2 = get_typestore(Stores.LATEST).fielddefs
    if reader.is2:
        defs = dict(reader.typestore.fielddefs)
        defs.update({k: v for k, v in ros2.items() if k not in defs})
    else:
        defs = dict(ros2)
        defs.update({k: v for k, v in reader.typestore.fielddefs.items() if k not in defs})
    store = get_typestore(Stores.EMPTY)
    store.register(defs)
    return store


class OutputBag:
    """A ROS 2 bag being written; use as a context manager, call :meth:`commit` at the end.

    Leaving the ``with`` block without a commit (an exception, Ctrl-C) removes everything.
    """

    def __init__(self, output: Path, storage: str, overwrite: bool, typestore: Any,
                 custom_data: dict[str, str] | None = None) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        if storage not in STORAGE_FORMATS:
            raise BagInputError(f"--format must be one of {', '.join(STORAGE_FORMATS)}")
        self.output = output
        self.overwrite = overwrite
        self.typestore = typestore
        self._defaults: dict[str, Any] = {}
        # metadata.yaml's custom_data: marks the bag as this tool's output (OUTPUT_MARK).
        self.custom_data = dict(custom_data or {})
        self._plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._writer_class = Writer
        self.partial: Path | None = None
        self._writer: Any = None
        self._open = False
        self.committed = False

    # ----------------------------------------------------------------- lifecycle
    def __enter__(self) -> OutputBag:
        parent = self.output.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self.partial = Path(tempfile.mkdtemp(prefix=f".{self.output.name}.partial-",
                                                 dir=parent))
        except OSError as exc:
            raise BagInputError(f"cannot create the output next to {self.output}: {exc}") \
                from None
        try:
            self._writer = self._writer_class(self.partial / self.output.name, version=9,
                                              storage_plugin=self._plugin)
            for key, value in self.custom_data.items():
                self._writer.set_custom_data(key, value)
            self._writer.open()
        except _WRITE_ERRORS as exc:
            self.abort()
            raise BagOutputError(write_failure(self.output, exc)) from None
        except BaseException:
            self.abort()
            raise
        self._open = True
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if not self.committed:
            self.abort()
        return False

    def abort(self) -> None:
        """Drop everything written so far (idempotent)."""
        if self._open:
            self._open = False
            try:
                self._writer.abort()
            except Exception:  # noqa: BLE001 -- the files go away below anyway
                pass
        if self.partial is not None:
            shutil.rmtree(self.partial, ignore_errors=True)

    def commit(self) -> None:
        """Finish the bag and move it to OUTPUT (replacing an old one with ``overwrite``)."""
        try:
            self._writer.close()
        except _WRITE_ERRORS as exc:
            raise BagOutputError(write_failure(self.output, exc)) from None
        self._open = False
        built = self.partial / self.output.name
        old_holder = None
        if self.output.exists() or self.output.is_symlink():
            if not self.overwrite:  # appeared while we worked
                raise BagInputError(f"output {self.output} appeared meanwhile; not replacing it")
            old_holder = Path(tempfile.mkdtemp(prefix=f".{self.output.name}.replaced-",
                                               dir=self.output.parent))
            os.replace(self.output, old_holder / self.output.name)
        try:
            os.replace(built, self.output)
        except BaseException:
            if old_holder is not None:  # put the old output back
                os.replace(old_holder / self.output.name, self.output)
                old_holder.rmdir()
            raise
        self.committed = True
        shutil.rmtree(self.partial, ignore_errors=True)
        if old_holder is not None:
            shutil.rmtree(old_holder, ignore_errors=True)

    def add_file(self, name: str, text: str) -> None:
        """Put a small file inside the bag folder; it is moved into place with the bag."""
        try:
            (self.partial / self.output.name / name).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise BagOutputError(write_failure(self.output, exc)) from None

    # ----------------------------------------------------------------- connections
    def add_topic(self, topic: str, msgtype: str) -> Any:
        """A connection for messages this tool builds (ROS 2 definition of ``msgtype``)."""
        return self._writer.add_connection(topic, msgtype, typestore=self.typestore)

    def add_outputs(self, topic_of: Callable[[str], str],
                    rows: Iterable[OutputTopic]) -> dict[str, Any]:
        """A connection per output row (``stream.outputs.OUTPUT_TOPICS``), on the topic
        ``topic_of(row.name)`` (the camera's namespace): relative name -> connection."""
        return {row.name: self.add_topic(topic_of(row.name), row.msgtype) for row in rows}

    def add_copies(self, reader: Any, connections: list[Any]) -> tuple[dict, dict]:
        """Connections for copied input topics, and converters for their raw bytes.

        Returns ``({(id, owner): output connection}, {msgtype: raw -> raw})``. For a ROS 2
        input the converter returns the bytes unchanged; for a ROS 1 input it re-encodes
        them as CDR (``rosbags.convert``'s own converter, QoS/latching carried over).
        """
        if not connections:
            return {}, {}
        from rosbags.convert.converter import create_connections_converters

        return create_connections_converters(connections, self.typestore, reader, self._writer)

    # ----------------------------------------------------------------- writing
    def write_raw(self, connection: Any, log_time: int, data: Any) -> None:
        try:
            self._writer.write(connection, log_time, data)
        except _WRITE_ERRORS as exc:  # the storage flushes a chunk / a transaction
            raise BagOutputError(write_failure(self.output, exc)) from None

    def write_fields(
        self, connection: Any, log_time: int, header: Any, fields: dict[str, Any]
    ) -> None:
        """Build ``connection.msgtype`` from ``fields`` (+ ``header``) and write it.

        Fields not given keep their defaults (e.g. CameraInfo ``roi``: the full image).
        """
        msgtype = connection.msgtype
        msg = self.build(msgtype, header, fields)
        self.write_raw(connection, log_time, self.typestore.serialize_cdr(msg, msgtype))

    def build(self, msgtype: str, header: Any, fields: dict[str, Any]) -> Any:
        from rosbags.convert.converter import default_message

        types = self.typestore.types
        if msgtype not in self._defaults:
            self._defaults[msgtype] = default_message(self.typestore, msgtype)
        default = self._defaults[msgtype]
        values = {name: getattr(default, name) for name in type(default).__dataclass_fields__
                  if not name.startswith("__")}
        values.update(fields)
        if "header" in values:  # types without a header (sample bags write some) get none
            values["header"] = header
        if "fields" in fields and msgtype == "sensor_msgs/msg/PointCloud2":
            values["fields"] = point_fields(fields["fields"], types["sensor_msgs/msg/PointField"])
        return types[msgtype](**values)

    def header(self, stamp_ns: int, frame_id: str) -> Any:
        """A ROS 2 ``std_msgs/Header`` with the given stamp and frame."""
        types = self.typestore.types
        sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
        stamp = types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)
        return types["std_msgs/msg/Header"](stamp=stamp, frame_id=str(frame_id))
