"""Several cameras on one engine: per-source waiting slots, turns and cross-source batches.

Real forward passes of the tiny random-weight network on the CPU. A :class:`_Gate`
callback holds the worker inside each delivery until the test lets it go; the worker
takes its next batch only after the last result of the current one, so while a
delivery is held the test alone decides what is waiting when the worker next looks.
No test sleeps for ordering.

Batched and single runs agree within ``rtol = BATCH_RTOL`` (1e-4) on depth and the FoV
estimate: the measured largest relative difference of a batch of three against the
same frames one by one is 7e-7 (see
:func:`test_batched_and_unbatched_results_agree`).
"""

from __future__ import annotations

import queue
import threading
import zlib
from collections import Counter
from contextlib import contextmanager

import numpy as np
import pytest
from harness.engine import process_one
from model_factories import tiny_model

from depth_pro_ros.engine import DepthEngine, EngineConfig, FocalTracker, Frame, Intrinsics

WAIT = 120.0  # generous bound on any wait, so that a hung engine fails instead of hanging
SMALL, BIG = (48, 64), (60, 80)
K_SMALL = Intrinsics(fx=55.0, fy=56.0, cx=32.0, cy=24.0, width=64, height=48)
K_BIG = Intrinsics(fx=70.0, fy=72.0, cx=40.0, cy=30.0, width=80, height=60)
# Batched vs single on the CPU in fp32: batched convolutions and matmuls may sum in
# another order. Measured on a 2-core x86 CPU: largest relative depth difference
# 6.95e-07 over the three frames of the test below, FoV estimates identical. The
# tolerance leaves a margin of over 100x for other CPUs and thread counts.
BATCH_RTOL = 1e-4


@pytest.fixture(scope="module")
def model():
    return tiny_model().eval()


def _image(seed: int, size=SMALL, order: str = "rgb") -> np.ndarray:
    shape = size if order == "mono" else (*size, 3)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _frame(source, index: int, size=SMALL, order: str = "rgb", intrinsics=None,
           **kwargs) -> Frame:
    """A frame of ``source`` with its own pixels; ``meta`` is ``(source, index)``."""
    seed = 1000 * zlib.crc32(str(source).encode()) + index
    return Frame(image=_image(seed, size, order), channel_order=order,
                 intrinsics=intrinsics, meta=(source, index), source=source, **kwargs)


def _gate_frame(size=SMALL) -> Frame:
    """The first frame, whose delivery holds the worker (known focal: no FoV head)."""
    k = K_SMALL if size == SMALL else K_BIG
    return _frame("gate", 0, size, intrinsics=k)


class _Gate:
    """``on_result`` that holds the worker in every delivery until :meth:`step`."""

    def __init__(self) -> None:
        self._results: queue.Queue = queue.Queue()
        self._go = threading.Semaphore(0)
        self._open = threading.Event()
        self.delivered: list = []

    def __call__(self, result) -> None:
        self._results.put(result)
        if not self._open.is_set():
            self._go.acquire(timeout=WAIT)

    def next(self):
        """The next result; the worker is held in its delivery until :meth:`step`."""
        try:
            result = self._results.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError(f"no result within {WAIT} s") from None
        assert result.ok, result.error
        self.delivered.append(result)
        return result

    def step(self):
        """Let the held delivery finish and wait for the next one."""
        self._go.release()
        return self.next()

    def open(self) -> None:
        """Stop holding deliveries (also the one held now)."""
        self._open.set()
        self._go.release(1000)

    def finish(self, engine: DepthEngine) -> list:
        """Open the gate, let the engine drain and return the results not yet taken."""
        self.open()
        assert engine.drain(timeout=WAIT)
        rest = []
        while not self._results.empty():
            rest.append(self._results.get_nowait())
        assert all(r.ok for r in rest), [r.error for r in rest]
        self.delivered.extend(rest)
        return rest


@contextmanager
def _held_engine(model, **config):
    """A CPU engine with policy ``latest`` whose deliveries a :class:`_Gate` holds."""
    gate = _Gate()
    engine = DepthEngine(model, EngineConfig(device="cpu", policy="latest", **config),
                         on_result=gate)
    try:
        yield engine, gate
    finally:
        gate.open()
        engine.close()


def _metas(results) -> list:
    return [r.meta for r in results]


