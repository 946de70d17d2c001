"""``depth-pro-ros bags``: many bags, each into ``OUTDIR/<name>_depth/``, one model per worker.

Without Ray the bags run one after the other in this process on one engine (the model is
loaded once). With Ray a pool of long-lived actors each loads the model once and takes
the next bag when it is free; an actor that dies has its bag retried on a fresh actor.

Every bag is written exactly as ``depth-pro-ros bag`` writes it (``process_bag``, atomic
output), plus a small ``depth_pro_ros.json`` inside the output -- the options and the
checkpoint's hash -- written before the output is moved into place, so that ``--resume``
can tell a complete output made with the same options from anything else.

``OUTDIR/summary.json`` describes OUTDIR across runs (:data:`SUMMARY_FORMAT`): every run
is listed in ``runs``, and ``bags`` holds one record per output, the latest attempt on
it; a bag this run did not touch keeps its earlier record, and a bag whose latest attempt
did not produce its output (failed, interrupted, or skipped by ``--resume``) keeps the
record of the run that did as ``last_success``. The files are strict JSON: non-finite
numbers (``--max-depth``'s default, no limit) are written as the strings ``"Infinity"``,
``"-Infinity"`` and ``"NaN"`` (:func:`strict_json`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import socket
import sys
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from depth_pro_ros.bag.errors import BagError, BagInputError, BagSetupError, describe_exception
from depth_pro_ros.bag.process import (
    RUN_RECORD,
    BagOptions,
    create_bag_engine,
    engine_config,
    process_bag,
)

__all__ = ["SUMMARY", "SUMMARY_FORMAT", "BagOutcome", "FleetSettings", "checkpoint_sha256",
           "find_bags", "run_fleet", "strict_json"]

#: Test-only: a marker file path; the first Ray actor to start a bag while the file does
#: not exist creates it and exits abruptly mid-bag (a crashed worker). Never set it else.
TEST_CRASH_ENV = "DEPTH_PRO_ROS_TEST_CRASH_MARKER"
_BAG_SUFFIXES = (".bag", ".mcap", ".db3")
_NOTES_KEPT = 20  # warnings of a bag returned by a Ray worker
#: The fleet summary in OUTDIR, and the version of its layout (1: one run, non-strict).
SUMMARY = "summary.json"
SUMMARY_FORMAT = 2
_NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


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


@dataclass
class BagOutcome:
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

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["input"], d["output"] = str(self.input), str(self.output)
        d.pop("notes")
        return d


# ----------------------------------------------------------------------------- planning
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


def strict_json(value: Any) -> Any:
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
    return value


def dumps_strict(value: Any) -> str:
    """Indented, key-sorted strict JSON of ``value`` (see :func:`strict_json`)."""
    return json.dumps(strict_json(value), indent=2, sort_keys=True, default=str,
                      allow_nan=False) + "\n"


def options_key(opts: BagOptions) -> dict[str, Any]:
    """The processing options as canonical JSON values (paths, overwrite and progress
    excluded), with the engine configuration they resolve to on this machine."""
    values = dataclasses.asdict(opts)
    for name in ("input", "output", "checkpoint", "overwrite", "progress"):
        values.pop(name)
    values["engine"] = dataclasses.asdict(engine_config(opts))
    return json.loads(dumps_strict(values))


def run_record(opts: BagOptions, sha256: str) -> dict[str, Any]:
    from depth_pro_ros import __version__

    return {"tool": f"depth-pro-ros {__version__}", "options": options_key(opts),
            "checkpoint_sha256": sha256}


def complete_output(output: Path, record: dict[str, Any], bag: Path) -> dict | None:
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


def run_one(engine: Any, opts: BagOptions, record: dict[str, Any], worker: str,
            on_progress: Callable[[int, int], None] | None = None,
            report: Callable[[str], None] | None = None) -> BagOutcome:
    """One bag on a loaded engine; failures become the outcome's reason."""
    outcome = BagOutcome(opts.input, opts.output, worker=worker)
    t0 = time.perf_counter()
    try:
        summary = process_bag(opts, on_progress=on_progress, report=report, engine=engine,
                              record={**record, "input": str(opts.input.resolve())})
    except BagError as exc:
        outcome.status, outcome.reason = "failed", str(exc)
    except Exception as exc:  # noqa: BLE001 -- one bag's bug must not stop the others
        outcome.status, outcome.reason = "failed", describe_exception(exc)
    else:
        outcome.status = "ok"
        outcome.frames_in, outcome.frames_out = summary.frames_in, summary.frames_out
        outcome.skipped = dict(summary.skipped)
    outcome.wall_seconds = time.perf_counter() - t0
    return outcome


