"""The pass over a bag: each camera's messages through its
:class:`~depth_pro_ros.stream.session.CameraSession` into the engine, and the results
written in log-time order among the copied messages.

The engine returns results in submission order per batch, but batches mix cameras, so
each frame waits in a :class:`_Slot`, found again by its context (camera, ``seq``), in
its place among the messages to write.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from depth_pro_ros.bag.errors import BagDataError, describe_exception
from depth_pro_ros.bag.options import BagOptions
from depth_pro_ros.bag.reader import Camera
from depth_pro_ros.bag.recovery import InputBag
from depth_pro_ros.bag.rig import RigBatches
from depth_pro_ros.bag.summary import BagSummary
from depth_pro_ros.bag.writer import OutputBag
from depth_pro_ros.stream import FrameContext, FrameSkipped
from depth_pro_ros.stream.outputs import topics_for
from depth_pro_ros.stream.session import CameraSession

if TYPE_CHECKING:
    from rosbags.interfaces import Connection

    from depth_pro_ros.engine import DepthEngine, DepthResult, Frame
    from depth_pro_ros.engine.types import AnchorOutcome

__all__ = ["BagRun", "load_camera_info"]

#: How many skipped frames per reason are reported one by one before going quiet.
REPORT_SKIPS = 5

# A copied message waiting to be written: (output connection, log time, raw bytes).
_Copy = tuple[Any, int, Any]


@dataclass
class _Slot:
    """A frame waiting for its depth, in its place among the messages to write."""

    camera: int
    index: int  # the image message's index on its topic
    log_time: int
    result: DepthResult | None = None


class BagRun:
    """State of one run: cameras, sessions, output connections, the reorder queue."""

    def __init__(self, opts: BagOptions, reader: InputBag, cameras: list[Camera],
                 sessions: list[CameraSession], out: OutputBag, engine: DepthEngine,
                 summary: BagSummary, report: Callable[[str], None]) -> None:
        self.opts, self.reader, self.cameras, self.out = opts, reader, cameras, out
        self.engine, self.summary, self.report = engine, summary, report
        self.sessions = sessions
        self.model = engine.recipe.info
        self.options = opts.output_options
        from depth_pro_ros.engine.batch import BatchGrouper

        self.pending: deque[_Slot | _Copy] = deque()
        self.slots: dict[tuple[int, int], _Slot] = {}  # by (camera, seq) of their frame
        self.outstanding = 0
        # A camera's frames wait for a full batch at most while every camera adds a batch.
        batch = engine.config.batch_size
        self.grouper = RigBatches(opts.rig_slop, summary) if opts.multiview == "rig" else (
            BatchGrouper(batch, max_wait=batch * len(cameras)))
        self.progress: Callable[[], None] = lambda: None
        # Per camera, the CameraInfo messages whose intrinsics went into a written frame
        # (by identity: the streams keep every CameraInfo of the bag, history=None).
        self.infos_used: list[dict[int, Any]] = [{} for _ in cameras]
        rows = topics_for(self.model.kind, self.options)
        self.connections = [out.add_outputs(cam.output_topic, rows) for cam in cameras]

    # ------------------------------------------------------------- main pass
    def image(self, cam_index: int, index: int, conn: Connection, log_time: int,
              raw: Any) -> None:
        cam, stats = self.cameras[cam_index], self.summary.cameras[cam_index]
        session = self.sessions[cam_index]
        stats.frames_in += 1
        try:
            msg = self.reader.deserialize(raw, conn.msgtype)
        except Exception as exc:  # noqa: BLE001 -- any undecodable message
            self.skip(cam_index, index, log_time, "deserialize", f"cannot deserialize: {exc}")
            return
        try:
            (frame,) = session.add_image(msg, log_time * 1e-9)  # hold_unpaired is off
        except FrameSkipped as exc:
            self.skip(cam_index, index, log_time, exc.reason, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 -- a decoder bug must not end the run
            self.skip(cam_index, index, log_time, "decode",
                      f"cannot be decoded ({describe_exception(exc)})")
            return
        finally:
            self.notes(cam_index)
            warnings = session.stream.pop_warnings()
            if warnings:
                stats.decoder_warnings += 1
                if stats.decoder_warnings <= REPORT_SKIPS:
                    self.report(f"{cam.image_topic} message #{index}: the decoder complained "
                                f"({'; '.join(warnings)}); the frame is used")
        stats.last_width = frame.image.shape[1]
        ctx: FrameContext = frame.meta
        slot = _Slot(cam_index, index, log_time)
        self.slots[(cam_index, ctx.seq)] = slot
        self.pending.append(slot)
        self.outstanding += 1
        for group in self.grouper.add(frame):
            self.submit(group)

    def anchor(self, cam_index: int, conn: Connection, log_time: int, raw: Any) -> None:
        stats = self.summary.cameras[cam_index]
        where = f"{stats.anchor_topic} message at log time {log_time * 1e-9:.9f} s"
        try:
            msg = self.reader.deserialize(raw, conn.msgtype)
            self.sessions[cam_index].add_anchor(msg, log_time * 1e-9)
        except Exception as exc:  # noqa: BLE001 -- any unreadable anchor is skipped
            text = str(exc) if isinstance(exc, ValueError) else describe_exception(exc)
            if self.opts.strict:
                raise BagDataError(f"{where}: {text} (--strict)") from None
            stats.anchor["unreadable"] += 1
            if stats.anchor["unreadable"] <= REPORT_SKIPS:
                self.report(f"{where}: {text}")

    def copy(self, conn: Connection, log_time: int, raw: Any, connmap: dict,
             convmap: dict) -> None:
        item = (connmap[(conn.id, conn.owner)], log_time, convmap[conn.msgtype](raw))
        self.summary.copied += 1
        if self.pending:
            self.pending.append(item)
        else:
            self.out.write_raw(*item)

    def skip(self, cam_index: int, index: int, log_time: int, reason: str, text: str) -> None:
        cam, stats = self.cameras[cam_index], self.summary.cameras[cam_index]
        since = ", counting from --start" if self.opts.start is not None else ""
        where = f"{cam.image_topic} message #{index} (log time {log_time * 1e-9:.9f} s{since})"
        if self.opts.strict:
            raise BagDataError(f"{where}: {text} (--strict)")
        stats.skipped[reason] += 1
        if stats.skipped[reason] <= REPORT_SKIPS:
            more = " (further ones are only counted)" if stats.skipped[reason] == REPORT_SKIPS \
                else ""
            self.report(f"skipped {where}: {text}{more}")
        self.progress()

    def notes(self, cam_index: int) -> None:
        """Report the camera's focal source and anchoring switches."""
        topic = self.cameras[cam_index].image_topic
        for note in self.sessions[cam_index].pop_notes():
            self.report(f"{topic}: {note}")

    def submit(self, group: list[Frame]) -> None:
        while not self.engine.submit_batch(group, timeout=0.2):
            self.collect()
        self.collect()

    def collect(self, timeout: float = 0.0) -> None:
        while (result := self.engine.get(timeout=timeout)) is not None:
            ctx: FrameContext = result.meta
            self.slots.pop((ctx.camera, ctx.seq)).result = result
            self.outstanding -= 1
            self.flush()
            timeout = 0.0

    def flush(self) -> None:
        while self.pending:
            item = self.pending[0]
            if isinstance(item, _Slot):
                if item.result is None:
                    return
                self.write_result(item)
            else:
                self.out.write_raw(*item)
            self.pending.popleft()

    def finish(self) -> None:
        for group in self.grouper.flush():
            self.submit(group)
        while self.outstanding:
            self.collect(timeout=0.5)
        self.flush()

    def write_result(self, slot: _Slot) -> None:
        result, cam_index = slot.result, slot.camera
        session = self.sessions[cam_index]
        if result.ok and session.anchor is not None:
            self.anchor_outcome(cam_index, result.anchor)
        try:
            messages = session.outputs(result, self.options)
        except FrameSkipped as exc:
            self.skip(cam_index, slot.index, slot.log_time, exc.reason, str(exc))
            return
        ctx: FrameContext = result.meta
        header = self.out.header(ctx.stamp_ns, getattr(ctx.header, "frame_id", ""))
        conns = self.connections[cam_index]
        for message in messages:
            self.out.write_fields(conns[message.topic], slot.log_time, header, message.fields)
        stats = self.summary.cameras[cam_index]
        stats.frames_out += 1
        stats.focal[result.focal_source.value if result.focal_source else "none"] += 1
        if ctx.camera_info is not None:
            used = self.infos_used[cam_index]
            used[id(ctx.camera_info)] = ctx.camera_info
            stats.camera_info["used"] = len(used)
        self.progress()

    def anchor_outcome(self, cam_index: int, outcome: AnchorOutcome | None) -> None:
        stats, anchors = self.summary.cameras[cam_index], self.sessions[cam_index].anchor
        topic = self.cameras[cam_index].image_topic
        self.notes(cam_index)
        for problem in anchors.pop_problems():
            stats.anchor["problems"] += 1
            if stats.anchor["problems"] <= REPORT_SKIPS:
                self.report(f"{topic}: {problem}")
        if self.model.needs_prompt:  # the anchor was the frame's prompt
            stats.anchor["anchored"] += 1
            return
        if outcome is not None and outcome.fit is not None:
            stats.anchor["fits_ok" if outcome.fit.ok else "fits_rejected"] += 1
            if outcome.fit.ok:
                stats.anchor_residuals.append(outcome.fit.residual)
        if outcome is None or outcome.scale is None:
            stats.anchor["unanchored"] += 1
        else:
            stats.anchor["anchored"] += 1
            stats.anchor_scales.append(outcome.scale)


