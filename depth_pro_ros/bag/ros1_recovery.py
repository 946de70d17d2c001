"""ROS 1 bags without a usable index (``rosbag record`` killed, a copy cut short).

A ROS 1 bag (format 2.0) is a sequence of records, each ``header length (u32), header
(fields ``u32 length, name=value``), data length (u32), data``. Messages and their
connection records live inside chunk records; the index at the end (connection and chunk
info records) is written only when the recorder closes the file. :class:`Ros1RecoveryReader`
reads the chunks sequentially, once to index them (offset, log time range, counts per
connection; no message bytes kept) and again when the messages are read, in log-time
order (see :mod:`depth_pro_ros.bag.recovery`). A chunk that does not decompress or parse
is skipped and reported; a record cut by the end of the file ends the data.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO

from depth_pro_ros.bag.recovery import (
    Block,
    BlockReader,
    Damage,
    DamagedBlock,
    decompress_bounded,
    typestore_from_definitions,
)

__all__ = ["Ros1RecoveryReader"]

MAGIC = b"#ROSBAG V2.0\n"
_MSG_DATA, _BAG_HEADER, _CHUNK, _CONNECTION = 0x02, 0x03, 0x05, 0x07
_U32 = struct.Struct("<I")


def _fields(header: bytes) -> dict[str, bytes]:
    out, pos = {}, 0
    while pos < len(header):
        (n,) = _U32.unpack_from(header, pos)
        pos += 4
        if pos + n > len(header):
            raise ValueError("header field runs past the header")
        name, sep, value = header[pos: pos + n].partition(b"=")
        if not sep:
            raise ValueError("header field without '='")
        out[name.decode("ascii")] = value
        pos += n
    return out


def _records(data: bytes) -> list[tuple[dict[str, bytes], bytes]]:
    """All records of a chunk's uncompressed data; ValueError when they do not fit."""
    out, pos = [], 0
    while pos < len(data):
        (hlen,) = _U32.unpack_from(data, pos)
        header = data[pos + 4: pos + 4 + hlen]
        pos += 4 + hlen
        (dlen,) = _U32.unpack_from(data, pos)
        body = data[pos + 4: pos + 4 + dlen]
        pos += 4 + dlen
        if len(header) != hlen or len(body) != dlen:
            raise ValueError("record runs past the chunk's end")
        out.append((_fields(header), body))
    return out


def _op(fields: dict[str, bytes]) -> int:
    op = fields.get("op")
    return op[0] if op else 0


def _msgtype(name: str) -> str:
    """ROS 1 ``pkg/Type`` -> ``pkg/msg/Type`` (the names rosbags uses)."""
    parts = name.split("/")
    return "/".join([*parts[:-1], "msg", parts[-1]]) if len(parts) == 2 else name


def _topic(name: str) -> str:
    return ("/" if name.startswith("/") else "") + "/".join(p for p in name.split("/") if p)


