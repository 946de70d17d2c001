"""Errors of the bag tool; each carries the exit status the command returns for it."""

from __future__ import annotations


class BagError(Exception):
    """A problem that stops the bag tool, reported in one line. ``exit_code`` 1 or 2."""

    exit_code = 1


class BagInputError(BagError):
    """Bad input or options: unreadable bag, missing topic, existing output ... (exit 1)."""


class BagOutputError(BagError):
    """The output cannot be written: full disk, quota, read-only filesystem ... (exit 1);
    nothing is left at OUTPUT."""


class BagDataError(BagError):
    """A message that cannot be processed under ``--strict`` (exit 1)."""


class BagSetupError(BagError):
    """The checkpoint or the device cannot be used (exit 2, as for ``image``)."""

    exit_code = 2


def describe_exception(exc: BaseException, limit: int = 240) -> str:
    """``cv2.error: text`` on one line, at most ``limit`` characters of text: the type's
    module says where an unexpected error came from."""
    kind = type(exc)
    name = kind.__qualname__ if kind.__module__ in ("builtins", "__main__") \
        else f"{kind.__module__}.{kind.__qualname__}"
    text = " ".join(str(exc).split()) or "no message"
    return f"{name}: {text if len(text) <= limit else text[: limit - 3] + '...'}"
