"""The ``depth-pro-ros`` command.

Subcommands, one module each:

* ``image`` -- metric depth for one or more photos, written as .npy / 16-bit PNG /
  colorized PNG (through the engine, as the node and the bag tool).
* ``bag`` -- metric depth for every image of a recorded ROS 1 / ROS 2 bag, written to a
  new ROS 2 bag (``depth_pro_ros.bag``).
* ``bags`` -- the bag tool on many bags with one model per worker, here or on Ray
  (``depth_pro_ros.bag.fleet``).
* ``demo`` -- the bag tool on the bundled sample, with a contact sheet and a .ply.
* ``checkpoint`` -- a random-weight stand-in checkpoint of any family, to try the tools
  without the real weights (``depth_pro_ros.model.stand_in``).
* ``export`` -- a checkpoint's network as a self-describing ONNX file for the
  onnxruntime backend (``depth_pro_ros.engine.backends.onnx_export``).

``parser`` builds the argument parser from them, ``options`` holds what they share.

Exit status: 0 on success, 1 when some inputs failed (``image``: also when outputs exist
and ``--overwrite`` is not given), 2 for usage, device or checkpoint errors (``bag``: 1
for input and data errors, an existing OUTPUT among them, 130 when interrupted). The
command is a thin layer: the work is done by ``engine``, ``io`` and ``bag``.
"""

from __future__ import annotations

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: the command line) and run the subcommand; its exit status."""
    from depth_pro_ros.cli.parser import build_parser

    args = build_parser().parse_args(argv)
    return args.func(args)
