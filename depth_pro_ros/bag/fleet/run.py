"""``bags``' driver: plan the run, run the bags here or on Ray, write the summary."""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from depth_pro_ros.bag.errors import BagError, BagInputError, BagSetupError
from depth_pro_ros.bag.fleet.jobs import FleetProgress, Job, run_one
from depth_pro_ros.bag.fleet.plan import (
    FleetSettings,
    checkpoint_sha256,
    complete_output,
    find_bags,
    output_name,
    output_source,
    plan_outputs,
    remove_partials,
    run_record,
)
from depth_pro_ros.bag.fleet.ray_pool import run_ray
from depth_pro_ros.bag.fleet.records import (
    SUMMARY,
    BagOutcome,
    JsonValue,
    format_table,
    write_summary,
)
from depth_pro_ros.bag.options import BagOptions, create_bag_engine
from depth_pro_ros.bag.paths import path_problem
from depth_pro_ros.bag.writer import resolved_path
from depth_pro_ros.model.weights import MissingCheckpointError, resolve_checkpoint

__all__ = ["run_fleet"]


def _say(line: str) -> None:
    print(line, file=sys.stderr)


def run_fleet(template: BagOptions, inputs: list[Path], settings: FleetSettings) -> int:
    """Run ``bags``; returns the exit status (0 all ok or skipped, 1 some failed, 2 setup,
    130 interrupted). ``template`` holds every option but input and output."""
    if settings.ray:
        try:
            import ray  # noqa: F401
        except ImportError:
            _say("depth-pro-ros: error: --ray needs Ray: pip install 'depth_pro_ros[cluster]' "
                 "(or pip install ray)")
            return 2
    outdir = resolved_path(settings.outdir) if settings.ray else settings.outdir
    refused: list[tuple[Path, str]] = []
    try:
        notes: list[str] = []
        bags = find_bags(inputs, exclude=settings.outdir, problems=refused, notes=notes)
        for line in notes:
            _say(f"depth-pro-ros: {line}")
        if not bags:
            raise BagInputError("; ".join(line for _, line in refused) if refused else
                                "no bags among the inputs")
        if settings.ray:
            bags = [resolved_path(b) for b in bags]
        pairs = plan_outputs(bags, outdir)
        problem = _outdir_problem(outdir)  # created here, once there is something to do
        if problem is not None:  # every bag and the summary would fail: say it once
            raise BagSetupError(problem)
        try:
            checkpoint = resolve_checkpoint(template.checkpoint)
        except MissingCheckpointError as exc:
            raise BagSetupError(str(exc)) from None
        template = dataclasses.replace(template, checkpoint=checkpoint.resolve(),
                                       progress=False)
        record = run_record(template, checkpoint_sha256(checkpoint))
    except BagError as exc:
        _say(f"depth-pro-ros: error: {exc}")
        return 2
    started = datetime.now(timezone.utc).isoformat(timespec="microseconds")
    fleet = FleetProgress(template, settings.progress, len(pairs) + len(refused))
    for path, line in refused:  # one line each; the good bags go on
        fleet.finished(BagOutcome(path, outdir / output_name(path), "failed", line))
    todo = _resume(fleet, pairs, record, settings.resume)
    code = 0
    try:
        if todo and settings.ray:
            code = run_ray(fleet, todo, record, settings)
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
        write_summary(outdir, run, fleet.outcomes, _say)
    except Exception as exc:  # noqa: BLE001 -- the run is done: say it, never a traceback
        _say(f"depth-pro-ros: error: cannot write {outdir / SUMMARY}: {exc}")
        code = code or 1
    print(format_table(fleet.outcomes))
    if code == 130:
        _say("depth-pro-ros: error: interrupted; bags not finished were not written")
    elif code == 1 and failed:
        _say(f"depth-pro-ros: error: {failed} of {len(fleet.outcomes)} bag(s) failed")
    return code


def _outdir_problem(outdir: Path) -> str | None:
    """Why OUTDIR cannot receive the outputs and the summary (created if missing): not a
    folder, under a file, read-only, full ... (None: a writable folder)."""
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        return f"OUTDIR {outdir} is not a folder"
    except OSError as exc:
        return f"cannot create OUTDIR {outdir}: {exc.strerror or exc}"
    problem = path_problem(outdir, "dir")
    if problem is not None:
        return f"OUTDIR {outdir} {problem}"
    try:  # a real write: os.access says yes to root on a read-only mount
        fd, probe = tempfile.mkstemp(prefix=".depth_pro_ros.probe-", dir=outdir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return f"cannot write in OUTDIR {outdir}: {exc.strerror or exc}"
    return None


def _resume(fleet: FleetProgress, pairs: list[tuple[Path, Path]],
            record: dict[str, JsonValue], resume: bool) -> list[Job]:
    """The bags to run; with ``resume`` the complete outputs made with ``record`` are
    skipped (and said) and this tool's other outputs of the same input are redone.

    An output that is an input of this run is never written; with ``resume`` an existing
    bag that is not this tool's output of the same input is replaced only with
    ``--overwrite`` (without ``resume`` ``process_bag`` refuses any existing output)."""
    todo: list[Job] = []
    inputs = {resolved_path(bag) for bag, _ in pairs}
    for bag, output in pairs:
        overwrite = fleet.template.overwrite
        if resolved_path(output) in inputs:
            fleet.finished(BagOutcome(bag, output, "failed", f"output {output} is an input "
                                      "of this run; it is not written over (choose another "
                                      "OUTDIR)"))
            continue
        if resume:
            saved, problem = complete_output(output, record, bag)
            if problem is not None:
                fleet.say(f"  {bag.name}: {problem}; the bag is processed again")
            if saved is not None:
                fleet.finished(BagOutcome(bag, output, "skipped", "complete output exists "
                                          "(--resume)", saved.get("frames_in", 0),
                                          saved.get("frames_out", 0), saved.get("skipped", {})))
                continue
            remove_partials(output)
            source = output_source(output) if os.path.lexists(output) else None
            if os.path.lexists(output) and source != str(resolved_path(bag)) \
                    and not overwrite and problem is None:
                whose = f"made from {source}" if source else "not made by depth-pro-ros"
                fleet.finished(BagOutcome(bag, output, "failed", f"output {output} exists "
                                          f"and is {whose}; pass --overwrite to replace it"))
                continue
            overwrite = True  # ours, made with other options, or incomplete: redo
        todo.append((bag, output, overwrite))
    return todo


def _run_local(fleet: FleetProgress, todo: list[Job], record: dict[str, JsonValue]) -> int:
    """The bags one after the other in this process, on one engine; 0, or 2 when the
    model cannot be loaded."""
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
