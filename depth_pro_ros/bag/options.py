"""What ``depth-pro-ros bag`` takes (:class:`BagOptions`) and the engine those options
give: its configuration, creation and the start-up check of the model against them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from depth_pro_ros.bag.errors import BagInputError, BagSetupError
from depth_pro_ros.io.image_decode import DEFAULT_MAX_INPUT_PIXELS
from depth_pro_ros.stream import RECORDED_FOCAL, FocalSettings, OutputOptions
from depth_pro_ros.stream.anchor import AnchorOptions

if TYPE_CHECKING:
    from depth_pro_ros.engine import DepthEngine, EngineConfig
    from depth_pro_ros.stream.session import CameraSession

__all__ = ["OPTION_NAMES", "BagOptions", "check_engine", "check_model_use", "create_bag_engine",
           "create_engine", "engine_config", "make_engine_config"]

#: The bag tool's names for the settings ``check_model_use`` and the session name.
OPTION_NAMES = {"anchor": "--anchor-topic", "anchor_fit": "--anchor-fit",
                "allow_relative": "--allow-relative", "focal_source": "--focal-source",
                "relative_topic": "depth/relative"}


@dataclass
class BagOptions:
    """Everything ``depth-pro-ros bag`` takes (see docs/cli.md)."""

    input: Path
    output: Path
    checkpoint: Path
    image_topics: list[str]
    camera_info_topics: list[str] | None = None  # None: <namespace>/camera_info if present
    copy_topics: str = "all"  # all | none | comma-separated topics
    storage: str = "mcap"
    start: float | None = None  # seconds from the first message
    end: float | None = None
    device: str | None = None
    backend: str = "auto"  # the inference backend (EngineConfig.backend)
    accuracy_gate: bool = True  # EngineConfig.accuracy_gate
    ort_intra_op_threads: int = 0  # EngineConfig.ort_*: onnxruntime's CPU threads
    ort_inter_op_threads: int = 1
    precision: str = "auto"  # fp16 on CUDA, fp32 on the CPU
    batch_size: int | None = None  # None: 4 on CUDA, 1 on the CPU
    focal: FocalSettings = RECORDED_FOCAL
    outputs: OutputOptions = field(default_factory=OutputOptions)
    output_scale: float = 1.0  # depth resolution relative to the input images
    max_input_pixels: int = DEFAULT_MAX_INPUT_PIXELS  # larger images are skipped, undecoded
    points_decimation: int = 1
    points_rgb: bool = False
    min_depth: float = 0.0
    max_depth: float = float("inf")
    # Anchor topic per image topic (same order; "none" for a camera without), and how
    # they pair and fit (AnchorOptions.source is taken from each topic's type).
    anchor_topics: list[str] | None = None
    anchor: AnchorOptions = field(default_factory=lambda: AnchorOptions(sync="approximate"))
    model_type: str | None = None  # None / "auto": read from the checkpoint
    input_size: int = 0  # Depth Anything's size parameter (EngineConfig); 0: the default
    sky_mask: bool = True  # models with a sky head: sky NaN (EngineConfig)
    allow_relative: bool = False  # relative models: write unanchored frames to depth/relative
    # "rig": the cameras' frames within rig_slop seconds run as one joint forward of an
    # any-view Depth Anything 3 model (bag/rig.py); rig_extrinsics: their known poses.
    multiview: str = "single"
    rig_slop: float = 0.02
    rig_extrinsics: Path | None = None
    overwrite: bool = False
    strict: bool = False
    progress: bool | None = None  # tqdm bar; None: only on a terminal

    @property
    def output_options(self) -> OutputOptions:
        """``outputs`` with ``allow_relative`` applied (the options the frames use)."""
        return dataclasses.replace(self.outputs, relative=self.allow_relative)


def make_engine_config(opts: BagOptions) -> EngineConfig:
    """The engine configuration of ``opts``, device resolved, precision as given."""
    from depth_pro_ros.engine import EngineConfig, resolve_device

    try:
        device = resolve_device(opts.device)
    except ValueError as exc:
        raise BagSetupError(str(exc)) from None
    batch = opts.batch_size or (4 if device.type == "cuda" else 1)
    try:
        return EngineConfig(
            device=str(device), backend=opts.backend, precision=opts.precision,
            accuracy_gate=opts.accuracy_gate, ort_intra_op_threads=opts.ort_intra_op_threads,
            ort_inter_op_threads=opts.ort_inter_op_threads,
            policy="all", queue_size=2 * batch, batch_size=batch,
            output_scale=opts.output_scale, points=opts.outputs.points,
            points_decimation=opts.points_decimation, points_rgb=opts.points_rgb,
            min_depth=opts.min_depth, max_depth=opts.max_depth, input_size=opts.input_size,
            sky_mask=opts.sky_mask)
    except ValueError as exc:
        raise BagInputError(str(exc)) from None


def engine_config(opts: BagOptions) -> EngineConfig:
    """The engine configuration ``opts`` give, device and precision resolved (what the
    engine created for them reports as its ``config``); an exported file's precision
    ``auto`` is the file's to settle (an int8 file runs in int8)."""
    from depth_pro_ros.engine import resolve_device, resolve_precision
    from depth_pro_ros.engine.backends.onnx_file import is_onnx

    config = make_engine_config(opts)
    if config.precision == "auto" and is_onnx(opts.checkpoint):
        return config
    try:
        precision = resolve_precision(config.precision, resolve_device(config.device))
    except ValueError as exc:
        raise BagSetupError(str(exc)) from None
    return dataclasses.replace(config, precision=precision)


