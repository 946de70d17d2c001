"""``depth-pro-ros export``: a checkpoint's network as a self-describing ONNX file
(``depth_pro_ros.engine.backends.onnx_export``; docs/backends.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from depth_pro_ros.cli.options import CHECKPOINT_HELP, error
from depth_pro_ros.model import MODEL_TYPES

__all__ = ["add_parser", "run"]

FORMATS = ("onnx",)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``export`` subcommand's options."""
    ex = sub.add_parser(
        "export",
        help="export a checkpoint's network to ONNX (runs on backend onnxruntime)",
        description=(
            "Export the network of a checkpoint (any family) to an fp32 ONNX file with a "
            "dynamic batch axis (Depth Anything: also dynamic height and width) that "
            "describes itself in its metadata, so that --checkpoint OUTPUT (node, bag "
            "tool, image command) runs it on ONNX Runtime with no other flag. The file is "
            "checked with ONNX Runtime against torch (1e-4 relative) before it is "
            "written; nothing is left behind when that fails. Exit status: 0 written, 2 "
            "usage error, unusable checkpoint, existing OUTPUT or failed check."
        ),
    )
    ex.add_argument("--checkpoint", type=Path, required=True, help=CHECKPOINT_HELP)
    ex.add_argument("--model-type", choices=MODEL_TYPES, default="auto",
                    help="model family and head, as for the other commands (default: auto, "
                         "read from the checkpoint); the file records it")
    ex.add_argument("--format", choices=FORMATS, default="onnx",
                    help="output format (default: onnx; TensorRT is not done yet)")
    ex.add_argument("-o", "--output", type=Path, required=True, metavar="OUTPUT",
                    help="file to write, ending in .onnx (networks over 2 GB also write "
                         "OUTPUT.data beside it)")
    ex.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    ex.set_defaults(func=run, parser=ex)


def run(args: argparse.Namespace) -> int:
    """Run ``export``; the exit status."""
    from depth_pro_ros.engine.backends.onnx_export import export_onnx
    from depth_pro_ros.model import CheckpointError

    try:
        result = export_onnx(args.checkpoint.expanduser(), args.output.expanduser(),
                             overwrite=args.overwrite, model_type=args.model_type)
    except (CheckpointError, ValueError) as exc:  # ExportError is a ValueError
        error(str(exc))
        return 2
    except OSError as exc:
        error(f"could not write {args.output}: {exc.strerror or exc}")
        return 2
    extra = f" (weights in {result.external_data.name})" if result.external_data else ""
    print(f"wrote {result.path}{extra}: {result.description}, checked against torch "
          f"(max relative difference {result.self_check:.2g}) in {result.seconds:.0f} s")
    return 0
