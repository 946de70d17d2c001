"""``depth-pro-ros image``: depth of photos, written as .npy / 16-bit PNG / preview PNG.

The photos run through the engine (``create_engine``), as the node's and the bag tool's
frames do: what a family needs and gives is the engine's and its recipe's business.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from depth_pro_ros.cli.options import (
    CHECKPOINT_HELP,
    PRECISION_HELP,
    add_backend,
    add_max_input_pixels,
    add_model_options,
    backend_settings,
    error,
    in_range,
)
from depth_pro_ros.engine import PRECISION_CHOICES, ranges

if TYPE_CHECKING:
    import numpy as np

    from depth_pro_ros.engine import DepthEngine, DepthResult
    from depth_pro_ros.model import ModelInfo

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``image`` subcommand's options."""
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
    image.add_argument("--checkpoint", type=Path, default=None, help=CHECKPOINT_HELP)
    image.add_argument(
        "--focal-px",
        type=in_range(float, ranges.FOCAL_PX, inclusive=False),
        default=None,
        metavar="F",
        help="known horizontal focal length in pixels of the photos (default: estimated)",
    )
    image.add_argument(
        "--device", default=None, help="torch device, e.g. cpu, cuda, cuda:1 (default: auto)"
    )
    image.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                       help=PRECISION_HELP)
    add_backend(image)
    add_model_options(image)
    image.add_argument(
        "--prompt-depth", action="append", type=Path, default=None, metavar="D",
        dest="prompt_depths",
        help="Prompt Depth Anything: the metric prompt of each PHOTO, same order (a .npy "
             "in metres or a 16-bit PNG in millimetres, any resolution, 0 / NaN = no "
             "measurement)")
    image.add_argument(
        "-o", "--outdir", type=Path, default=Path("depth_output"), help="default: depth_output"
    )
    add_max_input_pixels(image)
    image.add_argument("--overwrite", action="store_true",
                       help="replace existing output files in OUTDIR (without it, a run "
                            "that would replace any is refused before it starts)")
    image.add_argument("--no-progress", action="store_false", dest="progress", default=None,
                       help="no progress bar (shown for several photos on a terminal)")
    image.set_defaults(func=run)


def _unique_stem(photo: Path, used: set[str]) -> str:
    stem = photo.stem or "image"
    candidate, n = stem, 2
    while candidate in used:
        candidate, n = f"{stem}_{n}", n + 1
    used.add(candidate)
    return candidate


def _existing_outputs(outdir: Path, stems: list[str], relative: bool) -> int:
    """0, or 1 after saying which output files exist (``image`` without --overwrite)."""
    from depth_pro_ros.io.image_files import depth_output_paths, relative_output_paths

    paths = relative_output_paths if relative else depth_output_paths
    existing = [path for stem in stems for path in paths(outdir, stem).values()
                if path.exists() or path.is_symlink()]
    if not existing:
        return 0
    more = f" (and {len(existing) - 1} more output file(s))" if len(existing) > 1 else ""
    error(f"{existing[0]} exists{more}; pass --overwrite to replace the outputs, or "
          "choose another --outdir; no photo was processed")
    return 1


