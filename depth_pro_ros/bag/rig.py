"""``depth-pro-ros bag --multiview rig``: the cameras' frames grouped by stamp
(:class:`~depth_pro_ros.stream.rig.RigGrouper`, ``--rig-slop``) and each group run as one
joint forward of an any-view Depth Anything 3 model
(:class:`~depth_pro_ros.engine.rig.RigEngine`), with the cameras' known poses of
``--rig-extrinsics`` (keyed by image topic).

:class:`RigBatches` stands in for the engine's ``BatchGrouper`` and :class:`RigBagEngine`
for the ``DepthEngine`` in :class:`~depth_pro_ros.bag.run.BagRun`: the pass over the bag,
its reorder queue and its writing stay the same. The joint forward runs synchronously in
``submit_batch``, so the output depends only on the messages: byte-identical between runs.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

from depth_pro_ros.bag.errors import BagInputError, BagSetupError
from depth_pro_ros.bag.summary import BagSummary
from depth_pro_ros.engine import DepthResult, EngineStats
from depth_pro_ros.stream.errors import RigConfigError
from depth_pro_ros.stream.rig import MULTIVIEW_MODES, RigGrouper, load_rig_extrinsics

if TYPE_CHECKING:
    import numpy as np

    from depth_pro_ros.engine import EngineConfig, Frame
    from depth_pro_ros.engine.rig import RigEngine

__all__ = ["MULTIVIEW_MODES", "RigBagEngine", "RigBatches", "check_multiview",
           "create_rig_engine"]


def check_multiview(multiview: str, slop: float) -> None:
    """Refuse a ``multiview`` mode or ``rig_slop`` the bag tool does not take.

    Raises:
        BagInputError: the setting and what it takes.
    """
    if multiview not in MULTIVIEW_MODES:
        raise BagInputError(f"--multiview must be one of {', '.join(MULTIVIEW_MODES)}, got "
                            f"{multiview!r}")
    if not (math.isfinite(slop) and slop >= 0.0):
        raise BagInputError(f"--rig-slop must be a number of seconds >= 0, got {slop}")


class RigBatches:
    """Frames grouped by stamp into rig groups (the ``BatchGrouper`` interface); each
    group and its missing cameras counted in ``summary``."""

    def __init__(self, slop: float, summary: BagSummary) -> None:
        self.summary = summary
        self._grouper: RigGrouper[Frame] = RigGrouper(range(len(summary.cameras)), slop)

    def add(self, frame: Frame) -> list[list[Frame]]:
        ctx = frame.meta
        return [self._count(g) for g in self._grouper.add(ctx.camera, ctx.stamp_ns, frame)]

    def flush(self) -> list[list[Frame]]:
        return [self._count(g) for g in self._grouper.flush()]

    def _count(self, group) -> list[Frame]:
        self.summary.rig_groups += 1
        for camera in group.missing:
            self.summary.cameras[camera].rig_missing += 1
        return list(group.views.values())


class RigBagEngine:
    """A :class:`~depth_pro_ros.engine.rig.RigEngine` behind the part of the
    ``DepthEngine`` interface the bag run uses; ``camera_to_rig`` per camera index, or
    None (the network estimates the cameras)."""

    def __init__(self, rig: RigEngine, camera_to_rig: list[np.ndarray] | None) -> None:
        self.rig, self.recipe, self.config = rig, rig.recipe, rig.config
        self.stats = EngineStats()
        self._poses = camera_to_rig
        self._results: deque[DepthResult] = deque()

    def submit_batch(self, frames: list[Frame], timeout: float | None = None) -> bool:
        """Run ``frames`` (one rig group) now; their results wait for :meth:`get`."""
        t0 = time.perf_counter()
        poses = None if self._poses is None else [self._poses[f.meta.camera] for f in frames]
        try:
            results = self.rig.run(frames, poses).results
        except Exception as exc:  # noqa: BLE001 -- any failure becomes the frames' error
            total = {"total": 1e3 * (time.perf_counter() - t0)}
            results = [DepthResult(meta=f.meta, error=f"{type(exc).__name__}: {exc}",
                                   timings_ms=total) for f in frames]
        self.stats.batch_sizes[len(frames)] += 1
        self.stats.processed += sum(r.ok for r in results)
        self.stats.failed += sum(not r.ok for r in results)
        self._results.extend(results)
        return True

    def get(self, timeout: float | None = None) -> DepthResult | None:
        return self._results.popleft() if self._results else None

    def drain(self, timeout: float | None = None) -> bool:
        return True

    def close(self) -> None:
        self._results.clear()


def create_rig_engine(checkpoint: Path, config: EngineConfig, model_type: str | None,
                      extrinsics: Path | None, topics: list[str]) -> RigBagEngine:
    """Load ``checkpoint`` for rig mode with the camera poses of the ``extrinsics`` file
    (keyed by the cameras' image ``topics``).

    Raises:
        BagInputError: an unusable ``--rig-extrinsics`` file.
        BagSetupError: a checkpoint that cannot be loaded or is not an any-view model.
    """
    from depth_pro_ros.engine import load_model
    from depth_pro_ros.engine.rig import RigEngine
    from depth_pro_ros.model import CheckpointError

    poses = None
    if extrinsics is not None:
        try:
            table = load_rig_extrinsics(extrinsics, topics)
        except RigConfigError as exc:
            raise BagInputError(f"--rig-extrinsics: {exc}") from None
        poses = [table[topic] for topic in topics]
    try:
        loaded = load_model(checkpoint, config.device, config.precision, model_type)
        rig = RigEngine(loaded.model, dataclasses.replace(
            config, device=str(loaded.device), precision=loaded.precision))
    except (CheckpointError, ValueError) as exc:
        raise BagSetupError(f"--multiview rig: {exc}") from None
    return RigBagEngine(rig, poses)
