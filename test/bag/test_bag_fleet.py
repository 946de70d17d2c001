"""``depth-pro-ros bags``: many bags with one model, here and on a local Ray instance.

One 64x48 frame per bag keeps the forward passes few (the tiny model takes seconds per
frame on a small CPU). The reference for every bag is a single ``bag`` run.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from bag_builders import IMAGE, Msg, image_fields, picture, read_bag, run_cli, write_bag
from ray_lock import ray_exclusive

from depth_pro_ros.bag import BagOptions, BagSetupError, process_bag
from depth_pro_ros.bag.fleet import BagOutcome, find_bags, write_summary
from depth_pro_ros.bag.process import RUN_RECORD, engine_config

S = 1_000_000_000
CAM = "/cam/image_raw"
GOOD = ("alpha", "bravo", "charlie")

try:
    import ray
except ImportError:  # the test extra installs it; a run without shows these as skipped
    ray = None
needs_ray = pytest.mark.skipif(ray is None, reason="ray is not installed "
                               "(pip install -e '.[test]' installs it)")
pytestmark = pytest.mark.usefixtures(ray_exclusive.__name__)


def _depth(bag: Path) -> list[bytes]:
    return [bytes(raw) for _, _, raw in read_bag(bag)["/cam/depth"]]


def _strict(path: Path) -> dict:
    """A JSON file read as a strict parser reads it: Infinity / NaN are refused."""
    def refuse(token: str):
        raise ValueError(f"{path} is not strict JSON: {token}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def _summary(outdir: Path) -> dict:
    return _strict(outdir / "summary.json")


def _torn(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if ".partial-" in p.name or ".replaced-" in p.name]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, tiny_checkpoint):
    """An input folder with three one-frame bags (one nested) and a corrupt ROS 1 bag,
    and each good bag's depth from a single ``bag`` run."""
    root = tmp_path_factory.mktemp("fleet")
    inputs = root / "in"
    for i, name in enumerate(GOOD):
        where = inputs / "sub" / name if i == 2 else inputs / name
        write_bag(where, "mcap", [Msg(CAM, IMAGE, 100 * S, image_fields(picture(7 * i)))])
    (inputs / "broken.bag").write_bytes(b"not a bag at all" * 8)
    refs = {}
    for bag in find_bags([inputs]):
        if bag.suffix == ".bag":
            continue
        out = root / "ref" / bag.name
        process_bag(BagOptions(input=bag, output=out, checkpoint=tiny_checkpoint,
                               image_topics=[CAM], device="cpu", progress=False))
        refs[bag.name] = _depth(out)
    return inputs, refs


def _args(inputs, outdir, checkpoint, *extra):
    return ("bags", str(inputs), "-o", str(outdir), "--checkpoint", str(checkpoint),
            "--image-topic", CAM, "--device", "cpu", "--no-progress", *extra)


def _check_outputs(outdir: Path, refs: dict, code: int, stdout: str) -> dict:
    assert code == 1  # the corrupt bag
    summary = _summary(outdir)
    assert summary["format"] == 2 and summary["runs"][-1]["exit_status"] == 1
    # --max-depth's default (no limit) is the string "Infinity" in strict JSON.
    assert summary["runs"][-1]["options"]["max_depth"] == "Infinity"
    status = {Path(b["input"]).name: b for b in summary["bags"]}
    assert status["broken.bag"]["status"] == "failed"
    assert "broken.bag" in status["broken.bag"]["reason"]
    for name in GOOD:
        assert status[name]["status"] in ("ok", "skipped"), status[name]
        assert status[name]["frames_in"] == status[name]["frames_out"] == 1
        assert _depth(outdir / f"{name}_depth") == refs[name]
        assert status[name]["output_complete"] is True
        record = _strict(outdir / f"{name}_depth" / RUN_RECORD)
        assert len(record["checkpoint_sha256"]) == 64 and record["frames_out"] == 1
        assert record["options"]["max_depth"] == "Infinity"
    assert re.search(r"^failed +broken\.bag ", stdout, re.M) and not _torn(outdir)
    assert not (outdir / "broken_depth").exists()
    return status


