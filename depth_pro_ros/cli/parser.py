"""The ``depth-pro-ros`` argument parser: one subparser per subcommand module."""

from __future__ import annotations

import argparse

from depth_pro_ros import __version__
from depth_pro_ros.cli import bag, bags, checkpoint, demo, export, image

__all__ = ["build_parser"]

#: The subcommands, in the order ``--help`` lists them.
SUBCOMMANDS = (image, bag, bags, demo, checkpoint, export)


def build_parser() -> argparse.ArgumentParser:
    """The parser; each subcommand sets ``func`` (its ``run``) in the parsed namespace."""
    parser = argparse.ArgumentParser(
        prog="depth-pro-ros",
        description="Metric monocular depth with Apple's Depth Pro.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in SUBCOMMANDS:
        command.add_parser(sub)
    return parser
