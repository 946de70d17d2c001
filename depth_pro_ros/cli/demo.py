"""``depth-pro-ros demo``: the bag tool on the bundled sample (``depth_pro_ros.bag.demo``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from depth_pro_ros.cli.options import add_engine_options, error
from depth_pro_ros.model.weights import DEFAULT_CHECKPOINT

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``demo`` subcommand's options."""
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
    add_engine_options(demo)
    demo.add_argument("--no-download", action="store_false", dest="download",
                      help="stop instead of downloading missing weights")
    demo.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``demo``; the exit status."""
    from depth_pro_ros.bag.demo import run_demo

    try:
        return run_demo(outdir=args.outdir, checkpoint=args.checkpoint, device=args.device,
                        precision=args.precision, batch_size=args.batch_size,
                        download=args.download)
    except KeyboardInterrupt:
        error("interrupted")
        return 130
