"""The errors the model package raises."""

from __future__ import annotations

__all__ = ["CheckpointError"]


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file and the problem."""