def test_find_bags_and_name_clash(fleet, tmp_path, tiny_checkpoint):
    inputs, _ = fleet
    assert sorted(b.name for b in find_bags([inputs])) == ["alpha", "bravo", "broken.bag",
                                                             "charlie"]
    other = tmp_path / "x" / "alpha"
    shutil.copytree(inputs / "alpha", other)
    code, _, err = run_cli("bags", str(other), *_args(inputs, tmp_path / "out",
                                                   tiny_checkpoint)[1:])
    assert code == 2 and "same output" in err and "alpha_depth" in err
    code, _, err = run_cli(*_args(tmp_path / "nothing", tmp_path / "out", tiny_checkpoint))
    assert code == 2 and "input not found" in err


def test_local_one_model_identical_resume_and_option_change(fleet, tmp_path,
                                                            tiny_checkpoint, monkeypatch):
    inputs, refs = fleet
    outdir = tmp_path / "out"
    loads = []
    import depth_pro_ros.bag.fleet.run as fleet_run

    real = fleet_run.create_bag_engine
    monkeypatch.setattr(fleet_run, "create_bag_engine",
                        lambda *a: loads.append(a) or real(*a))
    code, stdout, err = run_cli(*_args(inputs, outdir, tiny_checkpoint))
    status = _check_outputs(outdir, refs, code, stdout)
    assert len(loads) == 1  # one model for every bag
    assert len({status[name]["worker"] for name in GOOD}) == 1

    # Without --resume an existing output is not replaced. The failed rerun's summary
    # keeps what the first run did: alpha's success as its last_success, the other bags'
    # records as they were.
    first = _summary(outdir)
    code, _, _ = run_cli(*_args(inputs / "alpha", outdir, tiny_checkpoint))
    summary = _summary(outdir)
    alpha = summary["bags"][0]
    assert code == 1 and alpha["status"] == "failed" and "exists" in alpha["reason"]
    assert alpha["last_success"] == {k: v for k, v in first["bags"][0].items()
                                     if k != "output_complete"}
    assert alpha["last_success"]["status"] == "ok" and alpha["output_complete"] is True
    assert summary["bags"][1:] == first["bags"][1:]  # bravo, broken, charlie
    assert [r["exit_status"] for r in summary["runs"]] == [1, 1]
    assert summary["runs"][0] == first["runs"][0]
    assert alpha["run"] == summary["runs"][1]["started"] != first["bags"][0]["run"]

    # --resume: alpha complete (skipped), bravo missing, charlie interrupted (a partial
    # folder left behind by a killed run, no output).
    shutil.rmtree(outdir / "bravo_depth")
    shutil.rmtree(outdir / "charlie_depth")
    (outdir / ".charlie_depth.partial-dead").mkdir()
    (outdir / ".charlie_depth.partial-dead" / "junk").write_text("torn")
    before = (outdir / "alpha_depth" / RUN_RECORD).stat().st_mtime_ns
    code, stdout, _ = run_cli(*_args(inputs, outdir, tiny_checkpoint, "--resume"))
    status = _check_outputs(outdir, refs, code, stdout)
    assert status["alpha"]["status"] == "skipped"
    assert status["alpha"]["last_success"] == alpha["last_success"]  # the run that made it
    assert (outdir / "alpha_depth" / RUN_RECORD).stat().st_mtime_ns == before
    assert status["bravo"]["status"] == status["charlie"]["status"] == "ok"

    # A changed option re-processes (and replaces) the output; resume then skips it.
    code, _, _ = run_cli(*_args(inputs / "alpha", outdir, tiny_checkpoint, "--resume",
                             "--depth-encoding", "16UC1"))
    bag = _summary(outdir)["bags"][0]
    assert code == 0 and bag["status"] == "ok" and "last_success" not in bag
    record = _strict(outdir / "alpha_depth" / RUN_RECORD)
    assert record["options"]["outputs"]["depth_encoding"] == "16UC1"
    assert _depth(outdir / "alpha_depth") != refs["alpha"]
    # An output recorded by an earlier version, whose record held the non-standard
    # Infinity, is still recognised as made with the same options.
    record["options"]["max_depth"] = float("inf")
    (outdir / "alpha_depth" / RUN_RECORD).write_text(json.dumps(record))
    code, _, _ = run_cli(*_args(inputs / "alpha", outdir, tiny_checkpoint, "--resume",
                             "--depth-encoding", "16UC1"))
    assert code == 0
    summary = _summary(outdir)
    assert summary["bags"][0]["status"] == "skipped"
    assert summary["bags"][0]["last_success"]["run"] == bag["run"]
    assert len(summary["runs"]) == 5 and not _torn(outdir)


