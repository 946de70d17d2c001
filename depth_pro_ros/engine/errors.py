"""The engine's own errors.

Each also derives from the built-in exception callers caught before the engine had its
own (``RuntimeError`` for a closed engine, ``ValueError`` for unusable input), so
existing ``except`` clauses keep working.
"""

from __future__ import annotations

__all__ = ["AccuracyGateError", "BackendUnavailableError", "EngineClosedError",
           "EngineError", "ExportError", "FrameInputError", "UnknownBackendError",
           "UnsupportedPrecisionError"]


class EngineError(Exception):
    """Base of the errors the engine raises itself."""


class EngineClosedError(EngineError, RuntimeError):
    """A frame was submitted to an engine that is closed (or closing)."""


class FrameInputError(EngineError, ValueError):
    """A frame lacks what the model needs (prompt depth, known intrinsics) or is malformed.

    Raised on the worker it fails only that frame's batch (the frames' ``error``)."""


class UnknownBackendError(EngineError, ValueError):
    """An inference backend name that is not in the backend table."""


class UnsupportedPrecisionError(EngineError, ValueError):
    """A precision the device cannot run (bf16 on a GPU without bf16 support)."""


class BackendUnavailableError(EngineError, ValueError):
    """A backend that cannot run here: its runtime is not installed, or it cannot run the
    checkpoint given (a torch backend for an ONNX file, a CUDA device without the CUDA
    execution provider). The message says what to install or choose instead."""


class AccuracyGateError(EngineError, ValueError):
    """A backend whose outputs on the gate images differ from fp32 torch by more than its
    limit; the message gives the measured figure and the limit."""


class ExportError(EngineError, ValueError):
    """An export that cannot be made or whose result fails its own check; nothing was
    written."""
