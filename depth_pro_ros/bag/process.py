"""``depth-pro-ros bag``: every image of a recorded bag -> metric depth in a new bag.

One pass over the input in log-time order. Images go through the same
:class:`~depth_pro_ros.stream.CameraStream` as in the node (CameraInfo paired by stamp,
EMA of the FoV estimate otherwise) into the engine with policy ``all``; the engine
returns results in submission order, and a small reorder queue writes each frame's
outputs and the copied messages around it in log-time order. Frames of equal size from
any of the cameras are grouped by :class:`~depth_pro_ros.engine.batch.BatchGrouper` and
submitted as one batch (``submit_batch``); the grouping depends only on the order of
the messages, so the same input, checkpoint, device, precision and batch size always
give identical depth.

With ``--anchor-topic`` each camera's anchors (a registered depth image or a point
cloud) go through the node's :class:`~depth_pro_ros.stream.anchor.AnchorStream`, with log
time as the clock. Every message waits ``_ANCHOR_LOOKAHEAD_S`` of log time before it is
handled, so an anchor logged shortly after its image (a LiDAR projection comes after the
camera frame it belongs to) is there when the image is paired.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from depth_pro_ros.bag.errors import (
    BagDataError,
    BagInputError,
    BagSetupError,
    describe_exception,
)
from depth_pro_ros.bag.reader import (
    Camera,
    open_input,
    resolve_cameras,
    resolve_copies,
    time_window,
    topic_listing,
)
from depth_pro_ros.bag.summary import BagSummary, CameraSummary
from depth_pro_ros.bag.writer import OutputBag, check_output_path, output_typestore
from depth_pro_ros.io.image_decode import DEFAULT_MAX_INPUT_PIXELS
from depth_pro_ros.stream import (
    RECORDED_FOCAL,
    CameraStream,
    FocalSettings,
    FrameSkipped,
    OutputOptions,
    build_outputs,
)
from depth_pro_ros.stream.anchor import AnchorOptions, AnchorStream
from depth_pro_ros.stream.outputs import OUTPUT_TOPICS

__all__ = ["RUN_RECORD", "BagOptions", "create_bag_engine", "engine_config", "process_bag"]

#: File written inside the output bag (before it is moved into place) when ``process_bag``
#: is given a ``record``: the options and checkpoint it was made with (``bags --resume``).
RUN_RECORD = "depth_pro_ros.json"

#: How many skipped frames per reason are reported one by one before going quiet.
_REPORT_SKIPS = 5
#: Log time every message waits, with anchors, so that later-logged anchors can pair.
_ANCHOR_LOOKAHEAD_S = 0.5
#: Anchor message types -> anchor source.
_ANCHOR_TYPES = {"sensor_msgs/msg/Image": "depth", "sensor_msgs/msg/PointCloud2": "points"}


@dataclass
class BagOptions:
    """Everything ``depth-pro-ros bag`` takes (see docs/cli.md)."""

    input: Path
    output: Path
    checkpoint: Path
    image_topics: list[str]
    camera_info_topics: list[str] | None = None  # None: <namespace>/camera_info if present
    copy_topics: str = "all"  # all | none | comma-separated topics
    storage: str = "mcap"
    start: float | None = None  # seconds from the first message
    end: float | None = None
    device: str | None = None
    precision: str = "auto"  # fp16 on CUDA, fp32 on the CPU
    batch_size: int | None = None  # None: 4 on CUDA, 1 on the CPU
    focal: FocalSettings = RECORDED_FOCAL
    outputs: OutputOptions = field(default_factory=OutputOptions)
    output_scale: float = 1.0  # depth resolution relative to the input images
    max_input_pixels: int = DEFAULT_MAX_INPUT_PIXELS  # larger images are skipped, undecoded
    points_decimation: int = 1
    points_rgb: bool = False
    min_depth: float = 0.0
    max_depth: float = float("inf")
    # Anchor topic per image topic (same order; "none" for a camera without), and how
    # they pair and fit (AnchorOptions.source is taken from each topic's type).
    anchor_topics: list[str] | None = None
    anchor: AnchorOptions = field(default_factory=lambda: AnchorOptions(sync="approximate"))
    model_type: str | None = None  # None / "auto": read from the checkpoint
    input_size: int = 0  # Depth Anything's size parameter (EngineConfig); 0: the default
    allow_relative: bool = False  # relative models: write unanchored frames to depth/relative
    overwrite: bool = False
    strict: bool = False
    progress: bool | None = None  # tqdm bar; None: only on a terminal


@dataclass
class _Slot:
    """A frame waiting for its depth, in its place among the messages to write."""

    camera: int
    index: int
    log_time: int
    result: Any = None


class _Run:
    """State of one run: cameras, streams, output connections, the reorder queue."""

    def __init__(self, opts: BagOptions, reader: Any, cameras: list[Camera],
                 streams: list[CameraStream], out: OutputBag, engine: Any,
                 summary: BagSummary, report: Callable[[str], None],
                 anchors: list[AnchorStream | None]) -> None:
        self.opts, self.reader, self.cameras, self.out = opts, reader, cameras, out
        self.engine, self.summary, self.report = engine, summary, report
        self.streams, self.anchors = streams, anchors
        self.model = engine.recipe.info
        from depth_pro_ros.engine.batch import BatchGrouper

        self.pending: deque[Any] = deque()
        self.outstanding = 0
        # A camera's frames wait for a full batch at most while every camera adds a batch.
        batch = engine.config.batch_size
        self.grouper = BatchGrouper(batch, max_wait=batch * len(cameras))
        self.progress: Callable[[], None] = lambda: None
        # Per camera, the CameraInfo messages whose intrinsics went into a written frame
        # (by identity: the streams keep every CameraInfo of the bag, history=None).
        self.infos_used: list[dict[int, Any]] = [{} for _ in cameras]
        self.connections: list[dict[str, Any]] = []
        wanted = ["depth", "depth/camera_info"]
        wanted += ["points"] * opts.outputs.points + ["depth/colorized"] * opts.outputs.colorized
        wanted += ["depth/relative"] * (self.model.kind == "relative" and opts.allow_relative)
        for cam in cameras:
            self.connections.append({rel: out.add_topic(cam.output_topic(rel), OUTPUT_TOPICS[rel])
                                     for rel in wanted})

    # ------------------------------------------------------------- main pass
    def image(self, cam_index: int, index: int, conn: Any, log_time: int, raw: Any) -> None:
        cam, stats = self.cameras[cam_index], self.summary.cameras[cam_index]
        stats.frames_in += 1
        try:
            msg = self.reader.deserialize(raw, conn.msgtype)
        except Exception as exc:  # noqa: BLE001 -- any undecodable message
            self.skip(cam_index, index, log_time, "deserialize", f"cannot deserialize: {exc}")
            return
        slot = _Slot(cam_index, index, log_time)
        try:
            frame = self.streams[cam_index].prepare(msg, cam.compressed, log_time * 1e-9,
                                                    meta=slot)
        except FrameSkipped as exc:
            self.skip(cam_index, index, log_time, exc.reason, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 -- a decoder bug must not end the run
            self.skip(cam_index, index, log_time, "decode",
                      f"cannot be decoded ({describe_exception(exc)})")
            return
        finally:
            stream = self.streams[cam_index]
            for line in stream.pop_messages():
                self.report(f"{cam.image_topic}: {line}")
            warnings = stream.pop_warnings()
            if warnings:
                stats.decoder_warnings += 1
                if stats.decoder_warnings <= _REPORT_SKIPS:
                    self.report(f"{cam.image_topic} message #{index}: the decoder complained "
                                f"({'; '.join(warnings)}); the frame is used")
        assert frame is not None  # hold_unpaired is off
        stats.last_width = frame.image.shape[1]
        frame.source = cam_index
        anchors = self.anchors[cam_index]
        frame_id = str(getattr(msg.header, "frame_id", ""))
        if self.model.needs_prompt:
            try:
                frame.prompt = anchors.prompt_for(frame_id, frame.meta.stamp_ns,
                                                  log_time * 1e-9, frame.intrinsics,
                                                  frame.image.shape[:2])
            except ValueError as exc:
                self.skip(cam_index, index, log_time, "no_prompt", str(exc))
                return
        elif anchors is not None:
            frame.anchor_filter = anchors.filter_for(frame_id, frame.meta.stamp_ns,
                                                     log_time * 1e-9)
        self.pending.append(slot)
        self.outstanding += 1
        for group in self.grouper.add(frame):
            self.submit(group)

    def anchor(self, cam_index: int, conn: Any, log_time: int, raw: Any) -> None:
        stats = self.summary.cameras[cam_index]
        where = f"{stats.anchor_topic} message at log time {log_time * 1e-9:.9f} s"
        try:
            msg = self.reader.deserialize(raw, conn.msgtype)
            self.anchors[cam_index].add(msg, log_time * 1e-9)
        except Exception as exc:  # noqa: BLE001 -- any unreadable anchor is skipped
            text = str(exc) if isinstance(exc, ValueError) else describe_exception(exc)
            if self.opts.strict:
                raise BagDataError(f"{where}: {text} (--strict)") from None
            stats.anchor["unreadable"] += 1
            if stats.anchor["unreadable"] <= _REPORT_SKIPS:
                self.report(f"{where}: {text}")

    def copy(self, conn: Any, log_time: int, raw: Any, connmap: dict, convmap: dict) -> None:
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
        if stats.skipped[reason] <= _REPORT_SKIPS:
            more = " (further ones are only counted)" if stats.skipped[reason] == _REPORT_SKIPS \
                else ""
            self.report(f"skipped {where}: {text}{more}")
        self.progress()

    def submit(self, group: list[Any]) -> None:
        while not self.engine.submit_batch(group, timeout=0.2):
            self.collect()
        self.collect()

    def collect(self, timeout: float = 0.0) -> None:
        while (result := self.engine.get(timeout=timeout)) is not None:
            result.meta.user.result = result
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
        if not result.ok:
            self.skip(cam_index, slot.index, slot.log_time, "inference", result.error or "")
            return
        if self.anchors[cam_index] is not None:
            self.anchor_outcome(cam_index, result.anchor)
        if result.relative is not None and not self.opts.allow_relative:
            self.skip(cam_index, slot.index, slot.log_time, "unanchored",
                      "no accepted anchor fit for this frame: a relative model's depth has "
                      "no metric scale without one (--allow-relative writes it to "
                      "depth/relative)")
            return
        meta = result.meta  # StreamFrame
        header = self.out.header(meta.stamp_ns, getattr(meta.header, "frame_id", ""))
        conns = self.connections[cam_index]
        for message in build_outputs(result, self.opts.outputs, camera_info=meta.camera_info):
            self.out.write_fields(conns[message.topic], slot.log_time, header, message.fields)
        stats = self.summary.cameras[cam_index]
        stats.frames_out += 1
        stats.focal[result.focal_source.value if result.focal_source else "none"] += 1
        if meta.camera_info is not None:
            used = self.infos_used[cam_index]
            used[id(meta.camera_info)] = meta.camera_info
            stats.camera_info["used"] = len(used)
        self.progress()

    def anchor_outcome(self, cam_index: int, outcome: Any) -> None:
        stats, anchors = self.summary.cameras[cam_index], self.anchors[cam_index]
        topic = self.cameras[cam_index].image_topic
        for message in anchors.pop_messages():
            self.report(f"{topic}: {message}")
        for problem in anchors.pop_problems():
            stats.anchor["problems"] += 1
            if stats.anchor["problems"] <= _REPORT_SKIPS:
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


def _load_camera_info(opts: BagOptions, reader: Any, cameras: list[Camera],
                      streams: list[CameraStream], summary: BagSummary,
                      report: Callable[[str], None], start: int | None = None,
                      stop: int | None = None) -> None:
    """The pre-pass: every CameraInfo of each camera, received at its log time (those
    logged outside the window too: a frame near its edge may pair with one of them).
    Only the problems of those logged inside the window [start, stop) are counted and
    reported; ``used`` is counted as frames are written (``_Run.write_result``)."""
    for cam, stream, stats in zip(cameras, streams, summary.cameras):
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
                stream.add_camera_info(msg, log_time * 1e-9)
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


def process_bag(
    opts: BagOptions,
    on_progress: Callable[[int, int], None] | None = None,
    report: Callable[[str], None] | None = None,
    engine: Any = None,
    record: dict[str, Any] | None = None,
) -> BagSummary:
    """Process the bag described by ``opts``; return the summary.

    ``engine``: an already-created engine to use (``depth-pro-ros bags``: one model for
    many bags). Its config must be the one ``opts`` gives (:func:`engine_config`); it is
    left open, with nothing in flight. ``record``: written, with the frame counts, as
    ``RUN_RECORD`` inside the output before it is moved into place.

    ``on_progress(done, total)`` is called after every frame (written or skipped);
    ``report`` receives warnings (default: stderr, above the progress bar). Raises
    :class:`~depth_pro_ros.bag.errors.BagError` subclasses for input, data (``strict``)
    and checkpoint / device problems; on any exception, and on Ctrl-C, nothing is left at
    ``opts.output``.
    """
    from tqdm import tqdm

    t_start = time.perf_counter()
    check_output_path(opts.output, opts.input, opts.overwrite)
    from depth_pro_ros.model.weights import MissingCheckpointError, resolve_checkpoint

    try:
        checkpoint = resolve_checkpoint(opts.checkpoint)
    except MissingCheckpointError as exc:
        raise BagSetupError(str(exc)) from None
    config = _engine_config(opts)
    if engine is not None:
        _check_engine(engine, opts)
    owned = engine is None

    say = report or (lambda line: tqdm.write(line, file=sys.stderr))
    reader = open_input(opts.input, _default_typestore())
    try:
        if reader.note:
            say(reader.note)
        reader.damage.attach(say, opts.strict)
        cameras = resolve_cameras(reader, opts.image_topics, opts.camera_info_topics)
        outputs = {cam.output_topic(rel) for cam in cameras for rel in OUTPUT_TOPICS}
        copies, replaced = resolve_copies(reader, opts.copy_topics, outputs)
        start, stop = time_window(reader, opts.start, opts.end)
        image_conns = [c for cam in cameras for c in cam.image_connections]
        total = _count(reader, image_conns, start, stop)
        summary = BagSummary(opts.input, opts.output, opts.storage,
                             [CameraSummary(cam.image_topic, cam.namespace, cam.info_topic)
                              for cam in cameras], recovery=reader.note)
        for topic in replaced:
            say(f"input topic {topic} is not copied: a depth output replaces it")
        streams = [CameraStream(opts.focal, history=None,
                                max_input_pixels=opts.max_input_pixels) for _ in cameras]
        anchor_conns = _resolve_anchors(reader, opts, cameras, summary)
        anchors = [None if not conns else AnchorStream(dataclasses.replace(
            opts.anchor, source=_ANCHOR_TYPES[conns[0].msgtype])) for conns in anchor_conns]
        _load_camera_info(opts, reader, cameras, streams, summary, say, start, stop)

        t_load = time.perf_counter()
        if owned:
            engine = _create_engine(checkpoint, config, opts.model_type)
        summary.load_seconds = time.perf_counter() - t_load
        summary.model = engine.recipe.info.description
        try:
            _check_model_use(engine, opts, cameras, anchors)
        except BagSetupError:
            if owned:
                engine.close()
            raise
        batches_before = Counter(engine.stats.batch_sizes)
        bar = tqdm(total=total, unit="frame", desc="depth", file=sys.stderr,
                   disable=(None if opts.progress is None else not opts.progress),
                   dynamic_ncols=True)
        try:
            with OutputBag(opts.output, opts.storage, opts.overwrite,
                           output_typestore(reader)) as out:
                run = _Run(opts, reader, cameras, streams, out, engine, summary, say, anchors)
                done = 0

                def progress() -> None:
                    nonlocal done
                    done += 1
                    bar.update(1)
                    if on_progress is not None:
                        on_progress(done, total)

                run.progress = progress
                connmap, convmap = out.add_copies(reader, copies)
                camera_of = {(c.id, id(c.owner)): i for i, cam in enumerate(cameras)
                             for c in cam.image_connections}
                copied = {(c.id, id(c.owner)) for c in copies}
                anchor_of = {(c.id, id(c.owner)): i for i, conns in enumerate(anchor_conns)
                             for c in conns}
                indices: Counter = Counter()
                t_loop, cpu_loop = time.perf_counter(), time.thread_time()
                wanted = list({(c.id, id(c.owner)): c for c in image_conns + copies
                               + [c for conns in anchor_conns for c in conns]}.values())
                # (key, conn, log time, raw) waiting for the anchors logged after them.
                waiting: deque[tuple] = deque()
                lookahead = round(_ANCHOR_LOOKAHEAD_S * 1e9) if anchor_of else -1

                def handle(key: tuple, conn: Any, log_time: int, raw: Any) -> None:
                    if key in copied:
                        run.copy(conn, log_time, raw, connmap, convmap)
                    if key in camera_of:
                        cam_index = camera_of[key]
                        run.image(cam_index, indices[cam_index], conn, log_time, raw)
                        indices[cam_index] += 1

                for conn, log_time, raw in reader.messages(wanted, start, stop):
                    key = (conn.id, id(conn.owner))
                    if key in anchor_of:
                        run.anchor(anchor_of[key], conn, log_time, raw)
                    waiting.append((key, conn, log_time, raw))
                    while waiting and waiting[0][2] < log_time - lookahead:
                        handle(*waiting.popleft())
                while waiting:
                    handle(*waiting.popleft())
                run.finish()
                summary.batch_sizes = dict(Counter(engine.stats.batch_sizes)
                                           - batches_before)
                summary.process_seconds = time.perf_counter() - t_loop
                summary.host_cpu_seconds = time.thread_time() - cpu_loop
                for stream, stats in zip(streams, summary.cameras):
                    if stats.last_width:
                        stats.focal_state = stream.focal_state(stats.last_width)
                summary.damaged = reader.damage.lines()
                if record is not None:
                    out.add_file(RUN_RECORD, json.dumps(
                        {**record, "frames_in": summary.frames_in,
                         "frames_out": summary.frames_out,
                         "skipped": dict(summary.skipped)}, indent=2, sort_keys=True) + "\n")
                out.commit()
        finally:
            bar.close()
            if owned:
                engine.close()
            else:
                _settle(engine)
    finally:
        reader.close()
    summary.wall_seconds = time.perf_counter() - t_start
    return summary


def _resolve_anchors(reader: Any, opts: BagOptions, cameras: list[Camera],
                     summary: BagSummary) -> list[list[Any]]:
    """Each camera's anchor connections (empty: no anchors), checked against the bag."""
    topics = opts.anchor_topics
    if not topics:
        return [[] for _ in cameras]
    if len(topics) != len(cameras):
        raise BagInputError(
            f"give --anchor-topic once per --image-topic, in the same order ({len(cameras)} "
            f"image topic(s), {len(topics)} anchor topic(s); use 'none' for a camera "
            "without anchors)")
    out = []
    for topic, stats in zip(topics, summary.cameras):
        if topic.lower() == "none":
            out.append([])
            continue
        info = reader.topics.get(topic)
        if info is None:
            raise BagInputError(f"anchor topic {topic} is not in the bag; anchor topics "
                                f"there: {topic_listing(reader, set(_ANCHOR_TYPES))}")
        if info.msgtype not in _ANCHOR_TYPES:
            raise BagInputError(f"anchor topic {topic} holds {info.msgtype or 'several types'}"
                                ", not sensor_msgs/Image (a registered depth image) or "
                                "sensor_msgs/PointCloud2")
        stats.anchor_topic = topic
        out.append([c for c in reader.connections if c.topic == topic])
    return out


