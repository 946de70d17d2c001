"""Which frames the engine's worker runs next, and how many are still in flight.

With policy ``all`` frames wait in one inbox in submission order; consecutive frames of
equal :func:`~depth_pro_ros.engine.batch.batch_key` form a batch (frames of one
``submit_batch`` call run together and with no others). With policy ``latest`` each
source has one waiting slot: a new frame replaces only its own source's waiting frame,
so a fast camera never pushes a slow one's frames out. The worker serves the sources in
turn (round robin: the first source with a waiting frame after the one served last leads
the batch) and adds the waiting frames of the other sources that share the leader's key.
A batch holds what is waiting when the worker asks: it never waits to fill.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Hashable

from depth_pro_ros.engine.batch import batch_key
from depth_pro_ros.engine.errors import EngineClosedError
from depth_pro_ros.engine.types import EngineStats, Frame

__all__ = ["Queued", "Scheduler"]

#: A waiting frame: (frame, perf_counter() at submit, submit_batch group or None).
Queued = tuple[Frame, float, int | None]


class Scheduler:
    """Admission, batching and in-flight accounting of an engine's frames (thread-safe).

    ``lock`` guards this object, and the engine also guards its results and ``stats``
    with it. ``in_flight`` counts frames submitted and neither delivered nor dropped;
    the engine calls :meth:`done` once per delivered frame.
    """

    def __init__(self, policy: str, queue_size: int, stats: EngineStats) -> None:
        self.lock = threading.Condition()
        self.closing = False
        self.in_flight = 0
        self._policy, self._queue_size, self._stats = policy, queue_size, stats
        self._inbox: deque[Queued] = deque()  # policy "all", in submission order
        # Policy "latest": the waiting frame of each source, and the sources' turn order.
        self._latest: dict[Hashable, Queued] = {}
        self._sources: dict[Hashable, None] = {}
        self._turn = 0
        self._groups = 0  # submit_batch calls so far

    @property
    def waiting(self) -> int:
        """Frames submitted but not yet taken by the worker."""
        with self.lock:
            return len(self._inbox) + len(self._latest)

    def put(self, frame: Frame, now: float, timeout: float | None) -> bool:
        """Queue one frame (see the module docstring); False when policy ``all`` found no
        room within ``timeout``.

        Raises:
            EngineClosedError: the engine is closed, or was closed while this call waited.
        """
        with self.lock:
            self._check_open()
            if self._policy == "latest":
                if self._latest.pop(frame.source, None) is not None:
                    self._stats.dropped += 1  # replaced: keep only the newest of a source
                    self._stats.dropped_by_source[frame.source] += 1
                    self.in_flight -= 1
                self._sources.setdefault(frame.source)
                self._latest[frame.source] = (frame, now, None)
            else:
                if not self.lock.wait_for(
                    lambda: len(self._inbox) < self._queue_size or self.closing, timeout
                ):
                    return False
                self._check_open()  # closed while this call waited for room
                self._inbox.append((frame, now, None))
            self._admitted(1)
        return True

    def put_group(self, frames: list[Frame], now: float, timeout: float | None) -> bool:
        """Queue ``frames`` (policy ``all``) to run as one batch; waits for room for all of
        them (the queue may exceed ``queue_size`` for a larger group)."""
        room = max(self._queue_size, len(frames))
        with self.lock:
            if not self.lock.wait_for(
                lambda: len(self._inbox) + len(frames) <= room or self.closing, timeout
            ):
                return False
            self._check_open()
            self._groups += 1
            self._inbox.extend((frame, now, self._groups) for frame in frames)
            self._admitted(len(frames))
        return True

    def take(self, batch_size: int, block: bool) -> list[Queued] | None:
        """The next batch of at most ``batch_size`` frames, or None when nothing waits
        (``block``: wait until something does or the engine closes)."""
        with self.lock:
            if block:
                self.lock.wait_for(lambda: self._inbox or self._latest or self.closing)
            if self._latest:
                return self._take_turn(batch_size)
            if not self._inbox:
                return None
            batch = [self._inbox.popleft()]
            key, group = batch_key(batch[0][0]), batch[0][2]
            # Frames of one submit_batch call run together and with no others.
            while (
                len(batch) < batch_size
                and self._inbox
                and self._inbox[0][2] == group
                and batch_key(self._inbox[0][0]) == key
            ):
                batch.append(self._inbox.popleft())
            self.lock.notify_all()  # room in the inbox for a blocked submit
            return batch

    def done(self, frames: int = 1) -> None:
        """``frames`` left the engine (delivered or failed)."""
        with self.lock:
            self.in_flight -= frames
            self.lock.notify_all()

    def wait_idle(self, timeout: float | None) -> bool:
        """Wait until no frame is in flight; False on timeout."""
        with self.lock:
            return self.lock.wait_for(lambda: self.in_flight == 0, timeout)

    def close(self) -> None:
        """Refuse new frames and wake everyone waiting (the worker finishes the rest)."""
        with self.lock:
            self.closing = True
            self.lock.notify_all()

    def _take_turn(self, batch_size: int) -> list[Queued]:
        """Policy "latest": the next source in turn with a waiting frame, plus the waiting
        frames of the sources after it that share its batch key (caller holds the lock)."""
        sources = list(self._sources)
        turn = [sources[(self._turn + i) % len(sources)] for i in range(len(sources))]
        ready = [s for s in turn if s in self._latest]
        leader = ready[0]
        batch = [self._latest.pop(leader)]
        key = batch_key(batch[0][0])
        for source in ready[1:]:
            if len(batch) >= batch_size:
                break
            if batch_key(self._latest[source][0]) == key:
                batch.append(self._latest.pop(source))
        self._turn = sources.index(leader) + 1  # not mod len: a new source is next
        return batch

    def _check_open(self) -> None:
        if self.closing:
            raise EngineClosedError("the engine is closed")

    def _admitted(self, frames: int) -> None:
        self._stats.submitted += frames
        self.in_flight += frames
        self.lock.notify_all()
