"""Every parameter of ``depth_pro_node``, declared in one place.

``PARAMETERS`` is the single table: name, default, description, range or choices, and
whether a change needs a restart (read-only). ``config/depth_pro.yaml`` and the
docs/node.md table list exactly these names (a test checks it). :func:`settings_from` turns a set of
values into the engine / stream settings and raises ``ValueError`` naming the first bad
parameter, both at start-up and when a parameter is changed at runtime.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node
from rclpy.parameter import Parameter

from depth_pro_ros.engine import BACKEND_CHOICES, PRECISION_CHOICES, EngineConfig
from depth_pro_ros.engine.anchor import ANCHOR_FITS, AnchorSettings
from depth_pro_ros.engine.focal import FOCAL_SOURCES
from depth_pro_ros.engine.ranges import (
    BATCH_SIZE,
    FOCAL_PX,
    GRAPH_CACHE_SIZE,
    INPUT_SIZE,
    MAX_INPUT_PIXELS,
    ORT_THREADS,
)
from depth_pro_ros.io.image_decode import DEFAULT_MAX_INPUT_PIXELS
from depth_pro_ros.io.messages import DEPTH_ENCODINGS
from depth_pro_ros.model import MODEL_TYPES, ModelInfo
from depth_pro_ros.model.weights import default_checkpoint
from depth_pro_ros.ros.errors import StartupError
from depth_pro_ros.ros.guard import shown
from depth_pro_ros.stream import CAMERA_INFO_SYNC, FocalSettings, OutputOptions
from depth_pro_ros.stream.anchor import ANCHOR_SOURCES, AnchorOptions
from depth_pro_ros.stream.model_use import check_model_use
from depth_pro_ros.stream.rig import MULTIVIEW_MODES
from depth_pro_ros.stream.transport import Transport

__all__ = ["PARAMETERS", "ParamSpec", "NodeSettings", "check_model", "declare_parameters",
           "descriptor", "settings_from"]

#: A camera name: relative ROS name tokens (letters, digits, underscores), '/'-separated.
_CAMERA_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*(/[A-Za-z][A-Za-z0-9_]*)*")


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any  # a tuple declares an array of ``element``
    description: str
    choices: tuple[str, ...] = ()
    low: float | None = None  # inclusive range, shown to `ros2 param describe`
    high: float | None = None
    read_only: bool = False
    constraint: str = ""  # shown where a range cannot say it (open bounds)
    element: type = str  # of an array parameter: str or float

    @property
    def value(self) -> Any:
        """The default as ROS and YAML hold it (a string array as a list)."""
        return list(self.default) if isinstance(self.default, tuple) else self.default


# Defaults of the settings the node shares with the bag tool and the engine live with
# those settings; the table only names them.
_FOCAL = FocalSettings()
_OUTPUTS = OutputOptions()
_ANCHOR = AnchorSettings()


PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("checkpoint", "", "Network weights: Depth Pro (Apple depth_pro.pt, a Hugging "
              "Face apple/DepthPro-hf folder or .safetensors file), Depth Anything V2 "
              "(depth_anything_v2_*.pth or a Hugging Face folder) or Prompt Depth Anything "
              "(.ckpt or a Hugging Face folder); the family is read from the file. Empty: "
              "$DEPTH_PRO_CHECKPOINT, else ~/.cache/depth_pro_ros/depth_pro.pt (the "
              "depth-pro-ros commands' default)", read_only=True),
    ParamSpec("model_type", "auto", "Model family and head; auto reads them from the "
              "checkpoint. Settles what a file cannot say (an original Depth Anything V2 "
              ".pth renamed without 'metric_hypersim' / 'metric_vkitti'); a contradiction "
              "with the file is an error", choices=MODEL_TYPES, read_only=True),
    ParamSpec("input_size", 0, "Depth Anything V2: lower bound on the network input's "
              "shorter side, a multiple of 14 (larger: sharper and slower; 0 = 518); Prompt "
              "Depth Anything: upper bound on the longer side (0 = 1008); Depth Anything 3: "
              "the longer side (0 = 504). Depth Pro: must be 0 (its input is fixed at 1536)",
              low=INPUT_SIZE[0], high=INPUT_SIZE[1], read_only=True),
    ParamSpec("sky_mask", EngineConfig.sky_mask, "Models with a sky head (Depth Anything 3 "
              "mono / metric): sky pixels are NaN in depth and give no points; false keeps "
              "the model's far value there", read_only=True),
    ParamSpec("allow_relative", False, "Relative-depth models (Depth Anything V2 relative) "
              "without a scale_shift anchor fit: publish their unitless relative inverse "
              "depth on 'depth/relative' (otherwise they refuse to start; while anchored "
              "but without a fit yet, frames go there instead of being dropped)",
              read_only=True),
    ParamSpec("device", "", "Torch device: cuda, cuda:N or cpu; empty picks cuda when "
              "available, else cpu", read_only=True),
    ParamSpec("backend", EngineConfig.backend, "Inference backend that runs the network; "
              "auto: onnxruntime for an exported .onnx checkpoint, torch otherwise; "
              "tensorrt: an exported .onnx built into TensorRT engines (NVIDIA GPUs)",
              choices=BACKEND_CHOICES, read_only=True),
    ParamSpec("accuracy_gate", EngineConfig.accuracy_gate, "Check a backend other than "
              "fp32 torch (onnxruntime, tensorrt, fp16 / bf16) against fp32 torch on "
              "built-in gate images at start-up and refuse to start beyond its limit; "
              "false skips it (logged)", read_only=True),
    ParamSpec("ort_intra_op_threads", EngineConfig.ort_intra_op_threads, "onnxruntime on "
              "the CPU: threads per operator; 0 = every core the node may use",
              low=ORT_THREADS[0], high=ORT_THREADS[1], read_only=True),
    ParamSpec("ort_inter_op_threads", EngineConfig.ort_inter_op_threads, "onnxruntime on "
              "the CPU: operators run at once", low=ORT_THREADS[0], high=ORT_THREADS[1],
              read_only=True),
    ParamSpec("precision", "auto", "Network precision; auto = fp16 on CUDA, fp32 on CPU "
              "(metric conversion is always fp32)", choices=PRECISION_CHOICES,
              read_only=True),
    ParamSpec("compile", False, "torch.compile the network (slow first frames, faster "
              "afterwards)", read_only=True),
    ParamSpec("cuda_graphs", False, "CUDA only: replay the network as a CUDA graph per "
              "input shape (less launch overhead; with compile, the compiled network is "
              "graphed); ignored on the CPU", read_only=True),
    ParamSpec("graph_cache_size", EngineConfig.graph_cache_size, "With cuda_graphs: most "
              "graphs kept (each holds one input shape's activations; the least recently "
              "used is dropped first)", low=GRAPH_CACHE_SIZE[0], high=GRAPH_CACHE_SIZE[1],
              read_only=True),
    ParamSpec("cameras", (), "Camera names served by this one node and model; empty: one "
              "camera on 'image' / 'camera_info' with outputs 'depth' ...; NAME: inputs "
              "'NAME/image' / 'NAME/camera_info', outputs 'NAME/depth' ...", read_only=True),
    ParamSpec("multiview", "single", "rig: the cameras' frames within rig_slop run as one "
              "joint forward of an any-view Depth Anything 3 model, poses on 'rig/poses'; "
              "single: each frame alone", choices=MULTIVIEW_MODES, read_only=True),
    ParamSpec("rig_slop", 0.02, "multiview rig: most seconds between the stamps of one "
              "group's frames", low=0.0, high=10.0, read_only=True),
    ParamSpec("rig_extrinsics", "", "multiview rig: a YAML file of each camera's 4x4 "
              "camera-to-rig transform (passed to the network with the CameraInfo "
              "intrinsics); empty: the network estimates the poses", read_only=True),
    ParamSpec("max_batch_size", 0, "Most frames of equal size from different cameras run "
              "as one batch; 0 = the number of cameras", low=0, high=BATCH_SIZE[1]),
    ParamSpec("input_transport", Transport.RAW.value, "raw: subscribe to 'image' "
              "(sensor_msgs/Image); compressed: to 'image/compressed' (jpeg/png)",
              choices=tuple(t.value for t in Transport), read_only=True),
    ParamSpec("max_input_pixels", DEFAULT_MAX_INPUT_PIXELS, "Images declaring more pixels "
              "(width x height, read from the header of compressed ones) are skipped before "
              "decoding: a guard against decompression bombs", low=MAX_INPUT_PIXELS[0],
              high=MAX_INPUT_PIXELS[1]),
    ParamSpec("focal_source", _FOCAL.focal_source, "Focal length for metric scale: auto "
              "(camera_info while fresh, else the FoV-head estimate), camera_info, fov_head "
              "or fixed", choices=FOCAL_SOURCES),
    ParamSpec("fixed_focal_px", _FOCAL.fixed_focal_px, "Focal length in pixels at the input "
              "resolution, for focal_source fixed", low=FOCAL_PX[0], high=FOCAL_PX[1]),
    ParamSpec("focal_ema_alpha", _FOCAL.focal_ema_alpha, "Weight of each new FoV estimate in "
              "the focal EMA (1 = no smoothing)", constraint="0 < focal_ema_alpha <= 1"),
    ParamSpec("camera_info_timeout", _FOCAL.camera_info_timeout, "Seconds a camera_info may "
              "be older than the image (by header stamps, or by arrival if less) before auto "
              "falls back to the FoV estimate; never less than 3 periods of the observed "
              "camera_info rate, so a slow (1 Hz) camera_info stays in use between messages",
              low=0.01, high=3600.0),
    ParamSpec("camera_info_sync", _FOCAL.camera_info_sync, "Pairing of an image with a "
              "CameraInfo: exact stamp, approximate (nearest within sync_slop) or latest "
              "received", choices=CAMERA_INFO_SYNC),
    ParamSpec("sync_slop", _FOCAL.sync_slop, "Largest stamp difference in seconds for "
              "camera_info_sync approximate", low=0.0, high=10.0),
    ParamSpec("estimate_fov", False, "Run the FoV head even when the focal is known, to "
              "report its estimate in /diagnostics next to the focal used (one more ViT "
              "pass per frame)"),
    ParamSpec("output_scale", 1.0, "Resolution of depth, points and depth/camera_info "
              "relative to the input image (intrinsics scaled to match)", low=0.05, high=1.0),
    ParamSpec("publish_points", True, "Publish the organized point cloud on 'points'"),
    ParamSpec("points_decimation", 1, "Keep every N-th pixel in each direction of the "
              "point cloud", low=1, high=64),
    ParamSpec("points_rgb", False, "Add the image colour to each point as a packed rgb "
              "field"),
    ParamSpec("min_depth", 0.0, "Points nearer than this (metres) are NaN", low=0.0,
              high=1e4),
    ParamSpec("max_depth", 100.0, "Points farther than this (metres) are NaN", low=0.0,
              high=1e4),
    ParamSpec("publish_colorized", True, "Publish a bgr8 preview on 'depth/colorized'"),
    ParamSpec("colorize_min", 0.0, "Near end of the preview's colour range in metres; 0 = "
              "automatic (2nd percentile)", low=0.0, high=1e4),
    ParamSpec("colorize_max", 0.0, "Far end of the preview's colour range in metres; 0 = "
              "automatic (98th percentile)", low=0.0, high=1e4),
    ParamSpec("depth_encoding", _OUTPUTS.depth_encoding, "32FC1: metres, NaN invalid "
              "(REP 118); 16UC1: millimetres, 0 invalid", choices=DEPTH_ENCODINGS),
    ParamSpec("lazy", False, "Skip inference while nothing subscribes to any output"),
    ParamSpec("anchor_source", "none", "Metric anchor locking the depth's scale: none, "
              "depth ('anchor/depth': a registered sensor_msgs/Image, 32FC1 m or 16UC1 mm, "
              "any resolution) or points ('anchor/points': a PointCloud2 with x, y, z)",
              choices=ANCHOR_SOURCES, read_only=True),
    ParamSpec("anchor_fit", _ANCHOR.fit, "scale: one factor on the depth; scale_shift: "
              "affine in inverse depth (for relative-depth models)", choices=ANCHOR_FITS),
    ParamSpec("anchor_ema_alpha", _ANCHOR.ema_alpha, "Weight of each new fit in the EMA of "
              "the fitted parameters (1 = no smoothing)", constraint="0 < anchor_ema_alpha <= 1"),
    ParamSpec("anchor_timeout", _ANCHOR.timeout, "Seconds without an accepted anchor fit "
              "after which the depth is published unanchored", low=0.01, high=3600.0),
    ParamSpec("anchor_min_points", _ANCHOR.min_points, "Fewest valid anchor pixels for a "
              "fit", low=3, high=10**8),
    ParamSpec("anchor_min_depth", _ANCHOR.min_depth, "Anchor depths nearer than this "
              "(metres) are ignored", low=0.0, high=1e4),
    ParamSpec("anchor_max_depth", 1000.0, "Anchor depths farther than this (metres) are "
              "ignored", low=0.0, high=1e6),
    ParamSpec("anchor_sync", "latest", "Pairing of an image with an anchor: exact stamp, "
              "approximate (nearest within sync_slop) or latest received",
              choices=CAMERA_INFO_SYNC),
    ParamSpec("anchor_transform", (), "Static transform [x, y, z, qx, qy, qz, qw] from the "
              "anchor cloud's frame to the camera's optical frame; empty: clouds must be in "
              "the image's frame", read_only=True, element=float),
    ParamSpec("stall_timeout", 10.0, "Seconds after which /diagnostics reports WARN when "
              "no image arrives, and ERROR when images arrive but no depth is published",
              low=0.5, high=3600.0),
)

_SPECS = {spec.name: spec for spec in PARAMETERS}


def descriptor(spec: ParamSpec) -> ParameterDescriptor:
    """The ROS descriptor of a parameter (description, range, read-only)."""
    desc = ParameterDescriptor(name=spec.name, read_only=spec.read_only)
    desc.description = spec.description
    if spec.choices:
        desc.additional_constraints = "one of: " + ", ".join(spec.choices)
    elif spec.constraint:
        desc.additional_constraints = spec.constraint
    if spec.low is not None and isinstance(spec.default, float):
        desc.floating_point_range = [
            FloatingPointRange(from_value=float(spec.low), to_value=float(spec.high), step=0.0)
        ]
    elif spec.low is not None and isinstance(spec.default, int):
        desc.integer_range = [
            IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=1)
        ]
    return desc


@dataclass(frozen=True)
class NodeSettings:
    """The node's parameter values as the settings of the layers below."""

    values: Mapping[str, Any]
    focal: FocalSettings
    outputs: OutputOptions
    engine: EngineConfig
    anchor: AnchorOptions

    @property
    def cameras(self) -> tuple[str, ...]:
        """The camera names; ``("",)`` for the single camera on the node's own topics."""
        return tuple(self.values["cameras"]) or ("",)

    @property
    def engine_changes(self) -> dict[str, Any]:
        """Engine settings that may change while running (see DepthEngine.reconfigure)."""
        e = self.engine
        return {"batch_size": e.batch_size, "output_scale": e.output_scale, "points": e.points,
                "points_decimation": e.points_decimation,
                "points_rgb": e.points_rgb, "min_depth": e.min_depth, "max_depth": e.max_depth}


