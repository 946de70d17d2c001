"""``OUTDIR/summary.json``: every run of ``bags`` on OUTDIR, and the latest record of each
output bag (:data:`SUMMARY_FORMAT`), in strict JSON (:func:`strict_json`)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from depth_pro_ros.bag.paths import path_problem
from depth_pro_ros.bag.process import RUN_RECORD

__all__ = ["SUMMARY", "SUMMARY_FORMAT", "BagOutcome", "JsonValue", "dumps_strict",
           "format_table", "merge_bag_records", "strict_json", "write_summary"]

#: The fleet summary in OUTDIR, and the version of its layout (1: one run, non-strict).
SUMMARY = "summary.json"
SUMMARY_FORMAT = 2
#: A larger summary.json is not read (moved aside): a fleet's is kilobytes per bag.
_SUMMARY_BYTES = 256 << 20
_NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}

#: What ``json`` reads and writes.
JsonValue = dict[str, "JsonValue"] | list["JsonValue"] | str | int | float | bool | None


@dataclass
class BagOutcome:
    """What became of one bag of a run (a record of ``summary.json``)."""

    input: Path
    output: Path
    status: str = "pending"  # ok | failed | skipped | interrupted | pending
    reason: str = ""
    frames_in: int = 0
    frames_out: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    wall_seconds: float = 0.0
    worker: str = ""
    attempts: int = 0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, JsonValue]:
        """The record as JSON values (paths as strings, without the notes)."""
        d = dataclasses.asdict(self)
        d["input"], d["output"] = str(self.input), str(self.output)
        d.pop("notes")
        return d


def strict_json(value: object) -> JsonValue:
    """``value`` with every non-finite float replaced by the string ``"Infinity"``,
    ``"-Infinity"`` or ``"NaN"`` (in nested dicts, lists and tuples), so that
    ``json.dumps(..., allow_nan=False)`` writes it: strict parsers refuse the bare
    ``Infinity`` / ``NaN`` tokens Python writes by default. The strings are the ones
    Python's ``float()``, JavaScript's ``Number()`` and Go's ``ParseFloat`` read back."""
    if isinstance(value, float) and not math.isfinite(value):
        return _NON_FINITE.get(value, "NaN")
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value  # type: ignore[return-value] -- anything else: as it is


def dumps_strict(value: object) -> str:
    """Indented, key-sorted strict JSON of ``value`` (see :func:`strict_json`)."""
    return json.dumps(strict_json(value), indent=2, sort_keys=True, default=str,
                      allow_nan=False) + "\n"


def _read_summary(path: Path, say: Callable[[str], None]) -> dict[str, JsonValue]:
    """An earlier run's summary (either format; Python reads its Infinity), or an empty
    one. An unreadable file is moved aside to ``summary.json.unreadable``, not lost."""
    if not os.path.lexists(path):
        return {"runs": [], "bags": []}
    kind = path_problem(path, "file")
    if kind is not None:  # a FIFO would block the read: never open it
        raise OSError(f"{path} {kind}")
    try:
        if path.stat().st_size > _SUMMARY_BYTES:
            raise ValueError(f"larger than {_SUMMARY_BYTES >> 20} MiB")
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: [[[[...]]]]
        data, problem = None, str(exc) or type(exc).__name__
    else:
        problem = "not a summary"
    if not isinstance(data, dict) or not isinstance(data.get("bags"), list) \
            or not isinstance(data.get("runs", []), list):
        aside = path.with_name(f"{path.name}.unreadable")
        say(f"depth-pro-ros: warning: {path} is unreadable ({problem}); moved to {aside}, "
            "a new summary is started")
        os.replace(path, aside)
        return {"runs": [], "bags": []}
    if "runs" not in data:  # format 1: one run, its options at the top level
        keys = ("checkpoint", "tool", "options", "checkpoint_sha256", "wall_seconds")
        data["runs"] = [{"started": None, **{k: data[k] for k in keys if k in data}}]
    return data


def merge_bag_records(old: list[dict[str, JsonValue]], new: list[dict[str, JsonValue]],
                      outdir: Path) -> list[dict[str, JsonValue]]:
    """One record per output (keyed by its folder name in OUTDIR), sorted by it.

    A record of ``new`` replaces the earlier one of its output; when it is not ``ok``
    (failed, interrupted, or skipped: the output in place, if any, comes from an earlier
    run) the last ``ok`` record of that output is kept in it as ``last_success``.
    ``output_complete`` says whether the output exists now with its ``RUN_RECORD``.
    """
    by_name = {Path(r["output"]).name: r for r in old
               if isinstance(r, dict) and isinstance(r.get("output"), str)}
    for rec in new:
        name = Path(rec["output"]).name
        earlier = by_name.get(name)
        if rec["status"] != "ok" and earlier is not None:
            success = earlier if earlier.get("status") == "ok" else earlier.get("last_success")
            if isinstance(success, dict):
                rec["last_success"] = {k: v for k, v in success.items()
                                       if k not in ("last_success", "output_complete")}
        by_name[name] = rec
    for name, rec in by_name.items():
        rec["output_complete"] = (outdir / name / RUN_RECORD).is_file()
    return [by_name[name] for name in sorted(by_name)]


def write_summary(outdir: Path, run: dict[str, JsonValue], outcomes: list[BagOutcome],
                  say: Callable[[str], None] = lambda line: None) -> None:
    """Add this run and its bags to ``OUTDIR/summary.json`` (strict JSON, replaced
    atomically; concurrent runs on one OUTDIR take turns through a lock file)."""
    outdir.mkdir(parents=True, exist_ok=True)
    path = outdir / SUMMARY
    lock_path = outdir / f".{SUMMARY}.lock"
    kind = path_problem(lock_path, "file") if os.path.lexists(lock_path) else None
    if kind is not None:
        raise OSError(f"{lock_path} {kind}")
    with open(lock_path, "a+") as lock:
        try:
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)
        except (ImportError, OSError):  # no flock here (Windows, some network mounts)
            pass
        data = _read_summary(path, say)
        new = [{**o.as_dict(), "run": run["started"]} for o in outcomes]
        summary = {"format": SUMMARY_FORMAT, "runs": [*data["runs"], run],
                   "bags": merge_bag_records(data["bags"], new, outdir)}
        tmp = outdir / f".{SUMMARY}.{os.getpid()}.tmp"
        try:
            tmp.write_text(dumps_strict(summary), encoding="utf-8")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def format_table(outcomes: list[BagOutcome]) -> str:
    """The table of outcomes printed at the end of a run."""
    rows = [("status", "bag", "frames in", "out", "skipped", "wall s", "worker / reason")]
    for o in outcomes:
        rows.append((o.status, o.input.name, str(o.frames_in), str(o.frames_out),
                     str(sum(o.skipped.values())), f"{o.wall_seconds:.1f}",
                     o.reason if o.status != "ok" else o.worker))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1]
                     for r in rows)
