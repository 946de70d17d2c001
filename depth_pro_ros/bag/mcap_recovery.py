"""MCAP inputs read chunk by chunk: damaged chunks are skipped, truncated files recovered.

Two readers build on :class:`~depth_pro_ros.bag.mcap_index.McapFile` and the ordered
merge of :mod:`depth_pro_ros.bag.recovery`:

* :class:`McapChunkReader` -- a complete bag that rosbags opened: its metadata (topics,
  types, counts) stay rosbags', only the messages are read here, so that a chunk with a
  bad checksum or compression is skipped and reported instead of ending the run.
* :class:`McapRecoveryReader` -- a bag rosbags refuses (no summary section, no
  ``metadata.yaml``): connections and message definitions come from the Schema and
  Channel records, messages are CDR.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from depth_pro_ros.bag.mcap_index import CHUNK, MESSAGE, McapFile, mcap_files
from depth_pro_ros.bag.recovery import Block, BlockReader, typestore_from_definitions

__all__ = ["McapChunkReader", "McapRecoveryReader", "mcap_files"]


class _McapBlocks(BlockReader):
    """Shared by both readers: blocks of several files, loaded from the right file."""

    def __init__(self, paths: list[Path]) -> None:
        super().__init__(paths)
        self.files: list[McapFile] = []

    def _load(self, block: Block) -> list[tuple[int, int, Any]]:
        return self.files[block.file].load(block)

    def close(self) -> None:
        for f in self.files:
            f.close()
        self.files = []


class McapChunkReader(_McapBlocks):
    """Messages of a complete MCAP bag chunk by chunk; everything else from ``reader``
    (the open ``AnyReader``), whose connections the messages are matched to by topic,
    type and encoding, as rosbags matches storage channels to ``metadata.yaml`` topics.
    """

    def __init__(self, reader: Any, paths: list[Path]) -> None:
        super().__init__(paths)
        self.reader = reader
        try:
            self.files = [McapFile(p, i, allow_scan=False) for i, p in enumerate(paths)]
        except BaseException:
            super().close()  # the files only: ``reader`` stays open for the caller
            raise
        self.connections = reader.connections
        self.typestore = reader.typestore
        for f in self.files:
            self.blocks += f.blocks
            for cid, ch in f.channels.items():
                schema = f.schemas.get(ch.schema_id)
                msgtype = schema.name if schema is not None else None
                conn = next((c for c in reader.connections if c.topic == ch.topic
                             and c.msgtype == msgtype
                             and c.ext.serialization_format == ch.message_encoding), None)
                if conn is not None:
                    self._channels[(f.index, cid)] = conn
        mapped = {id(c) for c in self._channels.values()}
        if any(c.msgcount and id(c) not in mapped for c in reader.connections):
            super().close()  # the summary does not name every channel: leave it to rosbags
            raise ValueError("a connection has no channel in the summary sections")

    @property
    def topics(self) -> dict[str, Any]:
        return self.reader.topics

    @property
    def message_count(self) -> int:
        return self.reader.message_count

    @property
    def start_time(self) -> int:
        return self.reader.start_time

    @property
    def end_time(self) -> int:
        return self.reader.end_time

    def deserialize(self, rawdata: bytes, typ: str) -> Any:
        return self.reader.deserialize(rawdata, typ)

    def close(self) -> None:
        super().close()
        self.reader.close()


class McapRecoveryReader(_McapBlocks):
    """An MCAP bag rosbags cannot open, read from its records alone (module docstring).

    Connections: one per (topic, type, encoding, QoS) over all files, with the counts of
    the messages found. Types: the Schema records (``ros2msg`` / ``ros2idl``) over
    ``default_typestore``. ``reason`` is why rosbags could not open the bag;
    ``expected`` the message count of its ``metadata.yaml``, if any (then the lost
    messages are counted).
    """

    def __init__(self, paths: list[Path], default_typestore: Any = None,
                 reason: str = "", expected: int | None = None) -> None:
        from rosbags.interfaces import (
            Connection,
            ConnectionExtRosbag2,
            MessageDefinition,
            MessageDefinitionFormat,
        )

        super().__init__(paths)
        self.reason = reason
        self.expected = expected  # messages metadata.yaml counts (None: no metadata)
        try:
            self.files = [McapFile(p, i) for i, p in enumerate(paths)]
        except BaseException:
            self.close()
            raise
        keys: dict[tuple[int, int], tuple] = {}  # (file, channel) -> connection key
        counts: dict[tuple, int] = {}  # connection key -> messages
        schemas: dict[tuple, Any] = {}
        for f in self.files:
            self.blocks += f.blocks
            for damage in f.damaged:
                self.damage.add(damage)
            for cid, ch in sorted(f.channels.items()):
                schema = f.schemas.get(ch.schema_id)
                if schema is None or ch.message_encoding != "cdr":
                    continue  # no type to read it with
                key = (ch.topic, schema.name, ch.message_encoding,
                       ch.metadata.get("offered_qos_profiles", ""))
                keys[(f.index, cid)] = key
                schemas.setdefault(key, schema)
                counts.setdefault(key, 0)
            for b in f.blocks:
                for cid, n in b.counts.items():
                    if (f.index, cid) in keys:
                        counts[keys[(f.index, cid)]] += n
        formats = {"ros2msg": MessageDefinitionFormat.MSG, "ros2idl": MessageDefinitionFormat.IDL}
        connections: dict[tuple, Any] = {}
        definitions = []
        for key, schema in schemas.items():
            topic, msgtype, encoding, qos = key
            fmt = formats.get(schema.encoding, MessageDefinitionFormat.NONE)
            text = schema.data.decode("utf-8", "replace")
            definitions.append((msgtype, fmt.name.lower(), text))
            connections[key] = Connection(
                len(connections) + 1, topic, msgtype, MessageDefinition(fmt, text), "",
                counts[key], ConnectionExtRosbag2(encoding, _qos(qos)), self)
        self.connections = list(connections.values())
        self._channels = {fc: connections[key] for fc, key in keys.items()}
        self.typestore = typestore_from_definitions(definitions, default_typestore)

    def cut_hint(self) -> str:
        """Why a cut chunk gave nothing, when that is the reason ('' otherwise)."""
        for f in self.files:
            if f.cut_size and not f.cut_kept:
                return (f" (the chunk at byte offset {f.cut_at} of {f.path.name} was cut "
                        "before its first complete message could be decoded: compressed "
                        "chunks decode only in whole compression blocks)")
        return ""

    def describe(self) -> str:
        """What was recovered, for stderr and the summary (one line)."""
        cut = [f for f in self.files if not f.footer]
        unreadable = [f for f in self.files if f.footer and f.summary_problem]
        if cut:
            head = f"{', '.join(str(f.path) for f in cut)} is truncated (no summary section)"
        elif unreadable:
            head = (f"{unreadable[0].path} has an unreadable summary section "
                    f"({unreadable[0].summary_problem})")
        else:
            head = f"{self.paths[0].parent} could not be opened normally ({self.reason})"
        found = sum(c.msgcount for c in self.connections)
        topics = sum(1 for c in self.topics.values() if c.msgcount)
        text = f"{head}: recovered {found} complete messages of {topics} topics"
        if self.blocks:
            text += f" up to log time {(self.end_time - 1) * 1e-9:.9f} s"
        dropped = [f for f in self.files if f.cut_at is not None and f.cut_op in (CHUNK,
                                                                                  MESSAGE)]
        for f in dropped:
            if f.cut_op == MESSAGE or not f.cut_size:
                text += f"; the last incomplete record was dropped (byte offset {f.cut_at})"
            else:
                text += (f"; the chunk at byte offset {f.cut_at} was cut: "
                         f"{f.cut_kept} complete message(s) at its start recovered, the "
                         f"rest of it lost ({f.cut_lost_bytes} of its {f.cut_size} bytes)")
        if cut and not dropped:
            text += "; no chunk was cut"
        if self.expected is not None and self.expected > found:
            text += (f"; metadata.yaml counts {self.expected} messages: "
                     f"{self.expected - found} lost")
        unknown = sum(n for f in self.files for b in f.blocks for cid, n in b.counts.items()
                      if (f.index, cid) not in self._channels)
        if unknown:
            text += f"; {unknown} message(s) of channels without a readable definition dropped"
        return text


def _qos(text: str) -> list[Any]:
    if not text:
        return []
    from rosbags.rosbag2.metadata import parse_qos

    try:
        return parse_qos(text)
    except Exception:  # noqa: BLE001 -- QoS only matters for latching; keep the messages
        return []