def test_summary_of_an_earlier_version_is_merged_and_an_unreadable_one_kept(tmp_path):
    """A format 1 summary (one run, Infinity in its options, as earlier versions wrote
    it) becomes the first run of the merged one; a file that is not JSON is moved aside."""
    outdir = tmp_path / "out"
    outdir.mkdir()
    old_ok = {"input": "/in/alpha", "output": str(outdir / "alpha_depth"), "status": "ok",
              "reason": "", "frames_in": 3, "frames_out": 3, "skipped": {},
              "wall_seconds": 1.5, "worker": "host:1", "attempts": 0}
    old_bravo = {**old_ok, "input": "/in/bravo", "output": str(outdir / "bravo_depth")}
    (outdir / "summary.json").write_text(json.dumps(
        {"checkpoint": "/w.pt", "tool": "depth-pro-ros 0.1", "checkpoint_sha256": "ab",
         "options": {"max_depth": float("inf")}, "wall_seconds": 3.0,
         "bags": [old_ok, old_bravo]}))
    run = {"started": "2030-01-01T00:00:00.000000+00:00", "options": {"min_depth": 0.0},
           "exit_status": 1, "wall_seconds": float("nan")}
    failed = BagOutcome(Path("/in/alpha"), outdir / "alpha_depth", "failed", "broken")
    write_summary(outdir, run, [failed])
    summary = _summary(outdir)
    assert summary["runs"][0]["options"] == {"max_depth": "Infinity"}
    assert summary["runs"][0]["started"] is None and summary["runs"][1]["wall_seconds"] == "NaN"
    alpha, bravo = summary["bags"]
    assert alpha["status"] == "failed" and alpha["last_success"] == old_ok
    assert alpha["output_complete"] is False  # no output folder here
    assert bravo == {**old_bravo, "output_complete": False}

    (outdir / "summary.json").write_text("{ torn")
    write_summary(outdir, run, [failed])
    assert (outdir / "summary.json.unreadable").read_text() == "{ torn"
    assert [b["status"] for b in _summary(outdir)["bags"]] == ["failed"]


def test_given_engine_must_match_and_stays_open(fleet, tmp_path, tiny_checkpoint):
    from depth_pro_ros.bag.options import create_engine

    inputs, refs = fleet
    opts = BagOptions(input=inputs / "alpha", output=tmp_path / "a", checkpoint=tiny_checkpoint,
                      image_topics=[CAM], device="cpu", progress=False)
    engine = create_engine(tiny_checkpoint, engine_config(opts))
    try:
        import dataclasses

        with pytest.raises(BagSetupError, match="output_scale"):
            process_bag(dataclasses.replace(opts, output_scale=0.5), engine=engine)
        assert not (tmp_path / "a").exists()
        with pytest.raises(Exception, match="not in the bag"):  # fails with the engine held
            process_bag(dataclasses.replace(opts, image_topics=["/nope"]), engine=engine)
    finally:
        engine.close()


def test_ray_missing_exits_2(fleet, tmp_path, tiny_checkpoint, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)
    code, _, err = run_cli(*_args(fleet[0], tmp_path / "out", tiny_checkpoint, "--ray", "local"))
    assert code == 2 and "depth_pro_ros[cluster]" in err
    code, _, err = run_cli(*_args(fleet[0], tmp_path / "out", tiny_checkpoint, "--workers", "2"))
    assert code == 2 and "need --ray" in err


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@needs_ray
def test_ray_pool_identical_outputs(fleet, ray_local, tmp_path, tiny_checkpoint):
    inputs, refs = fleet
    outdir = tmp_path / "out"
    code, stdout, err = run_cli(*_args(inputs, outdir, tiny_checkpoint, "--ray", "local",
                                    "--workers", "2"))
    status = _check_outputs(outdir, refs, code, stdout)
    assert "2 Ray worker(s)" in err
    assert all(":" in status[name]["worker"] for name in GOOD)


