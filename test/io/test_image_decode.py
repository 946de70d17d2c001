"""depth_pro_ros.io.image_decode against malicious and malformed input.

Image bombs (tiny files whose header declares a huge image) are built byte by byte or by
patching the size fields of small files OpenCV encoded. Every bomb must be refused from
its header, before OpenCV decodes anything; codec chatter must never reach fd 2.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import threading
import time
import zlib
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from harness.memory import traced_peak
from message_factories import rclpy_message, rosbags_message, smooth_rgb
from rosbags.typesys import Stores, get_typestore

from depth_pro_ros.io.image_decode import (
    DEFAULT_MAX_INPUT_PIXELS,
    SUPPORTED_FORMATS,
    ImageDecodeError,
    ImageTooLargeError,
    compressed_to_array,
    declared_size,
    image_to_array,
)
from depth_pro_ros.io.image_files import read_rgb

sensor_msgs = pytest.importorskip("sensor_msgs.msg")

TS = get_typestore(getattr(Stores, "ROS2_KILTED", Stores.LATEST))
BACKENDS = ("rclpy", "rosbags")
ROOT = Path(__file__).resolve().parents[2]
RGB = smooth_rgb(48, 64)
BGR = np.ascontiguousarray(RGB[..., ::-1])
BIG = 40_000  # 40000 x 40000 = 1.6e9 pixels: past OpenCV's own 2**30 limit too


def compressed(payload: bytes, backend: str = "rosbags", fmt: str = "jpeg"):
    """A real sensor_msgs/CompressedImage holding ``payload``."""
    fields = {"format": fmt, "data": np.frombuffer(bytes(payload), np.uint8)}
    if backend == "rclpy":
        return rclpy_message(sensor_msgs.CompressedImage, fields)
    return rosbags_message(TS, "sensor_msgs/msg/CompressedImage", fields)


def encode(ext: str, img: np.ndarray, params: tuple = ()) -> bytes:
    ok, buf = cv2.imencode(ext, img, list(params))
    assert ok
    return buf.tobytes()


def refused(payload: bytes, **kwargs) -> ImageDecodeError:
    with pytest.raises(ImageDecodeError) as info:
        compressed_to_array(compressed(payload), **kwargs)
    return info.value


# -------------------------------------------------------------- tiny bombs, by format


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(w: int, h: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + png_chunk(b"IEND", b""))


def jpeg_with_size(w: int, h: int, garbage: bytes = b"") -> bytes:
    """A real 8 x 8 JPEG (about 600 bytes) whose SOF0 says ``w`` x ``h``."""
    data = bytearray(encode(".jpg", BGR[:8, :8]))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, h, w)
    return bytes(data[:sof] + garbage + data[sof:])


def tiff_bomb(w: int, h: int, order: str = "<", big: bool = False) -> bytes:
    tags = [(256, 4, w), (257, 4, h), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, 0),
            (277, 3, 1), (278, 4, h), (279, 4, 16)]
    mark = b"II" if order == "<" else b"MM"
    if big:
        head = mark + struct.pack(order + "HHHQ", 43, 8, 0, 16)
        ifd = struct.pack(order + "Q", len(tags)) + b"".join(
            struct.pack(order + "HHQ", t, 16 if typ == 4 else typ, 1)
            + struct.pack(order + ("Q" if typ == 4 else "H"), v).ljust(8, b"\0")
            for t, typ, v in tags) + struct.pack(order + "Q", 0)
    else:
        head = mark + struct.pack(order + "HI", 42, 8)
        ifd = struct.pack(order + "H", len(tags)) + b"".join(
            struct.pack(order + "HHI", t, typ, 1)
            + struct.pack(order + ("I" if typ == 4 else "H"), v).ljust(4, b"\0")
            for t, typ, v in tags) + struct.pack(order + "I", 0)
    return head + ifd + bytes(16)


def bmp_bomb(w: int, h: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, w, -h, 1, 24, 0, 0, 0, 0, 0, 0)
    return b"BM" + struct.pack("<IHHI", 70, 0, 0, 54) + info + bytes(16)


def webp_vp8l(w: int, h: int) -> bytes:
    bits = (w - 1) | ((h - 1) << 14)
    chunk = b"VP8L" + struct.pack("<I", 5) + b"\x2f" + struct.pack("<I", bits) + b"\0"
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def webp_vp8x(w: int, h: int) -> bytes:
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\0" * 4 + (w - 1).to_bytes(3, "little") \
        + (h - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x


def j2k_bomb(w: int, h: int, tile: int | None = None, comps: int = 3) -> bytes:
    tile = tile or w
    siz = struct.pack(">HIIIIIIIIH", 0, w, h, 0, 0, tile, tile, 0, 0, comps)
    siz += b"\x07\x01\x01" * comps
    return b"\xff\x4f\xff\x51" + struct.pack(">H", len(siz) + 2) + siz + b"\xff\xd9"


def jp2_with(code: bytes, ihdr_size: tuple[int, int]) -> bytes:
    def box(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload) + 8) + kind + payload
    ihdr = box(b"ihdr", struct.pack(">IIHBBBB", ihdr_size[1], ihdr_size[0], 3, 7, 7, 0, 0))
    return (b"\x00\x00\x00\x0cjP  \r\n\x87\n" + box(b"ftyp", b"jp2 \0\0\0\0jp2 ")
            + box(b"jp2h", ihdr) + box(b"jp2c", code))


BOMBS = {
    "pnm_repro": b"P6\n40000 40000\n255\n" + bytes(16),
    "pgm_comments": b"P5\n# made by a fuzzer\n40000 # width\n 40000\n255\n" + bytes(16),
    "pam": b"P7\nWIDTH 40000\nHEIGHT 40000\nDEPTH 3\nMAXVAL 255\nTUPLTYPE RGB\nENDHDR\n"
           + bytes(16),
    "pfm": b"PF\n40000 40000\n-1.0\n" + bytes(16),
    "png": png_bomb(BIG, BIG),
    "jpeg": jpeg_with_size(BIG, BIG),
    "jpeg_fill_and_garbage": jpeg_with_size(BIG, BIG, garbage=b"junk\xff\x00\xff\xd3\xff\xff"),
    "tiff_le": tiff_bomb(BIG, BIG, "<"),
    "tiff_be": tiff_bomb(BIG, BIG, ">"),
    "bigtiff": tiff_bomb(BIG, BIG, "<", big=True),
    "bmp": bmp_bomb(BIG, BIG),
    "gif": b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\0\0\0" + bytes(16),
    "webp_vp8l": webp_vp8l(16384, 16384),
    "webp_vp8x": webp_vp8x(BIG, BIG),
    "webp_raw_vp8l": b"\x2f" + struct.pack("<I", 16383 | (16383 << 14)) + bytes(40),
    "j2k": j2k_bomb(BIG, BIG),
    "jp2_codestream": jp2_with(j2k_bomb(BIG, BIG), (64, 48)),
    "hdr": b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 40000 +X 40000\n" + bytes(16),
    "sun_raster": struct.pack(">8I", 0x59A66A95, BIG, BIG, 24, 0, 1, 0, 0) + bytes(16),
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_tiny_bombs_are_refused_from_the_header(name):
    payload = BOMBS[name]
    assert len(payload) < 700
    assert declared_size(np.frombuffer(payload, np.uint8)) is not None
    width, height = declared_size(payload)
    assert width * height > DEFAULT_MAX_INPUT_PIXELS
    w = []
    t0 = time.perf_counter()
    err = refused(payload, warnings=w)
    assert isinstance(err, ImageTooLargeError) and err.kind == "too_large"
    assert (err.width, err.height, err.limit) == (width, height, DEFAULT_MAX_INPUT_PIXELS)
    text = str(err)
    assert f"{width} x {height}" in text and "50,000,000" in text
    assert "max_input_pixels" in text and "--max-input-pixels" in text
    assert w == []  # OpenCV never ran
    assert time.perf_counter() - t0 < 1.0


def test_the_fuzzing_repro_raises_image_decode_error_not_cv2_error(capfd):
    msg = SimpleNamespace(format="pnm", data=np.frombuffer(BOMBS["pnm_repro"], np.uint8))
    with pytest.raises(ImageDecodeError) as info:
        compressed_to_array(msg)
    assert info.value.kind == "too_large"
    # Without a limit OpenCV refuses it itself (its 2**30 pixel cap): still ours.
    with pytest.raises(ImageDecodeError) as info:
        compressed_to_array(msg, max_pixels=None)
    assert info.value.kind == "undecodable" and "PNM" in str(info.value)
    assert not isinstance(info.value, ImageTooLargeError)
    os.write(2, b"stderr restored after the OpenCV exception\n")
    assert capfd.readouterr().err == "stderr restored after the OpenCV exception\n"


def test_image_decode_error_is_a_value_error_with_a_kind():
    err = ImageDecodeError("x")
    assert isinstance(err, ValueError) and err.kind == "undecodable"
    assert ImageDecodeError("x", kind="empty").kind == "empty"
    assert issubclass(ImageTooLargeError, ImageDecodeError)


_BOMB_SCRIPT = textwrap.dedent("""
    import json, sys
    from types import SimpleNamespace
    import numpy as np
    from depth_pro_ros.io.image_decode import ImageDecodeError, compressed_to_array
    payload = open(sys.argv[1], "rb").read()
    msg = SimpleNamespace(format="jpeg", data=np.frombuffer(payload, np.uint8))
    def rss():  # peak resident MB of this process image (C allocations included)
        status = open("/proc/self/status").read().split("VmHWM:")[1]
        return int(status.split()[0]) / 1024
    out, start = {}, rss()
    try:
        compressed_to_array(msg)
    except ImageDecodeError as exc:
        out["kind"] = exc.kind
    out["refused_mb"] = rss() - start
    warnings = []
    pixels, _ = compressed_to_array(msg, max_pixels=None, warnings=warnings)
    out["decoded_mb"], out["shape"], out["warnings"] = rss() - start, pixels.shape, warnings
    print(json.dumps(out))
