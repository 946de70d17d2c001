"""Repository-wide pytest configuration.

Being at the repository root, this file also puts the root on ``sys.path`` so the tests
import ``depth_pro_ros`` from the working tree even when it is not pip-installed.
Tests marked ``cuda`` are skipped, with the reason shown, when no CUDA GPU is present.
It also tunes glibc's malloc for the suite's speed (see below).
"""

import ctypes
import ctypes.util
import os

import pytest

# glibc's malloc hands the tiny network's large feature maps (tens of MB each) back to
# the kernel after every forward pass and faults them in again on the next: about 40 % of
# the suite's CPU time went to the kernel. Keeping freed memory in one arena (a few
# hundred MB more at peak) removes that; results do not change. The environment reaches
# the node, CLI and Ray processes the tests start; mallopt applies it to this process,
# which was started before it could read the environment. Other C libraries ignore both.
_MALLOC = {"MALLOC_ARENA_MAX": ("1", -8), "MALLOC_MMAP_THRESHOLD_": (str(1 << 30), -3),
           "MALLOC_TRIM_THRESHOLD_": (str(1 << 30), -1),
           "MALLOC_TOP_PAD_": (str(256 << 20), -2)}
for _name, (_value, _option) in _MALLOC.items():
    os.environ.setdefault(_name, _value)
try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    for _name, (_, _option) in _MALLOC.items():
        _libc.mallopt(_option, int(os.environ[_name]))
except (OSError, AttributeError, ValueError):
    pass  # not glibc: the defaults stay


def pytest_collection_modifyitems(config, items):
    cuda_items = [item for item in items if item.get_closest_marker("cuda")]
    if not cuda_items:
        return
    import torch  # only paid for when a CUDA test was collected

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in cuda_items:
        item.add_marker(skip)
