"""``depth-pro-ros bags --ray auto``: joining a Ray cluster that is already running.

A one-node cluster is started with ``ray start --head`` (as on a real head node); the
command, run as a user runs it, joins it, and its output equals a single ``bag`` run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from bag_builders import IMAGE, Msg, image_fields, picture, read_bag, write_bag
from ray_lock import ray_machine_lock

from depth_pro_ros.bag import BagOptions, process_bag

CAM = "/cam/image_raw"
RAY = shutil.which("ray", path=str(Path(sys.executable).parent))
pytestmark = pytest.mark.skipif(RAY is None, reason="ray is not installed "
                                "(pip install -e '.[test]' installs it)")


@pytest.fixture()
def cluster(tmp_path):
    """A running one-node Ray cluster (its own temp folder), stopped afterwards."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    temp = Path("/tmp") / f"ray_{os.getpid()}"  # Ray's socket paths must stay short
    with ray_machine_lock():
        subprocess.run([RAY, "start", "--head", "--num-cpus=2", "--include-dashboard=false",
                        f"--temp-dir={temp}", "--disable-usage-stats"], check=True, env=env,
                       capture_output=True, timeout=180)
        try:
            yield env
        finally:
            subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True,
                           timeout=120)
            shutil.rmtree(temp, ignore_errors=True)


def test_bags_joins_a_running_cluster(cluster, tiny_checkpoint, tmp_path):
    bag = write_bag(tmp_path / "in" / "delta", "mcap",
                    [Msg(CAM, IMAGE, 7 * 10**9, image_fields(picture(3)))])
    reference = tmp_path / "reference"
    process_bag(BagOptions(input=bag, output=reference, checkpoint=tiny_checkpoint,
                           image_topics=[CAM], device="cpu", progress=False))
    outdir = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "depth_pro_ros.cli", "bags", str(tmp_path / "in"), "-o",
         str(outdir), "--checkpoint", str(tiny_checkpoint), "--image-topic", CAM,
         "--device", "cpu", "--no-progress", "--ray", "auto", "--workers", "1"],
        env=cluster, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "1 Ray worker(s)" in done.stderr
    depth = [raw for _, _, raw in read_bag(outdir / "delta_depth")["/cam/depth"]]
    assert depth == [raw for _, _, raw in read_bag(reference)["/cam/depth"]]