# ----------------------------------------------------------------------------------
def test_a_fast_source_replaces_only_its_own_waiting_frame(model):
    with _held_engine(model) as (engine, gate):
        assert engine.submit(_frame("fast", 0))
        assert gate.next().meta == ("fast", 0)  # the worker is held from here on
        for i in range(1, 4):
            assert engine.submit(_frame("fast", i))
        assert engine.submit(_frame("slow", 0))
        assert engine.waiting == 2  # one frame per source
        assert engine.stats.dropped == 2
        assert engine.stats.dropped_by_source == Counter({"fast": 2})
        gate.finish(engine)
        stats = engine.stats
    # The slow camera's frame, though submitted last, is served (first, by turn), and
    # of the fast camera's frames only the newest.
    assert _metas(gate.delivered) == [("fast", 0), ("slow", 0), ("fast", 3)]
    assert (stats.submitted, stats.processed, stats.dropped, stats.failed) == (5, 3, 2, 0)
    assert stats.dropped_by_source == Counter({"fast": 2})
    assert stats.dropped_by_source["slow"] == 0
    assert stats.batch_sizes == Counter({1: 3})


def test_sources_take_turns_so_a_fast_camera_never_starves_a_slow_one(model):
    """A fast camera has a new frame waiting at every turn (a burst of three each
    time); a slow one (another size, so they never share a batch) sends its next
    frame once the previous one is served. They are served alternately, and every
    frame of the slow camera is served."""
    fast, slow = [], []

    def submit(source: str, size, sent: list) -> None:
        sent.append(len(sent))
        assert engine.submit(_frame(source, sent[-1], size))

    with _held_engine(model, batch_size=2) as (engine, gate):
        submit("fast", SMALL, fast)
        served = [gate.next().meta]
        slow_waiting = False
        for _ in range(3):
            for _ in range(3):
                submit("fast", SMALL, fast)
            if not slow_waiting:
                submit("slow", BIG, slow)
                slow_waiting = True
            served.append(gate.step().meta)
            slow_waiting = served[-1][0] != "slow"
            # The fast camera's frame served is the newest it had sent.
            if served[-1][0] == "fast":
                assert served[-1] == ("fast", fast[-1])
        served += _metas(gate.finish(engine))
        stats = engine.stats
    assert [s for s, _ in served] == ["fast", "slow"] * 2 + ["fast"], served
    assert [i for s, i in served if s == "slow"] == slow == [0, 1]  # none dropped
    assert served[-1] == ("fast", fast[-1])
    assert stats.dropped_by_source == Counter({"fast": len(fast) - 3})
    assert stats.processed == 5 and stats.batch_sizes == Counter({1: 5})
    assert all(r.batch_size == 1 for r in gate.delivered)


def test_waiting_frames_of_equal_size_share_a_batch_up_to_batch_size(model):
    """batch_size 2 with seven sources waiting at once: three equal rgb frames give a
    batch of two, then one; a mono frame of the same size and two larger rgb frames
    never join them, though there is room; the two larger frames share a batch."""
    with _held_engine(model, batch_size=2) as (engine, gate):
        assert engine.submit(_gate_frame())
        gate.next()
        frames = [_frame(f"s{i}", 0) for i in range(3)] + [
            _frame("mono", 0, order="mono"),
            _frame("big0", 0, BIG),
            _frame("big1", 0, BIG, intrinsics=K_BIG),
        ]
        for frame in frames:
            assert engine.submit(frame)
        assert engine.waiting == len(frames)
        gate.finish(engine)
        stats = engine.stats
    results = gate.delivered
    batches = [[("gate", 0)], [("s0", 0), ("s1", 0)], [("s2", 0)], [("mono", 0)],
               [("big0", 0), ("big1", 0)]]
    assert _metas(results) == [m for batch in batches for m in batch]
    sizes = [len(batch) for batch in batches for _ in batch]
    assert [r.batch_size for r in results] == sizes
    assert stats.batch_sizes == Counter({1: 3, 2: 2})
    records = list(stats.recent_batches)
    assert [rec.size for rec in records] == [len(batch) for batch in batches]
    # Frames of one batch carry that batch's measured network time.
    at = 0
    for record in records:
        for result in results[at : at + record.size]:
            assert result.timings_ms["inference"] == record.timings_ms["inference"]
        at += record.size
    assert len({rec.timings_ms["inference"] for rec in records}) == len(records)
    for result, frame in zip(results[1:], frames):
        assert result.depth.shape == frame.image.shape[:2]


