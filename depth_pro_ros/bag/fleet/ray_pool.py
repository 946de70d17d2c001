"""``bags --ray``: a pool of long-lived Ray actors, each with one loaded model, taking the
next bag when free; a bag whose actor dies is retried on a fresh actor."""

from __future__ import annotations

import dataclasses
import os
import socket
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

from depth_pro_ros.bag.errors import BagSetupError
from depth_pro_ros.bag.fleet.jobs import FleetProgress, Job, run_one
from depth_pro_ros.bag.fleet.plan import FleetSettings, remove_partials
from depth_pro_ros.bag.fleet.records import BagOutcome, JsonValue
from depth_pro_ros.bag.options import BagOptions, create_bag_engine

if TYPE_CHECKING:
    from ray import ObjectRef
    from ray.actor import ActorHandle

    from depth_pro_ros.engine import DepthEngine

__all__ = ["FleetWorker", "run_ray"]

_NOTES_KEPT = 20  # warnings of a bag returned by a Ray worker


class FleetWorker:
    """A Ray actor's state: one loaded engine, bags run one at a time."""

    def __init__(self, template: BagOptions, record: dict[str, JsonValue],
                 threads: int | None = None) -> None:
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.template, self.record = template, record
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.engine: DepthEngine | None = None
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
        """Frames done of the bag running now."""
        return self.done

    def run(self, input: str, output: str, overwrite: bool) -> BagOutcome:
        """One bag; its outcome carries the first warnings as notes."""
        self.done = 0
        notes: list[str] = []

        def on_progress(done: int, total: int) -> None:
            self.done = done

        def report(line: str) -> None:
            if len(notes) < _NOTES_KEPT:
                notes.append(line)

        opts = dataclasses.replace(self.template, input=Path(input), output=Path(output),
                                   overwrite=overwrite, progress=False)
        outcome = run_one(self.engine, opts, self.record, self.name, on_progress, report)
        outcome.notes = notes
        return outcome


def run_ray(fleet: FleetProgress, todo: list[Job], record: dict[str, JsonValue],
            settings: FleetSettings) -> int:
    """Run the ``todo`` bags on a pool of Ray actors; 0, or 2 when no worker can start
    (the bags' own failures are their outcomes)."""
    import ray
    import torch
    from ray.exceptions import RayActorError

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
    # CPU results depend (in the last bits) on the number of torch threads: workers use
    # what a `bag` run here uses (Ray would give each CPU worker one thread).
    threads = torch.get_num_threads()

    def start_actor() -> tuple[ActorHandle, str]:
        from ray.exceptions import RayTaskError

        actor = actor_class.remote(fleet.template, record, threads)
        try:
            return actor, ray.get(actor.setup.remote())
        except RayTaskError as exc:
            ray.kill(actor)
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            raise BagSetupError(f"a worker cannot load the model: {cause}") from None

    actors: list[ActorHandle] = []
    busy: dict[ObjectRef, tuple[ActorHandle, str, _Attempt]] = {}
    try:
        names: dict[ActorHandle, str] = {}
        try:
            for _ in range(workers):
                actor, name = start_actor()
                actors.append(actor)
                names[actor] = name
            _check_storage(actors, todo, fleet.template, settings.outdir)
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
                try:
                    outcome = _result(ref, job, name)
                except RayActorError as exc:
                    died = type(exc).__name__
                else:
                    idle.append(actor)
                    fleet.finished(outcome)
                    continue
                # The actor died: its bag is retried (up to --retries) on a new one.
                bag, output, overwrite, attempts = job
                ray.kill(actor)
                remove_partials(output)
                del names[actor]
                actors.remove(actor)
                fleet.say(f"worker {name} died on {bag} ({died}); starting another")
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


#: A bag on its way through the pool: (input, output, overwrite, attempts so far).
_Attempt = tuple[Path, Path, bool, int]


def _check_storage(actors: list[ActorHandle], todo: list[Job], template: BagOptions,
                   outdir: Path) -> None:
    """Refuse a run whose inputs, checkpoint or OUTDIR some worker cannot reach."""
    import ray

    paths = [str(bag) for bag, _, _ in todo] + [str(template.checkpoint)]
    problems = [p for ps in ray.get([a.check.remote(paths, str(outdir.resolve()))
                                     for a in actors]) for p in ps]
    if problems:
        raise BagSetupError("inputs, checkpoint and OUTDIR must be on storage every worker "
                            "sees, at the same paths: " + "; ".join(problems[:10]))


def _result(ref: ObjectRef, job: _Attempt, name: str) -> BagOutcome:
    """The outcome of a finished ``run`` call (RayActorError: its actor died)."""
    import ray
    from ray.exceptions import RayTaskError

    bag, output, _, attempts = job
    try:
        outcome = ray.get(ref)
    except RayTaskError as exc:
        outcome = BagOutcome(bag, output, "failed", str(exc).splitlines()[0], worker=name)
    outcome.attempts = attempts + 1
    return outcome
