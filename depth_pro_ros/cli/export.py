"""``depth-pro-ros export``: a checkpoint's network as a self-describing ONNX file
(``depth_pro_ros.engine.backends.onnx_export``), and with ``--format tensorrt`` that
file's TensorRT engine built into the engine cache ahead of time
(``depth_pro_ros.engine.backends.tensorrt_backend``; docs/backends.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from depth_pro_ros.cli.options import CHECKPOINT_HELP, error, in_range
from depth_pro_ros.engine import PRECISION_CHOICES, ranges
from depth_pro_ros.engine.backends.ort_quantize import QUANTIZATIONS
from depth_pro_ros.model import MODEL_TYPES

__all__ = ["add_parser", "run"]

FORMATS = ("onnx", "tensorrt")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``export`` subcommand's options."""
    ex = sub.add_parser(
        "export",
        help="export a checkpoint's network to ONNX (backend onnxruntime) and build its "
             "TensorRT engine (backend tensorrt)",
        description=(
            "Export the network of a checkpoint (any family) to an fp32 ONNX file with a "
            "dynamic batch axis (Depth Anything: also dynamic height and width) that "
            "describes itself in its metadata, so that --checkpoint OUTPUT (node, bag "
            "tool, image command) runs it on ONNX Runtime with no other flag. The file is "
            "checked with ONNX Runtime against torch (1e-4 relative) before it is "
            "written; nothing is left behind when that fails. --format tensorrt then "
            "builds the file's TensorRT engine for --device, --precision and --batch-size "
            "(those the node will run with) into the engine cache and checks it with the "
            "accuracy gate, so that backend tensorrt starts without building; CHECKPOINT "
            "may then be an exported .onnx (no OUTPUT needed). Exit status: 0 written, 2 "
            "usage error, unusable checkpoint, existing OUTPUT, failed check, or no GPU / "
            "TensorRT for --format tensorrt."
        ),
    )
    ex.add_argument("--checkpoint", type=Path, required=True, help=CHECKPOINT_HELP)
    ex.add_argument("--model-type", choices=MODEL_TYPES, default="auto",
                    help="model family and head, as for the other commands (default: auto, "
                         "read from the checkpoint); the file records it")
    ex.add_argument("--format", choices=FORMATS, default="onnx",
                    help="onnx: the ONNX file; tensorrt: also its TensorRT engine, in the "
                         "engine cache (default: onnx)")
    ex.add_argument("-o", "--output", type=Path, default=None, metavar="OUTPUT",
                    help="file to write, ending in .onnx (networks over 2 GB also write "
                         "OUTPUT.data beside it); required unless --format tensorrt is "
                         "given an exported .onnx")
    ex.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    ex.add_argument("--quantize", choices=QUANTIZATIONS, default=None,
                    help="int8: write the network with its linear layers quantised to int8 "
                         "by ONNX Runtime (a third of the size, faster on a CPU), refused "
                         "unless within 1 %% of fp32 torch on the gate images (default: "
                         "fp32)")
    trt = ex.add_argument_group("--format tensorrt: the engine's settings (the node's)")
    trt.add_argument("--device", default=None, help="cuda or cuda:N (default: cuda)")
    trt.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                     help="the engine's precision: auto = fp16 (default), bf16 or fp32")
    trt.add_argument("--batch-size", type=in_range(int, ranges.BATCH_SIZE), default=1,
                     metavar="N", help="largest batch the engine runs at once (default 1, "
                                       "the node's batch_size)")
    ex.set_defaults(func=run, parser=ex)


def run(args: argparse.Namespace) -> int:
    """Run ``export``; the exit status."""
    from depth_pro_ros.engine.backends.onnx_export import export_onnx
    from depth_pro_ros.engine.backends.onnx_file import is_onnx
    from depth_pro_ros.model import CheckpointError

    checkpoint = args.checkpoint.expanduser()
    if args.format == "tensorrt" and args.quantize:  # before a minute of export
        args.parser.error("--quantize int8 is for CPUs (backend onnxruntime); TensorRT "
                          "builds its engine from the fp32 file")
    given_onnx = args.format == "tensorrt" and is_onnx(checkpoint) and args.output is None
    if args.output is None and not given_onnx:
        args.parser.error("-o/--output is required (optional only for --format tensorrt "
                          "of an exported .onnx)")
    try:
        if args.format == "tensorrt":  # before a minute of ONNX export, not after it
            _tensorrt_device(args.device)
        if given_onnx:
            onnx = checkpoint
        else:
            result = export_onnx(checkpoint, args.output.expanduser(),
                                 overwrite=args.overwrite, model_type=args.model_type,
                                 quantize=args.quantize)
            extra = (f" (weights in {result.external_data.name})" if result.external_data
                     else "")
            if result.gate_figure is not None:  # --quantize int8
                extra += (f", {result.precision} (gate: {result.gate_figure:.2g} from fp32 "
                          "torch, limit 0.01)")
            print(f"wrote {result.path}{extra}: {result.description}, checked against "
                  f"torch (max relative difference {result.self_check:.2g}) in "
                  f"{result.seconds:.0f} s")
            onnx = result.path
        if args.format == "tensorrt":
            _build_tensorrt(onnx, args)
    except (CheckpointError, ValueError) as exc:  # Export/BackendUnavailable: ValueErrors
        error(str(exc))
        return 2
    except OSError as exc:
        error(f"could not write {args.output}: {exc.strerror or exc}")
        return 2
    return 0


def _tensorrt_device(device: str | None):
    """The CUDA device the engine is built on. Raises BackendUnavailableError without a
    GPU or TensorRT, saying what to install."""
    import torch

    from depth_pro_ros.engine.backends.tensorrt_backend import require_tensorrt
    from depth_pro_ros.engine.device import resolve_device

    try:
        dev = torch.device("cuda" if device in (None, "", "auto") else device)
    except RuntimeError as exc:
        raise ValueError(f"invalid device {device!r}: {exc}") from None
    require_tensorrt(dev)
    return resolve_device(str(dev))


def _build_tensorrt(onnx: Path, args: argparse.Namespace) -> None:
    """Build (or find in the cache) ``onnx``'s engine for the accuracy gate's input
    shape, as a node with these settings would, and run the gate on it."""
    import time

    from depth_pro_ros.engine import EngineConfig, create_engine

    start = time.perf_counter()
    config = EngineConfig(device=str(_tensorrt_device(args.device)), backend="tensorrt",
                          precision=args.precision, batch_size=args.batch_size,
                          policy="all")
    with create_engine(onnx, config, model_type=args.model_type) as engine:
        backend = engine.backend
        how = f"built in {time.perf_counter() - start:.0f} s" if backend.builds else \
            "already in the cache"
        where = ", ".join(str(p) for p in backend.entries) or "not cached"
        print(f"TensorRT engine of {onnx.name} ({engine.config.precision}, batch 1-"
              f"{args.batch_size}, {engine.config.device}): {how}, passed the accuracy "
              f"gate; kept in {where}")
