"""Repository-wide pytest configuration.

Being at the repository root, this file also puts the root on ``sys.path`` so the tests
import ``depth_pro_ros`` from the working tree even when it is not pip-installed.
Tests marked ``cuda`` are skipped, with the reason shown, when no CUDA GPU is present.
"""

import pytest


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
