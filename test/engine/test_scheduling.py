"""The scheduler on its own (no model, no worker): admission, turns and batches."""

from __future__ import annotations

import numpy as np
import pytest

from depth_pro_ros.engine.errors import EngineClosedError
from depth_pro_ros.engine.scheduling import Scheduler
from depth_pro_ros.engine.types import EngineStats, Frame


def _frame(source, size=(4, 6), meta=None) -> Frame:
    return Frame(np.zeros((*size, 3), np.uint8), source=source, meta=meta)


def _metas(batch) -> list:
    return [queued[0].meta for queued in batch]


def test_latest_keeps_the_newest_frame_of_each_source_and_counts_the_rest():
    stats = EngineStats()
    scheduler = Scheduler("latest", 4, stats)
    for meta in range(3):
        assert scheduler.put(_frame("a", meta=meta), 0.0, None)
    assert scheduler.put(_frame("b", meta="b0"), 0.0, None)
    assert scheduler.waiting == 2 and scheduler.in_flight == 2
    assert stats.submitted == 4 and stats.dropped == 2 and stats.dropped_by_source["a"] == 2
    assert _metas(scheduler.take(batch_size=2, block=False)) == [2, "b0"]
    assert scheduler.take(batch_size=2, block=False) is None


def test_latest_sources_take_turns_and_only_equal_sizes_share_a_batch():
    scheduler = Scheduler("latest", 4, EngineStats())
    scheduler.put(_frame("a", meta="a0"), 0.0, None)
    scheduler.put(_frame("b", size=(8, 6), meta="b0"), 0.0, None)
    scheduler.put(_frame("c", meta="c0"), 0.0, None)
    assert _metas(scheduler.take(4, False)) == ["a0", "c0"]  # b has another size
    scheduler.put(_frame("a", meta="a1"), 0.0, None)
    assert _metas(scheduler.take(4, False)) == ["b0"]  # b's turn comes before a's again
    assert _metas(scheduler.take(4, False)) == ["a1"]


def test_all_batches_consecutive_frames_and_keeps_groups_apart():
    scheduler = Scheduler("all", 8, EngineStats())
    for meta in range(3):
        scheduler.put(_frame(None, meta=meta), 0.0, None)
    assert scheduler.put_group([_frame(None, meta="g0"), _frame(None, meta="g1")], 0.0, None)
    assert _metas(scheduler.take(2, False)) == [0, 1]
    assert _metas(scheduler.take(4, False)) == [2]  # a group runs with no others
    assert _metas(scheduler.take(4, False)) == ["g0", "g1"]


def test_all_refuses_when_full_and_everything_refuses_once_closed():
    scheduler = Scheduler("all", 1, EngineStats())
    assert scheduler.put(_frame(None), 0.0, None)
    assert not scheduler.put(_frame(None), 0.0, timeout=0.01)
    scheduler.done()
    scheduler.close()
    with pytest.raises(EngineClosedError, match="closed"):
        scheduler.put(_frame(None), 0.0, None)
    with pytest.raises(RuntimeError):  # the error callers caught before stays catchable
        scheduler.put_group([_frame(None)], 0.0, None)
    assert scheduler.wait_idle(0.0)
