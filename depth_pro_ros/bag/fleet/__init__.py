"""``depth-pro-ros bags``: many bags, each into ``OUTDIR/<name>_depth/``, one model per worker.

Without Ray the bags run one after the other in this process on one engine (the model is
loaded once). With Ray a pool of long-lived actors each loads the model once and takes
the next bag when it is free; an actor that dies has its bag retried on a fresh actor
(:mod:`~depth_pro_ros.bag.fleet.ray_pool`).

Every bag is written exactly as ``depth-pro-ros bag`` writes it (``process_bag``, atomic
output), plus a small ``depth_pro_ros.json`` inside the output -- the options and the
checkpoint's hash -- written before the output is moved into place, so that ``--resume``
can tell a complete output made with the same options from anything else
(:mod:`~depth_pro_ros.bag.fleet.plan`).

``OUTDIR/summary.json`` describes OUTDIR across runs (:data:`SUMMARY_FORMAT`): every run
is listed in ``runs``, and ``bags`` holds one record per output, the latest attempt on
it; a bag this run did not touch keeps its earlier record, and a bag whose latest attempt
did not produce its output (failed, interrupted, or skipped by ``--resume``) keeps the
record of the run that did as ``last_success``. The files are strict JSON: non-finite
numbers (``--max-depth``'s default, no limit) are written as the strings ``"Infinity"``,
``"-Infinity"`` and ``"NaN"`` (:func:`strict_json`; :mod:`~depth_pro_ros.bag.fleet.records`).
"""

from depth_pro_ros.bag.fleet.plan import FleetSettings, checkpoint_sha256, find_bags
from depth_pro_ros.bag.fleet.records import (
    SUMMARY,
    SUMMARY_FORMAT,
    BagOutcome,
    strict_json,
    write_summary,
)
from depth_pro_ros.bag.fleet.run import run_fleet

__all__ = ["SUMMARY", "SUMMARY_FORMAT", "BagOutcome", "FleetSettings", "checkpoint_sha256",
           "find_bags", "run_fleet", "strict_json", "write_summary"]
