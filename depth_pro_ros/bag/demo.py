"""``make demo`` / ``depth-pro-ros demo``: the bag tool end to end on a bundled sample.

1. Generate ``sample_bag/`` (ROS 2, mcap) from the bundled sample picture (package data,
   see :mod:`depth_pro_ros.bag.sample`): a slow zoom and pan over the picture, 10 frames
   of 640x480 at 4 Hz as ``sensor_msgs/CompressedImage`` (JPEG), with a ``CameraInfo``
   that follows the zoom for the first half only, so the focal comes from CameraInfo
   first and from the FoV head afterwards. Deterministic.
2. Find the weights: ``$DEPTH_PRO_DEMO_CHECKPOINT`` (a smoke test with any checkpoint,
   e.g. a tiny random one: the depth is then meaningless), ``$DEPTH_PRO_CHECKPOINT``,
   else ``~/.cache/depth_pro_ros/depth_pro.pt``, downloaded from Apple when missing.
3. Run the bag tool (points with colour, colorized previews, all topics copied).
4. Write a contact sheet (input | colorized depth for four frames) and a binary .ply of
   the first frame's point cloud, read back from the output bag.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np

from depth_pro_ros.bag.errors import BagError, BagInputError
from depth_pro_ros.bag.options import BagOptions
from depth_pro_ros.bag.process import process_bag
from depth_pro_ros.bag.sample import (
    BagMessage,
    camera_info_message,
    image_message,
    sample_image,
    stamp_at,
    write_bag,
    zoom_pan_views,
)
from depth_pro_ros.io.colorize import annotate_range, colorize_depth, depth_range
from depth_pro_ros.io.messages import depth_image_to_array
from depth_pro_ros.io.pointcloud_msg import pointcloud2_to_array
from depth_pro_ros.model.weights import (
    CHECKPOINT_ENV,
    DEFAULT_CHECKPOINT,
    DownloadError,
    MissingCheckpointError,
    download_weights,
    resolve_checkpoint,
)
from depth_pro_ros.stream import OutputOptions

__all__ = ["DEMO_ENV", "find_weights", "make_sample_bag", "run_demo", "write_ply"]

DEMO_ENV = "DEPTH_PRO_DEMO_CHECKPOINT"
TOPIC = "/camera/image_raw/compressed"
INFO_TOPIC = "/camera/camera_info"
FRAME_ID = "camera_optical_frame"
FRAMES, RATE_HZ, WIDTH, HEIGHT = 10, 4.0, 640, 480
NOMINAL_FOCAL = 525.0  # px at 640x480 (about 63 degrees horizontal FoV)
SHEET_FRAMES = (0, 3, 6, 9)


def _say(text: str) -> None:
    print(text, flush=True)


def sample_messages() -> list[BagMessage]:
    """The demo bag's messages: JPEG frames logged 5 ms after capture, and for the first
    half a CameraInfo that follows the zoom, logged 1 ms after its frame."""
    messages = []
    views = zoom_pan_views(sample_image(), FRAMES, WIDTH, HEIGHT, NOMINAL_FOCAL)
    for i, (frame, k) in enumerate(views):
        stamp = stamp_at(i, RATE_HZ)
        messages.append(image_message(TOPIC, frame, stamp, jpeg=True, frame_id=FRAME_ID,
                                      log_delay_ns=5_000_000))
        if i < FRAMES // 2:
            messages.append(camera_info_message(INFO_TOPIC, k, WIDTH, HEIGHT, stamp,
                                                frame_id=FRAME_ID, log_delay_ns=6_000_000))
    return messages


def make_sample_bag(path: Path) -> Path:
    """Write the demo's input bag at ``path`` (replaced if present); return ``path``."""
    try:
        messages = sample_messages()
    except FileNotFoundError as exc:
        raise BagInputError(str(exc)) from None
    return write_bag(path, messages)


def find_weights(checkpoint: Path | None, download: bool) -> tuple[Path, bool]:
    """The checkpoint to use and whether it is a smoke test; downloads when allowed.

    Raises:
        MissingCheckpointError: no checkpoint at the path given (``checkpoint``,
            ``$DEPTH_PRO_CHECKPOINT``), or none at the default path and ``download`` off.
        DownloadError: no weights at the default path and they could not be downloaded.
    """
    if checkpoint is None and os.environ.get(DEMO_ENV):
        path = Path(os.environ[DEMO_ENV]).expanduser()
        if not path.exists():
            raise MissingCheckpointError(f"${DEMO_ENV} points at {path}, which does not "
                                         "exist")
        return path, True
    try:
        return resolve_checkpoint(checkpoint), False
    except MissingCheckpointError:
        # Only Apple's weights at the default path are fetched: a path someone gave
        # stays theirs to fill.
        if checkpoint is not None or os.environ.get(CHECKPOINT_ENV) or not download:
            raise
    path = DEFAULT_CHECKPOINT.expanduser()
    _say(f"Depth Pro weights not found at {path}; downloading Apple's depth_pro.pt (~1.9 GB)")
    return download_weights(path), False


