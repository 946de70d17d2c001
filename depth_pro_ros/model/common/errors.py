"""The errors the model package raises."""

from __future__ import annotations

__all__ = ["CheckpointError", "ConfigLimitError"]


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file and the problem."""


class ConfigLimitError(ValueError):
    """A config value of the wrong type or beyond the sizes any real network has (a
    hostile or damaged checkpoint config); raised before anything is built. The message
    names the field, its value and the limit."""

    def __init__(self, field: str, value: object, limit: str) -> None:
        shown = repr(value)
        shown = shown if len(shown) <= 40 else shown[:40] + "..."
        super().__init__(f"{field} = {shown}: {limit}")
        self.field, self.value, self.limit = field, value, limit