def engine_config(opts: BagOptions) -> Any:
    """The engine configuration ``opts`` give, device and precision resolved (what the
    engine created for them reports as its ``config``)."""
    from depth_pro_ros.engine import resolve_device, resolve_precision

    config = _engine_config(opts)
    try:
        precision = resolve_precision(config.precision, resolve_device(config.device))
    except ValueError as exc:
        raise BagSetupError(str(exc)) from None
    return dataclasses.replace(config, precision=precision)


def create_bag_engine(opts: BagOptions) -> Any:
    """Load the checkpoint of ``opts`` and start the engine their options give, to pass to
    :func:`process_bag` for many bags (one model for all of them)."""
    return _create_engine(Path(opts.checkpoint).expanduser(), engine_config(opts),
                          opts.model_type)


def _check_engine(engine: Any, opts: BagOptions) -> None:
    """Refuse a given engine whose configuration differs from what ``opts`` give."""
    want = engine_config(opts)
    if engine.config != want:
        diff = ", ".join(f"{f.name} {getattr(engine.config, f.name)!r} (options: "
                         f"{getattr(want, f.name)!r})" for f in dataclasses.fields(want)
                         if getattr(engine.config, f.name) != getattr(want, f.name))
        raise BagSetupError(f"the engine given does not match the options: {diff}")


