"""Rig mode's pure logic: grouping the cameras' frames by stamp, and the rig's known
extrinsics.

:class:`RigGrouper` collects, per group, one frame of each camera whose stamps all lie
within ``slop`` seconds of each other. A group is released as soon as it holds every
camera, or - with the views present - once a frame stamped more than ``slop`` after the
group's oldest frame arrives (no later frame can join it then), or on :meth:`flush`. Its
``missing`` cameras say which views it lacks (diagnostics, the bag summary). The grouping
depends only on the stamps and the order of the frames, never on timing, so a bag run is
reproducible.

:func:`load_rig_extrinsics` reads a YAML file mapping each camera to its 4 x 4
camera-to-rig transform (rows of 4 numbers).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np

from depth_pro_ros.stream.errors import RigConfigError

__all__ = ["MULTIVIEW_MODES", "ROTATION_TOLERANCE", "RigGroup", "RigGrouper",
           "load_rig_extrinsics"]

T = TypeVar("T")

#: Largest entry of |R^T R - I| accepted for a camera-to-rig rotation. Calibration tools
#: print rotations with 6+ decimals (|R^T R - I| ~ 1e-6); 1e-3 also takes a matrix typed
#: with 4 decimals, and it distorts lengths by at most 0.05 % (0.5 mm at 1 m, far below a
#: depth network's error), while a scaled (1 % off: 2e-2) or sheared matrix is refused.
#: ``multiview`` values: each frame alone, or the cameras' frames within the slop jointly.
#: Not "off": YAML 1.1 reads a bare off as false, which a string parameter refuses.
MULTIVIEW_MODES = ("single", "rig")
ROTATION_TOLERANCE = 1e-3


@dataclass
class RigGroup(Generic[T]):
    """The frames of one rig instant: ``views`` camera -> item, in the rig's camera order;
    ``missing`` the rig's cameras without a frame in the group; ``stamp_ns`` the oldest
    view's stamp."""

    stamp_ns: int
    views: dict[Hashable, T] = field(default_factory=dict)
    missing: tuple[Hashable, ...] = ()
    stamps: dict[Hashable, int] = field(default_factory=dict)


class RigGrouper(Generic[T]):
    """Groups frames of ``cameras`` whose stamps lie within ``slop`` seconds; see the
    module docstring. Not thread-safe: the caller holds its own lock."""

    def __init__(self, cameras: Sequence[Hashable], slop: float) -> None:
        if len(cameras) < 1 or len(set(cameras)) != len(cameras):
            raise ValueError(f"a rig needs distinct cameras, got {list(cameras)}")
        if not (math.isfinite(slop) and slop >= 0.0):
            raise ValueError(f"rig_slop must be a finite number of seconds >= 0, got {slop}")
        self.cameras = tuple(cameras)
        self._slop_ns = round(slop * 1e9)
        self._open: list[dict[Hashable, tuple[int, T]]] = []  # oldest first

    @property
    def held(self) -> int:
        """Frames waiting in open groups."""
        return sum(len(group) for group in self._open)

    def add(self, camera: Hashable, stamp_ns: int, item: T) -> list[RigGroup[T]]:
        """Add ``camera``'s frame stamped ``stamp_ns``; return the groups complete now
        (oldest first).

        Raises:
            ValueError: a camera that is not one of the rig's.
        """
        if camera not in self.cameras:
            raise ValueError(f"camera {camera!r} is not in the rig {list(self.cameras)}")
        # The frame joins the oldest open group without this camera that stays within
        # the slop with it; else it opens a group of its own.
        for group in self._open:
            stamps = [s for s, _ in group.values()] + [stamp_ns]
            if camera not in group and max(stamps) - min(stamps) <= self._slop_ns:
                group[camera] = (stamp_ns, item)
                break
        else:
            self._open.append({camera: (stamp_ns, item)})
        ready = [g for g in self._open if len(g) == len(self.cameras)
                 or stamp_ns - min(s for s, _ in g.values()) > self._slop_ns]
        self._open = [g for g in self._open if not any(g is r for r in ready)]
        return [self._release(g) for g in sorted(ready, key=_oldest)]

    def flush(self) -> list[RigGroup[T]]:
        """Every open group, oldest first; the grouper is empty afterwards."""
        groups = [self._release(g) for g in sorted(self._open, key=_oldest)]
        self._open = []
        return groups

    def _release(self, group: dict[Hashable, tuple[int, T]]) -> RigGroup[T]:
        present = [c for c in self.cameras if c in group]
        return RigGroup(stamp_ns=_oldest(group), views={c: group[c][1] for c in present},
                        missing=tuple(c for c in self.cameras if c not in group),
                        stamps={c: group[c][0] for c in present})


