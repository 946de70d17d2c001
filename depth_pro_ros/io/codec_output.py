"""Run a codec call with what it prints to stderr captured instead of printed.

libjpeg ("Corrupt JPEG data: ..."), libpng ("libpng warning/error: ...") and OpenCV's own
log ("[ WARN:0@...] ... imdecode_(): can't read ...") write straight to file descriptor
2, once per bad image, which floods a robot's console. :func:`captured` points fd 2 at
an unlinked temporary file for the duration of the call (one dup and two dup2 calls;
the file is only read and emptied when something was written) and returns the text.

fd 2 is shared by the whole process: calls are serialised by a lock, and whatever
another thread writes to fd 2 during a call (a few milliseconds per image) is captured
with it and handed over too, so it is rerouted, not lost.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["captured"]

_MAX_BYTES = 64 * 1024  # read back at most this much per call
_MAX_LINES = 20
_MAX_LINE = 300

_lock = threading.Lock()
_sink: tuple[int, int] | None = None  # (pid, fd): a forked child makes its own file
# OpenCV's log prefix "[ WARN:0@0.039] global " -> "OpenCV WARN: "
_CV_PREFIX = re.compile(r"^\[\s*([A-Z]+):\d+@[\d.]+\]\s*(?:global\s+)?")


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # a thread of the parent may have held it


os.register_at_fork(after_in_child=_after_fork_in_child)


def _sink_fd() -> int:
    global _sink
    if _sink is None or _sink[0] != os.getpid():
        with tempfile.TemporaryFile() as f:  # already unlinked
            _sink = (os.getpid(), os.dup(f.fileno()))
    return _sink[1]


def _lines(raw: bytes) -> list[str]:
    lines = [_CV_PREFIX.sub(r"OpenCV \1: ", line.strip())
             for line in raw.decode("utf-8", "replace").splitlines()]
    lines = [line[:_MAX_LINE] for line in lines if line]
    if len(lines) > _MAX_LINES:
        lines = lines[:_MAX_LINES] + [f"... {len(lines) - _MAX_LINES} more lines"]
    return lines


def captured(fn: Callable[..., Any], *args: Any) -> tuple[Any, BaseException | None, list[str]]:
    """``fn(*args)`` with fd 2 captured: ``(result, exception or None, printed lines)``.

    The exception ``fn`` raised (if any) is returned, not raised, so the caller can
    report the captured lines with it. When fd 2 is closed, ``fn`` runs uncaptured.
    """
    with _lock:
        sink = _sink_fd()
        try:
            saved = os.dup(2)
        except OSError:
            saved = -1
        result, error = None, None
        try:
            if saved >= 0:
                os.dup2(sink, 2)
            result = fn(*args)
        except Exception as exc:  # noqa: BLE001 - handed to the caller
            error = exc
        finally:
            if saved >= 0:
                os.dup2(saved, 2)
                os.close(saved)
        size = os.lseek(sink, 0, os.SEEK_CUR)  # writes through fd 2 moved the shared offset
        raw = b""
        if size:
            raw = os.pread(sink, min(size, _MAX_BYTES), 0)
            os.ftruncate(sink, 0)
            os.lseek(sink, 0, os.SEEK_SET)
    return result, error, _lines(raw)
