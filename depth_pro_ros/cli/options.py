"""What the subcommands share: number types for argparse, the model and engine options,
and the one way to print an error."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path

from depth_pro_ros.engine import BACKEND_CHOICES, PRECISION_CHOICES, ranges
from depth_pro_ros.io.image_decode import DEFAULT_MAX_INPUT_PIXELS
from depth_pro_ros.model import MODEL_TYPES
from depth_pro_ros.model.weights import CHECKPOINT_ENV, DEFAULT_CHECKPOINT

__all__ = [
    "CHECKPOINT_HELP",
    "add_backend",
    "add_engine_options",
    "add_max_input_pixels",
    "add_model_options",
    "backend_settings",
    "error",
    "finite_float",
    "in_range",
    "non_negative_float",
    "number",
    "positive_float",
    "positive_int",
]

PRECISION_HELP = "fp32, fp16, bf16, or auto: fp16 on CUDA, fp32 on the CPU (default: auto)"
CHECKPOINT_HELP = (
    "network weights of any family, which is read from the file: Depth Pro (Apple's "
    "depth_pro.pt or a Hugging Face folder / .safetensors), Depth Anything V2 relative or "
    "metric (indoor / outdoor; an original .pth or Hugging Face), Prompt Depth Anything "
    f"(.ckpt or Hugging Face), or this project's .pt (default: ${CHECKPOINT_ENV} or "
    f"{DEFAULT_CHECKPOINT})")


def error(message: str) -> None:
    """Print ``depth-pro-ros: error: MESSAGE`` on stderr."""
    print(f"depth-pro-ros: error: {message}", file=sys.stderr)


def number(cast: type[int] | type[float], minimum: float | None,
           inclusive: bool = True, maximum: float | None = None) -> Callable[[str], float]:
    """An argparse ``type`` for finite numbers above (or from) ``minimum`` (None: any) and
    at most ``maximum`` (None: no bound)."""
    word = "an integer" if cast is int else "a finite number"
    bound = "" if minimum is None else (f" >= {minimum:g}" if inclusive else f" > {minimum:g}")
    if maximum is not None:
        top = maximum if isinstance(maximum, int) else f"{maximum:g}"
        bound += f"{' and' if bound else ''} <= {top}"

    def parse(text: str) -> float:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {word}: {text!r}") from None
        below = minimum is not None and (value < minimum or (value == minimum and not inclusive))
        above = maximum is not None and value > maximum
        if not math.isfinite(value) or below or above:
            raise argparse.ArgumentTypeError(f"must be {word}{bound}, got {text!r}")
        return value

    return parse


def in_range(cast: type[int] | type[float], limits: tuple[float, float],
             inclusive: bool = True) -> Callable[[str], float]:
    """``number`` over one of :mod:`depth_pro_ros.engine.ranges`' ranges (the node's)."""
    return number(cast, limits[0], inclusive, limits[1])


positive_float = number(float, 0.0, inclusive=False)
non_negative_float = number(float, 0.0, inclusive=True)
positive_int = number(int, 1, inclusive=True)
# Values that a settings class checks itself (its message names the setting): parse only.
finite_float = number(float, None)


def add_max_input_pixels(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--max-input-pixels`` (image, bag and bags)."""
    p.add_argument(
        "--max-input-pixels", type=in_range(int, ranges.MAX_INPUT_PIXELS),
        default=DEFAULT_MAX_INPUT_PIXELS, metavar="N",
        help="images declaring more pixels (width x height, read from the header before "
             f"decoding) are refused (default: {DEFAULT_MAX_INPUT_PIXELS})",
    )


def add_model_options(p: argparse.ArgumentParser) -> None:
    """The model family and its input size (image, bag and bags)."""
    p.add_argument(
        "--model-type", choices=MODEL_TYPES, default="auto",
        help="model family and head; auto (default) reads them from the checkpoint. Needed "
             "only for an original Depth Anything V2 .pth whose name lost 'metric_hypersim' "
             "/ 'metric_vkitti'; a contradiction with the file is an error")
    p.add_argument(
        "--input-size", type=in_range(int, ranges.INPUT_SIZE), default=0, metavar="N",
        help="Depth Anything V2: lower bound on the network input's shorter side, a "
             "multiple of 14 (larger: sharper and slower; default 0 = 518); Prompt Depth "
             "Anything: upper bound on the longer side (0 = 1008); Depth Anything 3: the "
             "longer side (0 = 504); Depth Pro's input is fixed")
    p.add_argument(
        "--no-sky-mask", dest="sky_mask", action="store_false",
        help="models with a sky head (Depth Anything 3 mono / metric): keep the model's far "
             "value in the sky instead of NaN (no measurement)")
    p.add_argument(
        "--allow-relative", action="store_true",
        help="relative-depth models (Depth Anything V2 relative) without a scale_shift "
             "anchor fit: write the unitless relative inverse depth (depth/relative; "
             "image: <stem>_relative.npy) instead of refusing")


def add_backend(p: argparse.ArgumentParser) -> None:
    """``--backend`` (who runs the network) and its settings: the accuracy gate and ONNX
    Runtime's threads (:func:`backend_settings` turns them into ``EngineConfig`` fields)."""
    p.add_argument("--backend", choices=BACKEND_CHOICES, default="auto",
                   help="inference backend that runs the network; auto: onnxruntime for an "
                        "exported .onnx checkpoint, torch otherwise (default: auto); "
                        "tensorrt: an exported .onnx as TensorRT engines (NVIDIA GPUs)")
    p.add_argument("--no-accuracy-gate", dest="accuracy_gate", action="store_false",
                   help="skip the check at load of a backend other than fp32 torch "
                        "against fp32 torch on built-in gate images (see docs/backends.md)")
    p.add_argument("--ort-threads", type=in_range(int, ranges.ORT_THREADS), default=0,
                   metavar="N", help="onnxruntime on the CPU: threads per operator "
                                     "(default 0: every core this process may use)")
    p.add_argument("--ort-inter-op-threads", type=in_range(int, ranges.ORT_THREADS),
                   default=1, metavar="N",
                   help="onnxruntime on the CPU: operators run at once (default 1)")


def backend_settings(args: argparse.Namespace) -> dict:
    """The ``EngineConfig`` (and ``BagOptions``) fields :func:`add_backend`'s options set."""
    return {"backend": args.backend, "accuracy_gate": args.accuracy_gate,
            "ort_intra_op_threads": args.ort_threads,
            "ort_inter_op_threads": args.ort_inter_op_threads}


def add_engine_options(p: argparse.ArgumentParser) -> None:
    """Checkpoint, model, device, precision and batch size (bag, bags and demo)."""
    p.add_argument("--checkpoint", type=Path, default=None, help=CHECKPOINT_HELP)
    add_model_options(p)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: auto)")
    p.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                   help=PRECISION_HELP)
    p.add_argument(
        "--batch-size", type=in_range(int, ranges.BATCH_SIZE), default=None, metavar="N",
        help="images of equal size (in a bag: from any of its cameras) run as one batch "
        "(default: 4 on CUDA, 1 on the CPU)",
    )
