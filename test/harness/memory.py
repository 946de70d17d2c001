"""Peak Python-heap allocation of a block, for tests that show a declared size was
refused before anything of that size was allocated (numpy reports its buffers to
tracemalloc, so arrays count too)."""

from __future__ import annotations

import contextlib
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Peak", "traced_peak"]


@dataclass
class Peak:
    """Filled in when the ``with`` block ends: the largest traced allocation, in bytes."""

    bytes: int = 0


@contextlib.contextmanager
def traced_peak() -> Iterator[Peak]:
    """``with traced_peak() as peak: ...``; afterwards ``peak.bytes`` is the block's peak
    traced memory (also when the block raised)."""
    peak = Peak()
    tracemalloc.start()
    try:
        yield peak
    finally:
        peak.bytes = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
