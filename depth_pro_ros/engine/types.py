"""What goes into the engine and what comes out of it."""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from depth_pro_ros.engine import ranges
from depth_pro_ros.engine.anchor.step import AnchorInput, AnchorOutcome
from depth_pro_ros.engine.backends import AUTO, BACKEND_FACTORIES
from depth_pro_ros.engine.focal import FocalSource, Intrinsics
from depth_pro_ros.model import CHANNEL_ORDERS

POLICIES = ("latest", "all")


@dataclass(frozen=True)
class EngineConfig:
    """How the engine runs. ``device=None`` picks CUDA when available, else the CPU."""

    device: str | None = None
    # Who runs the network's forward pass (engine/backends); the recipe stays in torch.
    # "auto": onnxruntime for an exported .onnx checkpoint, torch for the others.
    backend: str = AUTO
    precision: str = "auto"  # see resolve_precision: fp16 on CUDA, fp32 on the CPU
    # "latest": keep only the newest waiting frame of each source; "all": every frame
    policy: str = "latest"
    queue_size: int = 4  # frames waiting before ``submit`` blocks (policy "all")
    # Frames of equal size run as one batch: policy "all" consecutive frames, policy
    # "latest" the waiting frames of different sources.
    batch_size: int = 1
    overlap: bool = True  # CUDA: preprocess frame N+1 on a copy stream while N runs
    compile: bool = False  # torch.compile the network
    cuda_graphs: bool = False  # replay the fixed-shape network as a CUDA graph
    # Most CUDA graphs kept (one per input shape, batch size, estimate_fov and prompt
    # shape; least recently used dropped first): each holds its own activation memory.
    graph_cache_size: int = 8
    output_scale: float = 1.0  # depth resolution relative to the input image
    points: bool = False  # compute an organized point cloud on the device
    points_decimation: int = 1
    points_rgb: bool = False
    min_depth: float = 0.0  # valid range for point clouds, metres
    max_depth: float = math.inf
    # Depth Anything V2: lower bound on the network input's shorter side (a multiple of 14;
    # larger is sharper and slower; 0 = 518); Prompt Depth Anything: upper bound on the
    # longer side (0 = 1008); Depth Anything 3: the longer side (0 = 504). Depth Pro: 0
    # (its input is fixed).
    input_size: int = 0
    # Models with a sky head (Depth Anything 3's DPT): sky pixels are NaN (REP 118: no
    # measurement); False keeps the model's own far value there.
    sky_mask: bool = True
    # Check a backend other than fp32 torch against fp32 torch at load (engine/backends/
    # gate.py); False skips it (logged).
    accuracy_gate: bool = True
    # onnxruntime on the CPU: threads within an operator (0 = every core this process may
    # use) and across independent operators.
    ort_intra_op_threads: int = 0
    ort_inter_op_threads: int = 1

    def __post_init__(self) -> None:
        problems = []
        if self.backend != AUTO and self.backend not in BACKEND_FACTORIES:
            # the table itself: a new row is enough
            problems.append(f"backend must be one of {(AUTO, *BACKEND_FACTORIES)}, got "
                            f"{self.backend!r}")
        low, high = ranges.ORT_THREADS
        for name in ("ort_intra_op_threads", "ort_inter_op_threads"):
            if not low <= getattr(self, name) <= high:
                problems.append(f"{name} must be in [{low}, {high}], got "
                                f"{getattr(self, name)}")
        if self.policy not in POLICIES:
            problems.append(f"policy must be one of {POLICIES}, got {self.policy!r}")
        if self.queue_size < 1:
            problems.append(f"queue_size must be >= 1, got {self.queue_size}")
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1, got {self.batch_size}")
        if not (0.0 < self.output_scale <= 1.0):
            problems.append(f"output_scale must be in (0, 1], got {self.output_scale}")
        if self.points_decimation < 1:
            problems.append(f"points_decimation must be >= 1, got {self.points_decimation}")
        low, high = ranges.GRAPH_CACHE_SIZE
        if not low <= self.graph_cache_size <= high:
            problems.append(f"graph_cache_size must be in [{low}, {high}], got "
                            f"{self.graph_cache_size}")
        if self.input_size < 0:
            problems.append(f"input_size must be >= 0 (0 = the model's default), got "
                            f"{self.input_size}")
        if not (0.0 <= self.min_depth < self.max_depth):
            problems.append(f"need 0 <= min_depth < max_depth, got {self.min_depth}, "
                            f"{self.max_depth}")
        if problems:
            raise ValueError("invalid EngineConfig: " + "; ".join(problems))