def create_engine(checkpoint: Path, config: EngineConfig,
                  model_type: str | None = None) -> DepthEngine:
    """Load ``checkpoint`` into an engine; problems are :class:`BagSetupError`."""
    from depth_pro_ros.engine import create_engine as create
    from depth_pro_ros.model import CheckpointError

    try:
        return create(str(checkpoint), config, model_type=model_type)
    except (CheckpointError, ValueError) as exc:
        raise BagSetupError(str(exc)) from None


def create_bag_engine(opts: BagOptions) -> DepthEngine:
    """Load the checkpoint of ``opts`` and start the engine their options give, to pass to
    :func:`~depth_pro_ros.bag.process.process_bag` for many bags (one model for all)."""
    return create_engine(Path(opts.checkpoint).expanduser(), engine_config(opts),
                         opts.model_type)


def check_engine(engine: DepthEngine, opts: BagOptions) -> None:
    """Refuse a given engine whose configuration differs from what ``opts`` give."""
    want = engine_config(opts)
    for name in ("backend", "precision"):  # the engine reports what auto chose
        if getattr(want, name) == "auto":
            want = dataclasses.replace(want, **{name: getattr(engine.config, name)})
    if engine.config != want:
        diff = ", ".join(f"{f.name} {getattr(engine.config, f.name)!r} (options: "
                         f"{getattr(want, f.name)!r})" for f in dataclasses.fields(want)
                         if getattr(engine.config, f.name) != getattr(want, f.name))
        raise BagSetupError(f"the engine given does not match the options: {diff}")


def check_model_use(engine: DepthEngine, opts: BagOptions, topics: list[str],
                    sessions: list[CameraSession]) -> None:
    """Refuse settings with which the engine's model cannot give output for a camera
    (``topics``: the cameras' image topics)."""
    from depth_pro_ros.stream.model_use import check_model_use as check

    for topic, session in zip(topics, sessions):
        try:
            check(engine.recipe.info, anchored=session.anchor is not None,
                  anchor_fit=opts.anchor.settings.fit, allow_relative=opts.allow_relative,
                  focal_source=opts.focal.focal_source, names=OPTION_NAMES)
        except ValueError as exc:
            where = f"{topic}: " if len(topics) > 1 else ""
            raise BagSetupError(f"{where}{exc}") from None
