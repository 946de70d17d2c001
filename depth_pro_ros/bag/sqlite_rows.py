"""sqlite3 inputs read row by row, so that a message whose data is damaged is skipped.

rosbags reads a sqlite3 bag with one query that returns every message with its data; a
corrupt page under one message's data (a large message's tail lives in a chain of
overflow pages) ends that query, and with it the run. Here one query lists (row id,
topic, log time) in log-time order without touching the data, and each message's data is
then fetched by its row id: a row whose data cannot be read is skipped, counted and
reported with its topic and log time. Damage in the table's own pages is met when rosbags
opens the bag (it counts the messages) and stays one clean error.

The database is opened read-only as an ``immutable=1`` URI, as rosbags does.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from depth_pro_ros.bag.recovery import Damage, DamageLog

__all__ = ["Sqlite3RowReader"]


class Sqlite3RowReader:
    """Messages of the sqlite3 files ``paths`` row by row; everything else from
    ``reader`` (the open ``AnyReader``). Raises ValueError when a topic of ``reader``
    has no table row to match, so that the caller keeps rosbags' own reading."""

    def __init__(self, reader: Any, paths: list[Path]) -> None:
        self.reader = reader
        self.damage = DamageLog()
        self._dbs: list[tuple[Path, sqlite3.Connection, dict[int, Any]]] = []
        try:
            for path in paths:
                db = sqlite3.connect(f"file:{quote(str(path.resolve()))}?immutable=1",
                                     uri=True)
                topics = {}
                for tid, name, msgtype in db.execute("SELECT id, name, type FROM topics"):
                    conn = next((c for c in reader.connections
                                 if c.topic == name and c.msgtype == msgtype), None)
                    if conn is not None:
                        topics[tid] = conn
                self._dbs.append((path, db, topics))
        except sqlite3.Error as exc:
            self._close_dbs()
            raise ValueError(str(exc)) from None
        mapped = {id(c) for _, _, topics in self._dbs for c in topics.values()}
        if any(c.msgcount and id(c) not in mapped for c in reader.connections):
            self._close_dbs()
            raise ValueError("a connection has no row in the topics tables")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.reader, name)

    def messages(self, connections: Collection[Any] = (), start: int | None = None,
                 stop: int | None = None) -> Iterator[tuple[Any, int, bytes]]:
        """``(connection, log time, data)`` in log-time order, file after file (as
        rosbags); a row whose data cannot be read is skipped and counted."""
        wanted = {id(c) for c in (connections or self.reader.connections)}
        for path, db, topics in self._dbs:
            ids = [tid for tid, conn in topics.items() if id(conn) in wanted]
            if not ids:
                continue
            query = ["SELECT id, topic_id, timestamp FROM messages",
                     f"WHERE topic_id IN ({','.join('?' * len(ids))})"]
            args: list[int] = list(ids)
            if start is not None:
                query.append("AND timestamp >= ?")
                args.append(start)
            if stop is not None:
                query.append("AND timestamp < ?")
                args.append(stop)
            query.append("ORDER BY timestamp, id")
            for rowid, tid, log_time in db.execute(" ".join(query), args):
                try:
                    row = db.execute("SELECT data FROM messages WHERE id = ?",
                                     (rowid,)).fetchone()
                except sqlite3.DatabaseError as exc:
                    self.damage.add(Damage(path, rowid, str(exc), log_time, log_time,
                                           {topics[tid].topic: 1}, kind="message row"))
                    continue
                yield topics[tid], log_time, row[0]

    def close(self) -> None:
        self._close_dbs()
        self.reader.close()

    def _close_dbs(self) -> None:
        for _, db, _ in self._dbs:
            db.close()
        self._dbs = []
