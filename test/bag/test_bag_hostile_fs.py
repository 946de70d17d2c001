"""The bag tools on a hostile filesystem: inputs that are not regular files or folders,
unusable resume records and OUTDIRs, and a run that would take its own outputs or write
over its inputs (issue 24, properties 3, 4 and 6).

Every bag holds one 64x48 frame; most cases are refused before the model is loaded.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import threading
from pathlib import Path

import pytest
from bag_builders import IMAGE, Msg, image_fields, picture, run_cli, snapshot, write_bag

from depth_pro_ros.bag.errors import BagOutputError
from depth_pro_ros.bag.fleet import write_summary
from depth_pro_ros.bag.fleet.plan import complete_output, made_by_us
from depth_pro_ros.bag.fleet.records import BagOutcome
from depth_pro_ros.bag.process import RUN_RECORD
from depth_pro_ros.bag.writer import OutputBag, write_failure

S = 1_000_000_000
CAM = "/cam/image_raw"


def _bag(path: Path, seed: int = 1) -> Path:
    return write_bag(path, "mcap", [Msg(CAM, IMAGE, 100 * S, image_fields(picture(seed)))])


def _args(*paths, checkpoint, extra=()) -> tuple[str, ...]:
    *inputs, outdir = paths
    return ("bags", *map(str, inputs), "-o", str(outdir), "--checkpoint", str(checkpoint),
            "--image-topic", CAM, "--device", "cpu", "--no-progress", *extra)


def _summary(outdir: Path) -> dict[str, dict]:
    data = json.loads((outdir / "summary.json").read_text())
    return {Path(b["input"]).name: b for b in data["bags"]}


class _Unblock:
    """If the code under test opens a FIFO, it blocks until a writer comes: after
    ``after`` seconds this opens each FIFO for writing (only possible while a reader
    waits) and closes it, so that a regression fails the test instead of hanging it."""

    def __init__(self, fifos: list[Path], after: float = 60.0) -> None:
        self.fifos, self.done, self.unblocked = fifos, threading.Event(), []
        self.thread = threading.Thread(target=self._run, args=(after,), daemon=True)

    def _run(self, after: float) -> None:
        while not self.done.wait(after):
            for fifo in self.fifos:
                try:
                    os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                    self.unblocked.append(fifo)
                except OSError:  # no reader waiting on it
                    pass

    def __enter__(self) -> _Unblock:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()
        assert not self.unblocked, f"a FIFO was opened: {self.unblocked}"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """in/: a good bag ``good`` and, named like bags, a FIFO, a symlink loop, a dangling
    link and a bag folder whose .mcap is a FIFO; beside it a FIFO and a loop given as
    inputs themselves."""
    root = tmp_path_factory.mktemp("hostile")
    inputs = root / "in"
    _bag(inputs / "good")
    os.mkfifo(inputs / "pipe.bag")
    os.symlink("loop.mcap", inputs / "loop.mcap")
    os.symlink(root / "nowhere.db3", inputs / "dangling.db3")
    fifo_bag = _bag(inputs / "fifo_bag")
    storage = next(fifo_bag.glob("*.mcap"))
    storage.unlink()
    os.mkfifo(storage)
    os.mkfifo(root / "given.bag")
    os.symlink("given_loop", root / "given_loop")
    fifos = [inputs / "pipe.bag", storage, root / "given.bag"]
    return root, inputs, fifos


def test_bags_refuses_fifos_loops_and_links_one_line_each(hostile, tiny_checkpoint):
    root, inputs, fifos = hostile
    outdir = root / "out"
    with _Unblock(fifos):
        code, stdout, err = run_cli(*_args(inputs, root / "given.bag", root / "given_loop",
                                           outdir, checkpoint=tiny_checkpoint))
    assert code == 1, err
    status = _summary(outdir)
    assert status["good"]["status"] == "ok" and status["good"]["frames_out"] == 1
    expected = {"pipe.bag": "FIFO", "loop.mcap": "symbolic link loop",
                "dangling.db3": "dangling symbolic link", "fifo_bag": "FIFO",
                "given.bag": "FIFO", "given_loop": "symbolic link loop"}
    for name, words in expected.items():
        assert status[name]["status"] == "failed" and words in status[name]["reason"], name
        assert sum(name in line and words in line for line in err.splitlines()) == 1, err
    assert "Traceback" not in err
    assert sorted(p.name for p in outdir.iterdir() if not p.name.startswith(".")) == [
        "good_depth", "summary.json"]


def test_bag_refuses_a_fifo_or_a_loop_without_opening_it(hostile, tiny_checkpoint):
    root, inputs, fifos = hostile
    for bad, words in ((root / "given.bag", "FIFO"), (inputs / "loop.mcap", "link loop"),
                       (inputs / "fifo_bag", "FIFO")):
        with _Unblock(fifos):
            code, _, err = run_cli("bag", str(bad), "-o", str(root / "single"),
                                   "--checkpoint", str(tiny_checkpoint), "--image-topic",
                                   CAM, "--device", "cpu", "--no-progress")
        assert code == 1 and words in err and len(err.strip().splitlines()) == 1, err
        assert not (root / "single").exists()


def test_bags_refuses_a_fifo_checkpoint_without_reading_it(hostile):
    root, inputs, fifos = hostile
    with _Unblock(fifos):
        code, _, err = run_cli(*_args(inputs / "good", root / "out_ckpt",
                                      checkpoint=root / "given.bag"))
    assert code == 2 and "checkpoint" in err and "FIFO" in err, err
    assert "Traceback" not in err


BAD_RECORDS = ["[]", '"x"', "null", "3", "{ torn", "[" * 100_000 + "]" * 100_000,
               '{"frames_in": "many"}',
               '{"skipped": []}', '{"skipped": {"x": "y"}}', '{"input": 5}',
               '{"options": []}', '{"checkpoint_sha256": null}']


def test_unusable_resume_records_mean_reprocess(tmp_path, tiny_checkpoint):
    """Every record that is not a usable JSON object (and a FIFO in its place) reads as
    unusable, with the reason, without blocking; a run then processes the bag again."""
    out = tmp_path / "out" / "a_depth"
    out.mkdir(parents=True)
    bag = tmp_path / "a"
    for text in BAD_RECORDS:
        (out / RUN_RECORD).write_text(text)
        saved, problem = complete_output(out, {"options": {}}, bag)
        assert saved is None and problem and RUN_RECORD in problem, text
    (out / RUN_RECORD).unlink()
    os.mkfifo(out / RUN_RECORD)
    with _Unblock([out / RUN_RECORD]):
        saved, problem = complete_output(out, {"options": {}}, bag)
    assert saved is None and "FIFO" in problem
    (out / RUN_RECORD).unlink()
    out.rmdir()

    _bag(bag)
    args = _args(bag, tmp_path / "out", checkpoint=tiny_checkpoint, extra=("--resume",))
    code, _, err = run_cli(*args)
    assert code == 0, err
    (out / RUN_RECORD).write_text("[]")  # a run's complete output, its record replaced
    code, _, err = run_cli(*args)
    assert code == 0 and "not a JSON object; the bag is processed again" in err, err
    assert _summary(tmp_path / "out")["a"]["status"] == "ok"
    assert json.loads((out / RUN_RECORD).read_text())["frames_out"] == 1

    # A FIFO in place of summary.json: the bag is skipped (complete), the summary cannot
    # be written: one line and exit 1, no hang, no traceback.
    summary = tmp_path / "out" / "summary.json"
    summary.unlink()
    os.mkfifo(summary)
    with _Unblock([summary]):
        code, _, err = run_cli(*args)
    assert code == 1 and "cannot write" in err and "FIFO" in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("kind", ["file", "under_file"])
def test_unusable_outdir_fails_once(tmp_path, tiny_checkpoint, kind):
    bag = _bag(tmp_path / "a")
    (tmp_path / "file").write_text("x")
    outdir = tmp_path / "file" if kind == "file" else tmp_path / "file" / "out"
    code, stdout, err = run_cli(*_args(bag, outdir, checkpoint=tiny_checkpoint))
    assert code == 2 and stdout == "" and len(err.strip().splitlines()) == 1, err
    assert "OUTDIR" in err and (tmp_path / "file").read_text() == "x"


def test_summary_write_survives_malformed_earlier_summaries(tmp_path):
    outdir = tmp_path / "out"
    outdir.mkdir()
    run = {"started": "2030-01-01T00:00:00+00:00"}
    failed = BagOutcome(Path("/in/a"), outdir / "a_depth", "failed", "broken")
    earlier = {"input": "/in/a", "output": str(outdir / "a_depth"), "status": "failed",
               "last_success": "not a record"}
    for text in ('{"bags": [], "runs": 5}', '{"bags": [3, null, {"output": 7}]}',
                 "[" * 100_000 + "]" * 100_000,
                 json.dumps({"bags": [earlier], "runs": []}), "[]", "null"):
        (outdir / "summary.json").write_text(text)
        write_summary(outdir, run, [failed])
        data = json.loads((outdir / "summary.json").read_text())
        assert [b["status"] for b in data["bags"]] == ["failed"], text
        assert "last_success" not in data["bags"][0]


def test_bags_never_takes_its_outputs_or_writes_over_inputs(tmp_path, tiny_checkpoint):
    """``bags in -o in --resume`` with the user's bags ``a`` and ``a_depth``: a_depth is
    an input, so a's output is refused; a_depth is processed into a_depth_depth, which
    the next run leaves out (this tool's output) instead of processing it again."""
    inputs = tmp_path / "in"
    _bag(inputs / "a", 1)
    _bag(inputs / "a_depth", 2)
    users = snapshot(inputs / "a_depth")
    args = _args(inputs, inputs, checkpoint=tiny_checkpoint, extra=("--resume",))
    code, _, err = run_cli(*args)
    assert code == 1, err
    status = _summary(inputs)
    assert status["a"]["status"] == "failed" and "input of this run" in status["a"]["reason"]
    assert status["a_depth"]["status"] == "ok"
    assert snapshot(inputs / "a_depth") == users
    assert made_by_us(inputs / "a_depth_depth") and not made_by_us(inputs / "a_depth")

    code, _, err = run_cli(*args)
    assert code == 1 and "left out" in err and "a_depth_depth" in err, err
    status = _summary(inputs)
    assert status["a_depth"]["status"] == "skipped"
    assert not (inputs / "a_depth_depth_depth").exists()
    assert snapshot(inputs / "a_depth") == users

    # The record alone is not what says "ours": the output's metadata names its input.
    (inputs / "a_depth_depth" / RUN_RECORD).unlink()
    assert made_by_us(inputs / "a_depth_depth")


def test_resume_does_not_replace_a_bag_it_did_not_make(tmp_path, tiny_checkpoint):
    bag = _bag(tmp_path / "in" / "x", 1)
    outdir = tmp_path / "out"
    _bag(outdir / "x_depth", 2)  # the user's own bag, named like x's output
    users = snapshot(outdir / "x_depth")
    code, _, err = run_cli(*_args(bag, outdir, checkpoint=tiny_checkpoint,
                                  extra=("--resume",)))
    assert code == 1 and "not made by depth-pro-ros; pass --overwrite" in err, err
    assert snapshot(outdir / "x_depth") == users


@contextlib.contextmanager
def _file_size_limit(limit: int):
    """Writes past ``limit`` bytes fail with EFBIG, as writes onto a full disk fail with
    ENOSPC (and over a quota with EDQUOT): the same ``write()`` call returns an errno, and
    the tools take one path for every OSError. Without root a small filesystem cannot be
    mounted; RLIMIT_FSIZE is per process, raised back afterwards (SIGXFSZ ignored, so the
    write returns the error instead of killing the process)."""
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)
        signal.signal(signal.SIGXFSZ, old_handler)


