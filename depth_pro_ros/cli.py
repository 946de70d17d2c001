"""The ``depth-pro-ros`` command.

Subcommands:

* ``image`` -- metric depth for one or more photos, written as .npy / 16-bit PNG /
  colorized PNG.

Exit status: 0 on success, 1 when some inputs failed, 2 for usage, device or checkpoint
errors. The command is a thin layer: the work is done by ``model`` and ``io``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from depth_pro_ros import __version__

WEIGHTS_URL = "https://ml-site.cdn-apple.com/models/depth-pro/depth_pro.pt"
DEFAULT_CHECKPOINT = Path("~/.cache/depth_pro_ros/depth_pro.pt")
CHECKPOINT_ENV = "DEPTH_PRO_CHECKPOINT"
PRECISIONS = ("fp32", "fp16", "bf16")


def default_checkpoint() -> Path:
    """``$DEPTH_PRO_CHECKPOINT`` when set, else ``~/.cache/depth_pro_ros/depth_pro.pt``."""
    env = os.environ.get(CHECKPOINT_ENV)
    return Path(env).expanduser() if env else DEFAULT_CHECKPOINT.expanduser()


def missing_checkpoint_message(path: Path) -> str:
    return (
        f"checkpoint not found: {path}\n"
        f"Download Apple's weights from {WEIGHTS_URL} (or the Hugging Face folder "
        f"apple/DepthPro-hf with model.safetensors and config.json), put them at "
        f"{DEFAULT_CHECKPOINT} or set ${CHECKPOINT_ENV}, or pass --checkpoint PATH."
    )


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


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
            "and <stem>_depth_color.png (preview) to OUTDIR."
        ),
    )
    image.add_argument("photos", nargs="+", metavar="PHOTO", type=Path, help="image files")
    image.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help=(
            "Apple depth_pro.pt, Hugging Face safetensors file or folder, or project .pt "
            f"(default: ${CHECKPOINT_ENV} or {DEFAULT_CHECKPOINT})"
        ),
    )
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
    image.add_argument("--precision", choices=PRECISIONS, default="fp32", help="default: fp32")
    image.add_argument(
        "-o", "--outdir", type=Path, default=Path("depth_output"), help="default: depth_output"
    )
    image.set_defaults(func=run_image)
    return parser


def _error(message: str) -> None:
    print(f"depth-pro-ros: error: {message}", file=sys.stderr)


def _unique_stem(photo: Path, used: set[str]) -> str:
    stem = photo.stem or "image"
    candidate, n = stem, 2
    while candidate in used:
        candidate, n = f"{stem}_{n}", n + 1
    used.add(candidate)
    return candidate


def run_image(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from tqdm import tqdm

    from depth_pro_ros.engine import resolve_device
    from depth_pro_ros.io.image_files import read_rgb, write_depth_outputs
    from depth_pro_ros.model import CheckpointError, infer, load_checkpoint, parse_precision

    try:
        device = resolve_device(args.device)
        precision = parse_precision(args.precision)
    except ValueError as exc:
        _error(str(exc))
        return 2

    checkpoint = args.checkpoint.expanduser() if args.checkpoint else default_checkpoint()
    if not checkpoint.exists():
        _error(missing_checkpoint_message(checkpoint))
        return 2
    try:
        model = load_checkpoint(checkpoint, device=str(device), precision=precision)
    except CheckpointError as exc:
        _error(str(exc))
        return 2

    photos: list[Path] = args.photos
    show_bar = len(photos) > 1
    bar = tqdm(photos, unit="photo", disable=not show_bar, file=sys.stderr)

    def say(message: str) -> None:
        (tqdm.write if show_bar else print)(message)

    def fail(message: str) -> None:
        line = f"depth-pro-ros: error: {message}"
        (tqdm.write if show_bar else print)(line, file=sys.stderr)

    used_stems: set[str] = set()
    failures = 0
    for photo in bar:
        try:
            rgb = read_rgb(photo)
        except ValueError as exc:
            failures += 1
            fail(str(exc))
            continue
        try:
            with torch.inference_mode():
                pred = infer(model, rgb, f_px=args.focal_px)
            depth = pred.depth.detach().float().cpu().numpy()
        except RuntimeError as exc:
            failures += 1
            fail(f"{photo}: inference failed: {exc}")
            continue
        try:
            paths = write_depth_outputs(args.outdir, _unique_stem(photo, used_stems), depth)
        except (OSError, ValueError) as exc:
            failures += 1
            fail(f"{photo}: could not write outputs: {exc}")
            continue

        finite = depth[np.isfinite(depth)]
        depth_text = (
            f"depth {float(finite.min()):.2f}-{float(finite.max()):.2f} m "
            f"(median {float(np.median(finite)):.2f} m)"
            if finite.size
            else "no valid depth"
        )
        fov_text = f", fov {pred.fov_deg:.1f} deg" if pred.fov_deg is not None else ""
        say(
            f"{photo}: {rgb.shape[1]}x{rgb.shape[0]}, focal {pred.focal_px:.1f} px "
            f"({pred.focal_source}{fov_text}), {depth_text} -> {paths['color_png']}"
        )

    bar.close()
    if failures:
        _error(f"{failures} of {len(photos)} photo(s) failed")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