def write_ply(path: Path, xyz: np.ndarray, rgb: np.ndarray | None = None) -> int:
    """Binary little-endian PLY of the finite points; returns how many were written."""
    xyz = np.asarray(xyz, np.float32).reshape(-1, 3)
    keep = np.isfinite(xyz).all(axis=1)
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if rgb is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    rec = np.empty(int(keep.sum()), dtype=fields)
    for i, name in enumerate("xyz"):
        rec[name] = xyz[keep, i]
    if rgb is not None:
        rgb = np.asarray(rgb, np.uint8).reshape(-1, 3)[keep]
        rec["red"], rec["green"], rec["blue"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    props = "".join(f"property {'float' if t == '<f4' else 'uchar'} {n}\n" for n, t in fields)
    header = (f"ply\nformat binary_little_endian 1.0\ncomment depth_pro_ros demo\n"
              f"element vertex {rec.size}\n{props}end_header\n")
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(rec.tobytes())
    return int(rec.size)


def _read_output(path: Path) -> dict[str, list]:
    from rosbags.highlevel import AnyReader

    topics: dict[str, list] = {}
    with AnyReader([path]) as reader:
        for conn, _, raw in reader.messages():
            topics.setdefault(conn.topic, []).append(reader.deserialize(raw, conn.msgtype))
    return topics


def contact_sheet(topics: dict[str, list], path: Path) -> None:
    """Rows of input | colorized depth (shared colour range, with legend) for a few frames."""
    images = topics[TOPIC]
    depths = [depth_image_to_array(m) for m in topics["/camera/depth"]]
    infos = topics["/camera/depth/camera_info"]
    rows = [i for i in SHEET_FRAMES if i < len(depths)]
    valid = np.concatenate([depths[i][np.isfinite(depths[i])] for i in rows])
    lo, hi = depth_range(valid[None, :]) if valid.size else (float("nan"),) * 2
    tiles = []
    for i in rows:
        rgb = cv2.imdecode(np.asarray(images[i].data, np.uint8), cv2.IMREAD_COLOR)
        colour, _ = colorize_depth(depths[i], lo, hi) if valid.size else colorize_depth(
            depths[i])
        colour = annotate_range(colour, lo, hi)
        row = np.concatenate([rgb, colour], axis=1)
        row = cv2.resize(row, (row.shape[1] // 2, row.shape[0] // 2),
                         interpolation=cv2.INTER_AREA)
        fx = float(infos[i].k[0])
        source = "CameraInfo" if i < FRAMES // 2 else "FoV estimate"
        text = f"frame {i}  t={i / RATE_HZ:.2f} s  fx {fx:.0f} px ({source})"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        row[: th + 10, : tw + 12] //= 3
        cv2.putText(row, text, (6, th + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255),
                    1, cv2.LINE_AA)
        tiles.append(row)
    if not cv2.imwrite(str(path), np.concatenate(tiles, axis=0)):
        raise OSError(f"could not write {path}")


def points_ply(topics: dict[str, list], path: Path, frame: int = 0) -> int:
    cloud = topics["/camera/points"][frame]
    names = [f.name for f in cloud.fields]
    arr = pointcloud2_to_array(cloud)
    xyz = arr[..., [names.index(n) for n in "xyz"]]
    rgb = None
    if "rgb" in names:
        bits = np.ascontiguousarray(arr[..., names.index("rgb")]).view(np.uint32)
        rgb = np.stack([(bits >> 16) & 255, (bits >> 8) & 255, bits & 255], -1).astype(np.uint8)
    return write_ply(path, xyz, rgb)


def run_demo(outdir: Path = Path("demo_output"), checkpoint: Path | None = None,
             device: str | None = None, precision: str = "auto",
             batch_size: int | None = None, download: bool = True) -> int:
    """The whole demo; returns the exit status (0, 1 input/data error, 2 weights)."""
    def fail(message: str, code: int) -> int:
        print(f"depth-pro-ros demo: error: {message}", file=sys.stderr)
        return code

    try:
        weights, smoke = find_weights(checkpoint, download)
    except (MissingCheckpointError, DownloadError) as exc:
        return fail(str(exc), 2)
    if smoke:
        _say(f"smoke test: ${DEMO_ENV}={weights} (not the real weights: the depth "
             "below is meaningless, only the pipeline is exercised)")
    outdir.mkdir(parents=True, exist_ok=True)
    sample, output = outdir / "sample_bag", outdir / "sample_depth_bag"
    try:
        make_sample_bag(sample)
        _say(f"sample bag: {sample} ({FRAMES} frames {WIDTH}x{HEIGHT} at {RATE_HZ:g} Hz on "
             f"{TOPIC}, CameraInfo on {INFO_TOPIC} for the first {FRAMES // 2})")
        summary = process_bag(BagOptions(
            input=sample, output=output, checkpoint=weights, image_topics=[TOPIC],
            device=device, precision=precision, batch_size=batch_size,
            outputs=OutputOptions(points=True, colorized=True), points_rgb=True,
            points_decimation=2, overwrite=True))
    except BagError as exc:
        return fail(str(exc), exc.exit_code)
    _say(summary.format())
    topics = _read_output(output)
    sheet, ply = outdir / "contact_sheet.png", outdir / "frame_000_points.ply"
    contact_sheet(topics, sheet)
    n_points = points_ply(topics, ply)
    _say("demo outputs:")
    _say(f"  {output}/  ROS 2 bag (mcap): /camera/depth, /camera/depth/camera_info, "
         "/camera/points, /camera/depth/colorized + the input topics")
    _say(f"  {sheet}  input | colorized depth, frames {', '.join(map(str, SHEET_FRAMES))}")
    _say(f"  {ply}  point cloud of frame 0 ({n_points} points, binary PLY)")
    return 0
