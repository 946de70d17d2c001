"""``depth-pro-ros bag``: every image of a recorded bag -> metric depth in a new bag.

One pass over the input in log-time order. Images go through the same
:class:`~depth_pro_ros.stream.session.CameraSession` as in the node (CameraInfo paired
by stamp, EMA of the FoV estimate otherwise, anchors) into the engine with policy
``all``; the engine returns results in submission order, and a small reorder queue
(:mod:`depth_pro_ros.bag.run`) writes each frame's outputs and the copied messages
around it in log-time order. Frames of equal size from any of the cameras are grouped by
:class:`~depth_pro_ros.engine.batch.BatchGrouper` and submitted as one batch
(``submit_batch``); the grouping depends only on the order of the messages, so the same
input, checkpoint, device, precision and batch size always give identical depth.

With ``--anchor-topic`` each camera's anchors (a registered depth image or a point
cloud) go into its session, with log time as the clock. Every message waits
``_ANCHOR_LOOKAHEAD_S`` of log time before it is handled, so an anchor logged shortly
after its image (a LiDAR projection comes after the camera frame it belongs to) is there
when the image is paired. The options and the engine they give are in
:mod:`depth_pro_ros.bag.options`.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from depth_pro_ros.bag.errors import BagInputError, BagOutputError, BagSetupError
from depth_pro_ros.bag.options import (
    OPTION_NAMES,
    BagOptions,
    check_engine,
    check_model_use,
    create_bag_engine,
    create_engine,
    engine_config,
    make_engine_config,
)
from depth_pro_ros.bag.reader import (
    Camera,
    open_input,
    resolve_cameras,
    resolve_copies,
    time_window,
    topic_listing,
)
from depth_pro_ros.bag.recovery import InputBag
from depth_pro_ros.bag.rig import check_multiview, create_rig_engine
from depth_pro_ros.bag.run import BagRun, load_camera_info
from depth_pro_ros.bag.summary import BagSummary, CameraSummary
from depth_pro_ros.bag.writer import (
    OUTPUT_MARK,
    OutputBag,
    check_output_path,
    output_typestore,
    resolved_path,
    write_failure,
)
from depth_pro_ros.stream.outputs import OUTPUT_TOPICS
from depth_pro_ros.stream.session import CameraSession

if TYPE_CHECKING:
    from rosbags.interfaces import Connection
    from rosbags.typesys.store import Typestore

    from depth_pro_ros.engine import DepthEngine

__all__ = ["RUN_RECORD", "BagOptions", "create_bag_engine", "engine_config", "process_bag"]

#: File written inside the output bag (before it is moved into place) when ``process_bag``
#: is given a ``record``: the options and checkpoint it was made with (``bags --resume``).
RUN_RECORD = "depth_pro_ros.json"

#: Log time every message waits, with anchors, so that later-logged anchors can pair.
_ANCHOR_LOOKAHEAD_S = 0.5
#: Anchor message types -> anchor source.
_ANCHOR_TYPES = {"sensor_msgs/msg/Image": "depth", "sensor_msgs/msg/PointCloud2": "points"}


def process_bag(
    opts: BagOptions,
    on_progress: Callable[[int, int], None] | None = None,
    report: Callable[[str], None] | None = None,
    engine: DepthEngine | None = None,
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
    check_multiview(opts.multiview, opts.rig_slop)
    from depth_pro_ros.model.weights import MissingCheckpointError, resolve_checkpoint

    try:
        checkpoint = resolve_checkpoint(opts.checkpoint)
    except MissingCheckpointError as exc:
        raise BagSetupError(str(exc)) from None
    config = make_engine_config(opts)
    if engine is not None and opts.multiview == "rig":
        raise BagSetupError("--multiview rig loads its own model: it does not take a shared "
                            "engine")
    if engine is not None:
        check_engine(engine, opts)
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
        anchor_conns = _resolve_anchors(reader, opts, cameras, summary)
        sessions = [CameraSession(
            index, cam.transport.transport, opts.focal,
            dataclasses.replace(opts.anchor, source=_ANCHOR_TYPES[conns[0].msgtype])
            if conns else None,
            history=None, max_input_pixels=opts.max_input_pixels, names=OPTION_NAMES)
            for index, (cam, conns) in enumerate(zip(cameras, anchor_conns))]
        load_camera_info(opts, reader, cameras, sessions, summary, say, start, stop)

        t_load = time.perf_counter()
        if owned and opts.multiview == "rig":
            engine = create_rig_engine(checkpoint, config, opts.model_type,
                                       opts.rig_extrinsics, [c.image_topic for c in cameras])
            summary.rig_groups = 0
        elif owned:
            engine = create_engine(checkpoint, config, opts.model_type)
        summary.load_seconds = time.perf_counter() - t_load
        summary.model = engine.recipe.info.description
        used = engine.config
        summary.runtime = f"{used.device}, {used.precision}, backend {used.backend}"
        try:
            check_model_use(engine, opts, [cam.image_topic for cam in cameras], sessions)
        except BagSetupError:
            if owned:
                engine.close()
            raise
        for session in sessions:
            session.needs_prompt = engine.recipe.info.needs_prompt
        batches_before = Counter(engine.stats.batch_sizes)
        bar = tqdm(total=total, unit="frame", desc="depth", file=sys.stderr,
                   disable=(None if opts.progress is None else not opts.progress),
                   dynamic_ncols=True)
        try:
            mark = {OUTPUT_MARK: str(resolved_path(opts.input))}
            with OutputBag(opts.output, opts.storage, opts.overwrite,
                           output_typestore(reader), mark) as out:
                run = BagRun(opts, reader, cameras, sessions, out, engine, summary, say)
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

                def handle(key: tuple, conn: Connection, log_time: int, raw: Any) -> None:
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
                for session, stats in zip(sessions, summary.cameras):
                    if stats.last_width:
                        stats.focal_state = session.stream.focal_state(stats.last_width)
                summary.damaged = reader.damage.lines()
                if record is not None:
                    out.add_file(RUN_RECORD, json.dumps(
                        {**record, "frames_in": summary.frames_in,
                         "frames_out": summary.frames_out,
                         "skipped": dict(summary.skipped)}, indent=2, sort_keys=True) + "\n")
                out.commit()
        except OSError as exc:  # full disk, quota, read-only ...: the output is gone
            raise BagOutputError(write_failure(opts.output, exc)) from None
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


def _resolve_anchors(reader: InputBag, opts: BagOptions, cameras: list[Camera],
                     summary: BagSummary) -> list[list[Connection]]:
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


def _settle(engine: DepthEngine, timeout: float = 60.0) -> None:
    """Leave a borrowed engine empty: frames of a failed run are finished and dropped."""
    engine.drain(timeout)
    while engine.get(timeout=0) is not None:
        pass


def _default_typestore() -> Typestore:
    """Types for ROS 2 bags recorded without definitions (before Iron)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.LATEST)


def _count(reader: InputBag, connections: list[Connection], start: int | None,
           stop: int | None) -> int:
    """Image messages to process (from the index, or by reading them for a window)."""
    if start is None and stop is None:
        return sum(c.msgcount for c in connections)
    return sum(1 for _ in reader.messages(connections, start, stop))
