"""The errors the stream layer raises (what the node and the bag tool catch)."""

from __future__ import annotations

__all__ = ["FrameSkipped", "RigConfigError"]


class FrameSkipped(ValueError):
    """An image cannot be processed. ``reason`` is a short counter key, the text says why.

    ``kind`` is finer than ``reason`` (for decode failures the ``ImageDecodeError.kind``,
    e.g. ``unsupported_encoding``); a log-throttle key. It defaults to ``reason``.
    """

    def __init__(self, message: str, reason: str, kind: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.kind = kind if kind is not None else reason


class RigConfigError(ValueError):
    """A rig's configuration (``rig_extrinsics`` file) that cannot be used; the text names
    the file and the camera."""