# ----------------------------------------------------------------------------- Ray worker
class FleetWorker:
    """A Ray actor's state: one loaded engine, bags run one at a time."""

    def __init__(self, template: BagOptions, record: dict[str, Any],
                 crash_marker: str | None = None, threads: int | None = None) -> None:
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.template, self.record, self.crash_marker = template, record, crash_marker
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.engine: Any = None
        self.done = 0

    def setup(self) -> str:
        """Load the model (BagSetupError's text comes back on failure)."""
        self.engine = create_bag_engine(self.template)
        return self.name

    def check(self, paths: list[str], outdir: str) -> list[str]:
        """What this worker cannot see: inputs, the checkpoint, or a writable OUTDIR."""
        problems = [f"{self.name}: {p} does not exist here" for p in paths
                    if not os.path.exists(p)]
        try:
            os.makedirs(outdir, exist_ok=True)
            probe = Path(outdir) / f".write-check-{self.name.replace(':', '-')}"
            probe.write_text("x")
            probe.unlink()
        except OSError as exc:
            problems.append(f"{self.name}: cannot write {outdir}: {exc}")
        return problems

    def progress(self) -> int:
        return self.done

    def run(self, input: str, output: str, overwrite: bool) -> BagOutcome:
        self.done = 0
        notes: list[str] = []

        def on_progress(done: int, total: int) -> None:
            self.done = done
            marker = self.crash_marker
            if marker and not os.path.exists(marker):  # test-only crash (TEST_CRASH_ENV)
                Path(marker).write_text(self.name)
                os._exit(3)

        def report(line: str) -> None:
            if len(notes) < _NOTES_KEPT:
                notes.append(line)

        opts = dataclasses.replace(self.template, input=Path(input), output=Path(output),
                                   overwrite=overwrite, progress=False)
        outcome = run_one(self.engine, opts, self.record, self.name, on_progress, report)
        outcome.notes = notes
        return outcome


# ----------------------------------------------------------------------------- driver
class _Fleet:
    def __init__(self, template: BagOptions, settings: FleetSettings, total: int) -> None:
        from tqdm import tqdm

        self.template, self.settings = template, settings
        self.outcomes: list[BagOutcome] = []
        self.frames = 0
        self.t0 = time.perf_counter()
        show = settings.progress if settings.progress is not None else sys.stderr.isatty()
        self.bar = tqdm(total=total, unit="bag", desc="bags", file=sys.stderr,
                        disable=not show, dynamic_ncols=True)

    def say(self, line: str) -> None:
        self.bar.write(line, file=sys.stderr)

    def frames_done(self, extra: int = 0) -> None:
        frames = self.frames + extra
        rate = frames / max(time.perf_counter() - self.t0, 1e-9)
        self.bar.set_postfix_str(f"{frames} frames, {rate:.2f} frames/s", refresh=False)
        self.bar.refresh()

    def finished(self, outcome: BagOutcome) -> None:
        self.outcomes.append(outcome)
        self.frames += outcome.frames_out if outcome.status == "ok" else 0
        for note in outcome.notes:
            self.say(f"  {outcome.input.name}: {note}")
        text = (f"{outcome.frames_in} frames in, {outcome.frames_out} out"
                + (f", skipped {outcome.skipped}" if outcome.skipped else "")
                + f", {outcome.wall_seconds:.1f} s"
                + (f" [{outcome.worker}]" if outcome.worker else ""))
        if outcome.status == "failed":
            text = outcome.reason
        self.say(f"{outcome.status:7s} {outcome.input} -> {outcome.output.name}: {text}")
        self.bar.update(1)
        self.frames_done()