def test_batched_and_unbatched_results_agree(model):
    """Three cameras of equal size (known focal, estimated focal, known focal with the
    estimate too) as one batch of three vs one by one: depth, focal and FoV estimate
    agree within ``BATCH_RTOL`` = 1e-4 relative (measured: 7e-7 on depth)."""
    frames = [
        _frame("left", 0, intrinsics=K_SMALL),
        _frame("right", 0),
        _frame("rear", 0, intrinsics=K_SMALL.scaled_to(128, 96), estimate_fov=True),
    ]
    with DepthEngine(model, EngineConfig(device="cpu", policy="latest")) as engine:
        single = [process_one(engine, frame) for frame in frames]
        assert engine.stats.batch_sizes == Counter({1: 3})
    with _held_engine(model, batch_size=3) as (engine, gate):
        assert engine.submit(_gate_frame(BIG))
        gate.next()
        for frame in frames:
            assert engine.submit(frame)
        gate.finish(engine)
        assert engine.stats.batch_sizes == Counter({1: 1, 3: 1})
    batched = gate.delivered[1:]
    assert _metas(batched) == _metas(single) == [f.meta for f in frames]
    assert [r.batch_size for r in batched] == [3, 3, 3]
    assert len({r.timings_ms["inference"] for r in batched}) == 1  # one network run

    worst = 0.0
    for b, s in zip(batched, single):
        assert b.ok and s.ok, (b.error, s.error)
        assert b.focal_source == s.focal_source
        assert np.isfinite(b.depth).all() and np.ptp(s.depth) > 0.01 * np.median(s.depth)
        np.testing.assert_allclose(b.depth, s.depth, rtol=BATCH_RTOL, atol=0)
        worst = max(worst, float(np.max(np.abs(b.depth - s.depth) / np.abs(s.depth))))
        assert b.intrinsics.fx == pytest.approx(s.intrinsics.fx, rel=BATCH_RTOL)
        if s.fov_deg is not None:
            assert b.fov_deg == pytest.approx(s.fov_deg, rel=BATCH_RTOL)
            assert b.focal_estimate_px == pytest.approx(s.focal_estimate_px, rel=BATCH_RTOL)
    print(f"batched vs single: max relative depth difference {worst:.3g}")
    # The known-focal frame ran without the FoV head alone, with it in the batch.
    assert single[0].fov_deg is None and batched[0].fov_deg is None
    assert single[1].fov_deg is not None and single[2].fov_deg is not None


def test_each_source_focal_filter_sees_only_its_own_frames(model):
    """Two cameras of equal size (so they share batches), each with its own tracker:
    each EMA smooths only its own camera's estimates."""
    trackers = {s: FocalTracker("fov_head", ema_alpha=0.5) for s in ("left", "right")}
    seen: dict[str, list] = {s: [] for s in trackers}

    def focal_filter(source):
        def observe(f_px, width, height):
            seen[source].append(f_px)
            return trackers[source].observe_estimate(f_px, width, height)
        return observe

    def submit_pair(index: int) -> None:
        for source in trackers:
            assert engine.submit(_frame(source, index, focal_filter=focal_filter(source)))

    with _held_engine(model, batch_size=2) as (engine, gate):
        assert engine.submit(_gate_frame())
        gate.next()
        submit_pair(0)
        gate.step()  # the first pair is taken as one batch: queue the second
        submit_pair(1)
        gate.finish(engine)
        assert engine.stats.batch_sizes == Counter({1: 1, 2: 2})
    results = {r.meta: r for r in gate.delivered[1:]}
    assert set(results) == {(s, i) for s in trackers for i in range(2)}
    assert all(r.batch_size == 2 for r in results.values())
    for source, tracker in trackers.items():
        raw = [results[(source, i)].focal_estimate_px for i in range(2)]
        assert seen[source] == raw  # only its own frames, in order
        assert tracker.ema.count == 2
        assert results[(source, 0)].intrinsics.fx == pytest.approx(raw[0], rel=1e-9)
        assert results[(source, 1)].intrinsics.fx == pytest.approx(
            0.5 * raw[0] + 0.5 * raw[1], rel=1e-9)
    # The estimates differ (by far more than the tolerances above), so a filter that
    # saw the other camera's frames would have shown.
    assert abs(seen["left"][0] - seen["right"][0]) > 1e-5 * seen["left"][0]
    assert abs(seen["left"][1] - seen["left"][0]) > 1e-5 * seen["left"][0]
