"""Input transports: how an image message of each type becomes pixels.

:data:`INPUT_TRANSPORTS` is the one table, keyed by message type: the node subscribes
with it (``input_transport`` names a row by its :class:`Transport`), the bag tool
recognises image topics with it, and :class:`~depth_pro_ros.stream.camera.CameraStream`
decodes with it. A new transport is one row here and one decoder in ``io/``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from depth_pro_ros.io.image_decode import compressed_to_array, image_to_array

__all__ = ["INPUT_TRANSPORTS", "InputTransport", "Transport", "transport_of"]

# (message, max_input_pixels or None, codec warnings out) -> (pixels, channel order)
Decoder = Callable[[Any, "int | None", "list[str]"], "tuple[np.ndarray, str]"]


class Transport(str, Enum):
    """The name of an input transport (the node's ``input_transport`` values)."""

    RAW = "raw"
    COMPRESSED = "compressed"


@dataclass(frozen=True)
class InputTransport:
    """One row: the transport's name, message type, topic and decoder.

    ``suffix`` is what image_transport appends to the camera's base topic (``image`` ->
    ``image/compressed``); the node's input topic is ``image`` plus it, and the bag tool
    strips it to find a topic's camera namespace.
    """

    transport: Transport
    msgtype: str
    suffix: str
    decode: Decoder

    @property
    def topic(self) -> str:
        """The node's relative input topic."""
        return f"image/{self.suffix}" if self.suffix else "image"


def _raw(msg: Any, limit: int | None, warnings: list[str]) -> tuple[np.ndarray, str]:
    return image_to_array(msg, limit)  # raw images print no codec warnings


#: Message type -> input transport.
INPUT_TRANSPORTS: dict[str, InputTransport] = {row.msgtype: row for row in (
    InputTransport(Transport.RAW, "sensor_msgs/msg/Image", "", _raw),
    InputTransport(Transport.COMPRESSED, "sensor_msgs/msg/CompressedImage", "compressed",
                   compressed_to_array),
)}


def transport_of(transport: Transport | str) -> InputTransport:
    """The row of ``transport`` (a :class:`Transport` or its value)."""
    wanted = Transport(transport)
    return next(row for row in INPUT_TRANSPORTS.values() if row.transport is wanted)
