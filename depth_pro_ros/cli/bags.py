"""``depth-pro-ros bags``: the bag tool on many bags, one model per worker, here or on Ray
(``depth_pro_ros.bag.fleet``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from depth_pro_ros.cli.bag import add_processing_options, bag_options
from depth_pro_ros.cli.options import number, positive_float, positive_int

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``bags`` subcommand's options: the fleet's, then every bag's."""
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
    fleet.add_argument("--workers", type=positive_int, default=None, metavar="N",
                       help="Ray workers, each with its own model (default: the cluster's "
                            "GPUs / --gpus-per-worker, else 1)")
    fleet.add_argument("--gpus-per-worker", type=positive_float, default=None, metavar="G",
                       help="GPUs each Ray worker holds (default: none, CPU workers)")
    fleet.add_argument("--retries", type=number(int, 0), default=2, metavar="N",
                       help="times a bag is retried when its Ray worker dies (default: 2)")
    add_processing_options(bags)
    bags.set_defaults(func=run, parser=bags)


def run(args: argparse.Namespace) -> int:
    """Run ``bags``; the exit status."""
    from depth_pro_ros.bag.fleet import FleetSettings, run_fleet

    if args.ray is None and (args.workers or args.gpus_per_worker):
        args.parser.error("--workers and --gpus-per-worker need --ray")
    template = bag_options(args, Path("."), Path("."))
    settings = FleetSettings(outdir=args.outdir, resume=args.resume, ray=args.ray,
                             workers=args.workers, gpus_per_worker=args.gpus_per_worker,
                             retries=args.retries, progress=args.progress)
    return run_fleet(template, args.inputs, settings)
