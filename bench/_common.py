"""Helpers shared by the benchmark scripts (imported as ``_common``).

The scripts are run as ``python bench/<script>.py``: Python then puts ``bench/`` first on
``sys.path``, which is how they find this module; ``depth_pro_ros`` itself comes from
the installed package (``pip install -e .`` in a checkout). See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
from pathlib import Path

import torch

from depth_pro_ros.model import (
    DepthAnythingConfig,
    DepthProConfig,
    create_depth_anything,
    create_model,
    parse_precision,
)

RESULTS = Path(__file__).resolve().parent / "results"
# Depth Pro sizes, and the Depth Anything family (da_*: V2 metric, whose cost equals the
# relative head's; pda_*: Prompt Depth Anything). Only bench_engine.py runs the da_* ones.
CONFIGS = {
    "full": DepthProConfig.depth_pro,
    "small": DepthProConfig.small,
    "tiny": DepthProConfig.tiny,
    **{f"da_{v}": (lambda v=v: getattr(DepthAnythingConfig, v)(head="metric", max_depth=20.0))
       for v in ("vits", "vitb", "vitl", "tiny")},
    **{f"pda_{v}": (lambda v=v: getattr(DepthAnythingConfig, v)(prompt=True))
       for v in ("vits", "vitl", "tiny")},
}


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


def build_model(config: DepthProConfig | DepthAnythingConfig, device: torch.device,
                precision: str) -> torch.nn.Module:
    """Random weights of realistic scale, built directly on the device.

    Built in fp32 from a fixed seed, then cast: a model of another precision holds the
    same weights rounded, so outputs can be compared across precisions.
    """
    torch.manual_seed(0)
    if isinstance(config, DepthAnythingConfig):
        model = create_depth_anything(config, device=device, precision="fp32")
    else:
        model = create_model(config, device=device, precision="fp32")
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:  # weights; biases, norms and tokens keep their init
                param.normal_(0.0, 0.02)
        if isinstance(config, DepthProConfig):
            # Plausible outputs, so that no frame fails on a rejected focal estimate.
            if model.fov is not None:
                model.fov.head[-1].bias.fill_(60.0)
            model.head[-2].bias.fill_(0.3)
    return model.to(dtype=parse_precision(precision)).eval()


def slug(text: str) -> str:
    """A file-name-safe lower-case form of a device name."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "device"


def write_json(report: dict, path: Path) -> None:
    """Write ``report`` as indented JSON, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, path)
