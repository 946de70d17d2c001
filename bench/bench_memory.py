#!/usr/bin/env python3
"""Memory of each model family: this project against transformers on the same weights.

For each family and size (Depth Pro ``full`` at 1536; Depth Anything V2 ``da_vits`` /
``da_vitb`` / ``da_vitl`` at 518; Prompt Depth Anything ``pda_vits`` / ``pda_vitl`` at
518 with a 192x256 prompt) the random stand-in's architecture is saved once as a Hugging
Face folder (transformers' ``save_pretrained``), which both sides load. Each measurement
runs in a fresh subprocess (RSS is per process), project and transformers interleaved:

* CPU: resident memory after loading (VmRSS) and the peak during one forward (VmHWM,
  reset by writing 5 to /proc/self/clear_refs after loading); for the project also the
  peak during one pipeline frame (``DepthEngine`` over a 1280x720 picture).
* CUDA (``--device cuda``): per precision, ``torch.cuda.memory_allocated`` after
  loading and ``max_memory_allocated`` / ``max_memory_reserved`` during one forward.

Run as ``python bench/bench_memory.py [--families ...] [--quick]``; see
docs/benchmarks.md. The JSON goes to bench/results/<device>_memory.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import BENCH, CONFIGS, RESULTS, device_name, slug, write_json

FAMILIES = ("full", "da_vits", "da_vitb", "da_vitl", "pda_vits", "pda_vitl")
QUICK = ("da_vits", "pda_vits")
SIDES = ("project", "transformers")
PROMPT_SHAPE = (192, 256)  # the LiDAR depth Prompt Depth Anything was trained with
DA_SIZE = 518  # Depth Anything's network input side
MIB = 1 << 20


# ----------------------------------------------------------------- the child process
def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _rss_mib() -> float:
    return _status_kib("VmRSS") / 1024


def _reset_peak() -> None:
    """Make VmHWM the current RSS, so that the next reading is the peak from now on."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak_mib() -> float:
    return _status_kib("VmHWM") / 1024


def _inputs(name: str, device: torch.device, dtype: torch.dtype):
    """The network input (and prompt) of ``name`` at its benchmark size, fixed seed."""
    gen = torch.Generator().manual_seed(0)
    side = CONFIGS[name]().input_size if name == "full" else DA_SIZE
    x = (torch.rand(1, 3, side, side, generator=gen) * 2 - 1).to(device, dtype)
    prompt = None
    if name.startswith("pda_"):
        prompt = (1 + 5 * torch.rand(1, 1, *PROMPT_SHAPE, generator=gen)).to(device, dtype)
    return x, prompt


def _load(side: str, name: str, folder: Path, device: torch.device, dtype: torch.dtype):
    if side == "project":
        from depth_pro_ros.model import load_checkpoint

        return load_checkpoint(folder, device=device, precision=dtype)
    import transformers

    cls = {"full": "DepthProForDepthEstimation", "da": "DepthAnythingForDepthEstimation",
           "pda": "PromptDepthAnythingForDepthEstimation"}[name.split("_")[0]]
    model = getattr(transformers, cls).from_pretrained(folder, dtype=dtype)
    return model.to(device).eval()


def _forward(side: str, model, x: torch.Tensor, prompt: torch.Tensor | None) -> None:
    if side == "project":
        model(x) if prompt is None else model(x, prompt)
    else:
        model(pixel_values=x) if prompt is None else model(pixel_values=x, prompt_depth=prompt)


def _pipeline_frame(folder: Path, device: torch.device, precision: str) -> dict:
    import numpy as np

    from depth_pro_ros.bag.sample import sample_frames
    from depth_pro_ros.engine import EngineConfig, Frame
    from depth_pro_ros.engine.loading import create_engine

    image = sample_frames(1, 1280, 720)[0]
    out = {}
    with create_engine(folder, EngineConfig(device=str(device), precision=precision,
                                            policy="all")) as engine:
        prompt = None
        if engine.recipe.info.needs_prompt:
            prompt = (1 + 5 * np.random.default_rng(0).random(PROMPT_SHAPE)).astype(np.float32)
        out["rss_after_load_mib"] = _rss_mib()
        _reset_peak()
        engine.submit(Frame(image=image, channel_order="bgr", prompt=prompt))
        result = engine.get()
        out["peak_frame_mib"] = _peak_mib()
        if not result.ok:
            raise RuntimeError(f"pipeline frame failed: {result.error}")
    return out


