"""What a ``bags`` run does before any bag runs: the bags among the inputs, their outputs,
and (``--resume``) which outputs are complete, made with the same options and weights."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from depth_pro_ros.bag.errors import BagInputError
from depth_pro_ros.bag.fleet.records import JsonValue, dumps_strict, strict_json
from depth_pro_ros.bag.options import BagOptions, engine_config
from depth_pro_ros.bag.process import RUN_RECORD

__all__ = ["FleetSettings", "checkpoint_sha256", "complete_output", "find_bags",
           "output_name", "plan_outputs", "remove_partials", "run_record"]

_BAG_SUFFIXES = (".bag", ".mcap", ".db3")


@dataclass
class FleetSettings:
    """How ``bags`` runs (the per-bag options are a ``BagOptions`` template)."""

    outdir: Path
    resume: bool = False
    ray: str | None = None  # None: in this process; local | auto | ADDRESS
    workers: int | None = None  # Ray actors (default: GPUs / gpus_per_worker, else 1)
    gpus_per_worker: float | None = None
    retries: int = 2  # re-runs of a bag whose worker died
    progress: bool | None = None  # overall bar; None: only on a terminal


def find_bags(inputs: list[Path], exclude: Path | None = None) -> list[Path]:
    """The bags among ``inputs``: bag files and ROS 2 bag folders as given, and those found
    below other folders (ROS 1 ``.bag`` files, folders with a ``metadata.yaml``, bare
    ``.mcap`` / ``.db3`` files elsewhere). Hidden entries and ``exclude`` are not searched.
    """
    found: dict[Path, Path] = {}
    skip = exclude.resolve() if exclude is not None else None
    for item in inputs:
        path = Path(item)
        if not path.exists():
            raise BagInputError(f"input not found: {path}")
        if path.is_file() or (path / "metadata.yaml").is_file():
            found.setdefault(path.resolve(), path)
            continue
        below = []
        for root, dirs, files in os.walk(path):
            here = Path(root)
            if (here / "metadata.yaml").is_file():
                below.append(here)
                dirs[:] = []
                continue
            dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                             and (skip is None or (here / d).resolve() != skip))
            below += [here / f for f in sorted(files)
                      if f.endswith(_BAG_SUFFIXES) and not f.startswith(".")]
        if not below:
            raise BagInputError(f"no bags in {path} (looked for ROS 1 .bag files, ROS 2 bag "
                                "folders with a metadata.yaml, and .mcap / .db3 files)")
        for bag in below:
            found.setdefault(bag.resolve(), bag)
    return list(found.values())


def output_name(bag: Path) -> str:
    """``<input name>_depth``: a folder's name, a file's name without its suffix."""
    return f"{bag.stem if bag.is_file() else bag.name}_depth"


def plan_outputs(bags: list[Path], outdir: Path) -> list[tuple[Path, Path]]:
    """(input, output) per bag; two inputs with the same output name are refused."""
    by_name: dict[str, list[Path]] = {}
    for bag in bags:
        by_name.setdefault(output_name(bag), []).append(bag)
    clashes = {name: paths for name, paths in by_name.items() if len(paths) > 1}
    if clashes:
        lines = "; ".join(f"{outdir / name} from " + " and ".join(str(p) for p in paths)
                          for name, paths in sorted(clashes.items()))
        raise BagInputError("several inputs would write the same output (outputs are named "
                            f"after the input's name; rename or run them separately): {lines}")
    return [(bag, outdir / output_name(bag)) for bag in bags]


def checkpoint_sha256(path: Path) -> str:
    """sha256 of a checkpoint file, or of a folder's files (relative names and contents)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if file is not path:
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with open(file, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def options_key(opts: BagOptions) -> dict[str, JsonValue]:
    """The processing options as canonical JSON values (paths, overwrite and progress
    excluded), with the engine configuration they resolve to on this machine."""
    values = dataclasses.asdict(opts)
    for name in ("input", "output", "checkpoint", "overwrite", "progress"):
        values.pop(name)
    values["engine"] = dataclasses.asdict(engine_config(opts))
    return json.loads(dumps_strict(values))


def run_record(opts: BagOptions, sha256: str) -> dict[str, JsonValue]:
    """What every output of the run records (``RUN_RECORD``, ``--resume``'s key)."""
    from depth_pro_ros import __version__

    return {"tool": f"depth-pro-ros {__version__}", "options": options_key(opts),
            "checkpoint_sha256": sha256}


def complete_output(output: Path, record: dict[str, JsonValue],
                    bag: Path) -> dict[str, JsonValue] | None:
    """The saved record when ``output`` is complete and made from ``bag`` with ``record``."""
    try:
        saved = json.loads((output / RUN_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    # strict_json: a record written before records were strict JSON held Infinity.
    same = all(strict_json(saved.get(k)) == v for k, v in record.items() if k != "tool")
    return saved if same and saved.get("input") == str(bag.resolve()) else None


def remove_partials(output: Path) -> None:
    """Remove what an interrupted run left next to ``output`` (``.NAME.partial-*``)."""
    if output.parent.is_dir():
        for stale in output.parent.glob(f".{output.name}.partial-*"):
            shutil.rmtree(stale, ignore_errors=True)
