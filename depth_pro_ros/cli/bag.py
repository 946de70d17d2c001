"""``depth-pro-ros bag``: metric depth for every image of a recorded bag, into a new bag;
and the processing options that ``bags`` shares (:func:`add_processing_options`,
:func:`bag_options`)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING

from depth_pro_ros.bag.writer import STORAGE_FORMATS
from depth_pro_ros.cli.options import (
    add_backend,
    add_engine_options,
    add_max_input_pixels,
    backend_settings,
    error,
    finite_float,
    non_negative_float,
    positive_float,
    positive_int,
)
from depth_pro_ros.engine.anchor import ANCHOR_FITS, AnchorSettings
from depth_pro_ros.engine.focal import FOCAL_SOURCES
from depth_pro_ros.io.messages import DEPTH_ENCODINGS
from depth_pro_ros.model.weights import default_checkpoint
from depth_pro_ros.stream import CAMERA_INFO_SYNC, RECORDED_FOCAL, OutputOptions

if TYPE_CHECKING:
    from depth_pro_ros.bag import BagOptions

__all__ = ["add_parser", "add_processing_options", "bag_options", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``bag`` subcommand's options."""
    bag = sub.add_parser(
        "bag",
        help="add metric depth to every image of a recorded bag",
        description=(
            "Run Depth Pro on every image of INPUT (a ROS 1 .bag file or a ROS 2 bag folder, "
            "sqlite3 or mcap) and write a new ROS 2 bag OUTPUT with <ns>/depth, "
            "<ns>/depth/camera_info and optionally <ns>/points and <ns>/depth/colorized "
            "per image topic, plus copies of input topics. The input is never modified; "
            "OUTPUT appears only when complete. Exit status: 0 done, 1 input or data "
            "error, 2 checkpoint or device error, 130 interrupted."
        ),
    )
    bag.add_argument("input", type=Path, metavar="INPUT", help="ROS 1 .bag or ROS 2 bag folder")
    bag.add_argument("-o", "--output", type=Path, required=True, metavar="OUTPUT",
                     help="new ROS 2 bag folder to write")
    add_processing_options(bag)
    _add_rig_options(bag)
    bag.set_defaults(func=run, parser=bag)


def _add_rig_options(bag: argparse.ArgumentParser) -> None:
    from depth_pro_ros.bag.rig import MULTIVIEW_MODES

    rig = bag.add_argument_group("rig mode (any-view Depth Anything 3: docs/cli.md)")
    rig.add_argument("--multiview", choices=MULTIVIEW_MODES, default="single",
                     help="rig: the cameras' frames within --rig-slop run as one joint "
                          "forward (default: off, each frame alone)")
    rig.add_argument("--rig-slop", type=non_negative_float, default=0.02, metavar="S",
                     help="most seconds between the stamps of one rig group (default 0.02)")
    rig.add_argument("--rig-extrinsics", type=Path, default=None, metavar="YAML",
                     help="each image topic's 4x4 camera-to-rig transform, passed to the "
                          "network with the CameraInfo intrinsics")


def add_processing_options(bag: argparse.ArgumentParser) -> None:
    """What a bag is processed with: shared by ``bag`` and ``bags`` (every bag)."""
    bag.add_argument("--image-topic", action="append", required=True, metavar="T",
                     dest="image_topics",
                     help="sensor_msgs/Image or CompressedImage topic (repeat for more cameras)")
    bag.add_argument(
        "--camera-info-topic", action="append", default=None, metavar="C",
        dest="camera_info_topics",
        help="CameraInfo topic per --image-topic, same order; 'none' for a camera without "
             "(default: <ns>/camera_info when the bag has it)",
    )
    bag.add_argument("--copy-topics", default="all", metavar="all|none|LIST",
                     help="input topics copied to OUTPUT: all (default), none, or a "
                          "comma-separated list")
    bag.add_argument("--format", choices=STORAGE_FORMATS, default=STORAGE_FORMATS[0],
                     dest="storage", help=f"storage of OUTPUT (default: {STORAGE_FORMATS[0]})")
    bag.add_argument("--start", type=non_negative_float, default=None, metavar="S",
                     help="skip messages logged earlier than S seconds after the first one")
    bag.add_argument("--end", type=non_negative_float, default=None, metavar="E",
                     help="stop at E seconds after the first message")
    add_engine_options(bag)
    add_backend(bag)
    _add_focal_options(bag)
    _add_anchor_options(bag)
    _add_output_options(bag)
    safety = bag.add_argument_group("behaviour")
    add_max_input_pixels(safety)
    safety.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    safety.add_argument("--strict", action="store_true",
                        help="stop at the first message that cannot be processed (exit 1) "
                             "instead of skipping and counting it")
    safety.add_argument("--no-progress", action="store_false", dest="progress", default=None,
                        help="no progress bar (it is shown on a terminal)")


