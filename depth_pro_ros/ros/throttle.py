"""Rate limiting of repeated error reports, keyed on the kind of problem.

A camera that sends garbage sends it at frame rate, and a fuzzer sends endless
variations of it (9,000 distinct unknown encodings are still one problem). The node
logs the first report of a kind, then at most one line per ``period`` seconds for that
kind, with the number of reports it held back. The table of kinds is bounded so that
an unbounded variety of keys cannot grow the process's memory.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

__all__ = ["ErrorThrottle"]


class ErrorThrottle:
    """Decide which reports to log. Thread-safe; time is passed in by the caller."""

    def __init__(self, period: float = 5.0, max_kinds: int = 256) -> None:
        if not period > 0.0 or max_kinds < 1:
            raise ValueError(f"need period > 0 and max_kinds >= 1, got {period}, {max_kinds}")
        self.period = float(period)
        self.max_kinds = int(max_kinds)
        # kind -> (time of the last logged report, reports held back since)
        self._kinds: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._kinds)

    def admit(self, kind: str, now: float) -> int | None:
        """Record a report of ``kind`` at ``now``.

        Returns None when it must be held back, else the number of reports of this kind
        held back since the last one logged (0 for the first).
        """
        with self._lock:
            last, held = self._kinds.get(kind, (None, 0))
            if last is not None and now - last < self.period:
                self._kinds[kind] = (last, held + 1)
                return None
            self._kinds[kind] = (now, 0)
            self._kinds.move_to_end(kind)
            while len(self._kinds) > self.max_kinds:
                self._kinds.popitem(last=False)  # the kind reported longest ago
            return held