""")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")
def test_a_600_byte_8000x8000_jpeg_is_refused_before_decoding(tmp_path):
    """Peak RSS (C allocations included) of a fresh process around the refusal.

    VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent (here the
    test runner, often bigger than the whole bomb), VmHWM starts afresh at exec.

    The same process then decodes the bomb without a limit: that is what the refusal
    avoided (a 192 MB image; libjpeg warns that the data ran out, and the refusal
    produced no warning because libjpeg never ran).
    """
    bomb = jpeg_with_size(8000, 8000)
    assert len(bomb) < 700
    (tmp_path / "bomb.jpg").write_bytes(bomb)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-c", _BOMB_SCRIPT, str(tmp_path / "bomb.jpg")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["kind"] == "too_large"
    assert out["refused_mb"] < 20
    assert out["shape"] == [8000, 8000, 3] and out["decoded_mb"] > 100
    assert any("Corrupt JPEG data" in w for w in out["warnings"])
    assert run.stderr == ""


@pytest.mark.parametrize("backend", BACKENDS)
def test_raw_image_declaring_too_many_pixels_is_refused_without_allocating(backend):
    fields = {"height": 100_000, "width": 100_000, "encoding": "rgb8", "is_bigendian": 0,
              "step": 300_000, "data": np.arange(10, dtype=np.uint8)}
    msg = (rclpy_message(sensor_msgs.Image, fields) if backend == "rclpy"
           else rosbags_message(TS, "sensor_msgs/msg/Image", fields))
    with traced_peak() as peak, pytest.raises(ImageTooLargeError) as info:
        image_to_array(msg)
    assert info.value.kind == "too_large" and peak.bytes < 1_000_000
    assert "100000 x 100000" in str(info.value) and "'rgb8'" in str(info.value)
    # Without a limit the layout check still refuses it, before any reshape.
    with pytest.raises(ImageDecodeError) as info:
        image_to_array(msg, max_pixels=None)
    assert info.value.kind == "too_short"


def test_raw_image_limit_is_inclusive_and_optional():
    fields = {"height": 24, "width": 32, "encoding": "rgb8", "is_bigendian": 0, "step": 96,
              "data": RGB.reshape(-1)}
    msg = rosbags_message(TS, "sensor_msgs/msg/Image", fields)
    assert image_to_array(msg, max_pixels=24 * 32)[0].shape == (24, 32, 3)
    assert image_to_array(msg, max_pixels=None)[0].shape == (24, 32, 3)
    with pytest.raises(ImageTooLargeError):
        image_to_array(msg, max_pixels=24 * 32 - 1)


@pytest.mark.parametrize("kind,fields", [
    ("unsupported_encoding", {"encoding": "weird9"}),
    ("zero_size", {"width": 0}),
    ("bad_step", {"step": 10}),
    ("too_short", {"data": RGB.reshape(-1)[:100]}),
    ("odd_width", {"encoding": "yuv422", "width": 31, "step": 62}),
])
def test_raw_image_error_kinds(kind, fields):
    base = {"height": 24, "width": 32, "encoding": "rgb8", "is_bigendian": 0, "step": 96,
            "data": RGB.reshape(-1)}
    with pytest.raises(ImageDecodeError) as info:
        image_to_array(rosbags_message(TS, "sensor_msgs/msg/Image", {**base, **fields}))
    assert info.value.kind == kind


def test_sender_strings_are_cut_short_in_messages():
    base = {"height": 24, "width": 32, "encoding": "x" * 100_000, "is_bigendian": 0,
            "step": 96, "data": RGB.reshape(-1)}
    with pytest.raises(ImageDecodeError) as info:
        image_to_array(rosbags_message(TS, "sensor_msgs/msg/Image", base))
    assert info.value.kind == "unsupported_encoding" and len(str(info.value)) < 1000
    with pytest.raises(ImageDecodeError) as info:
        compressed_to_array(compressed(b"\x00not a picture", fmt="y" * 100_000))
    assert info.value.kind == "unknown_format" and len(str(info.value)) < 1000


# ------------------------------------------------------------- formats and sizes


def _round_trips():
    """(name, encoded bytes, expected BGR/mono uint8, tolerance on the mean abs error).

    Lossless codecs must give the pixels back exactly (tolerance 0); float ones lose
    at most the 8-bit rounding; lossy ones the codec's error on a smooth picture.
    """
    gray = np.ascontiguousarray(BGR[..., 1])
    bgra = np.dstack([BGR, np.full(BGR.shape[:2], 77, np.uint8)])
    wide = BGR.astype(np.uint16) * 257
    as_float = BGR.astype(np.float32) / 255
    return [
        ("jpeg", encode(".jpg", BGR, (cv2.IMWRITE_JPEG_QUALITY, 95)), BGR, 3.0),
        ("jpeg progressive", encode(".jpg", BGR, (cv2.IMWRITE_JPEG_PROGRESSIVE, 1)), BGR, 3.0),
        ("jpeg grey", encode(".jpg", gray, (cv2.IMWRITE_JPEG_QUALITY, 95)), gray, 3.0),
        ("png", encode(".png", BGR), BGR, 0),
        ("png grey", encode(".png", gray), gray, 0),
        ("png alpha", encode(".png", bgra), BGR, 0),
        ("png 16-bit", encode(".png", wide), BGR, 0),
        ("webp lossy", encode(".webp", BGR, (cv2.IMWRITE_WEBP_QUALITY, 95)), BGR, 3.0),
        ("webp lossless", encode(".webp", bgra, (cv2.IMWRITE_WEBP_QUALITY, 101)), BGR, 0),
        ("avif", encode(".avif", BGR, (cv2.IMWRITE_AVIF_QUALITY, 100)), BGR, 1.0),
        ("avif 10-bit", encode(".avif", BGR.astype(np.uint16) * 4,
                               (cv2.IMWRITE_AVIF_DEPTH, 10, cv2.IMWRITE_AVIF_QUALITY, 100)),
         BGR, 1.0),
        ("tiff", encode(".tiff", BGR), BGR, 0),
        ("tiff 16-bit", encode(".tiff", wide), BGR, 0),
        ("tiff float", encode(".tiff", as_float), BGR, 0),
        ("bmp", encode(".bmp", BGR), BGR, 0),
        ("ppm", encode(".ppm", BGR), BGR, 0),
        ("pgm", encode(".pgm", gray), gray, 0),
        ("pbm", encode(".pbm", np.where(gray > 128, 255, 0).astype(np.uint8)),
         np.where(gray > 128, 255, 0).astype(np.uint8), 0),
        ("pam", encode(".pam", BGR), BGR, 0),
        ("pfm", encode(".pfm", as_float), BGR, 0),
        ("jpeg 2000", encode(".jp2", BGR), BGR, 0),
        ("jpeg 2000 16-bit", encode(".jp2", wide), BGR, 0),
        ("gif", encode(".gif", BGR), BGR, 25.0),  # OpenCV's encoder: a coarse fixed palette
        ("hdr", encode(".hdr", as_float), BGR, 1.5),
        ("sun raster", encode(".ras", BGR), BGR, 0),
    ]


@pytest.mark.parametrize("case", _round_trips(), ids=lambda c: c[0])
def test_every_format_opencv_encodes_round_trips_and_its_size_is_read(case, capfd):
    name, payload, expected, tolerance = case
    assert declared_size(payload) == (64, 48)
    w = []
    pixels, order = compressed_to_array(compressed(payload), warnings=w)
    assert pixels.dtype == np.uint8 and pixels.shape == expected.shape
    assert order == ("mono" if expected.ndim == 2 else "bgr")
    err = np.abs(pixels.astype(int) - expected.astype(int))
    assert err.mean() <= tolerance, (name, err.mean())
    if tolerance == 0:
        np.testing.assert_array_equal(pixels, expected)
    assert w == [] and capfd.readouterr().err == ""


def test_supported_formats_are_listed_in_unknown_format_errors():
    err = refused(b"this is not a picture at all")
    assert err.kind == "unknown_format" and "could not be decoded" in str(err)
    for fmt in SUPPORTED_FORMATS:
        assert fmt in str(err)
    assert declared_size(b"this is not a picture at all") is None


@pytest.mark.parametrize("payload", [
    b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",  # a JPEG cut before its frame header
    b"\xff\xd8\xff\xda\x00\x08",  # a scan before any frame header
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00",  # IHDR cut short
    b"II*\x00\xff\xff\x00\x00",  # TIFF directory outside the data
    b"RIFF\x10\x00\x00\x00WEBPVP8 \x04\x00\x00\x00",  # no frame header
    b"P6\n64 # no height\n",
    b"P6\n64 x 48\n255\n",  # not a number where a number must be
    b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n+Y 48 -X 64\n",  # orientation OpenCV refuses
], ids=lambda p: p[:12].hex())
def test_headers_without_a_readable_size_are_refused(payload):
    err = refused(payload)
    assert err.kind == "unknown_format" and "truncated or damaged" in str(err)
    assert declared_size(payload) is None


def test_jpeg_scan_skips_fill_bytes_garbage_and_standalone_markers(capfd):
    plain = encode(".jpg", BGR, (cv2.IMWRITE_JPEG_QUALITY, 95))
    sof = plain.index(b"\xff\xc0")
    messy = plain[:sof] + b"\x00garbage\xff\x00\xff\xd0\xff\xff\xff" + plain[sof:]
    assert declared_size(messy) == (64, 48)
    w = []
    pixels, _ = compressed_to_array(compressed(messy), warnings=w)  # libjpeg copes too
    assert np.abs(pixels.astype(int) - BGR.astype(int)).mean() < 3
    assert any("Corrupt JPEG data" in line for line in w)
    assert capfd.readouterr().err == ""


def test_a_payload_read_differently_by_two_decoders_is_judged_by_the_larger_reading():
    # "BM" + a BMP core header saying 1 x 1, and a raw VP8 key frame saying 16383 x 16383.
    both = bytearray(64)
    both[0:2] = b"BM"
    both[3:6] = b"\x9d\x01\x2a"
    struct.pack_into("<HH", both, 6, 16383, 16383)
    struct.pack_into("<IHH", both, 14, 12, 1, 1)
    assert declared_size(bytes(both)) == (16383, 16383)
    assert refused(bytes(both)).kind == "too_large"


def test_avif_size_comes_from_the_av1_sequence_header_not_only_ispe():
    """OpenCV (libavif + libaom) decodes the AV1 frame whatever the ispe box says."""
    data = bytearray(encode(".avif", cv2.resize(BGR, (256, 192))))
    assert declared_size(bytes(data)) == (256, 192)
    ispe = data.index(b"ispe")
    struct.pack_into(">II", data, ispe + 8, 16, 12)  # the box now claims 16 x 12
    assert declared_size(bytes(data)) == (256, 192)
    err = refused(bytes(data), max_pixels=16 * 12 * 4)
    assert err.kind == "too_large" and "256 x 192" in str(err)


def test_jpeg2000_tiles_and_sample_counts_are_bounded():
    assert refused(j2k_bomb(255, 256, tile=1)).kind == "too_complex"  # 65,280 tiles
    assert refused(j2k_bomb(64, 48, comps=16)).kind == "bad_channels"
    pam = b"P7\nWIDTH 64\nHEIGHT 48\nDEPTH 500\nMAXVAL 255\nENDHDR\n" + bytes(64)
    assert refused(pam).kind == "bad_channels"
    jp2 = jp2_with(j2k_bomb(64, 48), (BIG, BIG))  # the ihdr box counts as well
    assert refused(jp2).kind == "too_large"


def test_png_chunk_longer_than_the_data_is_refused_before_opencv_allocates_it():
    """OpenCV's PNG reader zero-fills each chunk's declared length before reading it."""
    data = bytearray(encode(".png", BGR))
    idat = data.index(b"IDAT") - 4
    struct.pack_into(">I", data, idat, 2_342_915_611)  # found by fuzzing: 2.3 GB, 5 s
    w = []
    err = refused(bytes(data), warnings=w)
    assert err.kind == "undecodable" and w == []
    assert "'IDAT' declares 2,342,915,611 bytes" in str(err)
    assert declared_size(bytes(data)) == (64, 48)  # the size itself is readable


def test_unscaled_samples_are_stretched_to_the_full_range():
    pgm = b"P5\n2 1\n100\n" + bytes([100, 50])
    pixels, _ = compressed_to_array(compressed(pgm))
    np.testing.assert_array_equal(pixels, [[255, 128]])
    pgm16 = b"P5\n2 1\n1023\n" + np.array([1023, 512], ">u2").tobytes()
    pixels, _ = compressed_to_array(compressed(pgm16))
    np.testing.assert_array_equal(pixels, [[255, 128]])


def test_limit_none_and_exact_limit():
    payload = encode(".png", BGR)
    assert compressed_to_array(compressed(payload), max_pixels=64 * 48)[0].shape == (48, 64, 3)
    assert compressed_to_array(compressed(payload), max_pixels=None)[0].shape == (48, 64, 3)
    assert refused(payload, max_pixels=64 * 48 - 1).kind == "too_large"


@pytest.mark.parametrize("backend", BACKENDS)
def test_compressed_error_kinds(backend):
    def kind(payload: bytes, fmt: str = "jpeg") -> str:
        with pytest.raises(ImageDecodeError) as info:
            compressed_to_array(compressed(payload, backend, fmt))
        return info.value.kind

    png = encode(".png", BGR)
    assert kind(b"") == "empty"
    assert kind(png, "16UC1; compressedDepth png") == "depth_transport"
    assert kind(b"\x00not a picture") == "unknown_format"
    assert kind(png_bomb(0, 48)) == "zero_size"
    assert kind(png[:200]) == "undecodable"  # header fine, image data cut off
    assert kind(encode(".bmp", BGR)[:200]) == "undecodable"


# ------------------------------------------------------------- codec output on fd 2


def test_codec_warnings_are_handed_over_and_never_printed(capfd):
    jpeg = encode(".jpg", BGR, (cv2.IMWRITE_JPEG_QUALITY, 95))
    sof = jpeg.index(b"\xff\xc0")
    jpeg = jpeg[:sof] + b"\x00garbage" + jpeg[sof:]  # libjpeg skips it, with a warning
    png = bytearray(encode(".png", BGR))
    png[60] ^= 0x55  # inside IDAT
    bmp = encode(".bmp", BGR)[:200]  # header fine, pixel rows cut off

    w: list[str] = []
    pixels, _ = compressed_to_array(compressed(bytes(jpeg)), warnings=w)  # still decodes
    assert pixels.shape == (48, 64, 3)
    assert any(line.startswith("Corrupt JPEG data") for line in w), w
    w.clear()
    with pytest.raises(ImageDecodeError) as info:
        compressed_to_array(compressed(bytes(png)), warnings=w)
    assert any(line.startswith("libpng error: IDAT") for line in w), w
    assert str(info.value).endswith(w[-1])  # the last line is the reason in the error
    w.clear()
    with pytest.raises(ImageDecodeError):
        compressed_to_array(compressed(bmp), warnings=w)
    assert any(line.startswith("OpenCV ") for line in w), w  # OpenCV's own log
    assert not any(line.startswith("[") for line in w)  # its timestamp prefix is gone
    # Without a list the warnings are dropped, still not printed.
    compressed_to_array(compressed(bytes(jpeg)))
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""
    os.write(2, b"fd 2 is back\n")  # and stderr works again afterwards
    assert capfd.readouterr().err == "fd 2 is back\n"


def test_concurrent_decodes_keep_their_own_warnings(capfd):
    """fd 2 is process-wide: the module lock keeps one decode's output out of another's."""
    big = cv2.resize(BGR, (640, 480))  # a few ms per decode: the calls overlap
    jpeg = encode(".jpg", big, (cv2.IMWRITE_JPEG_QUALITY, 95))
    sof = jpeg.index(b"\xff\xc0")
    noisy = compressed(jpeg[:sof] + b"\x00garbage" + jpeg[sof:])
    clean = compressed(jpeg)
    results: list[tuple[bool, list[str]]] = []

    def work(i: int) -> None:
        for j in range(15):
            w: list[str] = []
            is_noisy = (i + j) % 2 == 0
            compressed_to_array(noisy if is_noisy else clean, warnings=w)
            results.append((is_noisy, w))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 60
    for is_noisy, w in results:
        assert len(w) == (1 if is_noisy else 0) and all("Corrupt JPEG data" in x for x in w)
    assert capfd.readouterr().err == ""


def _mutations(rng: np.random.Generator, seeds: list[bytes], count: int) -> list[bytes]:
    out = []
    for _ in range(count):
        data = bytearray(seeds[rng.integers(len(seeds))])
        for _ in range(rng.integers(1, 4)):
            op = rng.integers(5) if len(data) > 16 else 4
            if op == 0:  # bit flips
                for i in rng.integers(0, len(data), rng.integers(1, 10)):
                    data[i] ^= 1 << int(rng.integers(8))
            elif op == 1:  # truncation
                data = data[:rng.integers(0, len(data))]
            elif op == 2:  # a header size field overwritten with a large number
                at = int(rng.integers(0, min(64, len(data) - 4)))
                data[at:at + 4] = struct.pack(">I", int(rng.integers(2**16, 2**32)))
            elif op == 3:  # random bytes
                for i in rng.integers(0, len(data), rng.integers(1, 20)):
                    data[i] = int(rng.integers(256))
            else:  # a format's first bytes followed by noise
                head = seeds[rng.integers(len(seeds))][:int(rng.integers(0, 16))]
                data = bytearray(head + rng.bytes(int(rng.integers(0, 200))))
        out.append(bytes(data))
    return out


def test_fuzzed_payloads_raise_only_image_decode_error_and_print_nothing(capfd):
    rng = np.random.default_rng(20240607)
    seeds = [encode(ext, BGR) for ext in
             (".jpg", ".png", ".webp", ".tiff", ".bmp", ".ppm", ".pam", ".jp2", ".gif",
              ".avif", ".ras")] + [encode(".pgm", np.ascontiguousarray(BGR[..., 0]))]
    kinds: dict[str, int] = {}
    warned = 0
    t0 = time.perf_counter()
    for payload in _mutations(rng, seeds, 400):
        w: list[str] = []
        try:
            pixels, _ = compressed_to_array(compressed(payload), max_pixels=4_000_000, warnings=w)
            kinds["ok"] = kinds.get("ok", 0) + 1
            assert pixels.dtype == np.uint8
        except ImageDecodeError as exc:
            kinds[exc.kind] = kinds.get(exc.kind, 0) + 1
        warned += bool(w)
    assert time.perf_counter() - t0 < 120
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""
    # The mutations reach every stage: decoded, refused by size, header, and codec.
    assert {"ok", "too_large", "unknown_format", "undecodable"} <= kinds.keys(), kinds
    assert warned > 10


# --------------------------------------------------------------------- photo files


def test_photo_files_are_checked_the_same_way(tmp_path):
    path = tmp_path / "bomb.jpg"
    path.write_bytes(jpeg_with_size(8000, 8000))
    with pytest.raises(ImageTooLargeError) as info:
        read_rgb(path)
    assert str(path) in str(info.value) and "8000 x 8000" in str(info.value)
    ok = tmp_path / "ok.png"
    ok.write_bytes(encode(".png", BGR))
    np.testing.assert_array_equal(read_rgb(ok), RGB)
    with pytest.raises(ImageTooLargeError):
        read_rgb(ok, max_pixels=100)


def _jpeg_variant(name: str, w: int = 8000, h: int = 8000) -> bytes:
    """The issue's 8000 x 8000 JPEG bomb in the shapes a header reader can miss: another
    frame type (progressive SOF2, extended SOF1, lossless SOF3, arithmetic SOF9), the frame
    header after an EXIF orientation segment or after a 60 kB APP segment."""
    params = (cv2.IMWRITE_JPEG_PROGRESSIVE, 1) if name == "progressive" else ()
    data = bytearray(encode(".jpg", BGR[:8, :8], params))
    sof = next(i for i in range(len(data) - 1) if data[i] == 0xFF
               and data[i + 1] in (0xC0, 0xC2))
    struct.pack_into(">HH", data, sof + 5, h, w)
    marker = {"sof1": 0xC1, "sof3": 0xC3, "sof9": 0xC9}.get(name)
    if marker:
        data[sof + 1] = marker
    segment = b""
    if name == "exif_orientation":  # APP1 Exif, big-endian TIFF, Orientation = 6
        exif = (b"Exif\0\0MM\0\x2a\0\0\0\x08\0\x01" + struct.pack(">HHIHH", 0x112, 3, 1, 6, 0)
                + bytes(4))
        segment = b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif
    elif name == "app_60k":
        segment = b"\xff\xe2" + struct.pack(">H", 60_000) + bytes(59_998)
    return bytes(data[:2] + segment + data[2:])


@pytest.mark.parametrize("name", ["progressive", "sof1", "sof3", "sof9", "exif_orientation",
                                  "app_60k"])
def test_jpeg_bombs_of_every_frame_type_cost_nothing(name):
    """Refused from the header whatever the frame type or what precedes the frame header:
    the decode call allocates a few times the payload, never the 64 MP it declares."""
    payload = _jpeg_variant(name)
    with traced_peak() as peak:
        err = refused(payload)
    assert isinstance(err, ImageTooLargeError) and (err.width, err.height) == (8000, 8000)
    assert peak.bytes < 4 * len(payload) + 64_000, peak.bytes