def _add_focal_options(bag: argparse.ArgumentParser) -> None:
    # Defaults for recorded data (RECORDED_FOCAL says why they differ from the node's).
    rec = RECORDED_FOCAL
    focal = bag.add_argument_group("focal length (as the node's focal_* parameters)")
    focal.add_argument("--focal-source", choices=FOCAL_SOURCES, default=rec.focal_source,
                       help="auto: a CameraInfo paired by stamp, else the FoV estimate "
                            f"(default: {rec.focal_source})")
    focal.add_argument("--focal-px", type=finite_float, default=rec.fixed_focal_px,
                       metavar="F", help="focal length in pixels for --focal-source fixed")
    focal.add_argument("--focal-ema-alpha", type=finite_float, default=rec.focal_ema_alpha,
                       metavar="A", help="EMA weight of each new FoV estimate, (0, 1] "
                                         f"(default: {rec.focal_ema_alpha})")
    focal.add_argument("--camera-info-sync", choices=CAMERA_INFO_SYNC,
                       default=rec.camera_info_sync,
                       help="pair an image with the CameraInfo of equal stamp, of the "
                            "nearest stamp within --sync-slop, or the latest logged "
                            f"(default: {rec.camera_info_sync})")
    focal.add_argument("--sync-slop", type=finite_float, default=rec.sync_slop, metavar="S",
                       help="largest stamp difference for approximate pairing "
                            f"(default: {rec.sync_slop} s)")
    focal.add_argument("--camera-info-timeout", type=finite_float,
                       default=rec.camera_info_timeout,
                       metavar="S", help="auto: a CameraInfo logged more than S seconds "
                                         "before the image is stale (default: "
                                         f"{rec.camera_info_timeout})")


def _add_anchor_options(bag: argparse.ArgumentParser) -> None:
    anchor = bag.add_argument_group(
        "metric anchoring (as the node's anchor_* parameters; docs/node.md, Metric anchoring)")
    defaults = AnchorSettings()
    anchor.add_argument("--anchor-topic", action="append", default=None, metavar="A",
                        dest="anchor_topics",
                        help="anchor per --image-topic, same order ('none' for a camera "
                             "without): a registered depth image (sensor_msgs/Image 32FC1 m "
                             "or 16UC1 mm) or a PointCloud2 in the camera's frame")
    anchor.add_argument("--anchor-fit", choices=ANCHOR_FITS, default=defaults.fit,
                        help="scale: one factor; scale_shift: affine in inverse depth "
                             f"(default: {defaults.fit})")
    anchor.add_argument("--anchor-ema-alpha", type=finite_float, default=defaults.ema_alpha,
                        metavar="A", help="EMA weight of each new accepted fit, (0, 1] "
                                          f"(default: {defaults.ema_alpha})")
    anchor.add_argument("--anchor-timeout", type=finite_float, default=defaults.timeout,
                        metavar="S", help="log-time seconds without an accepted fit before "
                                          "frames go unanchored (default: "
                                          f"{defaults.timeout})")
    anchor.add_argument("--anchor-min-points", type=positive_int,
                        default=defaults.min_points, metavar="N",
                        help=f"fewest anchor pixels for a fit (default: "
                             f"{defaults.min_points})")
    anchor.add_argument("--anchor-sync", choices=CAMERA_INFO_SYNC, default="approximate",
                        help="pair an image with the anchor of equal stamp, of the nearest "
                             "stamp within --anchor-slop, or the latest logged (default: "
                             "approximate)")
    anchor.add_argument("--anchor-slop", type=non_negative_float, default=0.05, metavar="S",
                        help="largest stamp difference for approximate anchor pairing "
                             "(default: 0.05 s)")


