"""Fuzz depth_pro_node over real DDS: malformed images, CameraInfo, anchors and parameter
service requests, valid frames between.

Starts the node (a random-weight checkpoint built in a temp folder) once per transport
and sends it ``--messages`` malformed cases, mixed from the ``--surfaces``: ``images``
(images and CameraInfo, `test/harness/malformed.py`), ``anchors`` (PointCloud2 anchors on
the raw-transport node, started with ``anchor_source:=points``, depth-image anchors on the
compressed one, ``anchor_source:=depth``; `test/harness/malformed_anchor.py`) and
``parameters`` (requests to the six parameter services through an rclpy client,
`test/harness/malformed_parameters.py`), each kind as often as any other. After every
``--valid-every`` cases a valid frame (and its CameraInfo) must come back as depth within
``--timeout`` s, or it counts as a stall; a parameter request not answered within
``--timeout`` s is a stall too, and a bad parameter value accepted is counted as such.
The node exiting counts as a crash. Exits 1 when any of these happened.

    .venv/bin/python bench/fuzz_node.py --messages 500 --transport both
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from _common import (
    NAMESPACE,
    bench_probe,
    device_name,
    parser,
    reliable_inputs,
    results_path,
    start_node,
    temp_dir,
    tiny_checkpoint,
    write_json,
)
from harness.malformed import TRANSPORTS, MalformedMessages
from harness.malformed_anchor import MalformedAnchors
from harness.malformed_parameters import MalformedParameters, call, reply_problem
from harness.node import log_summary, set_ros_env
from harness.probe import CAMERA_STATUS, Probe

RSS_EVERY_S = 2.0
INFO_HEAD_START_S = 0.05
SURFACES = ("images", "anchors", "parameters")
#: The anchor input of each transport's node when ``anchors`` is fuzzed.
ANCHOR_OF = {"raw": "points", "compressed": "depth"}


def _parse() -> argparse.Namespace:
    p = parser(__doc__.split("\n\n")[0], "_fuzz_node")
    p.add_argument("--messages", type=int, default=10_000,
                   help="malformed cases in all (split between the transports)")
    p.add_argument("--valid-every", type=int, default=50,
                   help="a valid frame after every K malformed cases")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--transport", choices=(*TRANSPORTS, "both"), default="both")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds a valid frame may take to come back as depth")
    p.add_argument("--max-input-pixels", type=int, default=2_000_000,
                   help="the node's max_input_pixels (small: over-limit cases stay cheap)")
    p.add_argument("--pause-ms", type=float, default=2.0,
                   help="spin this long after each message (paces the sender)")
    p.add_argument("--domain", default="78", help="ROS_DOMAIN_ID of the run")
    p.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE",
                   help="extra node parameter (repeatable), e.g. focal_source:=fov_head")
    p.add_argument("--surfaces", default=",".join(SURFACES),
                   help=f"comma-separated subset of {','.join(SURFACES)}")
    p.add_argument("--keep-logs", action="store_true",
                   help="keep the node logs and print where they are")
    args = p.parse_args()
    args.surfaces = tuple(x for x in args.surfaces.split(",") if x)
    unknown = set(args.surfaces) - set(SURFACES)
    if unknown or not args.surfaces:
        p.error(f"--surfaces: choose from {', '.join(SURFACES)}")
    return args


class Mixer:
    """Cases of several surfaces, each kind as often as any other: a surface is drawn
    with a probability proportional to its number of kinds. ``sources``: surface ->
    (its number of kinds, a function giving its next case)."""

    def __init__(self, rng, sources: dict[str, tuple[int, Callable[[], Any]]]) -> None:
        self.rng, self.sources = rng, sources
        self.kinds = sum(n for n, _ in sources.values())
        self.weights = [n / self.kinds for n, _ in sources.values()]

    def next(self) -> tuple[str, Any]:
        """The surface drawn and its next case."""
        name = str(self.rng.choice(list(self.sources), p=self.weights))
        return name, self.sources[name][1]()


def send(probe: Probe, messages, pause_ms: float) -> int:
    """Publish a case's messages in order; return how many."""
    for i, message in enumerate(messages):
        probe.publish(message)
        # Topics are not ordered with each other: a CameraInfo followed by its image gets
        # a head start, or the image could meet the CameraInfo that came before.
        head_start = message.topic == "camera_info" and i + 1 < len(messages)
        probe.spin(max(INFO_HEAD_START_S if head_start else 0.0, pause_ms / 1e3))
    return len(messages)


