"""Rig mode for a live stream (the node): the cameras' frames grouped by stamp
(:class:`~depth_pro_ros.stream.rig.RigGrouper`) as they arrive, each released group run
as one joint forward (:class:`~depth_pro_ros.engine.rig.RigEngine`) on a worker thread.

:class:`RigWorker` offers the part of the ``DepthEngine`` interface a front end uses
(``submit``, ``recipe``, ``config``, ``stats``, ``reconfigure``, ``drain``, ``close``):
each view's result goes to ``on_result`` as the engine's do, and each group's poses and
missing cameras to ``on_group``. Like the engine's ``latest`` policy, only the newest
released group (by stamp) waits while the network is busy: an older one is dropped (its
frames counted in ``stats.dropped``), so latency never grows.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from depth_pro_ros.engine import DepthResult, EngineStats
from depth_pro_ros.engine.pipeline import FIXED_SETTINGS
from depth_pro_ros.stream.rig import RigGroup, RigGrouper

if TYPE_CHECKING:
    from depth_pro_ros.engine import Frame
    from depth_pro_ros.engine.rig import RigEngine, RigOutput

__all__ = ["RigWorker"]

_log = logging.getLogger(__name__)

GroupCallback = Callable[["RigGroup[Frame]", "RigOutput | None"], None]


class RigWorker:
    """Groups ``cameras``' frames (``Frame.meta`` a ``FrameContext``: its ``camera`` and
    ``stamp_ns``) within ``slop`` seconds and runs each group on ``rig``; see the module
    docstring. ``camera_to_rig``: each camera's known pose, or None. ``on_group(group,
    output)`` gets the group (its ``missing`` cameras) and the joint forward's output
    (None when it failed)."""

    def __init__(self, rig: RigEngine, cameras: Sequence[Hashable], slop: float,
                 on_result: Callable[[DepthResult], None],
                 on_group: GroupCallback | None = None,
                 camera_to_rig: dict[Hashable, np.ndarray] | None = None) -> None:
        self.rig, self.recipe = rig, rig.recipe
        # The model's name says rig mode: "Depth Anything 3 (small, any-view, rig of 3 cameras)".
        info = rig.recipe.info
        rig.recipe.info = dataclasses.replace(info, description=re.sub(
            r", input \d+\)$", f", rig of {len(cameras)} cameras)", info.description))
        self.stats = EngineStats()
        self._grouper: RigGrouper[Frame] = RigGrouper(cameras, slop)
        self._on_result, self._on_group = on_result, on_group
        self._poses = camera_to_rig
        self._cond = threading.Condition()
        self._waiting: RigGroup[Frame] | None = None
        self._busy = self._closing = False
        self._thread = threading.Thread(target=self._run, name="rig_worker", daemon=True)
        self._thread.start()

    @property
    def config(self):
        return self.rig.config

    def submit(self, frame: Frame, timeout: float | None = None) -> bool:
        """Add ``frame`` to its group; a group released by it is run next (never blocks).

        Raises:
            ValueError: a malformed frame, or one of a camera not in the rig.
        """
        frame.validate()
        with self._cond:
            self.stats.submitted += 1
            for group in self._grouper.add(frame.meta.camera, frame.meta.stamp_ns, frame):
                self._queue(group)
        return True

    def reconfigure(self, **changes) -> object:
        """Change output settings (as ``DepthEngine.reconfigure``) from the next group."""
        if FIXED_SETTINGS & changes.keys():
            raise ValueError(f"cannot change {sorted(FIXED_SETTINGS & changes.keys())} "
                             "while running")
        self.rig.config = dataclasses.replace(self.rig.config, **changes)
        return self.rig.config

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every released group has run (frames still in open groups wait)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._waiting is None and not self._busy,
                                       timeout)

    def close(self) -> None:
        """Run the open groups' newest, then stop and join the worker thread."""
        with self._cond:
            for group in self._grouper.flush():
                self._queue(group)
            self._closing = True
            self._cond.notify_all()
        self._thread.join()

    def _queue(self, group: RigGroup[Frame]) -> None:
        # The newest group by stamp only waits (latency never grows); a late frame's
        # group released after it is older and dropped instead.
        if self._waiting is not None and group.stamp_ns < self._waiting.stamp_ns:
            group, self._waiting = self._waiting, group
        if self._waiting is not None:
            for camera in self._waiting.views:
                self.stats.dropped += 1
                self.stats.dropped_by_source[camera] += 1
        self._waiting = group
        self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._waiting is not None or self._closing)
                group, self._waiting = self._waiting, None
                if group is None:
                    return
                self._busy = True
            try:
                self._process(group)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _process(self, group: RigGroup[Frame]) -> None:
        frames = list(group.views.values())
        poses = None if self._poses is None else [self._poses[c] for c in group.views]
        output = None
        try:
            output = self.rig.run(frames, poses)
            results = output.results
        except Exception as exc:  # noqa: BLE001 -- any failure becomes the frames' error
            results = [DepthResult(meta=f.meta, error=f"{type(exc).__name__}: {exc}")
                       for f in frames]
        with self._cond:
            self.stats.batch_sizes[len(frames)] += 1
            self.stats.processed += sum(r.ok for r in results)
            self.stats.failed += sum(not r.ok for r in results)
        for result in results:
            self._call(self._on_result, result)
        if self._on_group is not None:
            self._call(self._on_group, group, output)

    def _call(self, callback: Callable, *args) -> None:
        try:
            callback(*args)
        except Exception:  # a consumer's bug must not stop the worker or lose later groups
            self.stats.callback_errors += 1
            _log.exception("rig worker callback failed")
