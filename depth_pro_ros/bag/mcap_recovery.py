"""MCAP inputs read chunk by chunk: damaged chunks are skipped, truncated files recovered.

:class:`McapFile` indexes one ``.mcap`` file without holding message bytes: from its
summary section (chunk indexes: offsets, log time ranges, per-channel counts) when the
file is complete, else by one sequential pass over the data section that reads,
decompresses and checks each chunk in turn and keeps only its offset, time range and
counts (and the Schema / Channel records met). A record cut by the end of the file (the
state after a power cut) ends the pass; that incomplete chunk is dropped.

Two readers build on it (see :mod:`depth_pro_ros.bag.recovery` for the ordered merge):

* :class:`McapChunkReader` -- a complete bag that rosbags opened: its metadata (topics,
  types, counts) stay rosbags', only the messages are read here, so that a chunk with a
  bad checksum or compression is skipped and reported instead of ending the run.
* :class:`McapRecoveryReader` -- a bag rosbags refuses (no summary section, no
  ``metadata.yaml``): connections and message definitions come from the Schema and
  Channel records, messages are CDR.

Record layouts follow the MCAP specification; the ``mcap`` package parses the records.
"""

from __future__ import annotations

import re
import struct
import zlib
from io import BytesIO
from pathlib import Path
from typing import Any, BinaryIO

from depth_pro_ros.bag.recovery import Block, BlockReader, Damage, DamagedBlock

__all__ = ["McapChunkReader", "McapFile", "McapRecoveryReader", "mcap_files"]

MAGIC = b"\x89MCAP0\r\n"
_HEADER, _FOOTER, _SCHEMA, _CHANNEL, _MESSAGE, _CHUNK = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
_CHUNK_INDEX, _STATISTICS, _DATA_END = 0x08, 0x0B, 0x0F
_KNOWN_OPS = set(range(0x01, 0x10))
_RECORD = struct.Struct("<BQ")
_MESSAGE_HEAD = struct.Struct("<HIQQ")  # channel id, sequence, log time, publish time
_MESSAGE_INDEX_HEAD = 15  # opcode, length, channel id, entries length; then 16 per entry


def mcap_files(path: Path) -> list[Path]:
    """The ``.mcap`` files of a bag folder in recording order (``name_2`` before
    ``name_10``), or ``[path]`` for a file."""
    if not path.is_dir():
        return [path]

    def order(p: Path) -> tuple:
        return tuple(int(x) if x.isdigit() else x for x in re.split(r"(\d+)", p.name))

    return sorted((p for p in path.iterdir() if p.suffix == ".mcap" and p.is_file()), key=order)


def _parse(cls: Any, body: bytes) -> Any:
    from mcap.data_stream import ReadDataStream

    stream = ReadDataStream(BytesIO(body))
    record = cls.read(stream)
    if stream.count > len(body):  # pragma: no cover -- ReadDataStream stops at the end
        raise ValueError("record longer than its length")
    return record