def _reason(exc: BaseException) -> str:
    """An OSError as ``strerror: filename`` (its str() shows ``[Errno 28]``), else str()."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc)


def _unusable_outdir(outdir: Path) -> int:
    """0, or 1 after saying why OUTDIR cannot take the outputs (a file, under a file,
    not writable), before any photo is processed."""
    import os

    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = "it is a file" if outdir.is_file() else _reason(exc)
        error(f"cannot use output folder {outdir}: {reason}; no photo was processed")
        return 1
    if not os.access(outdir, os.W_OK | os.X_OK):
        error(f"cannot use output folder {outdir}: not writable; no photo was processed")
        return 1
    return 0


def _depth_text(depth: np.ndarray) -> tuple[str, tuple[float, float] | None]:
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


def _refusal(info: ModelInfo, args: argparse.Namespace) -> str | None:
    """Why the model cannot run the photos with these options (None: it can)."""
    prompts = args.prompt_depths or []
    if info.needs_prompt and len(prompts) != len(args.photos):
        return (f"{info.description} needs a prompt depth per photo: give --prompt-depth "
                f"once per PHOTO, in the same order ({len(args.photos)} photo(s), "
                f"{len(prompts)} prompt(s))")
    if prompts and not info.needs_prompt:
        return f"--prompt-depth is for Prompt Depth Anything; {info.description} takes none"
    if info.kind == "relative" and not args.allow_relative:
        return (f"{info.description} gives relative depth only, with no metric scale: pass "
                "--allow-relative to write its unitless inverse depth (<stem>_relative.npy), "
                "or use a metric model")
    if info.needs_focal and not info.has_fov_head and args.focal_px is None:
        return f"{info.description} has no field-of-view head: give --focal-px"
    return None


def _start_engine(args: argparse.Namespace) -> DepthEngine | None:
    """The engine for ``args`` (None after saying why there is none)."""
    from depth_pro_ros.engine import EngineConfig, create_engine
    from depth_pro_ros.model import CheckpointError
    from depth_pro_ros.model.weights import MissingCheckpointError, resolve_checkpoint

    try:
        checkpoint = resolve_checkpoint(args.checkpoint)
        # One photo at a time, every one processed: a batch would need equal sizes.
        config = EngineConfig(device=args.device, precision=args.precision, policy="all",
                              queue_size=1, batch_size=1, input_size=args.input_size,
                              sky_mask=args.sky_mask,
                              **backend_settings(args))
        return create_engine(checkpoint, config, model_type=args.model_type)
    except (MissingCheckpointError, CheckpointError, ValueError) as exc:
        error(str(exc))
        return None


def _depth_of(engine: DepthEngine, rgb: np.ndarray, focal_px: float | None,
              prompt: np.ndarray | None) -> DepthResult:
    """One photo through the engine; ``focal_px`` is used where the depth needs it."""
    from depth_pro_ros.engine import FocalSource, Frame, Intrinsics

    height, width = rgb.shape[:2]
    intrinsics = None
    if focal_px is not None and engine.recipe.info.needs_focal:
        intrinsics = Intrinsics(focal_px, focal_px, (width - 1) / 2, (height - 1) / 2,
                                width, height)
    engine.submit(Frame(rgb, intrinsics=intrinsics, focal_source=FocalSource.FIXED,
                        prompt=prompt))
    result = engine.get()
    assert result is not None  # get() without a timeout waits for the result
    return result


def run(args: argparse.Namespace) -> int:
    """Run ``image``; the exit status."""
    engine = _start_engine(args)
    if engine is None:
        return 2
    try:
        info = engine.recipe.info
        if (problem := _refusal(info, args)) is not None:
            error(problem)
            return 2
        if not info.needs_focal and args.focal_px is not None:
            print(f"depth-pro-ros: note: {info.description} does not use --focal-px",
                  file=sys.stderr)
        return _run_photos(engine, args)
    finally:
        engine.close()


def _run_photos(engine: DepthEngine, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from depth_pro_ros.io.image_files import (
        InputFiles,
        read_prompt_depth,
        read_rgb,
        write_depth_outputs,
        write_relative_outputs,
    )
    from depth_pro_ros.stream.anchor import dense_prompt

    photos: list[Path] = args.photos
    prompts: list[Path] = args.prompt_depths or []
    relative = engine.recipe.info.kind == "relative"
    # Output names are fixed before anything runs (a photo that fails keeps its name), so
    # that existing outputs are refused before any photo is processed.
    used_stems: set[str] = set()
    stems = [_unique_stem(photo, used_stems) for photo in photos]
    if (code := _unusable_outdir(args.outdir)) or (
            not args.overwrite and (code := _existing_outputs(args.outdir, stems, relative))):
        return code
    # Never written over, even with --overwrite (an output name may be an input's).
    inputs = InputFiles([*photos, *prompts, *([args.checkpoint] if args.checkpoint else [])])

    # A bar for several photos on a terminal (as `bag`); --no-progress: never.
    show_bar = len(photos) > 1 and (
        args.progress if args.progress is not None else sys.stderr.isatty())
    bar = tqdm(photos, unit="photo", disable=not show_bar, file=sys.stderr)
    write: Callable[..., None] = tqdm.write if show_bar else print

    def fail(message: str) -> None:
        write(f"depth-pro-ros: error: {message}", file=sys.stderr)

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
            write(f"{photo}: decoder warning: {warning}")
        try:
            prompt = (dense_prompt(read_prompt_depth(prompts[i], args.max_input_pixels))
                      if prompts else None)
            result = _depth_of(engine, rgb, args.focal_px, prompt)
        except ValueError as exc:  # Frame.validate: a prompt the model cannot use
            failures += 1
            fail(f"{photo}: prompt depth {prompts[i] if prompts else ''}: {exc}")
            continue
        if not result.ok:
            failures += 1
            fail(f"{photo}: inference failed: {result.error}")
            continue
        out = result.relative if relative else result.depth
        try:
            if relative:
                paths = write_relative_outputs(args.outdir, stems[i], out, args.overwrite,
                                               inputs)
            else:
                depth_text, colour_range = _depth_text(out)
                # The legend is drawn for exactly the range printed.
                paths = write_depth_outputs(args.outdir, stems[i], out,
                                            *(colour_range or (None, None)),
                                            overwrite=args.overwrite, protect=inputs)
        except (OSError, ValueError) as exc:  # nothing of this photo was written
            failures += 1
            fail(f"{photo}: could not write outputs: {_reason(exc)}")
            continue
        size = f"{rgb.shape[1]}x{rgb.shape[0]}"
        if relative:
            write(f"{photo}: {size}, relative inverse depth (unitless) -> {paths['npy']}")
            continue
        write(f"{photo}: {size}{_focal_text(result)}, {depth_text} -> {paths['color_png']}")

    bar.close()
    if failures:
        error(f"{failures} of {len(photos)} photo(s) failed")
        return 1
    return 0


def _focal_text(result: DepthResult) -> str:
    """``, focal F px (SOURCE[, fov D deg])`` when the depth used a focal, else ''."""
    if result.intrinsics is None or result.focal_source is None:
        return ""
    fov = f", fov {result.fov_deg:.1f} deg" if result.fov_deg is not None else ""
    return f", focal {result.intrinsics.fx:.1f} px ({result.focal_source.value}{fov})"
