"""Helpers shared by the benchmark scripts (imported as ``_common``).

The scripts are run as ``python bench/<script>.py``: Python then puts ``bench/`` first on
``sys.path``, which is how they find this module; ``depth_pro_ros`` itself comes from
the installed package (``pip install -e .`` in a checkout). This module puts ``test/``
on ``sys.path`` too, for the support package the tests and benchmarks share
(``test/harness``: the node process, the rclpy probe, malformed messages), so a script
imports ``_common`` before ``harness``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from depth_pro_ros.model import parse_precision, save_checkpoint
from depth_pro_ros.model.stand_in import random_config, random_model

if TYPE_CHECKING:
    from harness.node import NodeProcess
    from harness.probe import Probe

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
# The shared test support (``harness``) lives in test/; see the module docstring.
sys.path.insert(1, str(BENCH.parent / "test"))
#: Benchmark network name -> (model type, stand-in size): Depth Pro, and the Depth
#: Anything family (da_*: V2 metric indoor, whose cost equals the relative head's; pda_*:
#: Prompt Depth Anything). Only bench_engine.py runs the da_* ones.
STAND_INS = {
    "full": ("depth_pro", "full"),
    "tiny": ("depth_pro", "tiny"),
    **{f"da_{v}": ("depth_anything_v2_metric_indoor", v)
       for v in ("vits", "vitb", "vitl", "tiny")},
    **{f"pda_{v}": ("prompt_depth_anything", v) for v in ("vits", "vitl", "tiny")},
}
#: Benchmark network name -> its configuration (a zero-argument factory).
CONFIGS = {name: functools.partial(random_config, *spec) for name, spec in STAND_INS.items()}
#: The node benchmarks' namespace, and their inputs' queue: reliable and deep, so that
#: every message sent reaches its callback and the counts mean something.
NAMESPACE = "/bench"
QUEUE = 200


def parser(description: str, kind: str = "") -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark has: ``--device``, ``--config``
    (CUDA and the released architecture when a GPU is present) and ``--out`` (default
    :func:`results_path`; ``kind`` names the benchmark in it)."""
    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", default="cuda" if cuda else "cpu")
    p.add_argument("--config", choices=sorted(CONFIGS), default="full" if cuda else "tiny",
                   help="network size; 'full' is the released Depth Pro (random weights)")
    p.add_argument("--out", type=Path, default=None,
                   help=f"JSON path (default bench/results/<device>_<config>{kind}.json)")
    return p


def results_path(args: argparse.Namespace, device: str, kind: str = "") -> Path:
    """Where the JSON goes: ``--out``, else bench/results/<device>_<config><kind>.json."""
    return args.out or RESULTS / f"{slug(device)}_{args.config}{kind}.json"


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return name or "cpu"


def build_model(name: str, device: torch.device, precision: str) -> torch.nn.Module:
    """The random-weight stand-in ``name`` (see :data:`STAND_INS`; the product's
    ``depth-pro-ros checkpoint --random``) on ``device`` in ``precision``.

    Built in fp32 from the family's fixed seed, then cast: a model of another precision
    holds the same weights rounded, so outputs can be compared across precisions.
    """
    model = random_model(*STAND_INS[name])
    return model.to(device=device, dtype=parse_precision(precision)).eval()


def tiny_checkpoint(folder: Path, name: str = "tiny") -> Path:
    """The stand-in ``name`` saved as a checkpoint in ``folder``, for a node to load."""
    return save_checkpoint(build_model(name, torch.device("cpu"), "fp32"),
                           folder / f"{name}.pt")


def reliable_inputs(*topics: str) -> list[str]:
    """Node parameters that make its subscriptions to ``topics`` reliable and deep."""
    out = []
    for topic in topics:
        key = f"qos_overrides.{NAMESPACE}/{topic}.subscription"
        out += [f"{key}.reliability:=reliable", f"{key}.history:=keep_last",
                f"{key}.depth:={QUEUE}"]
    return out


def start_node(params: list[str], log_dir: Path, domain: str) -> NodeProcess:
    """``depth_pro_node`` with ``params`` in the benchmarks' namespace on DDS ``domain``,
    its log in ``log_dir``."""
    import time

    from harness.node import NodeProcess

    return NodeProcess(Path(log_dir) / f"node_{time.monotonic_ns()}.log", *params,
                       namespace=NAMESPACE, domain=domain)


def bench_probe(name: str) -> Probe:
    """The rclpy side of a node benchmark: publishes in the benchmarks' namespace with a
    deep queue and records when each depth image and /diagnostics arrives."""
    from harness.probe import Probe

    return Probe(name, NAMESPACE, outputs=("depth",), depth=QUEUE, keep=False)


def temp_dir(keep: bool = False) -> Path:
    """A scratch folder for the checkpoint and the node logs, removed at exit unless ``keep``."""
    path = Path(tempfile.mkdtemp(prefix="depth_pro_bench_"))
    if not keep:
        atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def slug(text: str) -> str:
    """A file-name-safe lower-case form of a device name."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "device"


def write_json(report: dict, path: Path) -> None:
    """Write ``report`` as indented JSON, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, path)


@contextmanager
def one_core_taken() -> Iterator[None]:
    """Another process spins on one core meanwhile (a robot's CPU is never idle)."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        hog.kill()
        hog.wait()
