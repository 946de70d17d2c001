"""The bytes of tensors alive during a forward pass, counted op by op (a torch dispatch
mode), and where they peaked. On the ``meta`` device nothing is computed, so the
activation peak of a released-size network at its real resolution is known in a second
and is the same on every machine (it counts tensors, not allocator pages)."""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

__all__ = ["LiveBytes"]


def _key(t: torch.Tensor) -> int:
    return t.untyped_storage()._cdata  # the storage's identity: views share it


@dataclass
class LiveBytes(TorchDispatchMode):
    """``with LiveBytes(model) as live: model(x)``; then ``live.peak`` (bytes) is the most
    held at once by tensors the ops made (not the weights nor the inputs), and
    ``live.where`` the module that was running then."""

    model: nn.Module
    peak: int = 0
    where: str = ""
    _now: int = 0
    _storages: dict[int, list[int]] = field(default_factory=dict)  # key: [bytes, tensors]
    _modules: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()
        self._hooks = []
        for name, module in self.model.named_modules():
            self._hooks.append(module.register_forward_pre_hook(
                lambda _m, _a, n=name: self._modules.append(n)))
            self._hooks.append(module.register_forward_hook(self._leave))

    def __exit__(self, *exc) -> None:
        super().__exit__(*exc)
        for hook in self._hooks:
            hook.remove()

    def _leave(self, _module: nn.Module, _args: object, _out: object) -> None:
        self._modules.pop()  # returns None: the module's output stays as it is

    def _release(self, key: int) -> None:
        entry = self._storages.get(key)
        if entry is not None:
            entry[1] -= 1
            if entry[1] == 0:
                self._now -= entry[0]
                del self._storages[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        given = {_key(t) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor):
                continue
            key = _key(t)
            if key not in self._storages:
                if key in given:  # a view or in-place result of a weight or an input
                    continue
                nbytes = t.untyped_storage().nbytes()
                self._storages[key] = [nbytes, 0]
                self._now += nbytes
            self._storages[key][1] += 1
            weakref.finalize(t, self._release, key)
        if self._now > self.peak:
            self.peak = self._now
            self.where = self._modules[-1] if self._modules else ""
        return out