def fuzz_transport(args: argparse.Namespace, transport: str, cases: int, checkpoint,
                   folder) -> dict:
    """One node, one transport: send ``cases`` malformed cases; return the report."""
    seed = args.seed + TRANSPORTS.index(transport)
    gen = MalformedMessages(seed, args.max_input_pixels)
    sources: dict[str, tuple[int, Callable[[], Any]]] = {}
    if "images" in args.surfaces:
        sources["images"] = (len(gen.kinds(transport)), lambda: gen.malformed(transport))
    topic = "image/compressed" if transport == "compressed" else "image"
    inputs = [topic, "camera_info"]
    anchor = ANCHOR_OF[transport] if "anchors" in args.surfaces else None
    if anchor:
        anchors = MalformedAnchors(anchor, seed, frame_id="fuzz_optical")
        sources["anchors"] = (len(anchors.kinds()), anchors.malformed)
        inputs.append(f"anchor/{anchor}")
    if "parameters" in args.surfaces:
        requests = MalformedParameters(seed)
        sources["parameters"] = (len(requests.kinds()), requests.malformed)
    mixer = Mixer(gen.rng, sources)
    params = [f"checkpoint:={checkpoint}", f"device:={args.device}",
              f"input_transport:={transport}", f"max_input_pixels:={args.max_input_pixels}",
              *([f"anchor_source:={anchor}"] if anchor else []),
              *reliable_inputs(*inputs), *args.param]
    node = start_node(params, folder, args.domain)
    probe = bench_probe(f"fuzz_probe_{transport}")
    target = f"{NAMESPACE}/depth_pro_node"
    by_kind: collections.Counter[str] = collections.Counter()
    sent = valid_sent = 0
    stalls: list[dict] = []
    refused_wrongly: collections.Counter[str] = collections.Counter()  # bad values taken
    clients: dict = {}  # service name -> its client, kept for the run
    latencies: list[float] = []
    rss_samples: list[int] = []
    recent: list[str] = []  # kinds sent since the last valid frame, named in a stall
    try:
        probe.wait_started(node, "compressed" if transport == "compressed" else "image")
        # A first valid frame: the network is warm and the output path works before the
        # fuzzing starts (its time is not counted).
        probe.warm_up(node, gen.valid(transport).messages)
        log_start = len(node.log_lines())
        before = node.memory_kb()
        start = next_rss = time.monotonic()
        for i in range(cases):
            surface, case = mixer.next()
            kind = case.kind if surface != "parameters" else f"parameters/{case.kind}"
            by_kind[kind] += 1
            recent.append(kind)
            if surface == "parameters":
                reply = call(probe.node, target, case, args.timeout, probe.spin, clients)
                problem = reply_problem(case, reply)
                sent += 1
                if reply is None and node.alive():
                    stalls.append({"after_case": i + 1, "service": case.service,
                                   "kind": case.kind})
                elif problem:
                    refused_wrongly[case.kind] += 1
            else:
                sent += send(probe, case.messages, args.pause_ms)
            if time.monotonic() >= next_rss and node.alive():
                rss_samples.append(node.memory_kb()["VmRSS"])
                next_rss += RSS_EVERY_S
            if not node.alive():
                break
            if (i + 1) % 500 == 0:
                print(f"{transport}: {i + 1}/{cases} cases, {len(stalls)} stalls, "
                      f"{time.monotonic() - start:.0f} s", flush=True)
            if (i + 1) % args.valid_every == 0 or i + 1 == cases:
                valid = gen.valid(transport)
                sent += send(probe, valid.messages, args.pause_ms)
                valid_sent += 1
                waited = probe.wait_depth(valid.stamp, args.timeout, node)
                if waited is None:
                    if not node.alive():
                        break
                    stalls.append({"after_case": i + 1, "stamp": list(valid.stamp),
                                   "kinds_before": sorted(set(recent))})
                else:
                    latencies.append(waited)
                recent = []
        wall = time.monotonic() - start
        probe.spin(2.5)  # a last /diagnostics with the final counts
        after = node.memory_kb()
        crashed = not node.alive()
        diag = probe.last_diagnostics()
        gaps = probe.diagnostics_gaps(since=start)
    finally:
        probe.close()
        code = node.stop()
    lines = node.log_lines()
    served = len(latencies)
    report = {
        "transport": transport, "node_params": params[1:], "surfaces": list(sources),
        "cases": sum(by_kind.values()), "ros_messages_sent": sent,
        "cases_by_kind": dict(sorted(by_kind.items())),
        "kinds": len(by_kind), "kinds_available": mixer.kinds,
        "bad_parameters_accepted": dict(refused_wrongly),
        "valid_sent": valid_sent, "valid_served": served,
        "stalls": stalls, "crashed": crashed, "exit_code": code,
        "valid_latency_s": {"median": round(statistics.median(latencies), 3),
                            "max": round(max(latencies), 3)} if latencies else None,
        "rss_kb": {"before": before.get("VmRSS"), "after": after.get("VmRSS"),
                   "peak_before": before.get("VmHWM"), "peak": after.get("VmHWM"),
                   "max_sampled": max(rss_samples, default=None)},
        "log": {"startup_lines": log_start, **log_summary(lines, log_start)},
        "node_diagnostics": {k: diag.get(k) for k in (
            "frames_in", "frames_out", "skipped_frames", "decode_errors",
            "failed_frames", "camera_info_errors", "dropped_frames", "_message")},
        "diagnostics_gaps": gaps,
        "wall_s": round(wall, 1),
    }
    if crashed or stalls or report["log"]["traceback"]:
        report["log_tail"] = lines[-40:]
    if args.keep_logs:
        report["log_path"] = str(node.log_path)
    return report


