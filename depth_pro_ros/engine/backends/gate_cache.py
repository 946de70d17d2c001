"""fp32 gate references of torch checkpoints, kept on disk between starts.

A reduced-precision torch engine (fp16 / bf16, the default on CUDA) is gated against the
same checkpoint in fp32 (:mod:`.gate`). Computing that reference means loading the
checkpoint a second time in fp32 and running it: seconds of start-up and, for the full
Depth Pro, about twice the weights' memory for a moment - on an 8 GB robot GPU the
difference between starting and not. The reference depends only on the checkpoint, the
model type and the input size, so it is computed once and read back afterwards.

Entries live in ``$DEPTH_PRO_ROS_CACHE`` (default ``~/.cache/depth_pro_ros``) under
``gate/``, named by a hash of the checkpoint's resolved path, size and modification time
(of every file of a folder checkpoint) and those settings: a replaced checkpoint gets a
new entry. A missing, unreadable or malformed entry is recomputed; a cache that cannot be
written is skipped (the gate still runs).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

from depth_pro_ros.engine.backends.gate import GateReference
from depth_pro_ros.model.weights import checkpoint_files

__all__ = ["CACHE_ENV", "cache_dir", "entry_path", "read_entry", "write_atomic",
           "write_entry"]

CACHE_ENV = "DEPTH_PRO_ROS_CACHE"
_FORMAT = 1  # bump when the gate images, pooling or outputs change

_log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """``$DEPTH_PRO_ROS_CACHE`` when set, else ``~/.cache/depth_pro_ros``."""
    return Path(os.environ.get(CACHE_ENV) or "~/.cache/depth_pro_ros").expanduser()


def entry_path(checkpoint: str | Path, model_type: str | None,
               input_size: int) -> Path | None:
    """Where the reference of ``checkpoint`` (as it is on disk now) is kept; None when
    the checkpoint cannot be looked at (the loader then says why)."""
    try:
        path = Path(checkpoint).expanduser().resolve()
        stats = [(str(p), p.stat().st_size, p.stat().st_mtime_ns)
                 for p in checkpoint_files(path)]
    except OSError:
        return None
    key = json.dumps([_FORMAT, stats, model_type or "auto", input_size])
    return cache_dir() / "gate" / f"{hashlib.sha256(key.encode()).hexdigest()}.json"


def read_entry(entry: Path) -> GateReference | None:
    """The reference kept at ``entry``, or None (absent, unreadable or malformed)."""
    try:
        return GateReference.from_json(json.loads(entry.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        _log.warning("accuracy gate: ignoring the cached reference %s (%s); recomputing",
                     entry, exc)
        return None


def write_atomic(path: Path, data: bytes | list[bytes]) -> None:
    """Write ``data`` (parts joined) to ``path`` whole or not at all: a temporary file
    beside it, flushed to disk, then renamed over ``path`` (the caches' one way to write).

    Raises:
        OSError: the folder cannot be made or written; nothing is left behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            for part in data if isinstance(data, list) else [data]:
                f.write(part)
            f.flush()
            os.fsync(f.fileno())  # a power cut after the rename keeps the whole file
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_entry(entry: Path, reference: GateReference) -> None:
    """Keep ``reference`` at ``entry`` (written whole or not at all; errors only logged)."""
    try:
        write_atomic(entry, json.dumps(reference.to_json()).encode())
    except OSError as exc:
        _log.info("accuracy gate: reference not cached (%s); it is computed at each start",
                  exc)
