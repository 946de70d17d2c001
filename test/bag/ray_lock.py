"""One Ray cluster at a time on this machine, for tests run in parallel (pytest-xdist).

``ray stop --force`` (the cluster test's teardown) ends every Ray process of the machine,
and ``--ray auto`` joins whichever cluster ``ray start`` made last, so two test workers
that use Ray at once would stop or join each other's cluster. The tests that start Ray
hold this lock while they do.
"""

from __future__ import annotations

import contextlib
import fcntl
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_LOCK = Path(tempfile.gettempdir()) / "depth_pro_ros_test_ray.lock"


@contextlib.contextmanager
def ray_machine_lock() -> Iterator[None]:
    """Wait until no other test process of this machine uses Ray, then hold it."""
    with open(_LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="module")
def ray_exclusive() -> Iterator[None]:
    """The module holds :func:`ray_machine_lock` from its first test to its last."""
    with ray_machine_lock():
        yield
