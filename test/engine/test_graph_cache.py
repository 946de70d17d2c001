"""What of the engine's CUDA path runs without a GPU: the CUDA graph cache's bounds and
counters, the compile + graphs combination, the graph cache size setting, the bf16
refusal on a GPU without bf16 (its capability probe faked), and the Depth Anything
normalisation constants made once per device.

The graph capture itself, its memory and its results are checked on a GPU
(test_cuda_graphs.py, skipped visibly here).
"""

from __future__ import annotations

import pytest
import torch
from model_factories import tiny_model

from depth_pro_ros.engine import DepthEngine, EngineConfig, load_model, ranges
from depth_pro_ros.engine.backends.graphs import GraphCache, GraphedNetwork, graph_key
from depth_pro_ros.engine.backends.torch_backend import network_for
from depth_pro_ros.engine.device import require_precision_support, resolve_precision
from depth_pro_ros.engine.errors import UnsupportedPrecisionError
from depth_pro_ros.engine.pipeline import FIXED_SETTINGS
from depth_pro_ros.model.depth_anything.preprocess import (
    imagenet_normalisation,
    prepare_depth_anything_input,
)


class Captures:
    """A capture callable's log: what was captured, and how full the cache was then."""

    def __init__(self, cache: GraphCache) -> None:
        self.cache, self.made, self.cache_len_at_capture = cache, [], []

    def __call__(self, key):
        def capture():
            self.cache_len_at_capture.append(len(self.cache))
            self.made.append(key)
            return ("graph", key)
        return capture


def test_graph_cache_is_bounded_lru_and_counts():
    cache = GraphCache(2)
    capture = Captures(cache)
    for key in ["a", "b", "a", "c", "a", "b", "b"]:
        assert cache.get(key, capture(key)) == ("graph", key)
        assert len(cache) <= 2
    # a, b captured; a hit; c evicts b (a was used more recently); a hit; b evicts c.
    assert capture.made == ["a", "b", "c", "b"]
    assert (cache.captures, cache.evictions, cache.hits) == (4, 2, 3)
    assert cache.keys() == ["a", "b"]
    # Eviction comes after the capture (whose device synchronisation ends old replays).
    assert capture.cache_len_at_capture == [0, 1, 2, 2]


def test_graph_cache_keeps_nothing_from_a_failed_capture():
    cache = GraphCache(1)
    cache.get("a", lambda: "A")

    def failing():
        raise RuntimeError("capture failed")

    with pytest.raises(RuntimeError, match="capture failed"):
        cache.get("b", failing)
    assert cache.keys() == ["a"] and (cache.captures, cache.evictions) == (1, 0)
    with pytest.raises(ValueError, match="capacity"):
        GraphCache(0)


def test_graph_key_separates_shapes_dtypes_prompts_and_flags():
    x = torch.zeros(1, 3, 8, 8)
    keys = {
        graph_key(x, {"estimate_fov": True}),
        graph_key(x, {"estimate_fov": False}),
        graph_key(torch.zeros(2, 3, 8, 8), {"estimate_fov": False}),
        graph_key(x.half(), {"estimate_fov": False}),
        graph_key(x, {"prompt": torch.zeros(1, 1, 4, 4)}),
        graph_key(x, {"prompt": torch.zeros(1, 1, 4, 6)}),
    }
    assert len(keys) == 6
    # Values of tensor arguments are graph inputs, not part of the key.
    assert graph_key(x, {"prompt": torch.ones(1, 1, 4, 4)}) in keys


class Compiled:
    """What a compiler returns: a wrapper of the module (torch.compile's is the same
    shape; the real one is exercised on the GPU, where importing Dynamo is worth it)."""

    def __init__(self, module):
        self.module = module


def test_graphs_replay_the_compiled_network_when_both_are_asked():
    """compile + cuda_graphs: the graphs are captured from the compiled module (before,
    they wrapped the eager model and compile was silently dropped)."""
    model = tiny_model()
    both = EngineConfig(compile=True, cuda_graphs=True, graph_cache_size=3)
    network = network_for(model, both, torch.device("cuda", 0), compiler=Compiled)
    assert isinstance(network, GraphedNetwork)
    assert isinstance(network.network, Compiled) and network.network.module is model
    assert network.cache.capacity == 3 and network.device == torch.device("cuda", 0)
    graphs_only = network_for(model, EngineConfig(cuda_graphs=True), torch.device("cuda"))
    assert graphs_only.network is model
    # On the CPU graphs do not apply; compile does.
    on_cpu = network_for(model, both, torch.device("cpu"), compiler=Compiled)
    assert isinstance(on_cpu, Compiled) and on_cpu.module is model


@pytest.mark.parametrize("size", [ranges.GRAPH_CACHE_SIZE[0] - 1, ranges.GRAPH_CACHE_SIZE[1] + 1])
def test_graph_cache_size_is_bounded(size):
    with pytest.raises(ValueError, match="graph_cache_size"):
        EngineConfig(graph_cache_size=size)
    for bound in ranges.GRAPH_CACHE_SIZE:
        assert EngineConfig(graph_cache_size=bound).graph_cache_size == bound


def test_graph_cache_size_is_fixed_while_running():
    assert "graph_cache_size" in FIXED_SETTINGS
    with DepthEngine(tiny_model(), EngineConfig(device="cpu")) as engine:
        with pytest.raises(ValueError, match="graph_cache_size"):
            engine.reconfigure(graph_cache_size=2)
        assert engine.backend.graph_cache is None  # no graphs on the CPU
        assert engine.stats.graph_captures == 0


@pytest.fixture
def gpu_without_bf16(monkeypatch):
    """The capability probes the device check calls, as on a pre-Ampere GPU (cc 7.x)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: including_emulation)


def test_bf16_is_refused_on_a_gpu_without_bf16(gpu_without_bf16, tmp_path):
    cuda = torch.device("cuda")
    with pytest.raises(UnsupportedPrecisionError, match="use precision fp16"):
        resolve_precision("bf16", cuda)
    with pytest.raises(UnsupportedPrecisionError, match="bf16"):
        require_precision_support(torch.bfloat16, cuda)
    # Refused before the checkpoint is even opened (this one does not exist).
    with pytest.raises(UnsupportedPrecisionError):
        load_model(tmp_path / "missing.pt", device="cuda", precision="BF16")
    assert resolve_precision("fp16", cuda) == "fp16"
    assert resolve_precision("auto", cuda) == "fp16"
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"


def test_bf16_is_accepted_where_supported(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert resolve_precision("bf16", torch.device("cuda")) == "bf16"


def test_normalisation_constants_are_made_once_per_device():
    """The ImageNet constants are not rebuilt (a host-to-device copy on CUDA) per batch."""
    rgb = torch.zeros(1, 4, 4, 3, dtype=torch.uint8)
    first = imagenet_normalisation(torch.device("cpu"))
    prepare_depth_anything_input(rgb, (4, 4))
    assert imagenet_normalisation(torch.device("cpu")) is first
    out = prepare_depth_anything_input(rgb, (4, 4))
    expected = -torch.tensor([0.485, 0.456, 0.406]) / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(out[0, :, 0, 0], expected, rtol=0, atol=0)
