"""What a ``bags`` run does before any bag runs: the bags among the inputs, their outputs,
and (``--resume``) which outputs are complete, made with the same options and weights."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from depth_pro_ros.bag.errors import BagInputError, BagSetupError
from depth_pro_ros.bag.fleet.records import JsonValue, dumps_strict, strict_json
from depth_pro_ros.bag.options import BagOptions, engine_config
from depth_pro_ros.bag.paths import bag_problem, path_problem
from depth_pro_ros.bag.process import RUN_RECORD
from depth_pro_ros.bag.writer import OUTPUT_MARK, resolved_path
from depth_pro_ros.model import weights

__all__ = ["FleetSettings", "checkpoint_sha256", "complete_output", "find_bags",
           "made_by_us", "output_name", "output_source", "plan_outputs", "read_record",
           "remove_partials", "run_record"]

_BAG_SUFFIXES = (".bag", ".mcap", ".db3")
#: Most of a run record (or metadata.yaml) read: records are a few kB.
_RECORD_BYTES = 1 << 20
#: Types of the record fields ``--resume`` uses.
_RECORD_FIELDS = {"input": str, "frames_in": int, "frames_out": int, "skipped": dict,
                  "checkpoint_sha256": str, "options": dict}


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


def find_bags(inputs: list[Path], exclude: Path | None = None,
              problems: list[tuple[Path, str]] | None = None,
              notes: list[str] | None = None) -> list[Path]:
    """The bags among ``inputs``: bag files and ROS 2 bag folders as given, and those found
    below other folders (ROS 1 ``.bag`` files, folders with a ``metadata.yaml``, bare
    ``.mcap`` / ``.db3`` files elsewhere). Hidden entries and ``exclude`` are not searched.

    Everything is looked at with ``stat`` only (:mod:`depth_pro_ros.bag.paths`): an input
    that is not a regular file or folder (FIFO, device, symlink loop, dangling link) is
    refused. With ``problems`` each refused input is added there as (path, one line) and
    the others are returned; without, the first one raises :class:`BagInputError`.
    Outputs of this tool found among the inputs (:func:`made_by_us`) are never inputs:
    they are left out with a line in ``notes``.
    """
    found: dict[Path, Path] = {}
    skip = resolved_path(exclude) if exclude is not None else None

    def refuse(path: Path, line: str) -> None:
        if problems is None:
            raise BagInputError(line)
        problems.append((path, line))

    def add(bag: Path) -> None:
        problem = bag_problem(bag)
        if problem is not None:
            refuse(bag, f"not a bag: {problem}")
        elif (why := made_by_us(bag)) is not None:
            if notes is not None:
                notes.append(f"left out {bag}: it is an output of depth-pro-ros ({why})")
        else:
            found.setdefault(resolved_path(bag), bag)

    for item in inputs:
        path = Path(item)
        problem = path_problem(path)
        if problem == "does not exist":
            refuse(path, f"input not found: {path}")
            continue
        if problem is not None:
            refuse(path, f"not a bag: {path} {problem}")
            continue
        if path.is_file() or os.path.lexists(path / "metadata.yaml"):
            add(path)
            continue
        below = []
        for root, dirs, files in os.walk(path):  # never follows links: no loops
            here = Path(root)
            if os.path.lexists(here / "metadata.yaml"):
                below.append(here)
                dirs[:] = []
                continue
            dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                             and (skip is None or resolved_path(here / d) != skip))
            below += [here / f for f in sorted(files)
                      if f.endswith(_BAG_SUFFIXES) and not f.startswith(".")]
        if not below:
            refuse(path, f"no bags in {path} (looked for ROS 1 .bag files, ROS 2 bag "
                         "folders with a metadata.yaml, and .mcap / .db3 files)")
        for bag in below:
            add(bag)
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
    """:func:`~depth_pro_ros.model.weights.checkpoint_sha256` of a checkpoint that is a
    regular file or folder (a FIFO would block the read)."""
    problem = path_problem(path)
    if problem is not None:
        raise BagSetupError(f"checkpoint {path} {problem}")
    return weights.checkpoint_sha256(path)


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


def read_record(output: Path) -> tuple[dict[str, JsonValue] | None, str | None]:
    """``output``'s ``RUN_RECORD``: (record, None); (None, None) when there is none;
    (None, why) when it cannot be used (not a regular file, not JSON, not an object, a
    field of the wrong type)."""
    path = output / RUN_RECORD
    if not os.path.lexists(path):
        return None, None
    problem = path_problem(path, "file")
    if problem is not None:
        return None, f"{path} {problem}"
    try:
        with open(path, "rb") as f:  # regular: cannot block
            saved = json.loads(f.read(_RECORD_BYTES + 1)[:_RECORD_BYTES].decode("utf-8"))
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: [[[[...]]]]
        return None, f"{path} is unreadable ({type(exc).__name__}: {exc})"
    if not isinstance(saved, dict):
        return None, f"{path} is not a JSON object"
    for key, kind in _RECORD_FIELDS.items():
        if key in saved and not isinstance(saved[key], kind):
            return None, f"{path}: {key} is not {kind.__name__}"
    if any(not isinstance(n, int) for n in saved.get("skipped", {}).values()):
        return None, f"{path}: skipped holds a count that is not a whole number"
    return saved, None


def complete_output(output: Path, record: dict[str, JsonValue],
                    bag: Path) -> tuple[dict[str, JsonValue] | None, str | None]:
    """(the saved record, None) when ``output`` is complete and made from ``bag`` with
    ``record``; (None, why) when its record is unusable; (None, None) otherwise."""
    saved, problem = read_record(output)
    if saved is None:
        return None, problem
    # strict_json: a record written before records were strict JSON held Infinity.
    same = all(strict_json(saved.get(k)) == v for k, v in record.items() if k != "tool")
    return (saved if same and saved.get("input") == str(resolved_path(bag)) else None), None


def made_by_us(bag: Path) -> str | None:
    """Why ``bag`` is an output of this tool (its ``RUN_RECORD``, or ``OUTPUT_MARK`` in
    its ``metadata.yaml``), or None. Only regular files are read."""
    if not bag.is_dir():
        return None
    if path_problem(bag / RUN_RECORD, "file") is None:
        return f"it holds {RUN_RECORD}"
    return "its metadata.yaml names its input" if _metadata_input(bag) is not None \
        else None


def output_source(output: Path) -> str | None:
    """The input ``output`` was made from, as this tool recorded it (None: not ours)."""
    saved, _ = read_record(output)
    if saved is not None and isinstance(saved.get("input"), str):
        return saved["input"]
    return _metadata_input(output)


def _metadata_input(bag: Path) -> str | None:
    meta = bag / "metadata.yaml"
    if path_problem(meta, "file") is not None:
        return None
    try:
        with open(meta, "rb") as f:
            text = f.read(_RECORD_BYTES).decode("utf-8", "replace")
    except OSError:
        return None
    if OUTPUT_MARK not in text:  # cheap test first: most bags are not ours
        return None
    from ruamel.yaml import YAML

    try:
        custom = YAML(typ="safe").load(text)["rosbag2_bagfile_information"]["custom_data"]
        value = custom[OUTPUT_MARK]
    except Exception:  # noqa: BLE001 -- any malformed metadata: not recognisably ours
        return None
    return value if isinstance(value, str) else None


def remove_partials(output: Path) -> None:
    """Remove what an interrupted run left next to ``output`` (``.NAME.partial-*``)."""
    if output.parent.is_dir():
        for stale in output.parent.glob(f".{output.name}.partial-*"):
            shutil.rmtree(stale, ignore_errors=True)
