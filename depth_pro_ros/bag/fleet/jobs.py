"""One bag on a loaded engine (:func:`run_one`), and what the driver shows and keeps of
the bags as they finish (:class:`FleetProgress`); used here and by the Ray workers."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from depth_pro_ros.bag.errors import BagError, describe_exception
from depth_pro_ros.bag.fleet.records import BagOutcome, JsonValue
from depth_pro_ros.bag.options import BagOptions
from depth_pro_ros.bag.process import process_bag

if TYPE_CHECKING:
    from depth_pro_ros.engine import DepthEngine

__all__ = ["FleetProgress", "Job", "run_one"]

#: A bag to run: (input, output, overwrite).
Job = tuple[Path, Path, bool]


def run_one(engine: DepthEngine, opts: BagOptions, record: dict[str, JsonValue], worker: str,
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


class FleetProgress:
    """The run's outcomes, its progress bar (bags, frames per second) and its lines."""

    def __init__(self, template: BagOptions, progress: bool | None, total: int) -> None:
        from tqdm import tqdm

        self.template = template
        self.outcomes: list[BagOutcome] = []
        self.frames = 0
        self.t0 = time.perf_counter()
        show = progress if progress is not None else sys.stderr.isatty()
        self.bar = tqdm(total=total, unit="bag", desc="bags", file=sys.stderr,
                        disable=not show, dynamic_ncols=True)

    def say(self, line: str) -> None:
        """A line on stderr, above the bar."""
        self.bar.write(line, file=sys.stderr)

    def frames_done(self, extra: int = 0) -> None:
        """Show the frames of finished bags plus ``extra`` of running ones."""
        frames = self.frames + extra
        rate = frames / max(time.perf_counter() - self.t0, 1e-9)
        self.bar.set_postfix_str(f"{frames} frames, {rate:.2f} frames/s", refresh=False)
        self.bar.refresh()

    def finished(self, outcome: BagOutcome) -> None:
        """Keep ``outcome`` and say it (with the bag's warnings)."""
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
