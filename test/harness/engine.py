"""Driving a running engine from tests and benchmarks the way the node and bag tool do:
through ``submit`` and ``get`` (the engine has no one-frame shortcut of its own)."""

from __future__ import annotations

from depth_pro_ros.engine import DepthEngine, DepthResult, Frame

__all__ = ["process_one"]

#: Generous bound on any wait, so that a hung engine fails a test instead of hanging it.
WAIT_S = 120.0


def process_one(engine: DepthEngine, frame: Frame, timeout: float = WAIT_S) -> DepthResult:
    """Submit ``frame`` to an engine without an ``on_result`` callback and return its
    result: waits for the frames in flight first and discards results nobody took, so
    the result returned is this frame's."""
    assert engine.drain(timeout), "the engine did not finish its frames in flight"
    while engine.get(timeout=0) is not None:
        pass
    assert engine.submit(frame, timeout=timeout), "no room for the frame"
    result = engine.get(timeout=timeout)
    assert result is not None, f"no result within {timeout} s"
    return result
