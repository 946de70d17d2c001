"""``depth-pro-ros checkpoint``: a random-weight stand-in checkpoint of any family, to try
the tools without the real weights (``depth_pro_ros.model.stand_in``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from depth_pro_ros.cli.options import error, in_range
from depth_pro_ros.engine import ranges

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``checkpoint`` subcommand's options."""
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
    ck.add_argument("--seed", type=in_range(int, ranges.SEED), default=None, metavar="N",
                    help="random seed (default: a fixed seed per family)")
    ck.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    ck.set_defaults(func=run, parser=ck)


def run(args: argparse.Namespace) -> int:
    """Run ``checkpoint``; the exit status."""
    from depth_pro_ros.model import save_checkpoint
    from depth_pro_ros.model.stand_in import random_config, random_model, stand_in_text

    output: Path = args.output.expanduser()
    try:
        random_config(args.model_type, args.random)
    except ValueError as exc:
        args.parser.error(str(exc))
    if output.is_dir():
        error(f"{output} is a folder; give the checkpoint file to write")
        return 2
    if output.exists() and not args.overwrite:
        error(f"{output} exists; pass --overwrite to replace it")
        return 2
    model = random_model(args.model_type, args.random, args.seed)
    if args.random != "tiny":
        model = model.half()  # as Apple's release: half the file
    params = sum(p.numel() for p in model.parameters())
    try:
        save_checkpoint(model, output)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        error(f"could not write {output}: {exc.strerror or exc}{where}")
        return 2
    size_mb = output.stat().st_size / 1e6
    print(f"wrote {output}: {stand_in_text(args.model_type, args.random)}, "
          f"{params / 1e6:.2f} M parameters, {size_mb:.1f} MB")
    print("note: its weights are RANDOM, so the depth it gives is meaningless: it only "
          f"exercises the tools (--checkpoint {output}; node: checkpoint:={output})")
    return 0
