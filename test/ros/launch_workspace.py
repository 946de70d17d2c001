"""``ros2 launch depth_pro_ros depth.launch.py`` run as a user runs it, for the launch tests.

The upstream ROS 2 launch tooling (``launch``, ``launch_ros``, ``ros2launch``, ``ros2cli``,
``ros2pkg``: test tooling from ``../shared/ros2-launch``, never part of the product) and
this package are built with colcon in a temporary workspace, by this virtual
environment's Python; ``install/setup.sh`` is sourced in bash and ``ros2 launch`` started
with the tests' DDS settings (``harness.node.ROS_ENV``: loopback, a test domain).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from harness.node import REPO, ROS_ENV, NodeProcess

TOOLING = REPO.parent / "shared" / "ros2-launch"
SOURCES = TOOLING / "ros2_launch_src.tar.gz"
STUBS = TOOLING / "stubs"  # composition_interfaces: imported by launch_ros, no wheel
BIN = Path(sys.executable).parent  # the virtual environment's python, colcon and ros2 deps
COLCON = BIN / "colcon"


def missing_tooling() -> str | None:
    """Why the launch tests cannot run here, or None when they can."""
    if not SOURCES.is_file():
        return (f"the ROS 2 launch tooling is not at {TOOLING} (CI has it at "
                "../shared/ros2-launch from the project root)")
    if not COLCON.is_file():
        return f"colcon is not installed in {BIN} (`make test` installs it)"
    return None


class Workspace:
    """A colcon workspace: the launch tooling's sources and this package (a symbolic link
    to the working tree, as a clone would be) in ``src/``; built by ``start_build`` in the
    background, waited for by ``wait_built``. ``home`` is the HOME of everything it runs,
    so no weights or ROS settings of the machine's user leak in."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.home.mkdir(parents=True)
        src = root / "src"
        src.mkdir()
        with tarfile.open(SOURCES) as tar:
            if hasattr(tarfile, "data_filter"):  # Python 3.10.12+, 3.11.4+
                tar.extractall(src, filter="data")
            else:
                tar.extractall(src)  # noqa: S202 - our own test tooling
        (src / "depth_pro_ros").symlink_to(REPO, target_is_directory=True)
        self._build: subprocess.Popen | None = None
        self._build_log = root / "colcon_build.log"
        self.build_seconds: float | None = None

    def env(self, **extra: str) -> dict[str, str]:
        """The environment a user's shell would have before sourcing the workspace."""
        env = {k: v for k, v in os.environ.items() if k != "DEPTH_PRO_CHECKPOINT"}
        env.update(ROS_ENV)
        env.update(HOME=str(self.home), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
                   PYTHONPATH=os.pathsep.join(filter(None, [str(STUBS),
                                                            env.get("PYTHONPATH")])),
                   PYTHONUNBUFFERED="1", **extra)
        return env

    def start_build(self) -> None:
        self._started = time.monotonic()
        with open(self._build_log, "w") as log:
            self._build = subprocess.Popen(
                [str(COLCON), "build", "--event-handlers", "console_direct+"],
                cwd=self.root, env=self.env(), stdout=log, stderr=subprocess.STDOUT)

    def wait_built(self, timeout: float = 600.0) -> None:
        code = self._build.wait(timeout)
        self.build_seconds = time.monotonic() - self._started
        if code != 0:
            raise AssertionError(f"colcon build failed ({code}):\n"
                                 f"{self._build_log.read_text()[-6000:]}")

    def run(self, *arguments: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        """``ros2 ARGUMENTS`` in the sourced workspace, waited for."""
        return subprocess.run(["bash", "-c", _sourced(["ros2", *arguments])], cwd=self.root,
                              env=self.env(), capture_output=True, text=True, timeout=timeout)


def _sourced(command: list[str]) -> str:
    return f"source install/setup.sh && exec {shlex.join(command)}"


class Launch(NodeProcess):
    """``ros2 launch depth_pro_ros depth.launch.py ARGUMENTS`` in ``workspace``; its output
    (the node's too: output="screen") goes to ``log_path``. It runs in a session of its
    own, so that ``stop`` can end the node with it should the launch not."""

    def __init__(self, workspace: Workspace, log_path: Path, *arguments: str,
                 env: dict[str, str] | None = None) -> None:
        self.arguments = arguments
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        command = ["ros2", "launch", "depth_pro_ros", "depth.launch.py", *arguments]
        self.proc = subprocess.Popen(["bash", "-c", _sourced(command)], cwd=workspace.root,
                                     env=workspace.env(**(env or {})), stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    _interrupted = False

    def interrupt(self) -> None:
        """Ctrl-C, once (a second one would make launch escalate)."""
        if self.proc.poll() is None and not self._interrupted:
            self.proc.send_signal(signal.SIGINT)
            self._interrupted = True

    def stop(self, timeout: float = 20.0) -> int:
        """Ctrl-C and the launch's exit code; the whole session is killed if it has not
        ended within ``timeout``."""
        self.interrupt()
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            code = None
        try:  # anything the launch left behind (normally nothing)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if code is None:
            code = self.proc.wait()
        self._log.close()
        return code