def test_bag_onto_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, tiny_checkpoint):
    bag = _bag(tmp_path / "a")
    out = tmp_path / "o" / "a_depth"
    with _file_size_limit(8000):
        code, stdout, err = run_cli("bag", str(bag), "-o", str(out), "--checkpoint",
                                    str(tiny_checkpoint), "--image-topic", CAM, "--device",
                                    "cpu", "--no-progress")
    errors = [line for line in err.splitlines() if "error" in line]
    assert code == 1 and stdout == "" and len(errors) == 1, err
    assert "cannot write" in errors[0] and "File too large" in errors[0]
    assert list((tmp_path / "o").iterdir()) == []  # no output, no partial folder

    # sqlite3 output: its own error type for the same cause, the same one line.
    from rosbags.typesys import Stores, get_typestore

    with _file_size_limit(2000), pytest.raises(BagOutputError, match="cannot write .*sqlite3"):
        with OutputBag(out, "sqlite3", False, get_typestore(Stores.LATEST)) as writer:
            conn = writer.add_topic("/x", IMAGE)
            for i in range(50):
                writer.write_raw(conn, i, bytes(1000))
            writer.commit()
    assert list((tmp_path / "o").iterdir()) == []

    # A real ENOSPC (the kernel's /dev/full) reads like the EFBIG above.
    with pytest.raises(OSError) as full, open("/dev/full", "wb", buffering=0) as f:
        f.write(b"x")
    line = write_failure(out, full.value)
    assert line.startswith(f"cannot write {out}: No space left on device -- the disk is full")
