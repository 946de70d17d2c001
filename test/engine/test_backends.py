"""The backend seam: the engine runs the network only through a backend from the table.

A new backend is one module plus one row in ``engine.backends.BACKEND_FACTORIES``: the
tests register one (a wrapper that counts calls) by adding a row and nothing else, and
check on the source that no engine module outside ``engine/backends/`` touches the
network object.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from model_factories import tiny_model

from depth_pro_ros.engine import BACKENDS, DepthEngine, EngineConfig, Frame, Intrinsics
from depth_pro_ros.engine.backends import BACKEND_FACTORIES, TorchBackend, create_backend
from depth_pro_ros.engine.errors import UnknownBackendError

ENGINE_DIR = Path(__file__).resolve().parents[2] / "depth_pro_ros" / "engine"
WAIT = 120.0
K = Intrinsics(fx=60.0, fy=60.0, cx=32.0, cy=24.0, width=64, height=48)


def _result(engine: DepthEngine, frame: Frame):
    assert engine.submit(frame, timeout=WAIT)
    result = engine.get(timeout=WAIT)
    assert result is not None and result.ok, result and result.error
    return result


class CountingBackend(TorchBackend):
    """The torch backend, counting its forward passes: a backend added by one row."""

    calls = 0

    def run(self, x, estimate_fov, prompt):
        type(self).calls += 1
        return super().run(x, estimate_fov, prompt)


def test_backend_names_are_the_tables_and_auto_is_the_default():
    """``auto`` (the default) runs a torch network on torch, and the engine reports it."""
    assert BACKENDS == tuple(BACKEND_FACTORIES) and "torch" in BACKENDS
    assert EngineConfig().backend == "auto"
    with pytest.raises(ValueError, match="backend must be one of"):
        EngineConfig(backend="no_such_backend")
    with DepthEngine(tiny_model(), EngineConfig(device="cpu")) as engine:
        assert engine.config.backend == "torch" and type(engine.backend) is TorchBackend


def test_create_backend_refuses_an_unknown_name():
    config = EngineConfig()
    object.__setattr__(config, "backend", "no_such_backend")  # past the config's own check
    with pytest.raises(UnknownBackendError, match="no_such_backend"):
        create_backend(tiny_model(), None, config)


def test_a_new_backend_is_one_table_row(monkeypatch):
    model = tiny_model()
    monkeypatch.setitem(BACKEND_FACTORIES, "counting", CountingBackend)
    frame = Frame(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8),
                  intrinsics=K)
    with DepthEngine(model, EngineConfig(device="cpu", backend="counting",
                                         policy="all")) as engine:
        assert isinstance(engine.backend, CountingBackend)
        counted = _result(engine, frame)
    assert CountingBackend.calls == 1
    with DepthEngine(model, EngineConfig(device="cpu", policy="all")) as engine:
        assert type(engine.backend) is TorchBackend
        plain = _result(engine, frame)
    np.testing.assert_array_equal(counted.depth, plain.depth)


def _network_touches(path: Path) -> list[str]:
    """Places in ``path`` that reach the network object itself."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and node.attr in ("parameters", "compile",
                                                              "CUDAGraph", "graph"):
            found.append(f"{path.name}:{node.lineno} .{node.attr}")
        # recipe.run(network, ...) is the backend's call.
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "run" and "recipe" in ast.unparse(node.func.value)):
            found.append(f"{path.name}:{node.lineno} {ast.unparse(node.func)}")
    return found


def test_only_backends_touch_the_network():
    sources = [p for p in ENGINE_DIR.rglob("*.py") if "backends" not in p.parts]
    assert sources
    touches = [t for p in sources for t in _network_touches(p)]
    assert not touches, f"engine modules outside backends/ reach the network: {touches}"
    inside = [t for p in (ENGINE_DIR / "backends").glob("*.py") for t in _network_touches(p)]
    assert inside, "the check finds nothing even in the torch backend: it is broken"
