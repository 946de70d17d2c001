"""Malformed metric anchors (PointCloud2 and depth images), for checking that a node with
``anchor_source points`` or ``depth`` survives them.

:class:`MalformedAnchors` yields :class:`harness.malformed.Case` objects whose messages
go to ``anchor_points`` (a PointCloud2 whose ``fields`` entry is a list of
``(name, offset, datatype, count)`` tuples) or ``anchor_depth`` (an Image). Layouts that
lie about their data: ``point_step`` 1, a thousand fields at offset 0, ``row_step`` that
disagrees, ``width * height`` that overflows 32 bits, fields past ``point_step``, unknown
datatypes, ``count`` 0 or huge, missing or repeated axes, data short or long; clouds and
depth images in another frame; NaN, infinities, negative and huge depths; wrong encodings
for depth images. :func:`build` makes the real message. The sizes stay small: a node
that trusted a layout would allocate from what it declares, not from what is sent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from harness.malformed import UINT32_MAX, VALID_H, VALID_W, Case, Message

__all__ = ["ANCHOR_SOURCES", "MalformedAnchors", "build"]

#: anchor_source parameter -> the topic its cases are sent on.
ANCHOR_SOURCES = {"points": "anchor_points", "depth": "anchor_depth"}
F32, F64, U8, I8, U16 = 7, 8, 2, 1, 4  # sensor_msgs/PointField datatypes
OTHER_FRAME = "lidar_link"


def build(message: Message) -> Any:
    """``message`` (topic ``anchor_points`` or ``anchor_depth``) as an rclpy message."""
    from sensor_msgs.msg import Image, PointCloud2, PointField

    msg = PointCloud2() if message.topic == "anchor_points" else Image()
    for name, value in message.fields.items():
        if name == "fields":
            value = [PointField(name=n, offset=o, datatype=d, count=c)
                     for n, o, d, c in value]
        setattr(msg, name, value)
    msg.header.stamp.sec, msg.header.stamp.nanosec = message.stamp
    msg.header.frame_id = message.frame_id
    return msg


def _xyz() -> list[tuple[str, int, int, int]]:
    """x, y, z float32 at offsets 0, 4, 8 (point_step 12 when honest)."""
    return [("x", 0, F32, 1), ("y", 4, F32, 1), ("z", 8, F32, 1)]


class MalformedAnchors:
    """Seeded source of malformed anchors for ``source`` (``points`` or ``depth``)."""

    def __init__(self, source: str, seed: int = 0, frame_id: str = "fuzz_optical") -> None:
        if source not in ANCHOR_SOURCES:
            raise ValueError(f"source must be one of {', '.join(ANCHOR_SOURCES)}")
        self.source, self.topic = source, ANCHOR_SOURCES[source]
        self.rng = np.random.default_rng(seed)
        self.frame_id = frame_id
        self._seq = 0
        self._cases = self._cloud_cases() if source == "points" else self._depth_cases()
        self._round: list[str] = []

    def kinds(self) -> list[str]:
        """Every kind of this source, sorted."""
        return sorted(self._cases)

    def case(self, kind: str) -> Case:
        """A case of ``kind`` (one of :meth:`kinds`), outside the rounds."""
        return Case(f"anchor_{self.source}/{kind}", tuple(self._cases[kind]()))

    def malformed(self) -> Case:
        """The next case (kinds in shuffled rounds)."""
        if not self._round:
            self._round.extend(str(k) for k in self.rng.permutation(self.kinds()))
        kind = self._round.pop()
        return Case(f"anchor_{self.source}/{kind}", tuple(self._cases[kind]()))

    # ------------------------------------------------------------- helpers
    def _message(self, fields: dict, frame_id: str | None = None) -> list[Message]:
        self._seq += 1
        return [Message(self.topic, fields, (2_000_000 + self._seq, 0),
                        frame_id or self.frame_id)]

    def _points(self, n: int, scale: float = 5.0) -> np.ndarray:
        """``n`` plausible points in front of the camera, float32 (n, 3)."""
        xyz = self.rng.normal(0.0, 1.0, (n, 3)).astype(np.float32)
        xyz[:, 2] = np.abs(xyz[:, 2]) * scale + 1.0
        return xyz

    def _cloud(self, height: int, width: int, fields, point_step: int, row_step: int,
               data: bytes, bigendian: int = 0, frame_id: str | None = None) -> list[Message]:
        return self._message({"height": height, "width": width, "fields": fields,
                              "point_step": point_step, "row_step": row_step,
                              "data": data, "is_bigendian": bigendian,
                              "is_dense": False}, frame_id)

    def _honest(self, xyz: np.ndarray, frame_id: str | None = None) -> list[Message]:
        n = len(xyz)
        return self._cloud(1, n, _xyz(), 12, 12 * n, xyz.astype("<f4").tobytes(),
                           frame_id=frame_id)

    # ------------------------------------------------------------- clouds
    def _cloud_cases(self) -> dict[str, Callable[[], list[Message]]]:
        n = 256

        def data(size: int) -> bytes:
            return self.rng.bytes(size)

        def many_fields() -> list[Message]:
            # The 300 kB cloud, at 30 kB: ~1000 fields at offset 0, point_step 1.
            fields = _xyz() + [(f"f{i}", 0, F32, 1) for i in range(1000)]
            size = 30_000
            return self._cloud(1, size, fields, 1, size, data(size))

        def values(kind: str) -> list[Message]:
            xyz = self._points(n)
            pick = self.rng.random(n) < 0.5
            bad = {"nan": np.nan, "inf": np.inf, "negative": -5.0, "huge": 3e38,
                   "zero": 0.0}[kind]
            xyz[pick, int(self.rng.integers(3))] = bad
            return self._honest(xyz)

        return {
            "point_step_1": lambda: self._cloud(1, n, _xyz(), 1, n, data(n)),
            "point_step_0": lambda: self._cloud(1, n, _xyz(), 0, 0, data(64)),
            "point_step_huge": lambda: self._cloud(1, 2, _xyz(), UINT32_MAX, UINT32_MAX,
                                                   data(64)),
            "many_fields_at_0": many_fields,
            "row_step_short": lambda: self._cloud(4, n // 4, _xyz(), 12, 12, data(12 * n)),
            "row_step_huge": lambda: self._cloud(4, n // 4, _xyz(), 12, UINT32_MAX,
                                                 data(12 * n)),
            "wh_overflow": lambda: self._cloud(UINT32_MAX, UINT32_MAX, _xyz(), 12,
                                               12 * UINT32_MAX % 2**32, data(1200)),
            "wh_large": lambda: self._cloud(65_536, 65_536, _xyz(), 12, 12 * 65_536,
                                            data(1200)),
            "field_past_step": lambda: self._cloud(
                1, n, [("x", 0, F32, 1), ("y", 4, F32, 1), ("z", 100, F32, 1)], 12, 12 * n,
                data(12 * n)),
            "datatype_99": lambda: self._cloud(
                1, n, [("x", 0, F32, 1), ("y", 4, 99, 1), ("z", 8, F32, 1)], 12, 12 * n,
                data(12 * n)),
            "datatype_0": lambda: self._cloud(
                1, n, [("x", 0, 0, 1), ("y", 4, F32, 1), ("z", 8, F32, 1)], 12, 12 * n,
                data(12 * n)),
            "count_0": lambda: self._cloud(
                1, n, [("x", 0, F32, 0), ("y", 4, F32, 1), ("z", 8, F32, 1)], 12, 12 * n,
                data(12 * n)),
            "count_huge": lambda: self._cloud(
                1, n, [("x", 0, F32, UINT32_MAX), ("y", 4, F32, 1), ("z", 8, F32, 1)], 12,
                12 * n, data(12 * n)),
            "offset_huge": lambda: self._cloud(
                1, n, [("x", UINT32_MAX, F32, 1), ("y", 4, F32, 1), ("z", 8, F32, 1)], 12,
                12 * n, data(12 * n)),
            "no_z": lambda: self._cloud(1, n, _xyz()[:2], 12, 12 * n, data(12 * n)),
            "x_twice": lambda: self._cloud(1, n, [*_xyz(), ("x", 0, F32, 1)], 12, 12 * n,
                                           data(12 * n)),
            "axes_overlap": lambda: self._cloud(
                1, n, [("x", 0, F32, 1), ("y", 0, F32, 1), ("z", 0, F32, 1)], 4, 4 * n,
                data(4 * n)),
            "no_fields": lambda: self._cloud(1, n, [], 12, 12 * n, data(12 * n)),
            "odd_names": lambda: self._cloud(
                1, n, [("x\0", 0, F32, 1), ("y" * 10_000, 4, F32, 1), ("", 8, F32, 1)], 12,
                12 * n, data(12 * n)),
            "data_short": lambda: self._cloud(1, n, _xyz(), 12, 12 * n, data(12 * n // 3)),
            "data_long": lambda: self._cloud(1, n, _xyz(), 12, 12 * n, data(12 * n * 20)),
            "empty": lambda: self._cloud(0, 0, _xyz(), 12, 0, b""),
            "int_types": lambda: self._cloud(
                1, n, [("x", 0, I8, 1), ("y", 1, U16, 1), ("z", 3, F64, 1)], 11, 11 * n,
                data(11 * n)),
            "bigendian_garbage": lambda: self._cloud(1, n, _xyz(), 12, 12 * n, data(12 * n),
                                                     bigendian=1),
            "other_frame": lambda: self._honest(self._points(n), OTHER_FRAME),
            "empty_frame": lambda: self._honest(self._points(n), ""),
            "nan": lambda: values("nan"),
            "inf": lambda: values("inf"),
            "negative": lambda: values("negative"),
            "huge_values": lambda: values("huge"),
            "zero": lambda: values("zero"),
            "random_bytes": lambda: self._honest(
                np.frombuffer(data(12 * n), np.float32).reshape(n, 3).copy()),
        }

    # ------------------------------------------------------------- depth images
    def _depth(self, encoding: str, h: int, w: int, step: int, data: bytes,
               bigendian: int = 0, frame_id: str | None = None) -> list[Message]:
        return self._message({"encoding": encoding, "height": h, "width": w, "step": step,
                              "data": data, "is_bigendian": bigendian}, frame_id)

    def _depth_cases(self) -> dict[str, Callable[[], list[Message]]]:
        h, w = VALID_H // 4, VALID_W // 4

        def metres(bad: float | None = None) -> np.ndarray:
            depth = (1.0 + 5.0 * self.rng.random((h, w))).astype(np.float32)
            if bad is not None:
                depth[self.rng.random((h, w)) < 0.5] = bad
            return depth

        def f32(depth: np.ndarray, **kw: Any) -> list[Message]:
            return self._depth("32FC1", h, w, 4 * w, depth.astype("<f4").tobytes(), **kw)

        def data(size: int) -> bytes:
            return self.rng.bytes(size)

        names = {"rgb8": "rgb8", "mono8": "mono8", "8UC1": "8UC1", "64FC1": "64FC1",
                 "32FC3": "32FC3", "16SC1": "16SC1", "32SC1": "32SC1",
                 "bayer_rggb8": "bayer_rggb8", "empty": "", "nul": "32FC1\0x",
                 "long": "x" * 1000}
        encodings = {f"encoding_{name}": (lambda e=e: self._depth(
            e, h, w, w * 4, data(h * w * 4))) for name, e in names.items()}
        return {
            **encodings,
            "step_short": lambda: self._depth("32FC1", h, w, 4, data(4 * h * w)),
            "step_huge": lambda: self._depth("32FC1", h, w, UINT32_MAX, data(4 * h * w)),
            "step_odd": lambda: self._depth("32FC1", h, w, 4 * w + 3, data(h * (4 * w + 3))),
            "data_short": lambda: self._depth("32FC1", h, w, 4 * w, data(4 * w)),
            "data_long": lambda: self._depth("32FC1", h, w, 4 * w, data(40 * h * w)),
            "wh_overflow": lambda: self._depth("32FC1", UINT32_MAX, UINT32_MAX, 4 * w,
                                               data(4 * h * w)),
            "wh_large": lambda: self._depth("16UC1", 60_000, 60_000, 120_000, data(1200)),
            "zero_size": lambda: self._depth("32FC1", 0, 0, 0, b""),
            "zero_width": lambda: self._depth("32FC1", h, 0, 0, b""),
            "bigendian_16uc1": lambda: self._depth(
                "16UC1", h, w, 2 * w, (1000 + 100 * self.rng.random((h, w))).astype(
                    ">u2").tobytes(), bigendian=1),
            "other_frame": lambda: f32(metres(), frame_id=OTHER_FRAME),
            "empty_frame": lambda: f32(metres(), frame_id=""),
            "nan": lambda: f32(metres(np.nan)),
            "inf": lambda: f32(metres(np.inf)),
            "negative": lambda: f32(metres(-3.0)),
            "huge_values": lambda: f32(metres(3e38)),
            "all_nan": lambda: f32(np.full((h, w), np.nan, np.float32)),
            "random_bytes": lambda: self._depth("32FC1", h, w, 4 * w, data(4 * h * w)),
            "mm_zero": lambda: self._depth("16UC1", h, w, 2 * w, bytes(2 * h * w)),
        }