@torch.inference_mode()
def child(kind: str, name: str, folder: Path, device: torch.device, precision: str) -> dict:
    """One measurement (``kind``: project, transformers or pipeline) in this process."""
    from depth_pro_ros.model import parse_precision

    dtype = parse_precision(precision)
    out: dict = {"rss_start_mib": _rss_mib()}
    if kind == "pipeline":
        return out | _pipeline_frame(folder, device, precision)
    cuda = device.type == "cuda"
    t0 = time.perf_counter()
    model = _load(kind, name, folder, device, dtype)
    out["load_s"] = time.perf_counter() - t0
    out["rss_after_load_mib"] = _rss_mib()
    x, prompt = _inputs(name, device, dtype)
    if cuda:
        torch.cuda.synchronize(device)
        out["cuda_allocated_after_load_mib"] = torch.cuda.memory_allocated(device) / MIB
        torch.cuda.reset_peak_memory_stats(device)
    _reset_peak()
    t0 = time.perf_counter()
    _forward(kind, model, x, prompt)
    if cuda:
        torch.cuda.synchronize(device)
        out["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated(device) / MIB
        out["cuda_max_reserved_mib"] = torch.cuda.max_memory_reserved(device) / MIB
    out["forward_s"] = time.perf_counter() - t0
    out["peak_forward_mib"] = _peak_mib()
    return out


# ----------------------------------------------------------------- the parent process
def save_hf_folder(name: str, folder: Path) -> int:
    """The stand-in ``name``'s architecture as a transformers folder (random weights, a
    fixed seed); returns the weights' size on disk in bytes."""
    sys.path.insert(1, str(BENCH.parent / "test" / "model"))
    config = CONFIGS[name]()
    if name == "full":
        from hf_reference import build_hf_model

        model, _ = build_hf_model(config, seed=0)
    else:
        from da_reference import build_hf_da_model

        model, _ = build_hf_da_model(config, seed=0)
    model.save_pretrained(folder)
    del model
    return sum(f.stat().st_size for f in folder.glob("*.safetensors"))


def run_child(kind: str, name: str, folder: Path, args: argparse.Namespace,
              precision: str) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--families", name, "--folder",
           str(folder), "--device", args.device, "--precisions", precision,
           "--threads", str(args.threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.child_timeout)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:] or [f"rc {done.returncode}"]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def median_of(runs: list[dict]) -> dict:
    """Each numeric field's median over ``runs`` (errors kept as they are)."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[0]
    return {k: statistics.median(r[k] for r in ok) for k in ok[0]} | {"runs": len(ok)}


def measure(name: str, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_memory_") as tmp:
        folder = Path(tmp) / name
        size = save_hf_folder(name, folder)
        row: dict = {"checkpoint_mib": size / MIB}
        for precision in args.precisions:
            kinds = [*SIDES, "pipeline"] if args.device == "cpu" else list(SIDES)
            runs: dict[str, list[dict]] = {k: [] for k in kinds}
            for _ in range(args.repeats):  # interleaved: one of each kind per round
                for kind in kinds:
                    runs[kind].append(run_child(kind, name, folder, args, precision))
                    print(f"{name} {precision} {kind}: {runs[kind][-1]}", flush=True)
            row[precision] = {k: median_of(v) for k, v in runs.items()}
    return row


def parse_args(argv=None) -> argparse.Namespace:
    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    p.add_argument("--quick", action="store_true",
                   help=f"only {', '.join(QUICK)}, one run each (a minute on a CPU)")
    p.add_argument("--device", default="cuda" if cuda else "cpu")
    p.add_argument("--precisions", nargs="+", choices=("fp32", "fp16", "bf16"),
                   default=["fp32", "fp16", "bf16"] if cuda else ["fp32"])
    p.add_argument("--repeats", type=int, default=1, help="runs of each kind (median)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads of each child")
    p.add_argument("--child-timeout", type=float, default=1800.0, help="seconds")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON path (default bench/results/<device>_memory.json)")
    p.add_argument("--child", choices=(*SIDES, "pipeline"), help=argparse.SUPPRESS)
    p.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.families, args.repeats = [f for f in args.families if f in QUICK] or list(QUICK), 1
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.child:
        out = child(args.child, args.families[0], args.folder, device, args.precisions[0])
        print(json.dumps(out))
        return 0
    report = {"device": device_name(device), "torch": torch.__version__,
              "threads": args.threads, "repeats": args.repeats, "families": {}}
    path = args.out or RESULTS / f"{slug(report['device'])}_memory.json"
    for name in args.families:  # written after each family: a cut-off run keeps those done
        report["families"][name] = measure(name, args)
        write_json(report, path)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