def run_fleet(template: BagOptions, inputs: list[Path], settings: FleetSettings) -> int:
    """Run ``bags``; returns the exit status (0 all ok or skipped, 1 some failed, 2 setup,
    130 interrupted). ``template`` holds every option but input and output."""
    say = lambda line: print(line, file=sys.stderr)  # noqa: E731
    if settings.ray:
        try:
            import ray  # noqa: F401
        except ImportError:
            say("depth-pro-ros: error: --ray needs Ray: pip install 'depth_pro_ros[cluster]' "
                "(or pip install ray)")
            return 2
    outdir = settings.outdir.resolve() if settings.ray else settings.outdir
    try:
        bags = find_bags(inputs, exclude=settings.outdir)
        if settings.ray:
            bags = [b.resolve() for b in bags]
        pairs = plan_outputs(bags, outdir)
        checkpoint = Path(template.checkpoint).expanduser()
        if not checkpoint.exists():
            from depth_pro_ros.model.weights import missing_checkpoint_message

            raise BagSetupError(missing_checkpoint_message(checkpoint))
        template = dataclasses.replace(template, checkpoint=checkpoint.resolve(),
                                       progress=False)
        record = run_record(template, checkpoint_sha256(checkpoint))
    except BagError as exc:
        say(f"depth-pro-ros: error: {exc}")
        return 2
    started = datetime.now(timezone.utc).isoformat(timespec="microseconds")
    fleet = _Fleet(template, settings, len(pairs))
    todo: list[tuple[Path, Path, bool]] = []
    for bag, output in pairs:
        overwrite = template.overwrite
        if settings.resume:
            saved = complete_output(output, record, bag)
            if saved is not None:
                fleet.finished(BagOutcome(bag, output, "skipped", "complete output exists "
                                          "(--resume)", saved.get("frames_in", 0),
                                          saved.get("frames_out", 0), saved.get("skipped", {})))
                continue
            remove_partials(output)
            overwrite = True  # made with other options, or incomplete: redo
        todo.append((bag, output, overwrite))
    code = 0
    try:
        if todo and settings.ray:
            code = _run_ray(fleet, todo, record, settings)
        elif todo:
            code = _run_local(fleet, todo, record)
    except KeyboardInterrupt:
        code = 130
    finally:
        fleet.bar.close()
    done = {o.input for o in fleet.outcomes}
    for bag, output, _ in todo:
        if bag not in done:
            fleet.outcomes.append(BagOutcome(bag, output, "interrupted" if code == 130
                                             else "failed", "not processed"))
    failed = sum(o.status != "ok" and o.status != "skipped" for o in fleet.outcomes)
    code = code or (1 if failed else 0)
    run = {"started": started, "checkpoint": str(checkpoint), **record,
           "inputs": [str(p) for p in inputs], "resume": settings.resume,
           "ray": settings.ray, "wall_seconds": time.perf_counter() - fleet.t0,
           "exit_status": code,
           "statuses": dict(sorted(Counter(o.status for o in fleet.outcomes).items()))}
    try:
        write_summary(outdir, run, fleet.outcomes, say)
    except OSError as exc:
        say(f"depth-pro-ros: error: cannot write {outdir / SUMMARY}: {exc}")
        code = code or 1
    print(format_table(fleet.outcomes))
    if code == 130:
        say("depth-pro-ros: error: interrupted; bags not finished were not written")
    elif code == 1 and failed:
        say(f"depth-pro-ros: error: {failed} of {len(fleet.outcomes)} bag(s) failed")
    return code


