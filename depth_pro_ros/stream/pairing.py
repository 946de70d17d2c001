"""Pairing an image with a message of another topic by stamp (CameraInfo, anchors).

:class:`StampedHistory` keeps the last messages of a topic with their header stamp and
the time they were received, and finds the one that pairs with an image: ``exact``
(identical stamp), ``approximate`` (nearest stamp within a slop) or ``latest`` (the
newest received by the image's time).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator
from typing import Generic, TypeVar

__all__ = ["SYNC_MODES", "StampedHistory"]

#: How an image is paired with a message of another topic.
SYNC_MODES = ("exact", "approximate", "latest")

T = TypeVar("T")


class StampedHistory(Generic[T]):
    """The last ``limit`` items of a topic (None: all), by arrival and by stamp.

    Not thread-safe: the caller holds its own lock.
    """

    def __init__(self, limit: int | None = 64) -> None:
        self._limit = limit
        self._items: list[tuple[int, float, T]] = []  # (stamp, received, item), arrival order
        self._received: list[float] = []  # their arrival times, for bisection
        self._by_stamp: list[tuple[int, int, T]] = []  # (stamp, seq, item)
        self._seq = 0

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[T]:
        return (item for _, _, item in self._items)

    @property
    def newest(self) -> T | None:
        """The item that arrived last (None when empty)."""
        return self._items[-1][2] if self._items else None

    def add(self, stamp_ns: int, received: float, item: T) -> None:
        self._seq += 1
        self._items.append((stamp_ns, received, item))
        self._received.append(received)
        bisect.insort(self._by_stamp, (stamp_ns, self._seq, item))
        if self._limit is not None and len(self._items) > self._limit:
            _, _, oldest = self._items.pop(0)
            self._received.pop(0)
            self._by_stamp = [entry for entry in self._by_stamp if entry[2] is not oldest]

    def pair(self, mode: str, stamp_ns: int, received: float, slop: float = 0.0) -> T | None:
        """The item that pairs with an image stamped ``stamp_ns`` and received at
        ``received`` (``slop`` in seconds, for ``approximate``), or None."""
        if not self._items:
            return None
        if mode == "latest":
            # Newest item received by ``received`` (a bag holds later ones too).
            idx = bisect.bisect_right(self._received, received) - 1
            return self._items[idx][2] if idx >= 0 else None
        slop_ns = 0 if mode == "exact" else round(slop * 1e9)
        # Candidates: the last item stamped at or before the image, the first after.
        idx = bisect.bisect_right(self._by_stamp, (stamp_ns, math.inf))
        candidates = [self._by_stamp[i] for i in (idx - 1, idx) if 0 <= i < len(self._by_stamp)]
        best = min(candidates, key=lambda entry: abs(entry[0] - stamp_ns))
        return best[2] if abs(best[0] - stamp_ns) <= slop_ns else None