def _oldest(group: dict[Hashable, tuple[int, Any]]) -> int:
    return min(s for s, _ in group.values())


def load_rig_extrinsics(path: str | Path, cameras: Sequence[str]) -> dict[str, np.ndarray]:
    """The camera-to-rig transforms of a YAML file: a mapping of every camera of the rig
    to its 4 x 4 matrix (a list of 4 rows of 4 numbers, metres), as float64 arrays.

    Raises:
        RigConfigError: an unreadable file, a camera not in ``cameras`` or one of them
            missing, a matrix of the wrong shape, with non-finite entries, a last row other
            than 0 0 0 1 or a rotation that is not orthonormal with determinant +1 (within
            :data:`ROTATION_TOLERANCE`) - naming the file and the camera.
    """
    import yaml  # only rig mode reads YAML

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RigConfigError(f"rig_extrinsics {path}: cannot read it ({exc})") from exc
    if not isinstance(data, dict):
        raise RigConfigError(f"rig_extrinsics {path}: expected a mapping of camera names to "
                             f"4 x 4 camera-to-rig matrices, got {type(data).__name__}")
    unknown = [str(name) for name in data if name not in cameras]
    if unknown:
        raise RigConfigError(f"rig_extrinsics {path}: camera {unknown[0]!r} is not one of the "
                             f"rig's cameras {list(cameras)}")
    absent = [name for name in cameras if name not in data]
    if absent:
        raise RigConfigError(f"rig_extrinsics {path}: no transform for camera {absent[0]!r} "
                             "(the network takes known cameras only when all are known)")
    return {name: _rigid(data[name], path, name) for name in cameras}


def _rigid(value: Any, path: Path, camera: str) -> np.ndarray:
    """``value`` as a checked 4 x 4 rigid transform (see :func:`load_rig_extrinsics`)."""
    where = f"rig_extrinsics {path}, camera {camera!r}"
    try:
        matrix = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise RigConfigError(f"{where}: not a matrix of numbers ({exc})") from exc
    if matrix.shape != (4, 4):
        raise RigConfigError(f"{where}: expected 4 rows of 4 numbers, got shape "
                             f"{matrix.shape}")
    if not np.isfinite(matrix).all():
        raise RigConfigError(f"{where}: the matrix has non-finite entries")
    if not np.array_equal(matrix[3], [0.0, 0.0, 0.0, 1.0]):
        raise RigConfigError(f"{where}: the last row must be 0 0 0 1, got "
                             f"{matrix[3].tolist()}")
    rotation = matrix[:3, :3]
    error = float(np.abs(rotation.T @ rotation - np.eye(3)).max())
    if error > ROTATION_TOLERANCE or np.linalg.det(rotation) <= 0.0:
        raise RigConfigError(f"{where}: the upper-left 3 x 3 is not a rotation (|R^T R - I| "
                             f"up to {error:.3g}, determinant {np.linalg.det(rotation):.4g}; "
                             f"need orthonormal within {ROTATION_TOLERANCE:g}, determinant "
                             "+1)")
    return matrix