def _table(runs: list[dict]) -> str:
    head = (f"{'transport':<11}{'cases':>7}{'kinds':>7}{'valid':>7}{'served':>7}"
            f"{'stalls':>7}{'crash':>6}{'log':>6}{'rss0 MB':>9}{'rss1 MB':>9}"
            f"{'peak MB':>9}{'diag gap':>9}{'wall s':>8}")
    rows = [head]
    for r in runs:
        mb = {k: (v or 0) / 1024 for k, v in r["rss_kb"].items()}
        rows.append(
            f"{r['transport']:<11}{r['cases']:>7}{r['kinds']:>7}{r['valid_sent']:>7}"
            f"{r['valid_served']:>7}{len(r['stalls']):>7}{'yes' if r['crashed'] else 'no':>6}"
            f"{r['log']['lines']:>6}{mb['before']:>9.0f}{mb['after']:>9.0f}{mb['peak']:>9.0f}"
            f"{r['diagnostics_gaps']['max_gap_s'] or 0:>9.2f}{r['wall_s']:>8.1f}")
    return "\n".join(rows)


def main() -> int:
    args = _parse()
    set_ros_env(args.domain)
    import rclpy

    transports = list(TRANSPORTS) if args.transport == "both" else [args.transport]
    folder = temp_dir(keep=args.keep_logs)
    checkpoint = tiny_checkpoint(folder, args.config)
    share = -(-args.messages // len(transports))
    t0 = time.monotonic()
    rclpy.init()
    try:
        runs = [fuzz_transport(args, t, share, checkpoint, folder) for t in transports]
    finally:
        rclpy.try_shutdown()
    by_kind: collections.Counter[str] = collections.Counter()
    for run in runs:
        by_kind.update({f"{run['transport']}/{k}": v for k, v in run["cases_by_kind"].items()})
    total = {
        "cases": sum(r["cases"] for r in runs),
        "ros_messages_sent": sum(r["ros_messages_sent"] for r in runs),
        "crashes": sum(r["crashed"] for r in runs),
        "stalls": sum(len(r["stalls"]) for r in runs),
        "bad_parameters_accepted": sum(sum(r["bad_parameters_accepted"].values())
                                       for r in runs),
        "valid_sent": sum(r["valid_sent"] for r in runs),
        "valid_served": sum(r["valid_served"] for r in runs),
        "log_lines": sum(r["log"]["lines"] for r in runs),
        "wall_s": round(time.monotonic() - t0, 1),
    }
    device = device_name(torch.device(args.device))
    report = {"benchmark": "fuzz_node", "device": device, "node_device": args.device,
              "config": args.config, "seed": args.seed, "messages": args.messages,
              "valid_every": args.valid_every, "timeout_s": args.timeout,
              "surfaces": list(args.surfaces),
              "max_input_pixels": args.max_input_pixels, "node": CAMERA_STATUS.split(":")[0],
              "total": total, "runs": runs}
    print(_table(runs))
    print(f"crashes {total['crashes']}, stalls {total['stalls']}, bad parameter values "
          f"accepted {total['bad_parameters_accepted']}, valid served "
          f"{total['valid_served']}/{total['valid_sent']}, node log lines "
          f"{total['log_lines']}, wall {total['wall_s']} s")
    path = results_path(args, device, "_fuzz_node")
    write_json(report, path)
    print(f"JSON: {path}")
    return 1 if total["crashes"] or total["stalls"] or total["bad_parameters_accepted"] else 0


if __name__ == "__main__":
    sys.exit(main())
