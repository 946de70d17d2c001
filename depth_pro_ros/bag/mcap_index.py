"""Indexing one ``.mcap`` file without holding message bytes, and reading its chunks.

:class:`McapFile` takes the blocks (chunk offsets, log time ranges, per-channel counts)
from the summary section when the file is complete; otherwise it makes one sequential
pass over the data section that reads, decompresses and checks each chunk in turn and
keeps only its offset, time range and counts (and the Schema / Channel records met). A
record cut by the end of the file (the state after a power cut) ends the pass; that
incomplete chunk is dropped. :meth:`McapFile.load` reads one block again, checking its
length, compression, size and CRC, and raises
:class:`~depth_pro_ros.bag.recovery.DamagedBlock` when any of them is wrong.

Record layouts follow the MCAP specification; the ``mcap`` package parses the records.
(Its ``StreamReader`` is not used for the pass: it cannot go on after a bad chunk -- with
``validate_crcs`` a CRC mismatch raises and ends its generator -- and it gives no record
offsets to come back to.)
"""

from __future__ import annotations

import re
import struct
import zlib
from io import BytesIO
from pathlib import Path
from typing import Any, BinaryIO

from depth_pro_ros.bag.recovery import Block, Damage, DamagedBlock, decompress_bounded

__all__ = ["CHUNK", "MESSAGE", "McapFile", "mcap_files"]

MAGIC = b"\x89MCAP0\r\n"
_FOOTER, _SCHEMA, _CHANNEL, MESSAGE, CHUNK = 0x02, 0x03, 0x04, 0x05, 0x06
_CHUNK_INDEX, _DATA_END = 0x08, 0x0F
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
    """One record body parsed by the ``mcap`` package's record class ``cls``.

    Its stream returns short reads silently (only an empty read raises), so a body cut
    short gives short fields; the callers check sizes where it matters (chunk data).
    """
    from mcap.data_stream import ReadDataStream

    return cls.read(ReadDataStream(BytesIO(body)))


def _chunk_records(body: bytes) -> tuple[Any, list[tuple[int, int, bytes]], list[Any]]:
    """A Chunk record's body -> (chunk header, [(channel, log time, data)], schemas and
    channels). Raises :class:`DamagedBlock` for a bad checksum, compression or layout."""
    from mcap.records import Chunk

    try:
        chunk = _parse(Chunk, body)
    except Exception as exc:  # noqa: BLE001 -- struct.error, EndOfFile, UnicodeDecodeError
        raise DamagedBlock(f"unreadable chunk header: {type(exc).__name__}") from None
    if chunk.compression not in ("", "zstd", "lz4"):
        raise DamagedBlock(f"unknown compression {chunk.compression!r}")
    try:
        data = decompress_bounded(chunk.compression, chunk.data, chunk.uncompressed_size)
    except DamagedBlock:
        raise
    except Exception as exc:  # noqa: BLE001 -- each decompressor has its own errors
        raise DamagedBlock(f"{chunk.compression} data does not decompress: {exc}") from None
    if len(data) != chunk.uncompressed_size:
        raise DamagedBlock(f"{len(data)} bytes after decompression, "
                           f"the chunk says {chunk.uncompressed_size}")
    if chunk.uncompressed_crc and zlib.crc32(data) != chunk.uncompressed_crc:
        raise DamagedBlock("checksum mismatch")
    messages, meta = _records(data)
    return chunk, messages, meta


def _records(data: bytes, cut: bool = False) -> tuple[list[tuple[int, int, bytes]],
                                                      list[Any]]:
    """The records of a chunk's (uncompressed) data -> ([(channel, log time, data)],
    schemas and channels). ``cut``: the data ends inside a record (a chunk cut by the end
    of the file): the records before it are returned, the cut one is not an error."""
    from mcap.records import Channel, Schema

    messages, meta, pos, size = [], [], 0, len(data)
    try:
        while pos + (9 if cut else 0) <= size and pos < size:
            op, length = _RECORD.unpack_from(data, pos)
            body_at, pos = pos + 9, pos + 9 + length
            if pos > size:
                if cut:
                    break
                raise DamagedBlock(f"record at {body_at - 9} runs past the chunk's end")
            if op == MESSAGE:
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
    return messages, meta


def _cut_chunk_data(body: bytes) -> tuple[bytes, int]:
    """The records' bytes that can be decoded from a Chunk record's body cut short, and
    the chunk's declared uncompressed size. Uncompressed: the bytes up to the cut;
    zstd / lz4: the stream decoded as far as it goes (whole compression blocks), never
    more than the declared size. Raises :class:`DamagedBlock` when nothing can be."""
    head = struct.Struct("<QQQII")  # start, end, uncompressed size, crc, compression len
    if len(body) < head.size:
        raise DamagedBlock("the chunk header is cut")
    _, _, size, _, clen = head.unpack_from(body)
    data_at = head.size + clen + 8
    if len(body) < data_at:
        raise DamagedBlock("the chunk header is cut")
    compression = body[head.size: head.size + clen].decode("utf-8", "replace")
    if compression not in ("", "zstd", "lz4"):
        raise DamagedBlock(f"unknown compression {compression!r}")
    data = decompress_bounded(compression, body[data_at:], size, partial=True)
    return data[:size], size


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
        # A chunk cut by the end of the file: messages kept from it, bytes of its
        # declared uncompressed size lost, and that size (0: none was cut).
        self.cut_kept, self.cut_lost_bytes, self.cut_size = 0, 0, 0
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
                # it can be framed): the data ends here. A cut chunk keeps the complete
                # records at its start.
                self.cut_at, self.cut_op = pos, op
                if op == CHUNK:
                    self._scan_cut_chunk(pos, bio.read(self.size - pos - 9))
                return
            if op == CHUNK:
                self._scan_chunk(pos, bio.read(length))
            elif op == MESSAGE and length >= _MESSAGE_HEAD.size:
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

    def _scan_cut_chunk(self, pos: int, body: bytes) -> None:
        try:
            data, size = _cut_chunk_data(body)
            messages, meta = _records(data, cut=True)
        except DamagedBlock:
            return
        self._meta(meta)
        self.cut_kept, self.cut_lost_bytes = len(messages), max(0, size - len(data))
        self.cut_size = size
        if messages:
            counts: dict[int, int] = {}
            for cid, _, _ in messages:
                counts[cid] = counts.get(cid, 0) + 1
            times = [t for _, t, _ in messages]
            self.blocks.append(Block(self.index, pos, min(times), max(times), counts,
                                     cut=True))

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
        if block.cut and op == CHUNK:  # its complete records, as the scan found them
            return _records(_cut_chunk_data(self.bio.read(length))[0], cut=True)[0]
        if block.offset + 9 + length > self.size:
            raise DamagedBlock(f"record length {length} runs past the end of the file")
        body = self.bio.read(length)
        if op == MESSAGE and length >= _MESSAGE_HEAD.size:
            cid, _, log_time, _ = _MESSAGE_HEAD.unpack_from(body)
            return [(cid, log_time, body[_MESSAGE_HEAD.size:])]
        if op != CHUNK:
            raise DamagedBlock(f"no chunk record at this offset (opcode {op:#x})")
        return _chunk_records(body)[1]
