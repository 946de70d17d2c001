"""``depth-pro-ros demo`` (what ``make demo`` runs) end to end with a tiny checkpoint, the
sample it ships as package data, and the weights lookup / download around it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from bag_builders import read_bag, run_cli

import depth_pro_ros.bag
from depth_pro_ros.bag.demo import FRAMES, INFO_TOPIC, TOPIC, find_weights, make_sample_bag
from depth_pro_ros.bag.sample import sample_image, sample_image_resource
from depth_pro_ros.io.messages import depth_image_to_array
from depth_pro_ros.model.weights import (
    DownloadError,
    MissingCheckpointError,
    download_weights,
)

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "depth_pro_ros" / "bag" / "data" / "sample.jpg"
# What a wheel is built from (setup.py's inputs).
PACKAGING = ("setup.py", "setup.cfg", "pyproject.toml", "package.xml", "resource", "launch",
             "config", "depth_pro_ros")


def _env(**changes: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DEPTH_PRO_CHECKPOINT", "DEPTH_PRO_DEMO_CHECKPOINT")}
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def _read_ply(path: Path) -> np.ndarray:
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    assert header[:2] == ["ply", "format binary_little_endian 1.0"]
    count = int(next(line for line in header if line.startswith("element vertex")).split()[-1])
    props = [line.split()[-1] for line in header if line.startswith("property")]
    assert props == ["x", "y", "z", "red", "green", "blue"]
    dtype = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"),
                      ("green", "u1"), ("blue", "u1")])
    assert len(data) - end == count * dtype.itemsize
    return np.frombuffer(data[end:], dtype)


def test_demo_end_to_end_with_a_smoke_test_checkpoint(tiny_checkpoint, tmp_path,
                                                      monkeypatch):
    """The command in this process (no second interpreter to start), in the environment
    of a user who set only the smoke-test variable."""
    outdir = tmp_path / "demo"
    monkeypatch.delenv("DEPTH_PRO_CHECKPOINT", raising=False)
    monkeypatch.setenv("DEPTH_PRO_DEMO_CHECKPOINT", str(tiny_checkpoint))
    monkeypatch.setenv("HOME", str(tmp_path))
    code, out, err = run_cli("demo", "-o", str(outdir), "--no-download", "--batch-size", "2")
    assert code == 0, err
    assert "smoke test" in out and "meaningless" in out
    assert f"frames out:   {FRAMES}" in out
    assert f"focal source: camera_info {FRAMES // 2}, fov_head {FRAMES - FRAMES // 2}" in out
    bag, sheet = outdir / "sample_depth_bag", outdir / "contact_sheet.png"
    ply = outdir / "frame_000_points.ply"
    for path in (bag, sheet, ply):
        assert str(path) in out

    res = read_bag(bag)
    assert len(res["/camera/depth"]) == len(res[TOPIC]) == FRAMES
    assert len(res["/camera/points"]) == len(res["/camera/depth/colorized"]) == FRAMES
    assert len(res[INFO_TOPIC]) == FRAMES // 2
    depth = depth_image_to_array(res["/camera/depth"][0][1])
    assert depth.shape == (480, 640) and np.isfinite(depth).all()
    image = cv2.imread(str(sheet))
    assert image is not None and image.shape == (4 * 240, 640, 3)
    points = _read_ply(ply)
    assert points.size == 320 * 240  # decimation 2, all finite with this model
    np.testing.assert_allclose(np.sort(points["z"]), np.sort(depth[::2, ::2].reshape(-1)),
                               rtol=1e-6)
    assert points["red"].std() > 0  # coloured from the picture


def test_sample_bag_is_reproducible(tmp_path):
    a, b = make_sample_bag(tmp_path / "a"), make_sample_bag(tmp_path / "b")
    ra, rb = read_bag(a), read_bag(b)
    for topic in (TOPIC, INFO_TOPIC):
        assert [(t, raw) for t, _, raw in ra[topic]] == [(t, raw) for t, _, raw in rb[topic]]
    stamps = [m.header.stamp for _, m, _ in ra[TOPIC]]
    assert len(stamps) == FRAMES and len(set((s.sec, s.nanosec) for s in stamps)) == FRAMES
    first = cv2.imdecode(np.asarray(ra[TOPIC][0][1].data), cv2.IMREAD_COLOR)
    assert first.shape == (480, 640, 3)


def test_the_sample_picture_is_a_resource_of_the_package():
    resource = sample_image_resource()
    assert Path(str(resource)).parent.parent == Path(depth_pro_ros.bag.__file__).parent
    image = sample_image()
    assert image.shape == (480, 640, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, cv2.imread(str(SAMPLE), cv2.IMREAD_COLOR))


def _pip(*args: str, cwd: Path) -> None:
    # --no-index: only local files, never a package index.
    result = subprocess.run([sys.executable, "-m", "pip", *args, "--no-index", "--quiet",
                             "--disable-pip-version-check"],
                            cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_wheel_ships_the_sample_and_the_installed_demo_finds_it(tmp_path):
    """`depth-pro-ros demo` from a pip install: the picture is in the wheel, and the demo
    code of the installed copy (not the checkout) builds its sample bag from it."""
    src = tmp_path / "src"
    for name in PACKAGING:  # build from a copy: nothing is written into the checkout
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    _pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "wheels"),
         str(src), cwd=tmp_path)
    (wheel,) = (tmp_path / "wheels").glob("depth_pro_ros-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("depth_pro_ros/bag/data/sample.jpg") == SAMPLE.read_bytes()

    site = tmp_path / "site"
    _pip("install", "--no-deps", "--target", str(site), str(wheel), cwd=tmp_path)
    script = textwrap.dedent("""
        import sys
        from pathlib import Path
        sys.path.insert(0, sys.argv[1])  # ahead of the checkout's editable install
        import depth_pro_ros
        from depth_pro_ros.bag.demo import make_sample_bag
        from depth_pro_ros.bag.sample import sample_image_resource
        print(depth_pro_ros.__file__)
        print(sample_image_resource())
        make_sample_bag(Path(sys.argv[2]))
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", script, str(site), str(tmp_path / "bag")],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    package_file, resource = result.stdout.splitlines()
    assert Path(package_file).is_relative_to(site) and Path(resource).is_relative_to(site)
    # The same bag as the checkout's demo makes.
    installed, here = read_bag(tmp_path / "bag"), read_bag(make_sample_bag(tmp_path / "here"))
    for topic in (TOPIC, INFO_TOPIC):
        assert [raw for _, _, raw in installed[topic]] == [raw for _, _, raw in here[topic]]
    assert len(installed[TOPIC]) == FRAMES