def _long_bag(path: Path) -> Path:
    """Four frames: a bag is being written for seconds, so that a signal lands mid-bag
    even on a loaded machine."""
    return write_bag(path, "mcap", [Msg(CAM, IMAGE, (100 + i) * S, image_fields(picture(i)))
                                    for i in range(4)])


def _fleet_workers() -> set[int]:
    """The live Ray actors of ``bags`` (Ray titles an actor's process ray::FleetWorker)."""
    pids = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            title = (proc / "cmdline").read_bytes()
            state = (proc / "stat").read_text().rsplit(") ", 1)[1][:1]
        except (OSError, IndexError):  # gone meanwhile
            continue
        if title.startswith(b"ray::FleetWorker") and state not in ("Z", "X"):
            pids.add(int(proc.name))
    return pids


@needs_ray
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc (Linux)")
def test_ray_dead_worker_retried(ray_local, tmp_path, tiny_checkpoint):
    """A worker killed mid-bag (SIGKILL, as the out-of-memory killer does it): the bag is
    redone on a fresh worker, and its output is that of a single ``bag`` run."""
    import os
    import signal
    import socket
    import threading
    import time

    bag = _long_bag(tmp_path / "in" / "long")
    reference = tmp_path / "reference"
    process_bag(BagOptions(input=bag, output=reference, checkpoint=tiny_checkpoint,
                           image_topics=[CAM], device="cpu", progress=False))
    outdir = tmp_path / "out"
    earlier = _fleet_workers()  # actors of other tests that may not have exited yet
    ran: list[tuple[int, str, str]] = []
    run = threading.Thread(target=lambda: ran.append(run_cli(*_args(
        bag, outdir, tiny_checkpoint, "--ray", "local", "--workers", "1"))))
    run.start()
    try:
        killed = None
        deadline = time.monotonic() + 120
        while killed is None:
            assert run.is_alive() and time.monotonic() < deadline, "no worker was killed"
            workers = _fleet_workers() - earlier
            if workers and outdir.is_dir() and _torn(outdir):  # mid-bag
                killed = workers.pop()
                os.kill(killed, signal.SIGKILL)
            time.sleep(0.02)
    finally:
        run.join(300)
    code, _, err = ran[0]
    assert code == 0, err
    assert "died on" in err
    record = _summary(outdir)["bags"][0]
    assert record["status"] == "ok" and record["attempts"] == 2
    assert record["worker"] != f"{socket.gethostname()}:{killed}"
    assert _depth(outdir / "long_depth") == _depth(reference)
    assert not _torn(outdir)


@pytest.mark.parametrize("mode", [(), pytest.param(("--ray", "local", "--workers", "1"),
                                                   marks=needs_ray)], ids=["local", "ray"])
def test_ctrl_c_leaves_only_complete_outputs(tiny_checkpoint, tmp_path, mode):
    """SIGINT to the real command while a bag is written (by this process, or by a Ray
    worker that the command started): exit 130, no torn output."""
    import signal
    import subprocess
    import sys
    import time

    long_bag = _long_bag(tmp_path / "in" / "long")
    outdir = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "depth_pro_ros.cli", *_args(long_bag, outdir,
                                                           tiny_checkpoint, *mode)],
        cwd=Path(__file__).resolve().parents[2], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while not (outdir.is_dir() and _torn(outdir)):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the output was never started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    # 130 from the command's own handling; once in CI the process, after printing that
    # it was interrupted, ended by SIGINT instead (Python re-raising the signal at exit),
    # which a shell reports as 130 too. What matters is checked below: no torn output.
    assert proc.returncode in (130, -signal.SIGINT), err
    assert "interrupted" in err and not _torn(outdir), (err, list(outdir.iterdir()))
    assert not (outdir / "long_depth").exists(), err
    bag = _summary(outdir)["bags"][0]
    assert bag["status"] == "interrupted", (bag, err)