def _chunk_records(body: bytes) -> tuple[Any, list[tuple[int, int, bytes]], list[Any]]:
    """A Chunk record's body -> (chunk header, [(channel, log time, data)], schemas and
    channels). Raises :class:`DamagedBlock` for a bad checksum, compression or layout."""
    from mcap.records import Channel, Chunk, Schema

    try:
        chunk = _parse(Chunk, body)
    except Exception as exc:  # noqa: BLE001 -- struct.error, EndOfFile, UnicodeDecodeError
        raise DamagedBlock(f"unreadable chunk header: {type(exc).__name__}") from None
    try:
        if chunk.compression == "zstd":
            import zstandard

            data = zstandard.ZstdDecompressor().decompress(
                chunk.data, max_output_size=chunk.uncompressed_size)
        elif chunk.compression == "lz4":
            import lz4.frame

            data = lz4.frame.decompress(chunk.data)
        elif chunk.compression == "":
            data = chunk.data
        else:
            raise DamagedBlock(f"unknown compression {chunk.compression!r}")
    except DamagedBlock:
        raise
    except Exception as exc:  # noqa: BLE001 -- each decompressor has its own errors
        raise DamagedBlock(f"{chunk.compression} data does not decompress: {exc}") from None
    if len(data) != chunk.uncompressed_size:
        raise DamagedBlock(f"{len(data)} bytes after decompression, "
                           f"the chunk says {chunk.uncompressed_size}")
    if chunk.uncompressed_crc and zlib.crc32(data) != chunk.uncompressed_crc:
        raise DamagedBlock("checksum mismatch")
    messages, meta, pos, size = [], [], 0, len(data)
    try:
        while pos < size:
            op, length = _RECORD.unpack_from(data, pos)
            body_at, pos = pos + 9, pos + 9 + length
            if pos > size:
                raise DamagedBlock(f"record at {body_at - 9} runs past the chunk's end")
            if op == _MESSAGE:
                if length < _MESSAGE_HEAD.size:
                    raise DamagedBlock(f"message record of {length} bytes")
                cid, _, log_time, _ = _MESSAGE_HEAD.unpack_from(data, body_at)
                messages.append((cid, log_time, data[body_at + _MESSAGE_HEAD.size: pos]))
            elif op == _SCHEMA:
                meta.append(_parse(Schema, data[body_at:pos]))
            elif op == _CHANNEL:
                meta.append(_parse(Channel, data[body_at:pos]))
    except DamagedBlock:
        raise
    except Exception as exc:  # noqa: BLE001 -- a garbled record inside the chunk
        raise DamagedBlock(f"garbled record inside the chunk: {type(exc).__name__}") from None
    return chunk, messages, meta


