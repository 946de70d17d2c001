"""``depth_pro_node`` as a real process on a loopback DDS domain.

:class:`NodeProcess` starts ``python -m depth_pro_ros.ros.node`` (what ``ros2 run``
runs) with localhost-only discovery on a domain of its own; the tests and the node
benchmarks both use it. Its log goes to a file; its memory is read from /proc.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "config" / "depth_pro.yaml"


def _session_domain() -> str:
    """One DDS domain per test process, so parallel runs on one host do not meet.

    Under pytest-xdist the workers of one run take consecutive domains from a base derived
    from the run's id (a pid each could collide); DEPTH_PRO_TEST_DOMAIN_ID pins the base
    where several suites run at once on one host. Domains 20-99: clear of the default 0,
    and within 0-101, whose DDS ports stay below Linux's ephemeral port range.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ...
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    pinned = os.environ.get("DEPTH_PRO_TEST_DOMAIN_ID")
    if pinned:
        return str(int(pinned) + index)
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    base = zlib.crc32(run.encode()) if run else os.getpid()
    return str(20 + (base + index) % 80)


DOMAIN_ID = _session_domain()
NAMESPACE = "/cam"


def ros_env(domain: str | int = DOMAIN_ID) -> dict[str, str]:
    """The environment that puts a process on DDS domain ``domain``, loopback only."""
    return {
        "ROS_DOMAIN_ID": str(domain),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "ROS_LOCALHOST_ONLY": "1",  # the same for distributions before Jazzy
        "RCUTILS_COLORIZED_OUTPUT": "0",
    }


#: The tests' domain.
ROS_ENV = ros_env()


def set_ros_env(domain: str | int = DOMAIN_ID) -> None:
    """Put this process on ``domain`` (default: the tests'); call before rclpy.init."""
    os.environ.update(ros_env(domain))


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (peak resident) of a process, in kB."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key = line.split(":", 1)[0]
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(line.split()[1])
    return values


def node_args(*params: str, namespace: str = NAMESPACE,
              params_file: Path | None = CONFIG) -> list[str]:
    """The node's ROS arguments: the namespace, ``params_file``, then ``params``
    (``name:=value``) as ``-p`` options."""
    args = ["--ros-args", "-r", f"__ns:={namespace}"]
    if params_file is not None:
        args += ["--params-file", str(params_file)]
    for p in params:
        args += ["-p", p]
    return args


def run_in_process(*params: str, namespace: str = NAMESPACE,
                   params_file: Path | None = CONFIG) -> int:
    """The node's entry point (``depth_pro_ros.ros.node.main``, what ``ros2 run`` calls)
    with :func:`node_args` in this process, on the tests' domain; its exit status.

    For start-up refusals: rclpy parses the same arguments, the node declares its
    parameters and logs the refusal as in a node process, without a Python and torch
    start-up per case. A node that starts would spin until interrupted.
    """
    from depth_pro_ros.ros.node import main

    set_ros_env()
    return main(["depth_pro_node", *node_args(*params, namespace=namespace,
                                              params_file=params_file)])


class NodeProcess:
    """depth_pro_node in a subprocess; its log goes to a file the caller can read.

    ``params`` are ``name:=value`` strings (``-p``), after ``params_file``; ``domain``
    is the DDS domain (default: the tests'); ``env`` adds to the environment.
    """

    def __init__(self, log_path: Path, *params: str, namespace: str = NAMESPACE,
                 params_file: Path | None = CONFIG, domain: str | int = DOMAIN_ID,
                 env: Mapping[str, str] | None = None) -> None:
        args = [sys.executable, "-m", "depth_pro_ros.ros.node",
                *node_args(*params, namespace=namespace, params_file=params_file)]
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        full_env = {**os.environ, **ros_env(domain), "PYTHONUNBUFFERED": "1", **(env or {})}
        # cwd=REPO: `-m` then imports the checkout's package.
        self.proc = subprocess.Popen(args, cwd=REPO, env=full_env, stdout=self._log,
                                     stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.proc.poll() is None

    def memory_kb(self) -> dict[str, int]:
        """:func:`memory_kb` of the node; empty once it has exited."""
        return memory_kb(self.proc.pid) if self.alive() else {}

    def log(self) -> str:
        """The node's output so far."""
        return self.log_path.read_text(errors="replace")

    def log_lines(self) -> list[str]:
        """The node's output so far, by line."""
        return self.log().splitlines()

    def wait_for_log(self, text: str, timeout: float = 20.0) -> str:
        """Wait until ``text`` appears in the node's log; return the log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()
            if text in log:
                return log
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not in the node's log:\n{self.log()}")

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30.0) -> int:
        """Send ``sig`` and wait for the exit code (SIGKILL after ``timeout`` s)."""
        if self.alive():
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        finally:
            self._log.close()

    def wait(self, timeout: float = 60.0) -> int:
        """Wait for the node to exit by itself; its exit code."""
        code = self.proc.wait(timeout)
        self._log.close()
        return code


def log_summary(lines: list[str], skip: int = 0) -> dict[str, Any]:
    """Line counts of a node log from line ``skip`` on, by level."""
    lines = lines[skip:]
    levels = {level: sum(line.startswith(f"[{level}]") for line in lines)
              for level in ("FATAL", "ERROR", "WARN", "INFO", "DEBUG")}
    return {"lines": len(lines), "by_level": levels,
            "traceback": any("Traceback" in line for line in lines)}