def load_camera_info(opts: BagOptions, reader: InputBag, cameras: list[Camera],
                     sessions: list[CameraSession], summary: BagSummary,
                     report: Callable[[str], None], start: int | None = None,
                     stop: int | None = None) -> None:
    """The pre-pass: every CameraInfo of each camera, received at its log time (those
    logged outside the window too: a frame near its edge may pair with one of them).
    Only the problems of those logged inside the window [start, stop) are counted and
    reported; ``used`` is counted as frames are written (``BagRun.write_result``)."""
    for cam, session, stats in zip(cameras, sessions, summary.cameras):
        counters: Counter = Counter()
        for index, (conn, log_time, raw) in enumerate(
                reader.messages(connections=cam.info_connections) if cam.info_connections
                else ()):
            inside = (start is None or log_time >= start) and (stop is None or log_time < stop)
            where = f"{cam.info_topic} message #{index} (log time {log_time * 1e-9:.9f} s)"
            try:
                msg = reader.deserialize(raw, conn.msgtype)
            except Exception as exc:  # noqa: BLE001 -- any undecodable message
                if opts.strict:
                    raise BagDataError(f"{where}: cannot deserialize: {exc} (--strict)") \
                        from None
                counters["undecodable"] += inside
                continue
            try:
                session.add_camera_info(msg, log_time * 1e-9)
            except Exception as exc:  # noqa: BLE001 -- ValueError: unusable K; others: bugs
                text = str(exc) if isinstance(exc, ValueError) else \
                    f"unusable ({describe_exception(exc)})"
                if opts.strict and not isinstance(exc, ValueError):
                    raise BagDataError(f"{where}: {text} (--strict)") from None
                if inside and counters["unusable"] == 0:
                    report(f"{where}: {text}")
                counters["unusable"] += inside
        stats.camera_info = {k: v for k, v in counters.items() if v}
        if counters["undecodable"]:
            report(f"{cam.info_topic}: {counters['undecodable']} undecodable CameraInfo "
                   "message(s) skipped")
