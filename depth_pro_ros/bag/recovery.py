"""Reading damaged bags: blocks of messages, an ordered merge that survives a bad block,
and the guard that turns any other read failure into one clean error.

A *block* is a unit the recovery readers can re-read on its own: an MCAP chunk, a lone
MCAP message record or a ROS 1 chunk. A reader keeps only each block's byte offset, log
time range and per-connection message counts (never the message bytes), and yields
messages in log-time order by merging the blocks lazily: a block is read and decompressed
only when its first log time is the smallest still pending, and dropped once yielded. In
a recorded bag blocks follow each other in time, so about one block is held at a time.
A block that cannot be read (bad checksum, compression or layout) is skipped, counted in
a :class:`DamageLog` and reported once; the messages around it go on.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

from depth_pro_ros.bag.errors import BagDataError, BagError, BagInputError

__all__ = [
    "Block",
    "BlockReader",
    "Damage",
    "DamageLog",
    "DamagedBlock",
    "InputBag",
    "MAX_BLOCK_BYTES",
    "decompress_bounded",
    "typestore_from_definitions",
]

_NEVER = 2**63 - 1


@dataclass(frozen=True)
class Block:
    """Messages stored together that can be read again from ``offset`` of file ``file``."""

    file: int  # index into the reader's paths
    offset: int  # byte offset of the record in that file
    start: int  # log time of its earliest message (ns)
    end: int  # log time of its latest message (ns)
    counts: dict[int, int] = field(default_factory=dict)  # channel id -> messages; {} unknown
    cut: bool = False  # a chunk cut by the end of the file: its complete records only


class DamagedBlock(Exception):
    """The bytes of a block cannot be read back: bad checksum, compression or layout."""


#: Most bytes one block (an MCAP or ROS 1 chunk) may hold uncompressed: a chunk that
#: declares more is refused before anything is allocated (recorders write 1-4 MiB ones).
MAX_BLOCK_BYTES = 256 << 20
_PIECE = 1 << 20


def decompress_bounded(compression: str, raw: bytes, size: int | None,
                       partial: bool = False) -> bytes:
    """``raw`` decompressed (``zstd``, ``lz4``, ``bz2``; ``""`` / ``none``: as it is),
    never more than the declared ``size`` (None: :data:`MAX_BLOCK_BYTES`) plus one byte,
    so that a lying size shows as a length mismatch instead of a memory bomb. With
    ``partial`` (a stream cut short) the bytes decoded before the cut are returned and
    a decoder error ends the stream instead of raising."""
    limit = MAX_BLOCK_BYTES if size is None else size
    if limit > MAX_BLOCK_BYTES:
        raise DamagedBlock(f"declares {limit} bytes uncompressed, more than the "
                           f"{MAX_BLOCK_BYTES >> 20} MiB a chunk may hold here")
    if compression in ("", "none"):
        return raw[: limit + 1]
    out = bytearray()
    try:
        if compression == "zstd":
            import zstandard

            reader = zstandard.ZstdDecompressor().stream_reader(raw)
            while len(out) <= limit and (more := reader.read(min(_PIECE, limit + 1 - len(out)))):
                out += more
        elif compression in ("lz4", "bz2"):
            if compression == "lz4":
                import lz4.frame

                decoder: Any = lz4.frame.LZ4FrameDecompressor()
            else:
                import bz2

                decoder = bz2.BZ2Decompressor()
            more = decoder.decompress(raw, max_length=min(_PIECE, limit + 1))
            while more:  # the decoder keeps the input it did not decode yet
                out += more
                if decoder.eof or len(out) > limit:
                    break
                more = decoder.decompress(b"", max_length=min(_PIECE, limit + 1 - len(out)))
        else:
            raise DamagedBlock(f"unknown compression {compression!r}")
    except DamagedBlock:
        raise
    except Exception:  # noqa: BLE001 -- each decoder has its own errors
        if not partial:
            raise
    return bytes(out)


@dataclass
class Damage:
    """One damaged block, as reported to the user."""

    path: Path
    offset: int
    reason: str
    start: int | None = None  # log time range (ns) when the index tells it
    end: int | None = None
    topics: dict[str, int] = field(default_factory=dict)  # topic -> messages lost, if known
    kind: str = "chunk at byte offset"  # what ``offset`` counts ("message row": sqlite3)

    def describe(self) -> str:
        what = f"{self.path.name}: {self.kind} {self.offset}"
        if self.start is not None and self.end is not None:
            span = f"{self.start * 1e-9:.9f}" if self.start == self.end else \
                f"{self.start * 1e-9:.9f} .. {self.end * 1e-9:.9f}"
            what += f" (log time {span} s)"
        lost = (", ".join(f"{n} message(s) of {t}" for t, n in sorted(self.topics.items()))
                or "its topics are unknown")
        return f"{what} is damaged ({self.reason}); skipped: {lost}"


class DamageLog:
    """Damaged blocks met while reading, each counted and reported once.

    ``report`` receives one line per new damaged block; with ``strict`` the first one
    stops the run with :class:`~depth_pro_ros.bag.errors.BagDataError`.
    """

    def __init__(self) -> None:
        self.items: list[Damage] = []
        self._seen: set[tuple[str, int]] = set()
        self.report: Callable[[str], None] | None = None
        self.strict = False

    def add(self, damage: Damage) -> None:
        key = (str(damage.path), damage.offset)
        if key in self._seen:
            return
        if self.strict:
            raise BagDataError(f"input {damage.describe()} (--strict)")
        self._seen.add(key)
        self.items.append(damage)
        if self.report is not None:
            self.report(damage.describe())

    def attach(self, report: Callable[[str], None], strict: bool) -> None:
        """Report from now on to ``report``; blocks found damaged while opening the bag
        are reported (or, with ``strict``, stop the run) now."""
        self.report, self.strict = report, strict
        if strict and self.items:
            raise BagDataError(f"input {self.items[0].describe()} (--strict)")
        for damage in self.items:
            report(damage.describe())

    def lines(self) -> list[str]:
        return [d.describe() for d in self.items]


def typestore_from_definitions(definitions: list[tuple[str, str, str]], default: Any) -> Any:
    """A typestore with ``default``'s types overlaid by the bag's own definitions.

    ``definitions`` holds ``(msgtype, format, text)`` with format ``msg`` or ``idl``
    (``ros2msg`` / ``ros2idl`` in MCAP; ROS 1 definitions are ``msg``). A definition that
    does not parse is left out: its messages fall back to ``default`` or are skipped as
    undecodable, which is better than refusing the whole bag.
    """
    from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore

    types: dict[str, Any] = dict(default.fielddefs) if default is not None else {}
    for msgtype, fmt, text in definitions:
        if not text:
            continue
        try:
            if fmt == "idl":
                sep = "=" * 80 + "\n"
                parts = text.split(sep)[1:] if text.startswith(f"{sep}IDL: ") else [text]
                for part in parts:
                    types.update(get_types_from_idl(part.split("\n", 1)[1]
                                                    if part.startswith("IDL: ") else part))
            else:
                types.update(get_types_from_msg(text, msgtype))
        except Exception:  # noqa: BLE001, S112 -- a broken definition only loses its type
            continue
    store = get_typestore(Stores.EMPTY)
    store.register(types)
    return store


class BlockReader:
    """The part of ``rosbags.highlevel.AnyReader`` the bag tool uses, over blocks.

    Subclasses fill ``paths``, ``connections``, ``typestore``, ``blocks`` and
    ``_channels`` ((file index, channel id) -> connection) and implement :meth:`_load`.
    """

    is2 = True

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self.connections: list[Any] = []
        self.typestore: Any = None
        self.blocks: list[Block] = []
        self.damage = DamageLog()
        self._channels: dict[tuple[int, int], Any] = {}

    # ------------------------------------------------------------- AnyReader subset
    @property
    def topics(self) -> dict[str, Any]:
        from rosbags.interfaces import MessageDefinition, MessageDefinitionFormat, TopicInfo

        out: dict[str, Any] = {}
        for topic in dict.fromkeys(c.topic for c in self.connections):
            conns = [c for c in self.connections if c.topic == topic]
            types = {c.msgtype for c in conns}
            defs = {c.msgdef for c in conns}
            out[topic] = TopicInfo(
                types.pop() if len(types) == 1 else None,
                defs.pop() if len(defs) == 1 else MessageDefinition(
                    MessageDefinitionFormat.NONE, ""),
                sum(c.msgcount for c in conns), conns)
        return out

    @property
    def message_count(self) -> int:
        return sum(c.msgcount for c in self.connections)

    @property
    def start_time(self) -> int:
        return min((b.start for b in self.blocks), default=_NEVER)

    @property
    def end_time(self) -> int:
        return max((b.end + 1 for b in self.blocks), default=0)

    def deserialize(self, rawdata: bytes, typ: str) -> Any:
        if self.is2:
            return self.typestore.deserialize_cdr(rawdata, typ)
        return self.typestore.deserialize_ros1(rawdata, typ)

    def messages(self, connections: Collection[Any] = (), start: int | None = None,
                 stop: int | None = None) -> Iterator[tuple[Any, int, Any]]:
        """``(connection, log time, raw bytes)`` in log-time order; damaged blocks skipped."""
        wanted = {id(c) for c in (connections or self.connections)}
        keys = {k for k, c in self._channels.items() if id(c) in wanted}
        lo = -1 if start is None else start
        hi = _NEVER if stop is None else stop
        candidates = [
            (b.start, order, b) for order, b in enumerate(self.blocks)
            if b.end >= lo and b.start < hi
            and (not b.counts or any((b.file, cid) in keys for cid in b.counts))]
        candidates.sort(key=itemgetter(0, 1))
        # A k-way merge that opens a block only once the merge reaches its first log time:
        # only blocks overlapping in time are held (one at a time for a recording). Ties
        # go to the block first in the file, then to file order within the block.
        heap: list[tuple[int, int, int, Any, Iterator]] = []
        nxt = 0
        while True:
            while nxt < len(candidates) and (not heap or candidates[nxt][0] <= heap[0][0]):
                _, order, block = candidates[nxt]
                nxt += 1
                self._push(heap, order, iter(self._select(block, keys, lo, hi)))
            if not heap:
                return
            _, order, _, item, source = heapq.heappop(heap)
            yield item
            self._push(heap, order, source)

    def close(self) -> None:
        """Release the files (subclasses)."""

    # ------------------------------------------------------------- internals
    @staticmethod
    def _push(heap: list, order: int, source: Iterator) -> None:
        for seq, item in source:
            heapq.heappush(heap, (item[1], order, seq, item, source))
            return

    def _select(self, block: Block, keys: set, lo: int,
                hi: int) -> list[tuple[int, tuple[Any, int, Any]]]:
        """The wanted messages of ``block`` as ``(index, message)`` in log-time order."""
        try:
            records = self._load(block)
        except DamagedBlock as exc:
            self.damage.add(self._damage(block, str(exc)))
            return []
        chosen = [(self._channels[(block.file, cid)], t, data) for cid, t, data in records
                  if (block.file, cid) in keys and lo <= t < hi]
        chosen.sort(key=itemgetter(1))  # stable: equal times keep their order in the file
        return list(enumerate(chosen))

    def _damage(self, block: Block, reason: str) -> Damage:
        topics: dict[str, int] = {}
        for cid, n in block.counts.items():
            conn = self._channels.get((block.file, cid))
            name = conn.topic if conn is not None else f"channel {cid}"
            topics[name] = topics.get(name, 0) + n
        return Damage(self.paths[block.file], block.offset, reason, block.start, block.end,
                      topics)

    def _load(self, block: Block) -> list[tuple[int, int, Any]]:
        """``[(channel id, log time, raw bytes)]`` of the block, in file order."""
        raise NotImplementedError


class InputBag:
    """The opened input: a reader (AnyReader or a recovery reader) whose every read is
    guarded, with what happened on opening it (``note``) and its damaged blocks.

    Anything else is the reader's own attribute, so the rest of the tool sees the
    ``AnyReader`` interface.
    """

    def __init__(self, reader: Any, path: Path, note: str | None = None) -> None:
        self.reader, self.path, self.note = reader, path, note
        self.damage: DamageLog = getattr(reader, "damage", None) or DamageLog()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.reader, name)

    def messages(self, connections: Collection[Any] = (), start: int | None = None,
                 stop: int | None = None) -> Iterator[tuple[Any, int, Any]]:
        """The reader's messages; a failure of the reader is one clean error (exit 1)."""
        it = self.reader.messages(connections, start, stop)
        last: int | None = None
        while True:
            try:
                item = next(it)
            except StopIteration:
                return
            except BagError:
                raise
            except Exception as exc:  # noqa: BLE001 -- rosbags, apsw, zstd ... all differ
                raise BagInputError(self._corrupt(last, exc)) from None
            last = item[1]
            yield item

    def close(self) -> None:
        self.reader.close()

    def _corrupt(self, last: int | None, exc: BaseException) -> str:
        where = "at the first message" if last is None else \
            f"after the message logged at {last * 1e-9:.9f} s"
        text = (f"input bag {self.path} is corrupt: reading stopped {where} "
                f"({type(exc).__name__}: {' '.join(str(exc).split())})")
        try:
            origin = self.reader.start_time
        except Exception:  # noqa: BLE001 -- only for the hint
            origin = None
        if last is not None and origin is not None and last >= origin:
            # --end is exclusive and counts from the first message: keep up to ``last``.
            text += f"; process the part before it with --end {(last + 1 - origin) * 1e-9:.9f}"
        storage = {p.suffix for p in self.path.iterdir()} if self.path.is_dir() else \
            {self.path.suffix}
        if ".db3" in storage:
            text += "; `sqlite3 BAG.db3 .recover | sqlite3 NEW.db3` may rescue the rest"
        return text