def _settle(engine: Any, timeout: float = 60.0) -> None:
    """Leave a borrowed engine empty: frames of a failed run are finished and dropped."""
    engine.drain(timeout)
    while engine.get(timeout=0) is not None:
        pass


def _engine_config(opts: BagOptions) -> Any:
    from depth_pro_ros.engine import EngineConfig, resolve_device

    try:
        device = resolve_device(opts.device)
    except ValueError as exc:
        raise BagSetupError(str(exc)) from None
    batch = opts.batch_size or (4 if device.type == "cuda" else 1)
    try:
        return EngineConfig(
            device=str(device), precision=opts.precision, policy="all",
            queue_size=2 * batch, batch_size=batch, output_scale=opts.output_scale,
            points=opts.outputs.points,
            points_decimation=opts.points_decimation, points_rgb=opts.points_rgb,
            min_depth=opts.min_depth, max_depth=opts.max_depth, input_size=opts.input_size)
    except ValueError as exc:
        raise BagInputError(str(exc)) from None


def _create_engine(checkpoint: Path, config: Any, model_type: str | None = None) -> Any:
    from depth_pro_ros.engine import create_engine
    from depth_pro_ros.model import CheckpointError

    try:
        return create_engine(str(checkpoint), config, model_type=model_type)
    except (CheckpointError, ValueError) as exc:
        raise BagSetupError(str(exc)) from None


