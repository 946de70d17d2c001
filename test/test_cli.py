"""The ``depth-pro-ros`` command end to end, as a user runs it, on a small saved model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from depth_pro_ros.model import DepthProConfig, create_model, infer, save_checkpoint

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(3)
    model = create_model(DepthProConfig.tiny())
    with torch.no_grad():
        model.fov.head[-1].bias.fill_(60.0)  # plausible FoV from random weights
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "tiny.pt")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "depth_pro_ros.cli", *args],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )


def test_image_command_writes_depth(checkpoint, tmp_path):
    rng = np.random.default_rng(0)
    photo_a = tmp_path / "a.png"
    cv2.imwrite(str(photo_a), rng.integers(0, 256, (120, 160, 3), dtype=np.uint8))
    photo_b = tmp_path / "b.jpg"
    cv2.imwrite(str(photo_b), rng.integers(0, 256, (90, 200, 3), dtype=np.uint8))
    garbage = tmp_path / "c.jpg"
    garbage.write_bytes(b"not an image")
    out = tmp_path / "out"

    result = _run("image", str(photo_a), str(garbage), str(photo_b),
                  "--checkpoint", str(checkpoint), "--focal-px", "150", "--device", "cpu",
                  "-o", str(out))
    assert result.returncode == 1, result.stderr  # one photo failed, the others are done
    assert f"cannot read image {garbage}" in result.stderr
    assert "1 of 3 photo(s) failed" in result.stderr
    assert "focal 150.0 px (fixed)" in result.stdout

    from depth_pro_ros.model import load_checkpoint

    model = load_checkpoint(checkpoint)
    expected = infer(model, cv2.cvtColor(cv2.imread(str(photo_a)), cv2.COLOR_BGR2RGB),
                     f_px=150.0).depth.numpy()
    depth = np.load(out / "a_depth.npy")
    assert depth.dtype == np.float32 and depth.shape == (120, 160)
    np.testing.assert_allclose(depth, expected, rtol=1e-6)
    mm = cv2.imread(str(out / "a_depth_mm.png"), cv2.IMREAD_UNCHANGED)
    assert mm.dtype == np.uint16
    np.testing.assert_allclose(mm, np.clip(np.round(expected * 1000), 1, 65535), atol=1)
    color = cv2.imread(str(out / "a_depth_color.png"))
    assert color.shape == (120, 160, 3)
    assert (out / "b_depth.npy").exists() and not (out / "c_depth.npy").exists()
    assert "\r" not in result.stderr  # stderr is a pipe: no progress bar


def test_image_command_estimates_focal(checkpoint, tmp_path):
    photo = tmp_path / "p.png"
    cv2.imwrite(str(photo), np.full((64, 96, 3), 128, np.uint8))
    code, stdout, err = _main("image", str(photo), "--checkpoint", str(checkpoint),
                              "-o", str(tmp_path))
    assert code == 0, err
    assert "(fov_head, fov " in stdout


def test_image_command_checkpoint_errors(tmp_path):
    """In this process (an exception escaping ``main`` would fail the test here, as a
    traceback would on a user's terminal)."""
    photo = tmp_path / "p.png"
    cv2.imwrite(str(photo), np.zeros((8, 8, 3), np.uint8))
    code, _, err = _main("image", str(photo), "--checkpoint", str(tmp_path / "none.pt"))
    assert code == 2 and "no such file or folder" in err
    bad = tmp_path / "bad.pt"
    bad.write_text("nope")
    code, _, err = _main("image", str(photo), "--checkpoint", str(bad))
    assert code == 2 and "not a PyTorch checkpoint" in err
    assert "Traceback" not in err


def _main(*args: str) -> tuple[int, str, str]:
    """``depth-pro-ros`` in this process (no interpreter start-up): status, stdout, stderr."""
    import contextlib
    import io

    from depth_pro_ros.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def _photo(tmp_path: Path, seed: int, name: str = "p.png") -> tuple[Path, np.ndarray]:
    rgb = np.random.default_rng(seed).integers(0, 256, (42, 70, 3), dtype=np.uint8)
    path = tmp_path / name
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path, rgb


def test_image_command_with_depth_anything_models(da_checkpoints, tmp_path):
    """Metric: depth files as the reference pipeline gives them; relative: refused without
    --allow-relative, then the unitless inverse depth; prompt: one prompt per photo."""
    from model_factories import tiny_depth_anything

    from depth_pro_ros.model import infer_depth_anything
    from depth_pro_ros.stream.anchor import dense_prompt

    photo, rgb = _photo(tmp_path, 1)
    out = tmp_path / "out"
    common = ("--device", "cpu", "--input-size", "56", "-o", str(out))
    code, stdout, err = _main("image", str(photo), "--checkpoint",
                              str(da_checkpoints["metric"]), *common)
    assert code == 0, err
    np.testing.assert_allclose(
        np.load(out / "p_depth.npy"),
        infer_depth_anything(tiny_depth_anything("metric"), rgb, 56).numpy(), rtol=1e-5)
    assert "focal" not in stdout and "-> " in stdout

    relative = ("image", str(photo), "--checkpoint", str(da_checkpoints["relative"]), *common)
    code, _, err = _main(*relative)
    assert code == 2 and "pass --allow-relative" in err
    code, stdout, err = _main(*relative, "--allow-relative")
    assert code == 0, err
    np.testing.assert_allclose(
        np.load(out / "p_relative.npy"),
        infer_depth_anything(tiny_depth_anything("relative"), rgb, 56).numpy(), rtol=1e-5)
    assert (out / "p_relative_color.png").exists() and "relative inverse depth" in stdout

    mm = np.zeros((6, 10), np.uint16)
    mm[::2, ::3] = np.arange(1000, 1000 + mm[::2, ::3].size * 100, 100).reshape(3, 4)
    cv2.imwrite(str(tmp_path / "prompt.png"), mm)
    prompted = ("image", str(photo), "--checkpoint", str(da_checkpoints["prompt"]), *common,
                "--overwrite")  # p_depth.* of the metric run above
    code, _, err = _main(*prompted)
    assert code == 2 and "needs a prompt depth per photo" in err
    code, _, err = _main(*prompted, "--prompt-depth", str(tmp_path / "prompt.png"))
    assert code == 0, err
    prompt = dense_prompt(np.where(mm > 0, mm / 1000.0, np.nan).astype(np.float32))
    np.testing.assert_allclose(
        np.load(out / "p_depth.npy"),
        infer_depth_anything(tiny_depth_anything("metric", prompt=True), rgb, 56,
                             prompt).numpy(), rtol=1e-5)


def test_image_command_refuses_existing_outputs_before_starting(tiny_checkpoint, tmp_path):
    """Without --overwrite a run that would replace an output processes no photo (exit 1,
    as `bag` for an existing OUTPUT); with it, every output is written."""
    a, _ = _photo(tmp_path, 1, "a.png")
    b, _ = _photo(tmp_path, 2, "b.png")
    out = tmp_path / "out"
    common = ("--checkpoint", str(tiny_checkpoint), "--device", "cpu", "-o", str(out))
    code, _, err = _main("image", str(a), *common)
    assert code == 0, err
    # Each output is written to a new file renamed into place: a new inode when replaced.
    before = {p.name: (p.read_bytes(), p.stat().st_ino) for p in out.iterdir()}
    assert sorted(before) == ["a_depth.npy", "a_depth_color.png", "a_depth_mm.png"]

    code, stdout, err = _main("image", str(b), str(a), *common)
    assert code == 1 and stdout == ""
    assert f"{out / 'a_depth.npy'} exists (and 2 more output file(s)); pass --overwrite" in err
    assert {p.name: (p.read_bytes(), p.stat().st_ino) for p in out.iterdir()} == before

    code, _, err = _main("image", str(b), str(a), *common, "--overwrite")
    assert code == 0, err
    after = {p.name: p.stat().st_ino for p in out.iterdir()}
    assert sorted(after) == sorted([*before, "b_depth.npy", "b_depth_color.png",
                                    "b_depth_mm.png"])
    assert all(after[name] != inode for name, (_, inode) in before.items())


def test_image_command_progress_bar_only_on_a_terminal(tiny_checkpoint, tmp_path):
    """Several photos with stderr on a terminal (a pty, in this process: no interpreter
    start-up): a bar (\\r redraws); --no-progress: none. (Not a terminal, in a process of
    its own: test_image_command_writes_depth.)"""
    import contextlib
    import fcntl
    import io
    import os
    import pty
    import struct
    import termios
    import threading

    from depth_pro_ros.cli import main

    photos = [str(_photo(tmp_path, i, f"p{i}.png")[0]) for i in range(2)]

    def on_terminal(*extra: str) -> str:
        master, slave = pty.openpty()
        # A terminal of 24 x 100 characters (a new pty has none: no room for a bar).
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
        chunks: list[bytes] = []

        def drain() -> None:  # read as it is written: a full pty would block the writer
            while True:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the terminal's other end is closed and drained
                    return
                if not chunk:
                    return
                chunks.append(chunk)

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        terminal = io.TextIOWrapper(io.FileIO(slave, "w", closefd=True), write_through=True)
        try:
            with contextlib.redirect_stdout(io.StringIO()), \
                    contextlib.redirect_stderr(terminal):
                code = main(["image", *photos, "--checkpoint", str(tiny_checkpoint),
                             "--device", "cpu", "-o", str(tmp_path / "out"), "--overwrite",
                             *extra])
        finally:
            terminal.close()
        reader.join(30)
        os.close(master)
        assert code == 0, b"".join(chunks)
        return b"".join(chunks).decode(errors="replace")

    shown = on_terminal()
    assert "\r" in shown and "2/2" in shown, shown
    quiet = on_terminal("--no-progress")
    assert "\r" not in quiet and "2/2" not in quiet


def test_image_command_prints_the_legend_range(tiny_checkpoint, tmp_path):
    """The printed line gives the depth's min / median / max and the colour legend's
    range (the 2nd-98th percentile); the preview is coloured and labelled with that range."""
    import re

    from depth_pro_ros.io.colorize import annotate_range, colorize_depth, format_metres

    photo, _ = _photo(tmp_path, 4)
    out = tmp_path / "out"
    code, stdout, err = _main("image", str(photo), "--checkpoint", str(tiny_checkpoint),
                              "--device", "cpu", "-o", str(out))
    assert code == 0, err
    m = re.search(r"depth (\S+) m to (\S+) m \(median (\S+) m\), colour legend (\S+) m to "
                  r"(\S+) m \(percentiles 2-98; outside it colours saturate\)", stdout)
    assert m, stdout
    depth = np.load(out / "p_depth.npy")
    valid = depth[np.isfinite(depth)]
    lo, hi = np.percentile(valid.astype(np.float64), [2, 98])
    assert lo < hi and valid.min() < lo  # a range that percentile clipping changes
    # Printed as the legend writes them (format_metres: 2 decimals below 10 m).
    expected = [valid.min(), valid.max(), np.median(valid), lo, hi]
    assert list(m.groups()) == [format_metres(float(v))[:-2] for v in expected]
    # The preview is exactly the percentile-range colouring with its legend...
    bgr, used = colorize_depth(depth)
    np.testing.assert_allclose(used, (lo, hi), rtol=1e-12)
    preview = cv2.imread(str(out / "p_depth_color.png"))
    np.testing.assert_array_equal(preview, annotate_range(bgr, *used))
    # ...whose ends saturate: nearer than the legend's start is the map's warm end.
    top = slice(0, depth.shape[0] // 2)  # clear of the legend (bottom left)
    warm = cv2.applyColorMap(np.full((1, 1), 255, np.uint8), cv2.COLORMAP_TURBO)[0, 0]
    near = depth[top] < lo
    assert near.any() and (preview[top][near] == warm).all()


def test_checkpoint_help_names_every_family():
    for command in ("image", "bag", "bags", "demo"):
        code, stdout, _ = _main(command, "--help")
        assert code == 0
        text = " ".join(stdout.split())
        for family in ("Depth Pro (", "Depth Anything V2 relative or metric",
                       "Prompt Depth Anything ("):
            assert family in text, (command, family)


def test_image_command_runs_through_the_engine(tiny_checkpoint, tmp_path, monkeypatch):
    """The photos go through ``create_engine`` (as the node's and the bag tool's frames),
    with the --backend chosen: no inference path of the command's own."""
    import depth_pro_ros.engine as engine_module

    made = []
    real = engine_module.create_engine

    def spy(*args, **kwargs):
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(engine_module, "create_engine", spy)
    photo, _ = _photo(tmp_path, 5)
    code, stdout, err = _main("image", str(photo), "--checkpoint", str(tiny_checkpoint),
                              "--device", "cpu", "--backend", "torch", "-o", str(tmp_path))
    assert code == 0, err
    assert len(made) == 1 and made[0].config.backend == "torch"
    assert made[0].stats.processed == 1 and "-> " in stdout


def test_backend_option_of_image_bag_and_bags():
    """--backend takes auto and the engine's BACKENDS (default auto) and reaches the bag
    options, with the gate and thread settings."""
    from depth_pro_ros.cli.bag import bag_options
    from depth_pro_ros.cli.parser import build_parser
    from depth_pro_ros.engine import BACKEND_CHOICES, BACKENDS

    for command in ("image", "bag", "bags"):
        code, _, err = _main(command, "x", "--backend", "no-such-backend")
        assert code == 2 and "invalid choice: 'no-such-backend'" in err, (command, err)
        code, stdout, _ = _main(command, "--help")
        assert code == 0 and "{" + ",".join(BACKEND_CHOICES) + "}" in stdout
    args = build_parser().parse_args(["bag", "in", "-o", "out", "--image-topic", "/cam"])
    assert args.backend == "auto"
    args = build_parser().parse_args(["bag", "in", "-o", "out", "--image-topic", "/cam",
                                      "--backend", BACKENDS[-1], "--no-accuracy-gate",
                                      "--ort-threads", "3", "--ort-inter-op-threads", "2"])
    opts = bag_options(args, Path("in"), Path("out"))
    assert (opts.backend, opts.accuracy_gate, opts.ort_intra_op_threads,
            opts.ort_inter_op_threads) == (BACKENDS[-1], False, 3, 2)
