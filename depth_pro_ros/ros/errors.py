"""The errors the ROS layer raises."""

from __future__ import annotations

__all__ = ["StartupError"]


class StartupError(RuntimeError):
    """The node cannot start (bad parameter, checkpoint or device); the text says why."""
