"""The fp32 gate reference of a torch checkpoint is computed once and read back.

A reduced-precision (here fp16 on the CPU) engine's first start computes the reference
from the checkpoint in fp32 and keeps it under ``$DEPTH_PRO_ROS_CACHE/gate``; later starts
read it instead of loading the checkpoint twice. A replaced checkpoint gets a new entry,
a damaged entry is recomputed, an unwritable cache only costs the recomputation, and the
gate really judges against what the entry holds.
"""

from __future__ import annotations

import logging
import os
import shutil

import pytest

from depth_pro_ros.engine import EngineConfig, create_engine
from depth_pro_ros.engine.backends import gate, gate_cache
from depth_pro_ros.engine.errors import AccuracyGateError

FP16 = EngineConfig(device="cpu", precision="fp16")
READ = "fp32 reference read from"


@pytest.fixture
def checkpoint(da_checkpoints, tmp_path, monkeypatch):
    """A private copy of the tiny metric model, with the cache in this test's folder."""
    monkeypatch.setenv(gate_cache.CACHE_ENV, str(tmp_path / "cache"))
    return shutil.copy(da_checkpoints["metric"], tmp_path / "metric.pt")


def _start(checkpoint, caplog) -> str:
    caplog.clear()
    with caplog.at_level(logging.INFO), create_engine(checkpoint, FP16):
        pass
    assert "accuracy gate passed: torch in fp16" in caplog.text
    return caplog.text


def test_the_reference_is_computed_once_read_back_and_judged_against(checkpoint, caplog):
    assert READ not in _start(checkpoint, caplog)
    entry = gate_cache.entry_path(checkpoint, None, 0)
    assert entry.is_file() and entry.parent == gate_cache.cache_dir() / "gate"
    assert READ in _start(checkpoint, caplog)
    assert gate_cache.entry_path(checkpoint, None, 518) != entry  # another input size
    # The gate really judges against what the entry holds.
    kept = gate_cache.read_entry(entry)
    gate_cache.write_entry(entry, gate.GateReference(kept.depth * 1.02, kept.fov))
    with pytest.raises(AccuracyGateError, match="differs from fp32 torch by 0.0"):
        create_engine(checkpoint, FP16)
    # A damaged entry is recomputed and rewritten.
    entry.write_text('{"depth": {"shape": [1], "float32": "not base64"}}')
    text = _start(checkpoint, caplog)
    assert "ignoring the cached reference" in text and READ not in text
    assert gate_cache.read_entry(entry) is not None
    # A replaced checkpoint (as far as size and time tell) gets its own entry.
    os.utime(checkpoint, ns=(1, 1))
    assert gate_cache.entry_path(checkpoint, None, 0) != entry
    assert READ not in _start(checkpoint, caplog)


def test_an_unwritable_cache_still_gates(checkpoint, caplog, tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv(gate_cache.CACHE_ENV, str(blocker))  # gate/ cannot be made in it
    assert "reference not cached" in _start(checkpoint, caplog)