@dataclass
class Frame:
    """One image to process.

    ``image`` is uint8 (H, W, 3) in ``channel_order`` ("rgb" or "bgr") or (H, W) /
    (H, W, 1) for "mono". ``intrinsics`` are the known camera's (any size: they are
    scaled to the image); without them the FoV head estimates the focal, which also
    runs when ``estimate_fov`` asks for the estimate anyway. ``focal_filter(f_px, width,
    height)`` (e.g. ``FocalTracker.observe_estimate``) turns the raw estimate into the
    intrinsics used, or None to reject it; it is called on the worker thread in frame
    order. ``focal_source`` says where known ``intrinsics`` come from (``CAMERA_INFO``
    or ``FIXED``); the result reports it. ``meta`` is passed through. ``source`` names
    the camera the frame comes from: with policy ``latest`` a new frame replaces only the
    waiting frame of its own source, and sources take turns (see :class:`DepthEngine`).
    ``anchor`` is the frame's paired metric anchor, the fit settings and the camera's
    tracker as plain values (see :mod:`depth_pro_ros.engine.anchor.step`): the engine
    fits it and locks the depth's scale; points are computed from the anchored depth.
    ``prompt`` is the
    metric prompt depth of a Prompt Depth Anything model: (h, w) float32 metres at any
    resolution, no holes (see ``stream.anchor.dense_prompt``).
    """

    image: np.ndarray
    channel_order: str = "rgb"
    intrinsics: Intrinsics | None = None
    estimate_fov: bool = False
    meta: Any = None
    focal_filter: Callable[[float, int, int], Intrinsics | None] | None = None
    focal_source: FocalSource = FocalSource.CAMERA_INFO
    source: Hashable = None
    anchor: AnchorInput | None = None
    prompt: np.ndarray | None = None

    def validate(self) -> None:
        img = self.image
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8:
            raise ValueError(f"image must be a uint8 numpy array, got {type(img).__name__} "
                             f"{getattr(img, 'dtype', '')}")
        if self.channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"unknown channel order {self.channel_order!r}")
        channels = 1 if self.channel_order == "mono" else 3
        shape_ok = (img.ndim == 3 and img.shape[2] == channels) or (
            channels == 1 and img.ndim == 2
        )
        if not shape_ok or min(img.shape[:2]) < 1:
            raise ValueError(f"image shape {img.shape} does not fit channel order "
                             f"{self.channel_order!r}")
        prompt = self.prompt
        if prompt is not None and not (
            isinstance(prompt, np.ndarray) and prompt.dtype == np.float32 and prompt.ndim == 2
            and min(prompt.shape) >= 1 and np.isfinite(prompt).all() and (prompt > 0).all()
        ):
            raise ValueError("prompt must be a (h, w) float32 array of finite depths > 0, got "
                             f"{getattr(prompt, 'dtype', type(prompt).__name__)} "
                             f"{getattr(prompt, 'shape', '')}")
        if prompt is not None and not prompt.max() > prompt.min():
            # The model normalises the prompt by its range: a constant one has none.
            raise ValueError(f"prompt depth is constant ({float(prompt.min()):g} m): it "
                             "needs a range of depths")


@dataclass
class DepthResult:
    """Metric depth of one frame.

    ``depth`` is float32 metres at the output size, NaN where invalid; ``intrinsics`` are
    those of the depth image (the focal actually used, scaled to the output size; None
    when a model that needs no focal for its depth had none, and then no points);
    ``focal_source`` is where the focal came from: the frame's own source for known
    intrinsics (``CAMERA_INFO`` / ``FIXED``), else ``FOV_HEAD``. ``points`` is a
    structured (h*w,) x/y/z[/rgb] float32 array ready for a PointCloud2, when asked.
    A relative-depth model's frame that was not anchored has ``relative`` (unitless
    affine-invariant inverse depth, 0 = far) instead of ``depth``.
    On failure ``error`` says why and the arrays are None.
    """

    meta: Any
    depth: np.ndarray | None = None
    intrinsics: Intrinsics | None = None
    focal_source: FocalSource | None = None
    fov_deg: float | None = None  # raw FoV-head estimate, when it ran
    focal_estimate_px: float | None = None  # raw focal from that estimate, input width
    points: np.ndarray | None = None
    points_shape: tuple[int, int] | None = None  # (height, width) of the organized cloud
    timings_ms: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    batch_size: int = 1  # frames that ran through the network together with this one
    anchor: AnchorOutcome | None = None  # what anchoring did, when the frame asked for it
    relative: np.ndarray | None = None  # unanchored relative inverse depth (relative models)

    @property
    def ok(self) -> bool:
        return self.error is None


#: Batches whose timings :class:`EngineStats` keeps.
RECENT_BATCHES = 64


@dataclass
class BatchRecord:
    """One batch that went through the network: its size and stage timings (ms)."""

    size: int
    timings_ms: dict[str, float]
    # CUDA: the batch's stage events (stage0, staged, net0, net1, done), all completed;
    # events of different batches compare with ``elapsed_time`` (overlap checks).
    events: dict[str, Any] = field(default_factory=dict)


@dataclass
class EngineStats:
    """Counters of an engine (updated by its worker; read them as a snapshot)."""

    submitted: int = 0
    processed: int = 0
    dropped: int = 0  # replaced by a newer frame before processing (policy "latest")
    failed: int = 0
    callback_errors: int = 0  # exceptions raised by the on_result callback
    # ``Frame.source`` -> frames of it dropped
    dropped_by_source: Counter[Hashable] = field(default_factory=Counter)
    batch_sizes: Counter[int] = field(default_factory=Counter)  # frames per batch -> batches
    # CUDA graphs (``cuda_graphs``): captures so far (each synchronises the device),
    # graphs dropped from the cache, graphs held now.
    graph_captures: int = 0
    graph_evictions: int = 0
    graphs_cached: int = 0
    # The last RECENT_BATCHES batches (GPU stage times on CUDA, CPU times elsewhere).
    recent_batches: deque[BatchRecord] = field(
        default_factory=lambda: deque(maxlen=RECENT_BATCHES))