def _check(values: Mapping[str, Any]) -> None:
    for name, value in values.items():
        spec = _SPECS[name]
        if isinstance(spec.default, tuple):
            continue  # string arrays are checked where they are parsed
        if spec.choices and value not in spec.choices:
            raise ValueError(f"parameter '{name}' must be one of {', '.join(spec.choices)}, "
                             f"got {shown(value)}")
        if spec.low is not None and not (
            isinstance(value, (int, float)) and math.isfinite(value)
            and spec.low <= value <= spec.high
        ):
            raise ValueError(f"parameter '{name}' must be in [{spec.low}, {spec.high}], "
                             f"got {shown(value)}")


def check_model(settings: NodeSettings, model: ModelInfo) -> None:
    """Raise ``ValueError`` (one line saying what to set) when the loaded ``model`` cannot
    serve ``settings``: at start-up and for every runtime change alike."""
    check_model_use(model, anchored=settings.anchor.enabled,
                    anchor_fit=settings.anchor.settings.fit,
                    allow_relative=bool(settings.values["allow_relative"]),
                    focal_source=settings.focal.focal_source)


def settings_from(values: Mapping[str, Any], model: ModelInfo | None = None) -> NodeSettings:
    """Validate a complete set of parameter values and build the layer settings; with the
    loaded ``model``, also whether it can serve them (:func:`check_model`).

    Raises:
        ValueError: naming the parameter and the reason.
    """
    v = {**values, "cameras": _camera_names(values["cameras"]),
         "anchor_transform": tuple(values["anchor_transform"] or ())}
    _check(v)
    if not str(v["checkpoint"]).strip():
        v["checkpoint"] = str(default_checkpoint())
    if v["input_size"] % 14:
        raise ValueError(f"parameter 'input_size' must be a multiple of 14 (0 = the model's "
                         f"default), got {v['input_size']}")
    if not v["max_depth"] > v["min_depth"]:
        raise ValueError(f"parameter 'max_depth' ({v['max_depth']}) must exceed "
                         f"'min_depth' ({v['min_depth']})")
    precision = v["precision"]
    try:
        focal = FocalSettings(
            focal_source=v["focal_source"], fixed_focal_px=float(v["fixed_focal_px"]),
            focal_ema_alpha=float(v["focal_ema_alpha"]),
            camera_info_timeout=float(v["camera_info_timeout"]),
            camera_info_sync=v["camera_info_sync"], sync_slop=float(v["sync_slop"]),
        )
        outputs = OutputOptions(
            depth_encoding=v["depth_encoding"], points=bool(v["publish_points"]),
            colorized=bool(v["publish_colorized"]), colorize_min=float(v["colorize_min"]),
            colorize_max=float(v["colorize_max"]), relative=bool(v["allow_relative"]),
        )
        engine = EngineConfig(
            device=v["device"] or None, backend=v["backend"],
            accuracy_gate=bool(v["accuracy_gate"]),
            ort_intra_op_threads=int(v["ort_intra_op_threads"]),
            ort_inter_op_threads=int(v["ort_inter_op_threads"]),
            precision=precision,  # "auto" is resolved with the device by create_engine
            policy="latest", batch_size=int(v["max_batch_size"]) or max(1, len(v["cameras"])),
            compile=bool(v["compile"]), cuda_graphs=bool(v["cuda_graphs"]),
            graph_cache_size=int(v["graph_cache_size"]), output_scale=float(v["output_scale"]),
            points=bool(v["publish_points"]),
            points_decimation=int(v["points_decimation"]), points_rgb=bool(v["points_rgb"]),
            min_depth=float(v["min_depth"]), max_depth=float(v["max_depth"]),
            input_size=int(v["input_size"]), sky_mask=bool(v["sky_mask"]),
        )
        transform = v["anchor_transform"]
        if transform and v["anchor_source"] != "points":
            raise ValueError("anchor_transform is for anchor_source points")
        anchor = AnchorOptions(
            source=v["anchor_source"], sync=v["anchor_sync"], slop=float(v["sync_slop"]),
            transform=tuple(float(x) for x in transform) or None,
            settings=AnchorSettings(
                fit=v["anchor_fit"], ema_alpha=float(v["anchor_ema_alpha"]),
                timeout=float(v["anchor_timeout"]), min_points=int(v["anchor_min_points"]),
                min_depth=float(v["anchor_min_depth"]), max_depth=float(v["anchor_max_depth"])),
        )
    except ValueError as exc:
        raise ValueError(f"invalid parameters: {exc}") from None
    settings = NodeSettings(v, focal, outputs, engine, anchor)
    if model is not None:
        check_model(settings, model)
    return settings