def _run_local(fleet: _Fleet, todo: list, record: dict) -> int:
    template = fleet.template
    try:
        engine = create_bag_engine(template)
    except BagError as exc:
        fleet.say(f"depth-pro-ros: error: {exc}")
        return 2
    name = f"{socket.gethostname()}:{os.getpid()}"
    try:
        for bag, output, overwrite in todo:
            opts = dataclasses.replace(template, input=bag, output=output, overwrite=overwrite)
            outcome = run_one(engine, opts, record, name,
                              on_progress=lambda done, total: fleet.frames_done(done),
                              report=lambda line, bag=bag: fleet.say(f"  {bag.name}: {line}"))
            fleet.finished(outcome)
    finally:
        engine.close()
    return 0


def _run_ray(fleet: _Fleet, todo: list, record: dict, settings: FleetSettings) -> int:
    import ray
    from ray.exceptions import RayActorError, RayTaskError

    started = False
    if not ray.is_initialized():
        if settings.ray == "local":
            ray.init(num_cpus=max(settings.workers or 1, 1), include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
        else:
            ray.init(address=settings.ray, log_to_driver=False, configure_logging=False)
        started = True
    gpus = settings.gpus_per_worker or 0
    workers = settings.workers
    if workers is None:
        available = ray.cluster_resources().get("GPU", 0)
        workers = max(1, int(available // gpus)) if gpus else 1
    actor_class = ray.remote(FleetWorker).options(num_cpus=1, num_gpus=gpus,
                                                  max_concurrency=2)
    crash = os.environ.get(TEST_CRASH_ENV)
    # CPU results depend (in the last bits) on the number of torch threads: workers use
    # what a `bag` run here uses (Ray would give each CPU worker one thread).
    import torch

    threads = torch.get_num_threads()

    def start_actor() -> tuple[Any, str]:
        actor = actor_class.remote(fleet.template, record, crash, threads)
        try:
            return actor, ray.get(actor.setup.remote())
        except RayTaskError as exc:
            ray.kill(actor)
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            raise BagSetupError(f"a worker cannot load the model: {cause}") from None

    actors: list[Any] = []
    busy: dict[Any, tuple[Any, str, tuple]] = {}  # ref -> (actor, name, job)
    try:
        try:
            names: dict[Any, str] = {}
            for _ in range(workers):
                actor, name = start_actor()
                actors.append(actor)
                names[actor] = name
            paths = [str(bag) for bag, _, _ in todo] + [str(fleet.template.checkpoint)]
            problems = [p for ps in ray.get([a.check.remote(paths, str(settings.outdir
                                                                        .resolve()))
                                             for a in actors]) for p in ps]
            if problems:
                raise BagSetupError("inputs, checkpoint and OUTDIR must be on storage every "
                                    "worker sees, at the same paths: " + "; ".join(problems[:10]))
        except BagSetupError as exc:
            fleet.say(f"depth-pro-ros: error: {exc}")
            return 2
        fleet.say(f"{len(actors)} Ray worker(s): {', '.join(names.values())}")
        queue = deque((bag, output, overwrite, 0) for bag, output, overwrite in todo)
        idle = list(actors)
        while queue or busy:
            while idle and queue:
                actor, job = idle.pop(), queue.popleft()
                ref = actor.run.remote(str(job[0]), str(job[1]), job[2])
                busy[ref] = (actor, names[actor], job)
            ready, _ = ray.wait(list(busy), num_returns=1, timeout=0.5)
            for ref in ready:
                actor, name, job = busy.pop(ref)
                bag, output, overwrite, attempts = job
                try:
                    outcome = ray.get(ref)
                except RayActorError as exc:
                    ray.kill(actor)
                    remove_partials(output)
                    del names[actor]
                    actors.remove(actor)
                    fleet.say(f"worker {name} died on {bag} ({type(exc).__name__}); "
                              "starting another")
                    if attempts < settings.retries:
                        queue.appendleft((bag, output, overwrite, attempts + 1))
                    else:
                        fleet.finished(BagOutcome(bag, output, "failed", f"its worker died "
                                                  f"{attempts + 1} time(s)", worker=name,
                                                  attempts=attempts + 1))
                    try:
                        actor, name = start_actor()
                    except BagSetupError as err:
                        fleet.say(f"depth-pro-ros: error: {err}")
                        if not actors:
                            return 2
                        continue
                    actors.append(actor)
                    names[actor] = name
                    idle.append(actor)
                    continue
                except RayTaskError as exc:
                    outcome = BagOutcome(bag, output, "failed", str(exc).splitlines()[0],
                                         worker=name)
                outcome.attempts = attempts + 1
                idle.append(actor)
                fleet.finished(outcome)
            if busy:
                try:
                    done = ray.get([a.progress.remote() for a, _, _ in busy.values()],
                                   timeout=2)
                    fleet.frames_done(sum(done))
                except Exception:  # noqa: BLE001 -- a dead worker is handled above
                    pass
        return 0
    except KeyboardInterrupt:
        for actor in actors:
            ray.kill(actor)
        for _, _, job in busy.values():
            remove_partials(job[1])
        raise
    finally:
        for actor in actors:
            ray.kill(actor)
        if started:
            ray.shutdown()


def _read_summary(path: Path, say: Callable[[str], None]) -> dict[str, Any]:
    """An earlier run's summary (either format; Python reads its Infinity), or an empty
    one. An unreadable file is moved aside to ``summary.json.unreadable``, not lost."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"runs": [], "bags": []}
    except (OSError, ValueError) as exc:
        data, problem = None, str(exc)
    else:
        problem = "not a summary"
    if not isinstance(data, dict) or not isinstance(data.get("bags"), list):
        aside = path.with_name(f"{path.name}.unreadable")
        say(f"depth-pro-ros: warning: {path} is unreadable ({problem}); moved to {aside}, "
            "a new summary is started")
        os.replace(path, aside)
        return {"runs": [], "bags": []}
    if "runs" not in data:  # format 1: one run, its options at the top level
        keys = ("checkpoint", "tool", "options", "checkpoint_sha256", "wall_seconds")
        data["runs"] = [{"started": None, **{k: data[k] for k in keys if k in data}}]
    return data


def merge_bag_records(old: list[dict[str, Any]], new: list[dict[str, Any]],
                      outdir: Path) -> list[dict[str, Any]]:
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
            if success:
                rec["last_success"] = {k: v for k, v in success.items()
                                       if k not in ("last_success", "output_complete")}
        by_name[name] = rec
    for name, rec in by_name.items():
        rec["output_complete"] = (outdir / name / RUN_RECORD).is_file()
    return [by_name[name] for name in sorted(by_name)]


def write_summary(outdir: Path, run: dict[str, Any], outcomes: list[BagOutcome],
                  say: Callable[[str], None] = lambda line: None) -> None:
    """Add this run and its bags to ``OUTDIR/summary.json`` (strict JSON, replaced
    atomically; concurrent runs on one OUTDIR take turns through a lock file)."""
    outdir.mkdir(parents=True, exist_ok=True)
    path = outdir / SUMMARY
    with open(outdir / f".{SUMMARY}.lock", "a+") as lock:
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
    rows = [("status", "bag", "frames in", "out", "skipped", "wall s", "worker / reason")]
    for o in outcomes:
        rows.append((o.status, o.input.name, str(o.frames_in), str(o.frames_out),
                     str(sum(o.skipped.values())), f"{o.wall_seconds:.1f}",
                     o.reason if o.status != "ok" else o.worker))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1]
                     for r in rows)
