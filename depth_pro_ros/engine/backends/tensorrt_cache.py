"""TensorRT engines kept on disk: what an engine is specific to, and its file.

A TensorRT engine (a serialized "plan") only runs on the GPU model and TensorRT version
it was built with, for the input shapes of its optimization profile, and a build takes
from seconds (the small Depth Anything) to minutes (the full Depth Pro). So the
:mod:`.tensorrt_backend` keeps each plan it builds, and ``depth-pro-ros export --format
tensorrt`` builds them ahead of time: a robot's first frame then waits for nothing.

An entry is named by the SHA-256 of its :class:`EngineKey` - the exported file's own
SHA-256 (its metadata names the source checkpoint's, so this names the weights too), the
GPU's name and compute capability, the TensorRT version, the precision and the input
shapes with the largest batch - under ``$DEPTH_PRO_ROS_CACHE/tensorrt/`` (the gate
cache's root). Any change gives another name, so a new GPU, driver stack or model gets a
new build, never a stale one. The file is a small header (magic, the key, the plan's
length and SHA-256) and the plan; it is written under a temporary name and renamed into
place, so a half-written file never looks complete, and one that fails any check (a
copy cut short, a flipped bit, a key that is not its name's) is reported once and built
again. This module is bytes and JSON alone: no TensorRT, no GPU.
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
from dataclasses import asdict, dataclass
from pathlib import Path

from depth_pro_ros.engine.backends.gate_cache import cache_dir, write_atomic

__all__ = ["FORMAT", "MAGIC", "EngineKey", "engine_path", "read_engine", "write_engine"]

MAGIC = b"DPRTRT\x00\x01"  # this project's TensorRT cache entry, layout 1
FORMAT = 1  # bump when the build settings change what a plan holds
_LENGTH = struct.Struct("<I")  # the header's byte length, after the magic
_MAX_HEADER = 1 << 16

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineKey:
    """Everything a built plan is specific to (see the module docstring).

    ``shapes`` maps each network input to its shape without the batch axis (e.g.
    ``image: (3, 518, 686)``); ``max_batch`` is the optimization profile's largest batch.
    """

    model_sha256: str
    gpu: str
    compute_capability: str  # "8.7", "9.0"
    tensorrt: str  # tensorrt.__version__
    precision: str  # fp32 / fp16 / bf16
    shapes: tuple[tuple[str, tuple[int, ...]], ...]
    max_batch: int
    format: int = FORMAT

    def to_json(self) -> dict:
        """The key as JSON values (lists for tuples)."""
        data = asdict(self)
        data["shapes"] = [[name, list(shape)] for name, shape in self.shapes]
        return data

    def digest(self) -> str:
        """SHA-256 of the key's canonical JSON: the entry's name."""
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def engine_path(key: EngineKey) -> Path:
    """Where the plan of ``key`` is kept."""
    return cache_dir() / "tensorrt" / f"{key.digest()}.engine"


def write_engine(path: Path, key: EngineKey, plan: bytes) -> None:
    """Keep ``plan`` (built for ``key``) at ``path`` (see :func:`write_atomic`).

    Raises:
        OSError: the cache cannot be written.
    """
    plan = bytes(plan)
    header = json.dumps({"key": key.to_json(), "size": len(plan),
                         "sha256": hashlib.sha256(plan).hexdigest()}).encode()
    write_atomic(path, [MAGIC, _LENGTH.pack(len(header)), header, plan])


def read_engine(path: Path, key: EngineKey) -> bytes | None:
    """The plan kept at ``path`` for ``key``, or None: absent (silently), or unreadable,
    cut short, damaged or made for another key (a warning; the caller builds again and
    overwrites it)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return _unusable(path, f"cannot be read: {exc.strerror or exc}")
    start = len(MAGIC) + _LENGTH.size
    if len(data) < start or not data.startswith(MAGIC):
        return _unusable(path, "is not a TensorRT cache entry of this project")
    (length,) = _LENGTH.unpack_from(data, len(MAGIC))
    if length > _MAX_HEADER or len(data) < start + length:
        return _unusable(path, "has a damaged header")
    try:
        header = json.loads(data[start:start + length])
        size, digest, stored = int(header["size"]), str(header["sha256"]), header["key"]
    except (ValueError, TypeError, KeyError):
        return _unusable(path, "has a damaged header")
    if stored != key.to_json():
        return _unusable(path, "was built for other settings than its name says")
    plan = data[start + length:]
    if len(plan) != size:
        return _unusable(path, f"holds {len(plan):,} bytes of a {size:,}-byte engine "
                               "(cut short)")
    if hashlib.sha256(plan).hexdigest() != digest:
        return _unusable(path, "does not match its checksum (damaged)")
    return plan


def _unusable(path: Path, problem: str) -> None:
    _log.warning("TensorRT engine cache: %s %s; building the engine again", path, problem)
    return None
