"""Malformed camera messages, for checking that a consumer survives them (fuzzing).

:class:`MalformedMessages` yields :class:`Case` objects: a named kind of bad input and
the one or more messages that make it up, as ROS-free field dicts (the same shape the
``*_fields`` functions of :mod:`depth_pro_ros.io.messages` produce). :func:`build` turns
a :class:`Message` into a real message of any ROS Python binding. Both
``bench/fuzz_node.py`` and the node's CI test (``test/ros/test_node_fuzz.py``) drive
``depth_pro_node`` with it.

Everything is drawn from a ``numpy.random.Generator``: the same seed gives the same
messages. Kinds come in shuffled rounds, so any ``len(kinds)`` consecutive cases of a
transport hold every kind once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from harness.bombs import encode, header_bombs

__all__ = ["Case", "MalformedMessages", "Message", "build", "TRANSPORTS", "UINT32_MAX"]

TRANSPORTS = ("raw", "compressed")
UINT32_MAX = 2**32 - 1
INT32_MAX = 2**31 - 1
#: Width and height that a header bomb declares: 1.6 GP, far above any sane limit.
BOMB_SIDE = 40_000
#: Size of the valid frames and of the camera they claim to come from.
VALID_W, VALID_H = 64, 48
VALID_FX = 50.0


@dataclass(frozen=True)
class Message:
    """One message: ``topic`` is ``image``, ``compressed`` or ``camera_info``."""

    topic: str
    fields: Mapping[str, Any]
    stamp: tuple[int, int] = (0, 0)
    frame_id: str = "fuzz_optical"


@dataclass(frozen=True)
class Case:
    """A kind of input and its messages, to be published in order.

    ``expect_depth``: a depth image stamped like the last message must come back (the
    valid frames); malformed cases expect nothing in particular, only that the
    consumer lives on.
    """

    kind: str
    messages: tuple[Message, ...]
    expect_depth: bool = False
    stamp: tuple[int, int] = field(default=(0, 0))


def build(message: Message, classes: Mapping[str, type]) -> Any:
    """``message`` as an instance of ``classes[message.topic]`` (e.g. rclpy's Image)."""
    msg = classes[message.topic]()
    for name, value in message.fields.items():
        setattr(msg, name, value)
    msg.header.stamp.sec, msg.header.stamp.nanosec = message.stamp
    msg.header.frame_id = message.frame_id
    return msg


def _picture(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A blocky random H x W x 3 uint8 picture (compresses like a camera frame)."""
    cells = rng.integers(0, 256, ((h + 7) // 8, (w + 7) // 8, 3), dtype=np.uint8)
    return np.ascontiguousarray(np.kron(cells, np.ones((8, 8, 1), np.uint8))[:h, :w])


def _raw(encoding: str, h: int, w: int, step: int, data: bytes, bigendian: int = 0) -> dict:
    return {"encoding": encoding, "height": h, "width": w, "step": step, "data": data,
            "is_bigendian": bigendian}


# ----------------------------------------------------------------- the generator


class MalformedMessages:
    """Seeded source of malformed image and CameraInfo messages, and of valid frames.

    ``max_input_pixels`` is the consumer's limit; the over-limit cases declare a few
    pixels more than that (keep it small, a few MP, so that they stay cheap to send).
    """

    def __init__(self, seed: int = 0, max_input_pixels: int = 2_000_000) -> None:
        self.rng = np.random.default_rng(seed)
        self.max_input_pixels = int(max_input_pixels)
        self._seq = 0
        pic = _picture(VALID_H, VALID_W, self.rng)
        self._bgr = pic
        self._jpeg = encode(".jpg", pic, cv2.IMWRITE_JPEG_QUALITY, 90)
        self._png = encode(".png", pic)
        self._bombs = header_bombs(BOMB_SIDE)
        # One row of (limit // row + 1) rows: just over the limit, mostly zeros.
        over_h = self.max_input_pixels // VALID_W + 1
        self._over_png = encode(".png", np.zeros((over_h, VALID_W, 3), np.uint8))
        self._cases: dict[str, dict[str, Callable[[], list[Message]]]] = {
            "raw": {**self._raw_cases(), **self._info_cases("raw")},
            "compressed": {**self._compressed_cases(), **self._info_cases("compressed")},
        }
        self._rounds: dict[str, list[str]] = {t: [] for t in TRANSPORTS}

    def kinds(self, transport: str) -> list[str]:
        """Every kind of malformed case of a transport, sorted."""
        return sorted(self._cases[transport])

    def next_stamp(self) -> tuple[int, int]:
        """A fresh stamp, unique within this generator (later than the previous)."""
        self._seq += 1
        return 1_000_000 + self._seq, 500_000_000

    # ------------------------------------------------------------- public cases
    def malformed(self, transport: str) -> Case:
        """The next malformed case of ``transport`` (``raw`` or ``compressed``)."""
        queue = self._rounds[transport]
        if not queue:
            queue.extend(str(k) for k in self.rng.permutation(self.kinds(transport)))
        kind = queue.pop()
        return Case(kind, tuple(self._cases[transport][kind]()))

    def stream(self, transport: str) -> Iterator[Case]:
        while True:
            yield self.malformed(transport)

    def valid(self, transport: str) -> Case:
        """A good CameraInfo then a good 64 x 48 frame of the same stamp, which must be
        served: the CameraInfo replaces whatever odd one the fuzzing left behind."""
        stamp = self.next_stamp()
        info = Message("camera_info", self._camera_info(VALID_W, VALID_H, VALID_FX), stamp)
        return Case("valid", (info, self.valid_image(transport, stamp)), True, stamp)

    def valid_image(self, transport: str, stamp: tuple[int, int]) -> Message:
        if transport == "compressed":
            return Message("compressed", {"format": "png", "data": self._png}, stamp)
        return Message("image", _raw("bgr8", VALID_H, VALID_W, 3 * VALID_W,
                                     self._bgr.tobytes()), stamp)

    def camera_info_then_image(self, transport: str, info_w: int, info_h: int,
                               fx: float, kind: str) -> Case:
        """A CameraInfo for ``info_w`` x ``info_h`` with focal ``fx``, then a valid
        64 x 48 frame (consumers must skip it when the two do not fit)."""
        stamp = self.next_stamp()
        info = Message("camera_info", self._camera_info(info_w, info_h, fx), stamp)
        return Case(kind, (info, self.valid_image(transport, stamp)), False, stamp)

    # ------------------------------------------------------------- helpers
    def _image(self, fields: dict) -> list[Message]:
        return [Message("image", fields, self.next_stamp())]

    def _compressed(self, data: bytes, fmt: str = "jpeg") -> list[Message]:
        return [Message("compressed", {"format": fmt, "data": data}, self.next_stamp())]

    def _with_info(self, w: int, h: int, messages: list[Message]) -> list[Message]:
        """``messages`` after a CameraInfo of their stamp for a ``w`` x ``h`` camera."""
        info = Message("camera_info", self._camera_info(w, h, max(w, h) * 0.8),
                       messages[0].stamp)
        return [info, *messages]

    def _noise(self, low: int, high: int) -> bytes:
        return self.rng.bytes(int(self.rng.integers(low, high)))

    def _garbage_text(self, length: int) -> str:
        codes = self.rng.integers(1, 0x2FF, length)
        return "".join(chr(int(c)) for c in codes)

    @staticmethod
    def _camera_info(w: int, h: int, fx: float, fy: float | None = None) -> dict:
        fy = fx if fy is None else fy
        return {"width": w, "height": h, "distortion_model": "plumb_bob",
                "k": [fx, 0.0, w / 2, 0.0, fy, h / 2, 0.0, 0.0, 1.0],
                "d": [0.0] * 5, "r": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                "p": [fx, 0.0, w / 2, 0.0, 0.0, fy, h / 2, 0.0, 0.0, 0.0, 1.0, 0.0]}

    # ------------------------------------------------------------- raw Image
    def _raw_cases(self) -> dict[str, Callable[[], list[Message]]]:
        w, h = VALID_W, VALID_H
        rgb = self._bgr.tobytes()
        rng = self.rng

        def img(encoding: str, hh: int, ww: int, step: int, data: bytes, big: int = 0):
            return lambda: self._image(_raw(encoding, hh, ww, step, data, big))

        def sized(encoding: str, hh: int, ww: int, step: int, data: bytes):
            # Valid pixels of an odd size, with a CameraInfo of that size, so that they
            # get past the size check and through the network and the outputs.
            return lambda: self._with_info(ww, hh, self._image(_raw(encoding, hh, ww, step,
                                                                    data)))

        over_w = self.max_input_pixels // h + 1
        cases = {
            "enc_unknown": lambda: self._image(_raw(
                "fuzz_" + "".join(chr(97 + int(d)) for d in rng.integers(0, 26, 6)),
                h, w, 3 * w, rgb)),
            "enc_empty": img("", h, w, 3 * w, rgb),
            "enc_garbage_text": lambda: self._image(_raw(self._garbage_text(40), h, w, 3 * w,
                                                         rgb)),
            "enc_very_long": img("rgb8" * 5000, h, w, 3 * w, rgb),
            "enc_numeric_like": img("8UC4", h, w, 4 * w, bytes(4 * w * h)),
            "enc_float": img("32FC1", h, w, 4 * w, bytes(4 * w * h)),
            "step_smaller_than_row": img("rgb8", h, w, 3 * w - 1, rgb),
            "step_zero": img("rgb8", h, w, 0, rgb),
            "step_uint32_max": img("rgb8", h, w, UINT32_MAX, rgb),
            "step_padded_data_short": img("rgb8", h, w, 3 * w + 16, rgb),
            "height_too_big_for_data": img("rgb8", 2 * h, w, 3 * w, rgb),
            "width_too_big_for_data": img("rgb8", h, 2 * w, 6 * w, rgb),
            "zero_width": img("rgb8", h, 0, 0, rgb),
            "zero_height": img("rgb8", 0, w, 3 * w, rgb),
            "zero_size_no_data": img("rgb8", 0, 0, 0, b""),
            "width_uint32_max": img("rgb8", h, UINT32_MAX, 3 * w, rgb),
            "height_uint32_max": img("mono8", UINT32_MAX, w, w, rgb),
            "both_uint32_max": img("rgb8", UINT32_MAX, UINT32_MAX, UINT32_MAX, rgb),
            "data_empty": img("rgb8", h, w, 3 * w, b""),
            "data_one_byte_short": img("rgb8", h, w, 3 * w, rgb[:-1]),
            "data_one_byte": img("rgb8", h, w, 3 * w, b"\x00"),
            "data_too_long": img("rgb8", h, w, 3 * w, rgb + bytes(1000)),
            "mono16_8bit_data": img("mono16", h, w, 2 * w, bytes(w * h)),
            "rgb16_step_of_8bit": img("rgb16", h, w, 3 * w, rgb),
            "bgra16_short": img("bgra16", h, w, 8 * w, bytes(8 * w * h - 2), 1),
            "mono8_short": img("mono8", h, w, w, bytes(w * h - 1)),
            "bgra8_step_of_bgr8": img("bgra8", h, w, 3 * w, rgb),
            "rgba8_short": img("rgba8", h, w, 4 * w, rgb),
            "bayer_1x1": sized("bayer_rggb8", 1, 1, 1, b"\x80"),
            "bayer_1xN": sized("bayer_grbg8", 1, w, w, bytes(w)),
            "bayer_odd_3x3": sized("bayer_bggr8", 3, 3, 3, bytes(range(9))),
            "bayer16_short": img("bayer_gbrg16", h, w, 2 * w, bytes(w * h)),
            "yuv422_odd_width": img("yuv422", h, w - 1, 2 * (w - 1), bytes(2 * (w - 1) * h)),
            "yuv422_2x1": sized("yuv422", 1, 2, 4, b"\x80\x10\x80\x10"),
            "yuyv_short": img("yuv422_yuy2", h, w, 2 * w, bytes(w * h)),
            "uyvy_step_odd": img("uyvy", h, w, 2 * w + 1, bytes((2 * w + 1) * h)),
            "bigendian_on_8bit": img("rgb8", h, w, 3 * w, rgb, 1),
            "bigendian_255_mono16": img("mono16", h, w, 2 * w, bytes(2 * w * h), 255),
            "one_pixel": sized("rgb8", 1, 1, 3, b"\x10\x20\x30"),
            "one_row_wide": sized("rgb8", 1, 4000, 12000, bytes(12000)),
            "one_column_tall": sized("mono8", 4000, 1, 1, bytes(4000)),
            "over_max_input_pixels": img("mono8", h, over_w, over_w, bytes(over_w * h)),
            "over_max_input_pixels_no_data": img("rgb8", h, over_w, 3 * over_w, b""),
            "random_fields": lambda: self._image(_raw(
                str(rng.choice(["rgb8", "mono16", "bayer_rggb8", "yuv422", "bgra8", "x"])),
                int(rng.integers(0, 300)), int(rng.integers(0, 300)),
                int(rng.integers(0, 1200)), self._noise(0, 4000), int(rng.integers(0, 2)))),
            "stamp_far_future": lambda: [Message("image", _raw("bgr8", h, w, 3 * w, rgb),
                                                 (INT32_MAX, 999_999_999))],
            "stamp_far_past": lambda: [Message("image", _raw("bgr8", h, w, 3 * w, rgb),
                                               (-(2**31), 0))],
            "stamp_nanosec_overflow": lambda: [Message("image", _raw("bgr8", h, w, 3 * w, rgb),
                                                       (5, UINT32_MAX))],
            "frame_id_garbage": lambda: [Message("image", _raw("bgr8", h, w, 3 * w, rgb),
                                                 self.next_stamp(),
                                                 self._garbage_text(2000))],
        }
        return cases

    # ------------------------------------------------------------- CompressedImage
    def _compressed_cases(self) -> dict[str, Callable[[], list[Message]]]:
        rng = self.rng
        jpeg, png = self._jpeg, self._png

        def cut(data: bytes) -> bytes:
            return data[: int(rng.integers(1, len(data)))]

        def flip(data: bytes) -> bytes:
            out = bytearray(data)
            for i in rng.integers(0, len(out), int(rng.integers(1, 12))):
                out[i] ^= 1 << int(rng.integers(8))
            return bytes(out)

        def bomb(name: str, fmt: str):
            return lambda: self._compressed(self._bombs[name], fmt)

        one = np.full((1, 1, 3), 128, np.uint8)
        cases = {
            "empty_jpeg": lambda: self._compressed(b"", "jpeg"),
            "empty_no_format": lambda: self._compressed(b"", ""),
            "random_bytes": lambda: self._compressed(self._noise(1, 3000), "jpeg"),
            "random_bytes_png": lambda: self._compressed(self._noise(1, 3000), "png"),
            "jpeg_magic_then_noise": lambda: self._compressed(
                b"\xff\xd8\xff" + self._noise(0, 500), "jpeg"),
            "png_magic_then_noise": lambda: self._compressed(png[:16] + self._noise(0, 500),
                                                             "png"),
            "jpeg_truncated": lambda: self._compressed(cut(jpeg), "jpeg"),
            "png_truncated": lambda: self._compressed(cut(png), "png"),
            "jpeg_bit_flips": lambda: self._compressed(flip(jpeg), "jpeg"),
            "png_bit_flips": lambda: self._compressed(flip(png), "png"),
            "bomb_png": bomb("png", "png"),
            "bomb_jpeg": bomb("jpeg", "jpeg"),
            "bomb_pnm": bomb("pnm", "jpeg"),
            "bomb_pgm_comment": bomb("pgm_comment", "png"),
            "bomb_tiff": bomb("tiff", "tiff"),
            "bomb_bmp": bomb("bmp", "bmp"),
            "bomb_webp": bomb("webp", "webp"),
            "format_lies_png_as_jpeg": lambda: self._compressed(png, "jpeg"),
            "format_lies_jpeg_as_png": lambda: self._compressed(jpeg, "png"),
            "format_garbage": lambda: self._compressed(jpeg, self._garbage_text(300)),
            "format_compressed_depth": lambda: self._compressed(png, "16UC1; compressedDepth"),
            "format_rgb8_jpeg_compressed": lambda: self._compressed(
                jpeg, "rgb8; jpeg compressed bgr8"),
            "one_pixel_jpeg": lambda: self._with_info(1, 1, self._compressed(
                encode(".jpg", one), "jpeg")),
            "one_pixel_png": lambda: self._with_info(1, 1, self._compressed(
                encode(".png", one), "png")),
            "one_row_png": lambda: self._with_info(3000, 1, self._compressed(
                encode(".png", np.zeros((1, 3000), np.uint8)), "png")),
            "png_16bit": lambda: self._compressed(
                encode(".png", self._bgr.astype(np.uint16) * 257), "png"),
            "png_rgba": lambda: self._compressed(
                encode(".png", cv2.cvtColor(self._bgr, cv2.COLOR_BGR2BGRA)), "png"),
            "jpeg_grey": lambda: self._compressed(
                encode(".jpg", self._bgr[..., 0].copy()), "jpeg"),
            "over_max_input_pixels": lambda: self._compressed(self._over_png, "png"),
            "stamp_far_future": lambda: [Message("compressed", {"format": "png", "data": png},
                                                 (INT32_MAX, 999_999_999))],
        }
        return cases

    # ------------------------------------------------------------- CameraInfo
    def _info_cases(self, transport: str) -> dict[str, Callable[[], list[Message]]]:
        w, h = VALID_W, VALID_H
        good = self._camera_info

        def info(fields: dict, stamp: tuple[int, int] | None = None):
            return lambda: [Message("camera_info", fields, stamp or self.next_stamp())]

        def changed(**fields: Any) -> dict:
            return {**good(w, h, VALID_FX), **fields}

        nan, inf = float("nan"), float("inf")

        def then_image(info_w: int, info_h: int, fx: float, kind: str):
            return lambda: list(self.camera_info_then_image(
                transport, info_w, info_h, fx, kind).messages)

        return {
            "info_k_zeros": info(changed(k=[0.0] * 9)),
            "info_k_nan": info(changed(k=[nan] * 9)),
            "info_k_inf": info(changed(k=[inf, 0.0, 32.0, 0.0, inf, 24.0, 0.0, 0.0, 1.0])),
            "info_negative_focal": info(good(w, h, -50.0)),
            "info_focal_x_only": info(changed(k=[50.0, 0, 32.0, 0, 0.0, 24.0, 0, 0, 1.0])),
            "info_principal_point_outside": info(changed(
                k=[50.0, 0, -1e9, 0, 50.0, 1e9, 0, 0, 1.0])),
            "info_k22_zero": info(changed(k=[50.0, 0, 32.0, 0, 50.0, 24.0, 0, 0, 0.0])),
            # ROS 2 K, R and P are fixed-size arrays: rclpy pads or cuts them to 9 / 12
            # on the wire; D is the only list whose length a sender controls.
            "info_k_too_short": info(changed(k=[50.0] * 8)),
            "info_k_too_long": info(changed(k=[50.0] * 12)),
            "info_r_p_nan": info(changed(r=[nan] * 9, p=[nan] * 12)),
            "info_d_empty": info(changed(d=[])),
            "info_d_huge": info(changed(d=[1e308] * 1000)),
            "info_distortion_garbage": info(changed(distortion_model=self._garbage_text(200))),
            "info_zero_width": info(good(0, h, VALID_FX)),
            "info_zero_height": info(good(w, 0, VALID_FX)),
            "info_size_uint32_max": info(good(UINT32_MAX, UINT32_MAX, VALID_FX)),
            "info_binning_max": info(changed(binning_x=UINT32_MAX, binning_y=UINT32_MAX)),
            "info_stamp_far_future": info(good(w, h, VALID_FX), (INT32_MAX, 999_999_999)),
            "info_stamp_far_past": info(good(w, h, VALID_FX), (-(2**31), 0)),
            "info_stamp_nanosec_overflow": info(good(w, h, VALID_FX), (7, UINT32_MAX)),
            # A CameraInfo valid at its own size, then an image it does not fit: skipped.
            "info_other_aspect_then_image": then_image(640, 640, 400.0,
                                                       "info_other_aspect_then_image"),
            "info_tiny_focal_then_half_size_image": then_image(
                2 * w, 2 * h, 5e-324, "info_tiny_focal_then_half_size_image"),
            "info_huge_focal_then_double_size_image": then_image(
                w // 2, h // 2, 1.5e308, "info_huge_focal_then_double_size_image"),
        }