def _add_output_options(bag: argparse.ArgumentParser) -> None:
    out = bag.add_argument_group("outputs")
    out.add_argument("--depth-encoding", choices=DEPTH_ENCODINGS,
                     default=OutputOptions().depth_encoding,
                     help="32FC1 metres, NaN invalid (default, REP 118) or 16UC1 millimetres")
    out.add_argument("--output-scale", type=finite_float, default=1.0, metavar="R",
                     help="depth, points and CameraInfo at R times the image resolution, "
                          "0 < R <= 1 (default: 1)")
    out.add_argument("--points", action="store_true", help="write <ns>/points (PointCloud2)")
    out.add_argument("--points-decimation", type=positive_int, default=1, metavar="N",
                     help="keep every N-th row and column in the point cloud (default: 1)")
    out.add_argument("--points-rgb", action="store_true",
                     help="add the image colour to the points as a packed rgb field")
    out.add_argument("--min-depth", type=non_negative_float, default=0.0, metavar="M",
                     help="points nearer than M metres are NaN (default: 0)")
    out.add_argument("--max-depth", type=positive_float, default=math.inf, metavar="M",
                     help="points farther than M metres are NaN (default: no limit)")
    out.add_argument("--colorized", action="store_true",
                     help="write <ns>/depth/colorized (bgr8 preview)")
    out.add_argument("--colorize-min", type=non_negative_float, default=0.0, metavar="M",
                     help="preview colour range start in metres (default 0: per frame)")
    out.add_argument("--colorize-max", type=non_negative_float, default=0.0, metavar="M",
                     help="preview colour range end in metres (default 0: per frame)")


def bag_options(args: argparse.Namespace, input: Path, output: Path) -> BagOptions:
    """The ``BagOptions`` the processing options in ``args`` give for one bag (a usage
    error, exit 2, for settings their classes refuse)."""
    from depth_pro_ros.bag import BagOptions
    from depth_pro_ros.stream import FocalSettings
    from depth_pro_ros.stream.anchor import AnchorOptions

    try:
        anchor = AnchorOptions(
            source="depth",  # each topic's type decides (bag/process.py)
            sync=args.anchor_sync, slop=args.anchor_slop,
            settings=AnchorSettings(fit=args.anchor_fit, ema_alpha=args.anchor_ema_alpha,
                                    timeout=args.anchor_timeout,
                                    min_points=args.anchor_min_points))
        focal = FocalSettings(
            focal_source=args.focal_source, fixed_focal_px=args.focal_px,
            focal_ema_alpha=args.focal_ema_alpha, camera_info_timeout=args.camera_info_timeout,
            camera_info_sync=args.camera_info_sync, sync_slop=args.sync_slop)
        outputs = OutputOptions(
            depth_encoding=args.depth_encoding, points=args.points, colorized=args.colorized,
            colorize_min=args.colorize_min, colorize_max=args.colorize_max)
    except ValueError as exc:
        args.parser.error(str(exc))
    return BagOptions(
        input=input, output=output,
        # The default is resolved here; process_bag says when the file is missing.
        checkpoint=args.checkpoint.expanduser() if args.checkpoint else default_checkpoint(),
        image_topics=args.image_topics, camera_info_topics=args.camera_info_topics,
        copy_topics=args.copy_topics, storage=args.storage, start=args.start, end=args.end,
        device=args.device, precision=args.precision, batch_size=args.batch_size,
        **backend_settings(args),
        focal=focal, outputs=outputs, output_scale=args.output_scale,
        points_decimation=args.points_decimation,
        points_rgb=args.points_rgb, min_depth=args.min_depth, max_depth=args.max_depth,
        max_input_pixels=args.max_input_pixels, overwrite=args.overwrite, strict=args.strict,
        progress=args.progress, anchor_topics=args.anchor_topics, anchor=anchor,
        model_type=args.model_type, input_size=args.input_size, sky_mask=args.sky_mask,
        allow_relative=args.allow_relative,
        # bag only (bags runs each bag alone): rig mode
        multiview=getattr(args, "multiview", "single"), rig_slop=getattr(args, "rig_slop", 0.02),
        rig_extrinsics=getattr(args, "rig_extrinsics", None))


def run(args: argparse.Namespace) -> int:
    """Run ``bag``; the exit status."""
    from depth_pro_ros.bag import BagError, process_bag

    opts = bag_options(args, args.input, args.output)
    try:
        summary = process_bag(opts)
    except BagError as exc:
        error(str(exc))
        return exc.exit_code
    except OSError as exc:  # a filesystem error outside the output's own writing
        error(f"filesystem error: {exc}; {opts.output} was not written")
        return 1
    except KeyboardInterrupt:
        error(f"interrupted; {opts.output} was not written")
        return 130
    print(summary.format())
    if summary.frames_in and not summary.frames_out:
        # A script must not take a bag without one depth image for a success.
        error(f"none of the {summary.frames_in} image(s) gave depth (see skipped above); "
              f"{opts.output} holds the copied messages only")
        return 1
    return 0
