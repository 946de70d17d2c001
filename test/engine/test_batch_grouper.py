"""``BatchGrouper``: deterministic batches across cameras for offline runs (no network)."""

from __future__ import annotations

import numpy as np
import pytest

from depth_pro_ros.engine import Frame
from depth_pro_ros.engine.batch import BatchGrouper, batch_key

# Frame kinds: (image size, channel order). Equal kinds may share a batch, no others.
KINDS = {
    "a": ((48, 64), "rgb"),
    "b": ((60, 80), "rgb"),
    "m": ((48, 64), "mono"),  # the size of "a", another channel order
    "g": ((48, 64), "bgr"),
}


def _frame(name: str) -> Frame:
    """A frame named like ``a1``: kind ``a``, used as ``meta``."""
    size, order = KINDS[name[0]]
    shape = size if order == "mono" else (*size, 3)
    return Frame(np.zeros(shape, np.uint8), channel_order=order, meta=name,
                 source=f"camera {name}")


def _names(batches) -> list[list[str]]:
    return [[f.meta for f in batch] for batch in batches]


def _feed(grouper: BatchGrouper, names: list[str]) -> list[list[list[str]]]:
    """What each ``add`` returns, as frame names."""
    return [_names(grouper.add(_frame(name))) for name in names]


def test_a_group_is_released_when_it_reaches_max_size():
    grouper = BatchGrouper(max_size=3, max_wait=100)
    frames = [_frame(f"a{i}") for i in range(7)]
    out = [grouper.add(f) for f in frames]
    assert [len(batches) for batches in out] == [0, 0, 1, 0, 0, 1, 0]
    assert out[2] == [frames[0:3]] and out[5] == [frames[3:6]]
    assert all(x is y for x, y in zip(out[2][0], frames[0:3]))  # the frames themselves
    assert grouper.held == 1
    assert grouper.flush() == [frames[6:]]


def test_max_size_one_releases_every_frame_at_once():
    grouper = BatchGrouper(max_size=1, max_wait=5)
    assert _feed(grouper, ["a0", "b0", "a1"]) == [[["a0"]], [["b0"]], [["a1"]]]
    assert grouper.held == 0 and grouper.flush() == []


def test_interleaved_kinds_are_grouped_per_kind():
    grouper = BatchGrouper(max_size=2, max_wait=100)
    out = _feed(grouper, ["a0", "b0", "m0", "g0", "a1", "m1", "b1", "a2", "g1"])
    assert out == [[], [], [], [], [["a0", "a1"]], [["m0", "m1"]], [["b0", "b1"]], [],
                   [["g0", "g1"]]]
    assert grouper.held == 1
    assert _names(grouper.flush()) == [["a2"]]


def test_a_group_is_released_once_max_wait_later_frames_came():
    grouper = BatchGrouper(max_size=4, max_wait=3)
    # a0 has seen two later frames: still held; the third releases it.
    assert _feed(grouper, ["a0", "b0", "b1"]) == [[], [], []]
    assert _feed(grouper, ["b2"]) == [[["a0"]]]
    assert grouper.held == 3
    # A frame of the waiting group's own kind joins it before the release.
    grouper = BatchGrouper(max_size=4, max_wait=3)
    assert _feed(grouper, ["a0", "b0", "b1", "a1"]) == [[], [], [], [["a0", "a1"]]]
    # The wait counts from the group's first frame, not its last.
    grouper = BatchGrouper(max_size=10, max_wait=2)
    assert _feed(grouper, ["a0", "a1", "a2"]) == [[], [], [["a0", "a1", "a2"]]]


def test_groups_ready_at_once_come_oldest_first():
    grouper = BatchGrouper(max_size=2, max_wait=3)
    # At b1, the b group is full and the older a group has waited three frames.
    assert _feed(grouper, ["a0", "b0", "m0", "b1"]) == [[], [], [], [["a0"], ["b0", "b1"]]]
    assert _names(grouper.flush()) == [["m0"]]


def test_flush_returns_open_groups_oldest_first_and_empties_the_grouper():
    grouper = BatchGrouper(max_size=2, max_wait=100)
    # The a group closes at a1; a2 opens a new a group, younger than b's and m's.
    assert _feed(grouper, ["a0", "b0", "a1", "m0", "a2"]) == [[], [], [["a0", "a1"]], [], []]
    assert grouper.held == 3
    assert _names(grouper.flush()) == [["b0"], ["m0"], ["a2"]]
    assert grouper.held == 0 and grouper.flush() == []
    # Usable again afterwards, counting from scratch.
    assert _feed(grouper, ["b1", "b2"]) == [[], [["b1", "b2"]]]


def _random_stream(n: int, seed: int) -> list[str]:
    """Three cameras, one changing size and channel order, interleaved irregularly."""
    rng = np.random.default_rng(seed)
    return [f"{rng.choice(list(KINDS))}{i}" for i in range(n)]


def _run(names: list[str], max_size: int, max_wait: int) -> list[tuple[int, list[str]]]:
    """(index of the add that released it, or len(names) for flush, batch names)."""
    grouper = BatchGrouper(max_size, max_wait)
    released = []
    for i, name in enumerate(names):
        released += [(i, batch) for batch in _names(grouper.add(_frame(name)))]
    return released + [(len(names), batch) for batch in _names(grouper.flush())]


@pytest.mark.parametrize("max_size, max_wait", [(2, 3), (3, 5), (4, 1), (8, 16)])
def test_grouping_depends_only_on_the_order_of_the_frames(max_size, max_wait):
    names = _random_stream(80, seed=max_size * 100 + max_wait)
    first = _run(names, max_size, max_wait)
    assert _run(list(names), max_size, max_wait) == first  # fresh frames, same batches
    # Every frame exactly once, in order within its batch; batches of one kind, at most
    # max_size, and none held while more than max_wait later frames came.
    position = {name: i for i, name in enumerate(names)}
    assert sorted(n for _, batch in first for n in batch) == sorted(names)
    for released_at, batch in first:
        assert 1 <= len(batch) <= max_size
        assert len({batch_key(_frame(n)) for n in batch}) == 1
        at = [position[n] for n in batch]
        assert at == sorted(at)
        if released_at < len(names):
            assert released_at - at[0] <= max_wait
            assert len(batch) == max_size or released_at - at[0] == max_wait


@pytest.mark.parametrize("max_size, max_wait", [(0, 1), (1, 0), (-1, 4), (4, -2), (0, 0)])
def test_invalid_arguments_raise(max_size, max_wait):
    with pytest.raises(ValueError, match="max_size"):
        BatchGrouper(max_size, max_wait)


def test_a_camera_that_changes_size_releases_its_earlier_frames_first():
    """Its frames must reach the engine in order (its focal EMA sees them in order)."""
    grouper = BatchGrouper(max_size=4, max_wait=100)

    def add(name: str, source: str) -> list[list[str]]:
        frame = _frame(name)
        frame.source = source
        return _names(grouper.add(frame))

    assert add("a0", "left") == [] and add("a1", "right") == []
    # right changed size: the group holding right's a1 (and left's a0) goes at once.
    assert add("b0", "right") == [["a0", "a1"]]
    assert add("b1", "left") == []  # left's earlier frame went with the a group
    assert add("a2", "left") == [["b0", "b1"]]
    assert _names(grouper.flush()) == [["a2"]]