class Ros1RecoveryReader(BlockReader):
    """An AnyReader-like view of a ROS 1 bag read without its index (module docstring)."""

    is2 = False

    def __init__(self, path: Path) -> None:
        super().__init__([path])
        self._conn_records: dict[int, tuple[dict[str, bytes], dict[str, bytes]]] = {}
        self.cut_at: int | None = None  # a record cut by the end of the file
        self.cut_chunk = False  # ... and it is a chunk
        self.bio: BinaryIO = path.open("rb")
        try:
            self.size = self.bio.seek(0, 2)
            self.bio.seek(0)
            if self.bio.read(len(MAGIC)) != MAGIC:
                raise ValueError(f"{path} is not a ROS 1 bag (version 2.0)")
            self._scan()
            self._connect()
        except BaseException:
            self.bio.close()
            raise

    def close(self) -> None:
        self.bio.close()

    def describe(self) -> str:
        """What was recovered, for stderr and the summary (one line)."""
        found = sum(c.msgcount for c in self.connections)
        topics = sum(1 for t in self.topics.values() if t.msgcount)
        last = f" up to log time {(self.end_time - 1) * 1e-9:.9f} s" if self.blocks else ""
        text = (f"{self.paths[0]} is not indexed (the recorder did not close it): recovered "
                f"{found} complete messages of {topics} topics{last}")
        if self.cut_chunk:
            text += f"; the last incomplete chunk was dropped (byte offset {self.cut_at})"
        return text + "; `rosbag reindex` would restore the index"

    # ------------------------------------------------------------- the pass
    def _record_at(self, pos: int) -> tuple[dict[str, bytes], int, int] | None:
        """(header fields, data offset, data length) of the record at ``pos``; None when
        the file ends inside it (or it is no record: nothing after it can be framed)."""
        self.bio.seek(pos)
        raw = self.bio.read(4)
        if len(raw) < 4:
            return None
        (hlen,) = _U32.unpack(raw)
        if pos + 8 + hlen > self.size:
            return None
        header = self.bio.read(hlen)
        (dlen,) = _U32.unpack(self.bio.read(4))
        if pos + 8 + hlen + dlen > self.size:
            return None
        try:
            fields = _fields(header)
        except ValueError:
            return None
        return fields, pos + 8 + hlen, dlen

    def _scan(self) -> None:
        pos = len(MAGIC)
        while pos < self.size:
            rec = self._record_at(pos)
            if rec is None or not _op(rec[0]):
                self.bio.seek(pos)
                self.cut_at, self.cut_chunk = pos, b"op=\x05" in self.bio.read(4096)
                return
            fields, data_at, dlen = rec
            op = _op(fields)
            if op == _CHUNK:
                self._scan_chunk(pos, fields, data_at, dlen)
            elif op == _CONNECTION:
                self.bio.seek(data_at)
                self._connection(fields, self.bio.read(dlen))
            pos = data_at + dlen

    def _scan_chunk(self, pos: int, fields: dict[str, bytes], data_at: int, dlen: int) -> None:
        try:
            records = self._chunk(fields, data_at, dlen)
        except DamagedBlock as exc:
            self.damage.add(Damage(self.paths[0], pos, str(exc)))
            return
        counts: dict[int, int] = {}
        times = []
        for f, body in records:
            if _op(f) == _CONNECTION:
                self._connection(f, body)
            elif _op(f) == _MSG_DATA:
                (conn,) = _U32.unpack(f["conn"])
                counts[conn] = counts.get(conn, 0) + 1
                times.append(_time(f["time"]))
        if times:
            self.blocks.append(Block(0, pos, min(times), max(times), counts))

    def _chunk(self, fields: dict[str, bytes], data_at: int,
               dlen: int) -> list[tuple[dict[str, bytes], bytes]]:
        self.bio.seek(data_at)
        raw = self.bio.read(dlen)
        compression = fields.get("compression", b"none").decode("ascii", "replace")
        try:
            if compression not in ("none", "bz2", "lz4"):
                raise DamagedBlock(f"unknown compression {compression!r}")
            size = _U32.unpack(fields["size"])[0] if "size" in fields else None
            data = decompress_bounded(compression, raw, size)  # a bz2 bomb stops at size
            if size is not None and len(data) != size:
                raise DamagedBlock("wrong size after decompression")
            records = _records(data)
            for f, _ in records:
                if _op(f) == _MSG_DATA:
                    _U32.unpack(f["conn"])
                    _time(f["time"])
            return records
        except DamagedBlock:
            raise
        except Exception as exc:  # noqa: BLE001 -- bz2/lz4 errors, struct.error, KeyError
            raise DamagedBlock(f"{compression} chunk unreadable: {type(exc).__name__}: "
                               f"{exc}") from None

    def _connection(self, fields: dict[str, bytes], body: bytes) -> None:
        try:
            (conn,) = _U32.unpack(fields["conn"])
            if conn not in self._conn_records:
                self._conn_records[conn] = (fields, _fields(body))
        except (KeyError, ValueError, struct.error):
            pass  # a garbled connection: its messages stay unknown and are dropped

    def _connect(self) -> None:
        from rosbags.interfaces import (
            Connection,
            ConnectionExtRosbag1,
            MessageDefinition,
            MessageDefinitionFormat,
        )

        counts: dict[int, int] = {}
        for b in self.blocks:
            for cid, n in b.counts.items():
                counts[cid] = counts.get(cid, 0) + n
        definitions = []
        for cid, (head, info) in sorted(self._conn_records.items()):
            text = info.get("message_definition", b"").decode("utf-8", "replace")
            msgtype = _msgtype(info.get("type", b"").decode("utf-8", "replace"))
            latching = info.get("latching", b"").decode("ascii", "replace").strip()
            callerid = info["callerid"].decode("utf-8", "replace") if "callerid" in info \
                else None
            conn = Connection(
                cid, _topic((head.get("topic") or info.get("topic", b"")).decode()), msgtype,
                MessageDefinition(MessageDefinitionFormat.MSG, text),
                info.get("md5sum", b"").decode(), counts.get(cid, 0),
                ConnectionExtRosbag1(callerid, int(latching) if latching.isdigit() else None), self)
            self.connections.append(conn)
            self._channels[(0, cid)] = conn
            definitions.append((msgtype, "msg", text))
        self.typestore = typestore_from_definitions(definitions, None)

    def _load(self, block: Block) -> list[tuple[int, int, Any]]:
        rec = self._record_at(block.offset)
        if rec is None or _op(rec[0]) != _CHUNK:
            raise DamagedBlock("no chunk record at this offset")
        return [(_U32.unpack(f["conn"])[0], _time(f["time"]), body)
                for f, body in self._chunk(*rec) if _op(f) == _MSG_DATA]


def _time(raw: bytes) -> int:
    sec, nsec = struct.unpack("<II", raw)
    return sec * 1_000_000_000 + nsec
