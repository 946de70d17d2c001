"""Depth agreement metrics of the benchmarks (bench/accuracy.py) on hand-computed cases."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

# bench/ is a folder of scripts, not a package: load the module from its file.
_spec = importlib.util.spec_from_file_location(
    "bench_accuracy", Path(__file__).resolve().parents[2] / "bench" / "accuracy.py")
_accuracy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_accuracy)
compare_depth, relative_error = _accuracy.compare_depth, _accuracy.relative_error


def test_metrics_by_hand():
    ref = np.array([[1.0, 2.0], [4.0, np.nan]], np.float32)
    depth = np.array([[1.1, 2.0], [6.0, 3.0]], np.float32)
    m = compare_depth(depth, ref)
    assert m["abs_rel"] == pytest.approx((0.1 + 0.0 + 0.5) / 3, rel=1e-6)
    assert m["max_rel"] == pytest.approx(0.5, rel=1e-6)
    assert m["max_abs"] == pytest.approx(2.0, rel=1e-6)  # 6 vs 4; the NaN pixel is left out
    assert m["delta1"] == pytest.approx(2 / 3)
    assert m["valid_fraction"] == 0.75


def test_identical_maps_and_errors():
    ref = np.linspace(0.5, 10, 20, dtype=np.float32).reshape(4, 5)
    assert compare_depth(ref, ref) == {
        "abs_rel": 0.0, "max_rel": 0.0, "max_abs": 0.0, "delta1": 1.0, "valid_fraction": 1.0
    }
    with pytest.raises(ValueError, match="shapes differ"):
        compare_depth(ref, ref[:2])
    with pytest.raises(ValueError, match="no pixel is valid"):
        compare_depth(np.zeros((2, 2)), ref[:2, :2])
    assert relative_error(101.0, 100.0) == pytest.approx(0.01)
