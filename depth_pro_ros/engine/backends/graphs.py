"""CUDA graph replay of a network: a bounded cache of captured graphs sharing one pool.

:class:`GraphCache` is the bookkeeping alone (pure Python, no CUDA: an LRU of entries
made by a capture callable, with counters), so its bounds are tested on any machine.
:class:`GraphedNetwork` captures one graph per input signature on the engine's own side
stream, into one memory pool shared by all its graphs, and replays it.

Sharing the pool is safe here because the engine consumes a batch's outputs on the
compute stream (post-processing, FoV copy) before it queues the next replay on that
stream, and replays never run concurrently: a later graph may reuse memory that held an
earlier graph's intermediates or an evicted graph's outputs.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import torch

__all__ = ["GraphCache", "GraphedNetwork", "graph_key"]

E = TypeVar("E")


class GraphCache(Generic[E]):
    """At most ``capacity`` entries by key, least recently used evicted first.

    ``captures`` counts entries made, ``evictions`` entries dropped, ``hits`` lookups
    served from the cache. An entry is inserted only once its capture returned, so a
    capture that raises leaves the cache and the counters as they were.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"graph cache capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.captures = self.evictions = self.hits = 0
        self._entries: OrderedDict[Hashable, E] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> list[Hashable]:
        """The cached keys, least recently used first."""
        return list(self._entries)

    def get(self, key: Hashable, capture: Callable[[], E]) -> E:
        """The entry of ``key``, made by ``capture()`` when it is not cached.

        The least recently used entries are dropped after the capture, not before: a
        CUDA graph capture synchronises the device on entry, so no replay of a dropped
        graph can still be running when it is released.
        """
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            self.hits += 1
            return entry
        entry = capture()
        self.captures += 1
        self._entries[key] = entry
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
            self.evictions += 1
        return entry


def graph_key(x: torch.Tensor, kwargs: dict) -> tuple:
    """What a captured graph is specific to: the input's shape and dtype, the shapes and
    dtypes of tensor keyword arguments (graph inputs like ``x``) and the values of the
    others (e.g. ``estimate_fov``, which changes the graph's kernels)."""
    tensors = sorted((k, tuple(v.shape), v.dtype) for k, v in kwargs.items()
                     if isinstance(v, torch.Tensor))
    others = sorted((k, v) for k, v in kwargs.items() if not isinstance(v, torch.Tensor))
    return (tuple(x.shape), x.dtype, *tensors, *others)


class GraphedNetwork:
    """Replays ``network`` (eager or ``torch.compile``\\ d) as CUDA graphs on ``device``.

    At most ``capacity`` graphs are kept (:class:`GraphCache`). Each capture runs on this
    object's side stream of ``device`` (never the stream of whichever device is current:
    a second engine on another GPU captures on its own), after two warm-up calls there
    that compile, pick kernels and fill the allocator outside the capture. The capture
    mode is ``thread_local`` so that another engine's thread in the process may keep
    working while this one captures.
    """

    def __init__(self, network: Callable, device: torch.device, capacity: int) -> None:
        self.network = network
        self.device = device
        self.cache: GraphCache[tuple] = GraphCache(capacity)
        self._stream: torch.cuda.Stream | None = None  # made at the first capture
        self._pool = None

    def __call__(self, x: torch.Tensor, **kwargs):
        graph, static_in, static_kw, static_out = self.cache.get(
            graph_key(x, kwargs), lambda: self._capture(x, kwargs))
        static_in.copy_(x)
        for k, v in kwargs.items():
            if isinstance(v, torch.Tensor):
                static_kw[k].copy_(v)
        graph.replay()
        return static_out

    def _capture(self, x: torch.Tensor, kwargs: dict) -> tuple:
        if self._stream is None:
            self._stream = torch.cuda.Stream(self.device)
            self._pool = torch.cuda.graph_pool_handle()
        side = self._stream
        caller = torch.cuda.current_stream(self.device)
        static_in = x.clone()
        static_kw = {k: v.clone() if isinstance(v, torch.Tensor) else v
                     for k, v in kwargs.items()}
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.device(self.device):
            side.wait_stream(caller)  # the clones above are queued on the caller's stream
            with torch.cuda.stream(side):
                for _ in range(2):
                    self.network(static_in, **static_kw)
            with torch.cuda.graph(graph, pool=self._pool, stream=side,
                                  capture_error_mode="thread_local"):
                static_out = self.network(static_in, **static_kw)
            caller.wait_stream(side)
        return graph, static_in, static_kw, static_out