def test_demo_without_weights_says_where_to_put_them(tmp_path, monkeypatch):
    """In this process (no interpreter start-up): no weights anywhere it looks."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("DEPTH_PRO_CHECKPOINT", raising=False)
    monkeypatch.delenv("DEPTH_PRO_DEMO_CHECKPOINT", raising=False)
    code, _, err = run_cli("demo", "-o", str(tmp_path / "d"), "--no-download")
    assert code == 2
    assert "no such file or folder" in err and "depth_pro.pt" in err
    assert "https://ml-site.cdn-apple.com/models/depth-pro/depth_pro.pt" in err
    assert "Traceback" not in err and not (tmp_path / "d").exists()


def test_weights_lookup_order(tmp_path, monkeypatch):
    demo_ck, user_ck = tmp_path / "demo.pt", tmp_path / "user.pt"
    demo_ck.write_bytes(b"x")
    user_ck.write_bytes(b"y")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("DEPTH_PRO_CHECKPOINT", str(user_ck))
    monkeypatch.setenv("DEPTH_PRO_DEMO_CHECKPOINT", str(demo_ck))
    assert find_weights(None, download=False) == (demo_ck, True)
    monkeypatch.delenv("DEPTH_PRO_DEMO_CHECKPOINT")
    assert find_weights(None, download=False) == (user_ck, False)
    monkeypatch.delenv("DEPTH_PRO_CHECKPOINT")
    with pytest.raises(MissingCheckpointError,
                       match=r"\.cache/depth_pro_ros/depth_pro\.pt"):
        find_weights(None, download=False)


def test_download_weights_to_a_temporary_then_renamed(tmp_path):
    source = tmp_path / "served.pt"
    payload = os.urandom(3 * (1 << 20) + 17)
    source.write_bytes(payload)
    dest = tmp_path / "cache" / "depth_pro.pt"
    assert download_weights(dest, url=source.as_uri(), progress=False) == dest
    assert dest.read_bytes() == payload
    assert sorted(p.name for p in dest.parent.iterdir()) == ["depth_pro.pt"]


def test_download_without_network_is_a_clear_error(tmp_path):
    dest = tmp_path / "cache" / "depth_pro.pt"
    # Port 9 (discard) on the loopback: nothing listens, the connection is refused.
    with pytest.raises(DownloadError) as info:
        download_weights(dest, url="http://127.0.0.1:9/depth_pro.pt", progress=False,
                         timeout=5)
    message = str(info.value)
    assert "could not download" in message and str(dest) in message
    assert not dest.exists() and list(dest.parent.iterdir()) == []