class McapFile:
    """One ``.mcap`` file: its blocks, schemas and channels (see the module docstring).

    ``indexed`` tells whether they came from the summary section. Otherwise ``footer``
    tells whether the file still ends with its footer (False: it was truncated),
    ``cut_at`` / ``cut_op`` give the offset and opcode of a record cut by the end of the
    file, and ``damaged`` lists the chunks the pass could not read.
    """

    def __init__(self, path: Path, index: int, allow_scan: bool = True) -> None:
        self.path, self.index = path, index
        self.schemas: dict[int, Any] = {}
        self.channels: dict[int, Any] = {}
        self.blocks: list[Block] = []
        self.damaged: list[Damage] = []
        self.indexed, self.footer = False, False
        self.cut_at: int | None = None
        self.cut_op = 0
        self.summary_problem: str | None = None
        self.bio: BinaryIO = path.open("rb")
        try:
            self.size = self.bio.seek(0, 2)
            self.bio.seek(0)
            if self.bio.read(8) != MAGIC:
                raise ValueError(f"{path} is not an MCAP file (bad magic)")
            try:
                self._read_summary()
                self.indexed = True
            except ValueError as exc:
                if not allow_scan:
                    raise
                self.summary_problem = str(exc)
                self.schemas.clear()
                self.channels.clear()
                self.blocks.clear()
                self._scan()
        except BaseException:
            self.bio.close()
            raise

    def close(self) -> None:
        self.bio.close()

    # ------------------------------------------------------------- summary section
    def _read_summary(self) -> None:
        from mcap.records import Channel, ChunkIndex, Footer, Schema

        if self.size < 8 + 9 + 29 + 8:
            raise ValueError("too short for a footer")
        self.bio.seek(self.size - 37)
        tail = self.bio.read(37)
        if tail[-8:] != MAGIC or tail[:9] != _RECORD.pack(_FOOTER, 20):
            raise ValueError("no footer (the file does not end with the MCAP magic)")
        self.footer = True
        footer = _parse(Footer, tail[9:29])
        start, end = footer.summary_start, self.size - 37
        if not 8 < start <= end:
            raise ValueError("no summary section")
        self.bio.seek(start)
        summary = self.bio.read(end - start)
        indexes, pos = [], 0
        try:
            while pos < len(summary):
                op, length = _RECORD.unpack_from(summary, pos)
                body = summary[pos + 9: pos + 9 + length]
                if len(body) != length:
                    raise ValueError("summary record runs past the footer")
                pos += 9 + length
                if op == _SCHEMA:
                    schema = _parse(Schema, body)
                    self.schemas[schema.id] = schema
                elif op == _CHANNEL:
                    channel = _parse(Channel, body)
                    self.channels[channel.id] = channel
                elif op == _CHUNK_INDEX:
                    indexes.append(_parse(ChunkIndex, body))
        except ValueError:
            raise
        except Exception as exc:  # noqa: BLE001 -- struct.error, EndOfFile ...
            raise ValueError(f"unreadable summary section ({type(exc).__name__})") from None
        if not indexes:
            raise ValueError("the summary has no chunk index")
        for ci in sorted(indexes, key=lambda c: c.chunk_start_offset):
            self.blocks.append(Block(self.index, ci.chunk_start_offset, ci.message_start_time,
                                     ci.message_end_time, self._counts(ci)))

    @staticmethod
    def _counts(ci: Any) -> dict[int, int]:
        # Message index records follow the chunk, one per channel, 15 + 16 * n bytes long.
        pairs = sorted((off, cid) for cid, off in ci.message_index_offsets.items())
        ends = [off for off, _ in pairs[1:]]
        ends.append(ci.chunk_start_offset + ci.chunk_length + ci.message_index_length)
        return {cid: max(0, (e - off - _MESSAGE_INDEX_HEAD) // 16)
                for (off, cid), e in zip(pairs, ends)}

    # ------------------------------------------------------------- sequential pass
    def _scan(self) -> None:
        pos, bio = 8, self.bio
        while pos < self.size:
            bio.seek(pos)
            head = bio.read(9)
            if len(head) < 9:
                self.cut_at, self.cut_op = pos, head[0] if head else 0
                return
            op, length = _RECORD.unpack(head)
            end = pos + 9 + length
            if (op not in _KNOWN_OPS and op < 0x80) or end > self.size:
                # Cut by the end of the file, or not a record at all (then nothing after
                # it can be framed): the data ends here.
                self.cut_at, self.cut_op = pos, op
                return
            if op == _CHUNK:
                self._scan_chunk(pos, bio.read(length))
            elif op == _MESSAGE and length >= _MESSAGE_HEAD.size:
                cid, _, log_time, _ = _MESSAGE_HEAD.unpack(bio.read(_MESSAGE_HEAD.size))
                self.blocks.append(Block(self.index, pos, log_time, log_time, {cid: 1}))
            elif op in (_SCHEMA, _CHANNEL):
                self._meta([self._parse_meta(op, bio.read(length))])
            elif op in (_DATA_END, _FOOTER):
                return  # the summary follows, but the caller found it unreadable
            pos = end

    def _scan_chunk(self, pos: int, body: bytes) -> None:
        try:
            chunk, messages, meta = _chunk_records(body)
        except DamagedBlock as exc:
            self.damaged.append(Damage(self.path, pos, str(exc)))
            return
        self._meta(meta)
        if messages:
            counts: dict[int, int] = {}
            for cid, _, _ in messages:
                counts[cid] = counts.get(cid, 0) + 1
            times = [t for _, t, _ in messages]
            self.blocks.append(Block(self.index, pos, min(times), max(times), counts))

    @staticmethod
    def _parse_meta(op: int, body: bytes) -> Any:
        from mcap.records import Channel, Schema

        try:
            return _parse(Schema if op == _SCHEMA else Channel, body)
        except Exception:  # noqa: BLE001 -- a garbled definition: its channel stays unknown
            return None

    def _meta(self, records: list[Any]) -> None:
        from mcap.records import Schema

        for rec in records:
            if rec is None:
                continue
            (self.schemas if isinstance(rec, Schema) else self.channels)[rec.id] = rec

    # ------------------------------------------------------------- reading a block
    def load(self, block: Block) -> list[tuple[int, int, bytes]]:
        """The messages of ``block``; :class:`DamagedBlock` if they cannot be read."""
        self.bio.seek(block.offset)
        head = self.bio.read(9)
        if len(head) < 9:
            raise DamagedBlock("the record lies past the end of the file")
        op, length = _RECORD.unpack(head)
        if block.offset + 9 + length > self.size:
            raise DamagedBlock(f"record length {length} runs past the end of the file")
        body = self.bio.read(length)
        if op == _MESSAGE and length >= _MESSAGE_HEAD.size:
            cid, _, log_time, _ = _MESSAGE_HEAD.unpack_from(body)
            return [(cid, log_time, body[_MESSAGE_HEAD.size:])]
        if op != _CHUNK:
            raise DamagedBlock(f"no chunk record at this offset (opcode {op:#x})")
        return _chunk_records(body)[1]


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
            self.close()
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
    ``default_typestore``.
    """

    def __init__(self, paths: list[Path], default_typestore: Any = None) -> None:
        from rosbags.interfaces import (
            Connection,
            ConnectionExtRosbag2,
            MessageDefinition,
            MessageDefinitionFormat,
        )

        super().__init__(paths)
        try:
            self.files = [McapFile(p, i) for i, p in enumerate(paths)]
        except BaseException:
            self.close()
            raise
        formats = {"ros2msg": MessageDefinitionFormat.MSG, "ros2idl": MessageDefinitionFormat.IDL}
        by_key: dict[tuple, Any] = {}
        definitions = []
        counts: dict[tuple, int] = {}
        for f in self.files:
            self.blocks += f.blocks
            for d in f.damaged:
                self.damage.add(d)
            for b in f.blocks:
                for cid, n in b.counts.items():
                    counts[(f.index, cid)] = counts.get((f.index, cid), 0) + n
            for cid, ch in sorted(f.channels.items()):
                schema = f.schemas.get(ch.schema_id)
                if schema is None or ch.message_encoding != "cdr":
                    continue  # no type to read it with
                qos = ch.metadata.get("offered_qos_profiles", "")
                key = (ch.topic, schema.name, ch.message_encoding, qos)
                if key not in by_key:
                    fmt = formats.get(schema.encoding, MessageDefinitionFormat.NONE)
                    text = schema.data.decode("utf-8", "replace")
                    definitions.append((schema.name, fmt.name.lower(), text))
                    by_key[key] = Connection(
                        len(by_key) + 1, ch.topic, schema.name, MessageDefinition(fmt, text),
                        "", 0, ConnectionExtRosbag2(ch.message_encoding, _qos(qos)), self)
                self._channels[(f.index, cid)] = by_key[key]
        totals: dict[int, int] = {}
        for key, conn in self._channels.items():
            totals[id(conn)] = totals.get(id(conn), 0) + counts.get(key, 0)
        self.connections = [c._replace(msgcount=totals.get(id(c), 0)) for c in by_key.values()]
        renamed = {id(old): new for old, new in zip(by_key.values(), self.connections)}
        self._channels = {k: renamed[id(c)] for k, c in self._channels.items()}
        from depth_pro_ros.bag.recovery import typestore_from_definitions

        self.typestore = typestore_from_definitions(definitions, default_typestore)

    def describe(self) -> str:
        """What was recovered, for stderr and the summary (one line)."""
        cut = [f for f in self.files if not f.footer]
        found = sum(c.msgcount for c in self.connections)
        topics = sum(1 for c in self.topics.values() if c.msgcount)
        last = f" up to log time {(self.end_time - 1) * 1e-9:.9f} s" if self.blocks else ""
        name = ", ".join(str(f.path) for f in (cut or self.files))
        state = "is truncated (no summary section)" if cut else \
            f"has no readable summary section ({self.files[0].summary_problem})"
        text = f"{name} {state}: recovered {found} complete messages of {topics} topics{last}"
        dropped = [f for f in self.files if f.cut_at is not None and f.cut_op in (_CHUNK,
                                                                                  _MESSAGE)]
        if dropped:
            text += "; the last incomplete chunk was dropped (byte offset " \
                    + ", ".join(str(f.cut_at) for f in dropped) + ")"
        elif cut:
            text += "; no chunk was cut"
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