#: The bag tool's names for the settings check_model_use names.
_OPTION_NAMES = {"anchor": "--anchor-topic", "anchor_fit": "--anchor-fit",
                 "allow_relative": "--allow-relative", "focal_source": "--focal-source",
                 "relative_topic": "depth/relative"}


def _check_model_use(engine: Any, opts: BagOptions, cameras: list[Camera],
                     anchors: list[AnchorStream | None]) -> None:
    """Refuse settings with which the engine's model cannot give output for a camera."""
    from depth_pro_ros.stream.model_use import check_model_use

    for cam, anchor in zip(cameras, anchors):
        try:
            check_model_use(engine.recipe.info, anchored=anchor is not None,
                            anchor_fit=opts.anchor.settings.fit,
                            allow_relative=opts.allow_relative,
                            focal_source=opts.focal.focal_source, names=_OPTION_NAMES)
        except ValueError as exc:
            where = f"{cam.image_topic}: " if len(cameras) > 1 else ""
            raise BagSetupError(f"{where}{exc}") from None


def _default_typestore() -> Any:
    """Types for ROS 2 bags recorded without definitions (before Iron)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.LATEST)


def _count(reader: Any, connections: list[Any], start: int | None, stop: int | None) -> int:
    """Image messages to process (from the index, or by reading them for a window)."""
    if start is None and stop is None:
        return sum(c.msgcount for c in connections)
    return sum(1 for _ in reader.messages(connections, start, stop))