def declare_parameters(node: Node) -> NodeSettings:
    """Declare every parameter of :data:`PARAMETERS` on ``node`` and build its settings.

    Raises:
        StartupError: a parameter has the wrong type or value; the text names it.
    """
    values = {}
    for spec in PARAMETERS:
        # An empty list has no ROS type: arrays are declared by type.
        array = isinstance(spec.default, tuple)
        default = spec.default
        if array:
            default = Parameter.Type.STRING_ARRAY if spec.element is str \
                else Parameter.Type.DOUBLE_ARRAY
        try:
            param = node.declare_parameter(spec.name, default, descriptor(spec))
        except InvalidParameterTypeException:
            kind, example = (type(spec.default).__name__, repr(spec.default))
            if array:
                kind, example = ("list of strings", "[front, left]") if spec.element is str \
                    else ("list of floats", "[0.1, 0.0, -0.05, 0.0, 0.0, 0.0, 1.0]")
            raise StartupError(
                f"parameter '{spec.name}' must be a {kind} (e.g. {example})") from None
        except InvalidParameterValueException as exc:
            raise StartupError(f"parameter '{spec.name}': {exc}") from None
        values[spec.name] = param.value
    try:
        return settings_from(values)
    except ValueError as exc:
        raise StartupError(str(exc)) from None


def _camera_names(names: Any) -> tuple[str, ...]:
    """The ``cameras`` value as a tuple of unique, valid names (None: no cameras)."""
    names = tuple(names or ())
    for name in names:
        if not isinstance(name, str) or not _CAMERA_NAME.fullmatch(name):
            raise ValueError(f"parameter 'cameras': {shown(name)} is not a relative topic name "
                             "(letters, digits and underscores, '/' between parts, e.g. "
                             "'front' or 'rig/left')")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"parameter 'cameras' names {', '.join(duplicates)} more than once")
    return names
