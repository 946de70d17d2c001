"""The accepted ranges of the settings the node's parameters and the command line share.

Pure numbers (no ROS): the node's parameter table (``ros/parameters.py``) and the
``depth-pro-ros`` options both take their ranges from here. Each is an inclusive
``(low, high)``.
"""

from __future__ import annotations

__all__ = ["BATCH_SIZE", "FOCAL_PX", "GRAPH_CACHE_SIZE", "INPUT_SIZE", "MAX_INPUT_PIXELS",
           "ORT_THREADS", "SEED"]

#: Network input side in pixels (0: the model's default). 8190 = 585 x 14 is far above
#: any useful size; beyond it every frame would fail to allocate.
INPUT_SIZE: tuple[int, int] = (0, 8190)
#: Bound on width x height of an input image (the bound itself, not an image size).
MAX_INPUT_PIXELS: tuple[int, int] = (1, 2**40)
#: Frames per batch (the node's max_batch_size also takes 0 = the number of cameras).
BATCH_SIZE: tuple[int, int] = (1, 64)
#: A known focal length in pixels (the node's fixed_focal_px; the command line needs > 0).
FOCAL_PX: tuple[float, float] = (0.0, 1e6)
#: Random seed of a stand-in checkpoint (torch's generator takes 64 bits).
SEED: tuple[int, int] = (0, 2**63 - 1)
#: CUDA graphs an engine keeps (each holds a network's activations for one input shape).
GRAPH_CACHE_SIZE: tuple[int, int] = (1, 64)
#: ONNX Runtime threads (intra-op 0 = every core this process may use; inter-op 0 =
#: ONNX Runtime's own choice). 1024 is far above any CPU's core count.
ORT_THREADS: tuple[int, int] = (0, 1024)
