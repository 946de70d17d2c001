"""The ``depth-pro-ros`` command.

Subcommands:

* ``image`` -- metric depth for one or more photos, written as .npy / 16-bit PNG /
  colorized PNG.
* ``bag`` -- metric depth for every image of a recorded ROS 1 / ROS 2 bag, written to a
  new ROS 2 bag (``depth_pro_ros.bag``).
* ``bags`` -- the bag tool on many bags with one model per worker, here or on Ray
  (``depth_pro_ros.bag.fleet``).
* ``demo`` -- the bag tool on the bundled sample, with a contact sheet and a .ply.
* ``checkpoint`` -- a random-weight stand-in checkpoint of any family, to try the tools
  without the real weights (``depth_pro_ros.model.stand_in``).

Exit status: 0 on success, 1 when some inputs failed (``image``: also when outputs exist
and ``--overwrite`` is not given), 2 for usage, device or checkpoint errors (``bag``: 1
for input and data errors, an existing OUTPUT among them, 130 when interrupted). The
command is a thin layer: the work is done by ``model``, ``io`` and ``bag``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from depth_pro_ros import __version__
from depth_pro_ros.bag.writer import STORAGE_FORMATS
from depth_pro_ros.engine import PRECISION_CHOICES
from depth_pro_ros.engine.anchor import ANCHOR_FITS, AnchorSettings
from depth_pro_ros.engine.focal import FOCAL_SOURCES
from depth_pro_ros.io.image_decode import DEFAULT_MAX_INPUT_PIXELS
from depth_pro_ros.io.messages import DEPTH_ENCODINGS
from depth_pro_ros.model.checkpoint import MODEL_TYPES
from depth_pro_ros.model.weights import (
    CHECKPOINT_ENV,
    DEFAULT_CHECKPOINT,
    default_checkpoint,
    missing_checkpoint_message,
)
from depth_pro_ros.stream import CAMERA_INFO_SYNC, RECORDED_FOCAL, OutputOptions

_PRECISION_HELP = "fp32, fp16, bf16, or auto: fp16 on CUDA, fp32 on the CPU (default: auto)"
_CHECKPOINT_HELP = (
    "network weights of any family, which is read from the file: Depth Pro (Apple's "
    "depth_pro.pt or a Hugging Face folder / .safetensors), Depth Anything V2 relative or "
    "metric (indoor / outdoor; an original .pth or Hugging Face), Prompt Depth Anything "
    f"(.ckpt or Hugging Face), or this project's .pt (default: ${CHECKPOINT_ENV} or "
    f"{DEFAULT_CHECKPOINT})")


def _number(cast: type, minimum: float | None, inclusive: bool = True):
    """An argparse ``type`` for finite numbers above (or from) ``minimum`` (None: any)."""
    word = "an integer" if cast is int else "a finite number"
    bound = "" if minimum is None else (f" >= {minimum:g}" if inclusive else f" > {minimum:g}")

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {word}: {text!r}") from None
        below = minimum is not None and (value < minimum or (value == minimum and not inclusive))
        if not math.isfinite(value) or below:
            raise argparse.ArgumentTypeError(f"must be {word}{bound}, got {text!r}")
        return value

    return parse


_positive_float = _number(float, 0.0, inclusive=False)
_non_negative_float = _number(float, 0.0, inclusive=True)
_positive_int = _number(int, 1, inclusive=True)
# Values that a settings class checks itself (its message names the setting): parse only.
_float = _number(float, None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="depth-pro-ros",
        description="Metric monocular depth with Apple's Depth Pro.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    image = sub.add_parser(
        "image",
        help="estimate metric depth for photos",
        description=(
            "Estimate metric depth for each PHOTO and write <stem>_depth.npy (float32 "
            "metres, NaN = invalid), <stem>_depth_mm.png (uint16 millimetres, 0 = invalid) "
            "and <stem>_depth_color.png (preview, its colour legend spanning the 2nd to "
            "98th percentile of the depth, as printed) to OUTDIR. Existing outputs are "
            "refused before any photo is processed unless --overwrite. Exit status: 0 "
            "done, 1 some photos failed or outputs exist, 2 usage, checkpoint or device "
            "error."
        ),
    )
    image.add_argument("photos", nargs="+", metavar="PHOTO", type=Path, help="image files")
    image.add_argument("--checkpoint", type=Path, default=None, help=_CHECKPOINT_HELP)
    image.add_argument(
        "--focal-px",
        type=_positive_float,
        default=None,
        metavar="F",
        help="known horizontal focal length in pixels of the photos (default: estimated)",
    )
    image.add_argument(
        "--device", default=None, help="torch device, e.g. cpu, cuda, cuda:1 (default: auto)"
    )
    image.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                       help=_PRECISION_HELP)
    _add_model_options(image)
    image.add_argument(
        "--prompt-depth", action="append", type=Path, default=None, metavar="D",
        dest="prompt_depths",
        help="Prompt Depth Anything: the metric prompt of each PHOTO, same order (a .npy "
             "in metres or a 16-bit PNG in millimetres, any resolution, 0 / NaN = no "
             "measurement)")
    image.add_argument(
        "-o", "--outdir", type=Path, default=Path("depth_output"), help="default: depth_output"
    )
    _add_max_input_pixels(image)
    image.add_argument("--overwrite", action="store_true",
                       help="replace existing output files in OUTDIR (without it, a run "
                            "that would replace any is refused before it starts)")
    image.add_argument("--no-progress", action="store_false", dest="progress", default=None,
                       help="no progress bar (shown for several photos on a terminal)")
    image.set_defaults(func=run_image)
    _add_bag_parser(sub)
    _add_bags_parser(sub)
    _add_demo_parser(sub)
    _add_checkpoint_parser(sub)
    return parser


def _add_max_input_pixels(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-input-pixels", type=_positive_int, default=DEFAULT_MAX_INPUT_PIXELS, metavar="N",
        help="images declaring more pixels (width x height, read from the header before "
             f"decoding) are refused (default: {DEFAULT_MAX_INPUT_PIXELS})",
    )


def _add_model_options(p: argparse.ArgumentParser) -> None:
    """The model family and its input size (image, bag and bags)."""
    p.add_argument(
        "--model-type", choices=MODEL_TYPES, default="auto",
        help="model family and head; auto (default) reads them from the checkpoint. Needed "
             "only for an original Depth Anything V2 .pth whose name lost 'metric_hypersim' "
             "/ 'metric_vkitti'; a contradiction with the file is an error")
    p.add_argument(
        "--input-size", type=_number(int, 0), default=0, metavar="N",
        help="Depth Anything V2: lower bound on the network input's shorter side, a "
             "multiple of 14 (larger: sharper and slower; default 0 = 518); Prompt Depth "
             "Anything: upper bound on the longer side (0 = 1008); Depth Pro's input is fixed")
    p.add_argument(
        "--allow-relative", action="store_true",
        help="relative-depth models (Depth Anything V2 relative) without a scale_shift "
             "anchor fit: write the unitless relative inverse depth (depth/relative; "
             "image: <stem>_relative.npy) instead of refusing")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path, default=None, help=_CHECKPOINT_HELP)
    _add_model_options(p)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: auto)")
    p.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                   help=_PRECISION_HELP)
    p.add_argument(
        "--batch-size", type=_positive_int, default=None, metavar="N",
        help="images of equal size (in a bag: from any of its cameras) run as one batch "
        "(default: 4 on CUDA, 1 on the CPU)",
    )


def _add_bag_parser(sub) -> None:
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
    _add_processing_options(bag)
    bag.set_defaults(func=run_bag, parser=bag)


def _add_processing_options(bag: argparse.ArgumentParser) -> None:
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
    bag.add_argument("--start", type=_non_negative_float, default=None, metavar="S",
                     help="skip messages logged earlier than S seconds after the first one")
    bag.add_argument("--end", type=_non_negative_float, default=None, metavar="E",
                     help="stop at E seconds after the first message")
    _add_common(bag)
    # Defaults for recorded data (RECORDED_FOCAL says why they differ from the node's).
    rec = RECORDED_FOCAL
    focal = bag.add_argument_group("focal length (as the node's focal_* parameters)")
    focal.add_argument("--focal-source", choices=FOCAL_SOURCES, default=rec.focal_source,
                       help="auto: a CameraInfo paired by stamp, else the FoV estimate "
                            f"(default: {rec.focal_source})")
    focal.add_argument("--focal-px", type=_float, default=rec.fixed_focal_px, metavar="F",
                       help="focal length in pixels for --focal-source fixed")
    focal.add_argument("--focal-ema-alpha", type=_float, default=rec.focal_ema_alpha,
                       metavar="A", help="EMA weight of each new FoV estimate, (0, 1] "
                                         f"(default: {rec.focal_ema_alpha})")
    focal.add_argument("--camera-info-sync", choices=CAMERA_INFO_SYNC,
                       default=rec.camera_info_sync,
                       help="pair an image with the CameraInfo of equal stamp, of the "
                            "nearest stamp within --sync-slop, or the latest logged "
                            f"(default: {rec.camera_info_sync})")
    focal.add_argument("--sync-slop", type=_float, default=rec.sync_slop, metavar="S",
                       help="largest stamp difference for approximate pairing "
                            f"(default: {rec.sync_slop} s)")
    focal.add_argument("--camera-info-timeout", type=_float, default=rec.camera_info_timeout,
                       metavar="S", help="auto: a CameraInfo logged more than S seconds "
                                         "before the image is stale (default: "
                                         f"{rec.camera_info_timeout})")
    anchor = bag.add_argument_group(
        "metric anchoring (as the node's anchor_* parameters; docs/node.md, Metric anchoring)")
    anchor_defaults = AnchorSettings()
    anchor.add_argument("--anchor-topic", action="append", default=None, metavar="A",
                        dest="anchor_topics",
                        help="anchor per --image-topic, same order ('none' for a camera "
                             "without): a registered depth image (sensor_msgs/Image 32FC1 m "
                             "or 16UC1 mm) or a PointCloud2 in the camera's frame")
    anchor.add_argument("--anchor-fit", choices=ANCHOR_FITS, default=anchor_defaults.fit,
                        help="scale: one factor; scale_shift: affine in inverse depth "
                             f"(default: {anchor_defaults.fit})")
    anchor.add_argument("--anchor-ema-alpha", type=_float, default=anchor_defaults.ema_alpha,
                        metavar="A", help="EMA weight of each new accepted fit, (0, 1] "
                                          f"(default: {anchor_defaults.ema_alpha})")
    anchor.add_argument("--anchor-timeout", type=_float, default=anchor_defaults.timeout,
                        metavar="S", help="log-time seconds without an accepted fit before "
                                          "frames go unanchored (default: "
                                          f"{anchor_defaults.timeout})")
    anchor.add_argument("--anchor-min-points", type=_positive_int,
                        default=anchor_defaults.min_points, metavar="N",
                        help=f"fewest anchor pixels for a fit (default: "
                             f"{anchor_defaults.min_points})")
    anchor.add_argument("--anchor-sync", choices=CAMERA_INFO_SYNC, default="approximate",
                        help="pair an image with the anchor of equal stamp, of the nearest "
                             "stamp within --anchor-slop, or the latest logged (default: "
                             "approximate)")
    anchor.add_argument("--anchor-slop", type=_non_negative_float, default=0.05, metavar="S",
                        help="largest stamp difference for approximate anchor pairing "
                             "(default: 0.05 s)")
    out = bag.add_argument_group("outputs")
    out.add_argument("--depth-encoding", choices=DEPTH_ENCODINGS,
                     default=OutputOptions().depth_encoding,
                     help="32FC1 metres, NaN invalid (default, REP 118) or 16UC1 millimetres")
    out.add_argument("--output-scale", type=_float, default=1.0, metavar="R",
                     help="depth, points and CameraInfo at R times the image resolution, "
                          "0 < R <= 1 (default: 1)")
    out.add_argument("--points", action="store_true", help="write <ns>/points (PointCloud2)")
    out.add_argument("--points-decimation", type=_positive_int, default=1, metavar="N",
                     help="keep every N-th row and column in the point cloud (default: 1)")
    out.add_argument("--points-rgb", action="store_true",
                     help="add the image colour to the points as a packed rgb field")
    out.add_argument("--min-depth", type=_non_negative_float, default=0.0, metavar="M",
                     help="points nearer than M metres are NaN (default: 0)")
    out.add_argument("--max-depth", type=_positive_float, default=math.inf, metavar="M",
                     help="points farther than M metres are NaN (default: no limit)")
    out.add_argument("--colorized", action="store_true",
                     help="write <ns>/depth/colorized (bgr8 preview)")
    out.add_argument("--colorize-min", type=_non_negative_float, default=0.0, metavar="M",
                     help="preview colour range start in metres (default 0: per frame)")
    out.add_argument("--colorize-max", type=_non_negative_float, default=0.0, metavar="M",
                     help="preview colour range end in metres (default 0: per frame)")
    safety = bag.add_argument_group("behaviour")
    _add_max_input_pixels(safety)
    safety.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    safety.add_argument("--strict", action="store_true",
                        help="stop at the first message that cannot be processed (exit 1) "
                             "instead of skipping and counting it")
    safety.add_argument("--no-progress", action="store_false", dest="progress", default=None,
                        help="no progress bar (it is shown on a terminal)")


def _add_bags_parser(sub) -> None:
    bags = sub.add_parser(
        "bags",
        help="run the bag tool on many bags (one model per worker; optionally on Ray)",
        description=(
            "Run `depth-pro-ros bag` on every bag among INPUT (bag files and folders, and "
            "the bags found below other folders), each into OUTDIR/<input name>_depth/, "
            "with one loaded model: in this process, or on a pool of Ray workers (--ray). "
            "Adds the run to OUTDIR/summary.json (strict JSON: every run, and the latest "
            "record of every output bag, earlier successes kept). Exit status: 0 every "
            "bag done (or skipped by --resume), 1 some failed, 2 setup error, 130 "
            "interrupted."
        ),
    )
    bags.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                      help="bag file or folder, or a folder searched for bags")
    bags.add_argument("-o", "--outdir", type=Path, required=True, metavar="OUTDIR",
                      help="folder receiving one <name>_depth bag per input bag")
    fleet = bags.add_argument_group("fleet")
    fleet.add_argument("--resume", action="store_true",
                       help="skip bags whose complete output exists, made with the same "
                            "options and checkpoint; redo the others (replacing them)")
    fleet.add_argument("--ray", default=None, metavar="local|auto|ADDRESS",
                       help="run on Ray: 'local' starts a Ray instance here, 'auto' or "
                            "ADDRESS joins a cluster (needs depth_pro_ros[cluster])")
    fleet.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                       help="Ray workers, each with its own model (default: the cluster's "
                            "GPUs / --gpus-per-worker, else 1)")
    fleet.add_argument("--gpus-per-worker", type=_positive_float, default=None, metavar="G",
                       help="GPUs each Ray worker holds (default: none, CPU workers)")
    fleet.add_argument("--retries", type=_number(int, 0), default=2, metavar="N",
                       help="times a bag is retried when its Ray worker dies (default: 2)")
    _add_processing_options(bags)
    bags.set_defaults(func=run_bags, parser=bags)


def _add_demo_parser(sub) -> None:
    demo = sub.add_parser(
        "demo",
        help="run the bag tool on the bundled sample (what `make demo` does)",
        description=(
            "Generate the sample bag from the bundled sample picture, find the weights "
            "($DEPTH_PRO_DEMO_CHECKPOINT, $DEPTH_PRO_CHECKPOINT, else "
            f"{DEFAULT_CHECKPOINT}, downloaded when missing), run `depth-pro-ros bag` on "
            "it and write the output bag, a contact sheet PNG and a .ply point cloud."
        ),
    )
    demo.add_argument("-o", "--outdir", type=Path, default=Path("demo_output"),
                      help="default: demo_output")
    _add_common(demo)
    demo.add_argument("--no-download", action="store_false", dest="download",
                      help="stop instead of downloading missing weights")
    demo.set_defaults(func=run_demo)


def _error(message: str) -> None:
    print(f"depth-pro-ros: error: {message}", file=sys.stderr)


def _unique_stem(photo: Path, used: set[str]) -> str:
    stem = photo.stem or "image"
    candidate, n = stem, 2
    while candidate in used:
        candidate, n = f"{stem}_{n}", n + 1
    used.add(candidate)
    return candidate


def _existing_outputs(args: argparse.Namespace, stems: list[str], relative: bool) -> int:
    """0, or 1 after saying which output files exist (``image`` without --overwrite)."""
    from depth_pro_ros.io.image_files import depth_output_paths, relative_output_paths

    paths = relative_output_paths if relative else depth_output_paths
    existing = [path for stem in stems for path in paths(args.outdir, stem).values()
                if path.exists() or path.is_symlink()]
    if not existing:
        return 0
    more = f" (and {len(existing) - 1} more output file(s))" if len(existing) > 1 else ""
    _error(f"{existing[0]} exists{more}; pass --overwrite to replace the outputs, or "
           "choose another --outdir; no photo was processed")
    return 1


def _depth_text(depth) -> tuple[str, tuple[float, float] | None]:
    """The printed depth statistics and the preview's colour range (None: no valid
    pixel). The range is the one the preview's legend shows: the same numbers, in the
    same format."""
    import numpy as np

    from depth_pro_ros.io.colorize import (
        AUTO_RANGE_PERCENTILES,
        depth_range,
        format_metres,
        valid_depth_mask,
    )

    valid = depth[valid_depth_mask(depth)]  # what <stem>_depth.npy keeps (finite, > 0)
    if not valid.size:
        return "no valid depth", None
    lo, hi = depth_range(depth)
    p_lo, p_hi = AUTO_RANGE_PERCENTILES
    text = (f"depth {format_metres(float(valid.min()))} to {format_metres(float(valid.max()))}"
            f" (median {format_metres(float(np.median(valid)))}), colour legend "
            f"{format_metres(lo)} to {format_metres(hi)} (percentiles {p_lo:g}-{p_hi:g}; "
            "outside it colours saturate)")
    return text, (lo, hi)


def run_image(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from depth_pro_ros.engine import load_model
    from depth_pro_ros.engine.families import recipe_for
    from depth_pro_ros.io.image_files import (
        read_prompt_depth,
        read_rgb,
        write_depth_outputs,
        write_relative_outputs,
    )
    from depth_pro_ros.model import CheckpointError, infer, infer_depth_anything
    from depth_pro_ros.stream.anchor import dense_prompt

    checkpoint = args.checkpoint.expanduser() if args.checkpoint else default_checkpoint()
    if not checkpoint.exists():
        _error(missing_checkpoint_message(checkpoint))
        return 2
    try:
        model = load_model(checkpoint, args.device, args.precision, args.model_type).model
        info = recipe_for(model, args.input_size).info
    except (CheckpointError, ValueError) as exc:
        _error(str(exc))
        return 2
    prompts = args.prompt_depths or []
    if info.needs_prompt and len(prompts) != len(args.photos):
        _error(f"{info.description} needs a prompt depth per photo: give --prompt-depth "
               f"once per PHOTO, in the same order ({len(args.photos)} photo(s), "
               f"{len(prompts)} prompt(s))")
        return 2
    if prompts and not info.needs_prompt:
        _error(f"--prompt-depth is for Prompt Depth Anything; {info.description} takes none")
        return 2
    if info.kind == "relative" and not args.allow_relative:
        _error(f"{info.description} gives relative depth only, with no metric scale: pass "
               "--allow-relative to write its unitless inverse depth (<stem>_relative.npy), "
               "or use a metric model")
        return 2
    if info.family != "depth_pro" and args.focal_px is not None:
        print(f"depth-pro-ros: note: {info.description} does not use --focal-px",
              file=sys.stderr)

    photos: list[Path] = args.photos
    # Output names are fixed before anything runs (a photo that fails keeps its name), so
    # that existing outputs are refused before any photo is processed.
    used_stems: set[str] = set()
    stems = [_unique_stem(photo, used_stems) for photo in photos]
    relative = info.kind == "relative"
    if not args.overwrite and (code := _existing_outputs(args, stems, relative)):
        return code

    # A bar for several photos on a terminal (as `bag`); --no-progress: never.
    show_bar = len(photos) > 1 and (
        args.progress if args.progress is not None else sys.stderr.isatty())
    bar = tqdm(photos, unit="photo", disable=not show_bar, file=sys.stderr)

    def say(message: str) -> None:
        (tqdm.write if show_bar else print)(message)

    def fail(message: str) -> None:
        line = f"depth-pro-ros: error: {message}"
        (tqdm.write if show_bar else print)(line, file=sys.stderr)

    failures = 0
    for i, photo in enumerate(bar):
        warnings: list[str] = []
        try:
            rgb = read_rgb(photo, max_pixels=args.max_input_pixels, warnings=warnings)
        except ValueError as exc:
            failures += 1
            fail(str(exc))
            continue
        for warning in warnings:
            say(f"{photo}: decoder warning: {warning}")
        try:
            prompt = dense_prompt(read_prompt_depth(prompts[i])) if prompts else None
        except ValueError as exc:
            failures += 1
            fail(f"{photo}: prompt depth {prompts[i]}: {exc}")
            continue
        pred = None
        try:
            with torch.inference_mode():
                if info.family == "depth_pro":
                    pred = infer(model, rgb, f_px=args.focal_px)
                    out = pred.depth
                else:
                    out = infer_depth_anything(model, rgb, info.input_size, prompt)
            out = out.detach().float().cpu().numpy()
        except RuntimeError as exc:
            failures += 1
            fail(f"{photo}: inference failed: {exc}")
            continue
        try:
            if relative:
                paths = write_relative_outputs(args.outdir, stems[i], out)
            else:
                depth_text, colour_range = _depth_text(out)
                # The legend is drawn for exactly the range printed.
                paths = write_depth_outputs(args.outdir, stems[i], out,
                                            *(colour_range or (None, None)))
        except (OSError, ValueError) as exc:
            failures += 1
            fail(f"{photo}: could not write outputs: {exc}")
            continue
        if relative:
            say(f"{photo}: {rgb.shape[1]}x{rgb.shape[0]}, relative inverse depth (unitless) "
                f"-> {paths['npy']}")
            continue
        focal_text = ""
        if pred is not None:
            fov_text = f", fov {pred.fov_deg:.1f} deg" if pred.fov_deg is not None else ""
            focal_text = f", focal {pred.focal_px:.1f} px ({pred.focal_source}{fov_text})"
        say(f"{photo}: {rgb.shape[1]}x{rgb.shape[0]}{focal_text}, {depth_text} -> "
            f"{paths['color_png']}")

    bar.close()
    if failures:
        _error(f"{failures} of {len(photos)} photo(s) failed")
        return 1
    return 0


def bag_options(args: argparse.Namespace, input: Path, output: Path):
    """The ``BagOptions`` the processing options in ``args`` give for one bag."""
    from depth_pro_ros.bag import BagOptions
    from depth_pro_ros.stream import FocalSettings, OutputOptions
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
        checkpoint=args.checkpoint.expanduser() if args.checkpoint else default_checkpoint(),
        image_topics=args.image_topics, camera_info_topics=args.camera_info_topics,
        copy_topics=args.copy_topics, storage=args.storage, start=args.start, end=args.end,
        device=args.device, precision=args.precision, batch_size=args.batch_size,
        focal=focal, outputs=outputs, output_scale=args.output_scale,
        points_decimation=args.points_decimation,
        points_rgb=args.points_rgb, min_depth=args.min_depth, max_depth=args.max_depth,
        max_input_pixels=args.max_input_pixels, overwrite=args.overwrite, strict=args.strict,
        progress=args.progress, anchor_topics=args.anchor_topics, anchor=anchor,
        model_type=args.model_type, input_size=args.input_size,
        allow_relative=args.allow_relative)


def run_bag(args: argparse.Namespace) -> int:
    from depth_pro_ros.bag import BagError, process_bag

    opts = bag_options(args, args.input, args.output)
    try:
        summary = process_bag(opts)
    except BagError as exc:
        _error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        _error(f"interrupted; {opts.output} was not written")
        return 130
    print(summary.format())
    return 0


def run_bags(args: argparse.Namespace) -> int:
    from depth_pro_ros.bag.fleet import FleetSettings, run_fleet

    if args.ray is None and (args.workers or args.gpus_per_worker):
        args.parser.error("--workers and --gpus-per-worker need --ray")
    template = bag_options(args, Path("."), Path("."))
    settings = FleetSettings(outdir=args.outdir, resume=args.resume, ray=args.ray,
                             workers=args.workers, gpus_per_worker=args.gpus_per_worker,
                             retries=args.retries, progress=args.progress)
    return run_fleet(template, args.inputs, settings)


def run_demo(args: argparse.Namespace) -> int:
    from depth_pro_ros.bag.demo import run_demo as demo

    try:
        return demo(outdir=args.outdir, checkpoint=args.checkpoint, device=args.device,
                    precision=args.precision, batch_size=args.batch_size,
                    download=args.download)
    except KeyboardInterrupt:
        _error("interrupted")
        return 130


# --- checkpoint: random-weight stand-ins ---------------------------------------------------


def _add_checkpoint_parser(sub) -> None:
    from depth_pro_ros.model.stand_in import RANDOM_SIZES, STAND_IN_TYPES

    sizes = list(dict.fromkeys(s for family in RANDOM_SIZES.values() for s in family))
    ck = sub.add_parser(
        "checkpoint",
        help="write a random-weight stand-in checkpoint (try the tools without the weights)",
        description=(
            "Write a checkpoint with RANDOM weights, for any model family, to try the node, "
            "the bag tool and the image command without the real weights. Its depth is "
            "meaningless. tiny (every family) is a network of about 1 MB that takes a "
            "second or so per picture on a CPU; full (Depth Pro, 952 M parameters, 1.9 GB) "
            "and vits / vitb / vitl (Depth Anything, 25 / 98 / 335 M) have the released "
            "architecture (stored in fp16), for timing and memory trials. The same options "
            "always write the same file. Exit status: 0 written, 2 usage error, OUTPUT "
            "exists or cannot be written."
        ),
    )
    ck.add_argument("--random", required=True, choices=sizes, metavar="SIZE",
                    help=f"network size: {', '.join(sizes)} (Depth Pro: "
                         f"{' or '.join(RANDOM_SIZES['depth_pro'])}; Depth Anything: "
                         f"{', '.join(RANDOM_SIZES['depth_anything'])})")
    ck.add_argument("--model-type", choices=STAND_IN_TYPES, default="depth_pro",
                    help="model family and head (default: depth_pro)")
    ck.add_argument("-o", "--output", type=Path, required=True, metavar="OUTPUT",
                    help="checkpoint file to write (the project's .pt format)")
    ck.add_argument("--seed", type=_number(int, 0), default=None, metavar="N",
                    help="random seed (default: a fixed seed per family)")
    ck.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    ck.set_defaults(func=run_checkpoint, parser=ck)


def run_checkpoint(args: argparse.Namespace) -> int:
    from depth_pro_ros.model import save_checkpoint
    from depth_pro_ros.model.stand_in import random_config, random_model, stand_in_text

    output: Path = args.output.expanduser()
    try:
        random_config(args.model_type, args.random)
    except ValueError as exc:
        args.parser.error(str(exc))
    if output.is_dir():
        _error(f"{output} is a folder; give the checkpoint file to write")
        return 2
    if output.exists() and not args.overwrite:
        _error(f"{output} exists; pass --overwrite to replace it")
        return 2
    model = random_model(args.model_type, args.random, args.seed)
    if args.random != "tiny":
        model = model.half()  # as Apple's release: half the file
    params = sum(p.numel() for p in model.parameters())
    try:
        save_checkpoint(model, output)
    except OSError as exc:
        _error(f"could not write {output}: {exc}")
        return 2
    size_mb = output.stat().st_size / 1e6
    print(f"wrote {output}: {stand_in_text(args.model_type, args.random)}, "
          f"{params / 1e6:.2f} M parameters, {size_mb:.1f} MB")
    print("note: its weights are RANDOM, so the depth it gives is meaningless: it only "
          f"exercises the tools (--checkpoint {output}; node: checkpoint:={output})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
