"""depth_pro_ros.io.image_files: reading photos, writing depth results (real files)."""

import os
import struct
import zlib

import cv2
import numpy as np
import pytest
from harness.memory import traced_peak

from depth_pro_ros.io.image_files import (
    InputFiles,
    depth_to_millimetres,
    read_prompt_depth,
    read_rgb,
    write_depth_outputs,
    write_relative_outputs,
)


def _pattern(h: int = 24, w: int = 32) -> np.ndarray:
    """A deterministic RGB uint8 test pattern with distinct channels."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(x * 8) % 256, (y * 10) % 256, ((x + y) * 5) % 256], -1).astype(np.uint8)


def _write(path, img) -> None:
    assert cv2.imwrite(str(path), img)


def test_png_rgb_round_trip_is_exact(tmp_path):
    rgb = _pattern()
    _write(tmp_path / "a.png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    out = read_rgb(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (24, 32, 3)
    assert out.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(out, rgb)


def test_jpeg_channels_are_rgb(tmp_path):
    rgb = np.zeros((32, 48, 3), np.uint8)
    rgb[..., 0] = 220  # pure-ish red in RGB
    _write(tmp_path / "red.jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    out = read_rgb(str(tmp_path / "red.jpg"))  # str paths work too
    assert out.shape == (32, 48, 3)
    assert out[..., 0].mean() > 200 and out[..., 2].mean() < 20


def test_bundled_sample_image_reads():
    from pathlib import Path

    sample = Path(__file__).resolve().parents[2] / "depth_pro_ros" / "bag" / "data" / "sample.jpg"
    assert read_rgb(sample).shape == (480, 640, 3)


def test_grayscale_is_replicated(tmp_path):
    gray = _pattern()[..., 1]
    _write(tmp_path / "g.png", gray)
    out = read_rgb(tmp_path / "g.png")
    assert out.shape == (24, 32, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)


def test_16bit_colour_is_scaled_to_8bit(tmp_path):
    rgb8 = _pattern()
    rgb16 = rgb8.astype(np.uint16) * 257  # exact 8 -> 16 bit expansion
    rgb16[0, 0] = (65535, 128, 0)
    _write(tmp_path / "c16.png", cv2.cvtColor(rgb16, cv2.COLOR_RGB2BGR))
    out = read_rgb(tmp_path / "c16.png")
    assert out.dtype == np.uint8
    expected = rgb8.copy()
    expected[0, 0] = (255, 0, 0)  # 128/257 rounds to 0
    np.testing.assert_array_equal(out, expected)


def test_16bit_grayscale(tmp_path):
    gray16 = _pattern()[..., 0].astype(np.uint16) * 257
    _write(tmp_path / "g16.png", gray16)
    out = read_rgb(tmp_path / "g16.png")
    np.testing.assert_array_equal(out[..., 2], _pattern()[..., 0])


def test_alpha_is_composited_over_black(tmp_path):
    rgb = np.full((4, 5, 3), (200, 100, 50), np.uint8)
    alpha = np.full((4, 5), 255, np.uint8)
    alpha[0] = 0
    alpha[1] = 128
    bgra = np.dstack([cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), alpha])
    _write(tmp_path / "rgba.png", bgra)
    out = read_rgb(tmp_path / "rgba.png")
    assert out.shape == (4, 5, 3)
    np.testing.assert_array_equal(out[0], 0)
    half = np.round(np.array([200, 100, 50]) * 128 / 255)
    np.testing.assert_array_equal(out[1], np.broadcast_to(half, out[1].shape))
    np.testing.assert_array_equal(out[2:], rgb[2:])


def test_16bit_alpha(tmp_path):
    bgra = np.zeros((3, 3, 4), np.uint16)
    bgra[..., 2] = 65535  # red
    bgra[..., 3] = 65535
    _write(tmp_path / "rgba16.png", bgra)
    out = read_rgb(tmp_path / "rgba16.png")
    np.testing.assert_array_equal(out[..., 0], 255)
    np.testing.assert_array_equal(out[..., 1:], 0)


def _exif_orientation_segment(orientation: int) -> bytes:
    """An APP1 EXIF segment holding only an Orientation tag (little-endian TIFF)."""
    ifd = struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)
    ifd += struct.pack("<I", 0)
    tiff = b"II*\x00" + struct.pack("<I", 8) + ifd
    payload = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def test_jpeg_exif_orientation_is_applied(tmp_path):
    ok, enc = cv2.imencode(".jpg", np.zeros((20, 40, 3), np.uint8))
    assert ok
    data = enc.tobytes()
    rotated = data[:2] + _exif_orientation_segment(6) + data[2:]  # 6 = rotate 90 deg CW
    (tmp_path / "rot.jpg").write_bytes(rotated)
    assert read_rgb(tmp_path / "rot.jpg").shape == (40, 20, 3)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.jpg"
    with pytest.raises(ValueError, match="no such file") as info:
        read_rgb(path)
    assert str(path) in str(info.value)


def test_directory(tmp_path):
    with pytest.raises(ValueError, match="not a regular file"):
        read_rgb(tmp_path)


def test_empty_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        read_rgb(tmp_path / "empty.png")


@pytest.mark.parametrize("name", ["garbage.png", "garbage.jpg", "notes.txt"])
def test_garbage_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"this is not an image\n" * 20)
    with pytest.raises(ValueError, match="cannot read image") as info:
        read_rgb(path)
    assert str(path) in str(info.value)


def test_jpeg_magic_with_garbage(tmp_path):
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"\xff\xd8\xff" + b"\x00" * 64)
    with pytest.raises(ValueError, match="cannot read image"):
        read_rgb(path)


# --------------------------------------------------------------------------- outputs


def test_depth_to_millimetres_conversion():
    depth = np.array([[1.0, 0.0015, np.nan, np.inf], [-1.0, 0.0, 0.0001, 70.0]], np.float32)
    mm = depth_to_millimetres(depth)
    assert mm.dtype == np.uint16
    np.testing.assert_array_equal(mm, [[1000, 2, 0, 0], [0, 0, 1, 65535]])


def test_write_depth_outputs_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.3, 60.0, size=(30, 40)).astype(np.float32)
    depth[0, :5] = np.nan
    depth[1, 0] = np.inf
    depth[2, 0] = 80.0  # beyond the 16-bit millimetre range
    outdir = tmp_path / "nested" / "out"

    paths = write_depth_outputs(outdir, "photo", depth)

    assert set(paths) == {"npy", "mm_png", "color_png"}
    assert paths["npy"].name == "photo_depth.npy"
    assert paths["mm_png"].name == "photo_depth_mm.png"
    assert paths["color_png"].name == "photo_depth_color.png"
    assert sorted(p.name for p in outdir.iterdir()) == sorted(p.name for p in paths.values())

    stored = np.load(paths["npy"])
    assert stored.dtype == np.float32 and stored.shape == (30, 40)
    assert np.isnan(stored[0, :5]).all() and np.isnan(stored[1, 0])
    finite = np.isfinite(depth)
    np.testing.assert_array_equal(stored[finite], depth[finite])

    mm = cv2.imread(str(paths["mm_png"]), cv2.IMREAD_UNCHANGED)
    assert mm.dtype == np.uint16 and mm.shape == (30, 40)
    assert (mm[0, :5] == 0).all() and mm[1, 0] == 0
    assert mm[2, 0] == 65535
    ok = finite & (depth < 65.0)
    np.testing.assert_allclose(mm[ok] / 1000.0, depth[ok], atol=0.0005 + 1e-6)

    color = cv2.imread(str(paths["color_png"]), cv2.IMREAD_UNCHANGED)
    assert color.dtype == np.uint8 and color.shape == (30, 40, 3)
    assert not color[0, :5].any()  # NaN -> black


def test_write_depth_outputs_replaces_only_when_asked_and_never_an_input(tmp_path):
    paths = write_depth_outputs(tmp_path, "x", np.full((4, 4), 1.0, np.float32))
    with pytest.raises(FileExistsError, match="x_depth.npy exists and replacing outputs"):
        write_depth_outputs(tmp_path, "x", np.full((4, 4), 2.0, np.float32))
    np.testing.assert_array_equal(np.load(paths["npy"]), 1.0)
    with pytest.raises(FileExistsError, match="is an input of this run: it is never replaced"):
        write_depth_outputs(tmp_path, "x", np.full((4, 4), 2.0, np.float32), overwrite=True,
                            protect=[paths["color_png"]])
    np.testing.assert_array_equal(np.load(paths["npy"]), 1.0)
    # Another name of an input (a hard link) is that input too.
    os.link(paths["mm_png"], tmp_path / "photo_link.png")
    with pytest.raises(FileExistsError, match="x_depth_mm.png is an input of this run"):
        write_depth_outputs(tmp_path, "x", np.full((4, 4), 2.0, np.float32), overwrite=True,
                            protect=InputFiles([tmp_path / "photo_link.png"]))
    (tmp_path / "photo_link.png").unlink()
    write_depth_outputs(tmp_path, "x", np.full((4, 4), 2.0, np.float32), overwrite=True)
    np.testing.assert_array_equal(np.load(paths["npy"]), 2.0)
    assert len(list(tmp_path.iterdir())) == 3
    # With a relative model's outputs too.
    rel = write_relative_outputs(tmp_path, "x", np.ones((2, 2), np.float32))
    with pytest.raises(FileExistsError):
        write_relative_outputs(tmp_path, "x", np.ones((2, 2), np.float32))
    assert set(rel.values()) <= set(tmp_path.iterdir())


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_failed_write_leaves_no_partial_set(tmp_path, overwrite):
    """One output name is taken by a folder: writing fails, and neither the other outputs
    nor temporary files are left behind (a partial set would look complete)."""
    (tmp_path / "x_depth_color.png").mkdir()
    with pytest.raises(OSError):
        write_depth_outputs(tmp_path, "x", np.ones((4, 4), np.float32), overwrite=overwrite)
    assert [p.name for p in tmp_path.iterdir()] == ["x_depth_color.png"]


def test_write_depth_outputs_accepts_hxwx1_and_float64(tmp_path):
    paths = write_depth_outputs(tmp_path, "d", np.ones((3, 5, 1)))
    assert np.load(paths["npy"]).shape == (3, 5)


@pytest.mark.parametrize("stem", ["", "a/b", "../x"])
def test_write_depth_outputs_rejects_bad_stem(tmp_path, stem):
    with pytest.raises(ValueError, match="stem"):
        write_depth_outputs(tmp_path, stem, np.ones((2, 2), np.float32))


def test_write_depth_outputs_rejects_bad_shape(tmp_path):
    with pytest.raises(ValueError, match="2-D"):
        write_depth_outputs(tmp_path, "d", np.ones((2, 2, 3), np.float32))


def test_relative_outputs_keep_the_values_and_draw_a_preview(tmp_path):
    relative = np.array([[0.0, 0.5, 2.0], [np.nan, 1.0, 4.0]], np.float32)
    paths = write_relative_outputs(tmp_path, "r", relative)
    back = np.load(paths["npy"])
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, relative)  # 0 = far and NaN kept as they are
    preview = cv2.imread(str(paths["color_png"]))
    assert preview.shape == (2, 3, 3)
    assert (preview[0, 0] == 0).all() and (preview[1, 0] == 0).all()  # no depth: black
    with pytest.raises(ValueError, match="2-D"):
        write_relative_outputs(tmp_path, "r", relative[None])


def test_prompt_depth_files_npy_metres_and_png_millimetres(tmp_path):
    metres = np.array([[1.5, np.nan], [2.25, 4.0]], np.float32)
    np.save(tmp_path / "p.npy", metres)
    np.testing.assert_array_equal(read_prompt_depth(tmp_path / "p.npy"), metres)
    mm = np.array([[1500, 0], [2250, 4000]], np.uint16)
    cv2.imwrite(str(tmp_path / "p.png"), mm)
    back = read_prompt_depth(tmp_path / "p.png")
    np.testing.assert_array_equal(back, np.where(mm > 0, mm / 1000.0, np.nan).astype(np.float32))
    cv2.imwrite(str(tmp_path / "colour.png"), np.zeros((2, 2, 3), np.uint8))
    np.save(tmp_path / "ints.npy", mm)
    (tmp_path / "garbage.png").write_bytes(b"not a png")
    for name, message in (("colour.png", "single-channel 16-bit PNG"),
                          ("ints.npy", "float array in metres"),
                          ("garbage.png", "cannot read prompt depth")):
        with pytest.raises(ValueError, match=message):
            read_prompt_depth(tmp_path / name)


# ------------------------------------------------- declared sizes, checked header first

_SMALL_PEAK = 8 << 20  # bytes: far below what any refused file declares


def _peak(call) -> tuple[BaseException, int]:
    """The exception ``call()`` raises and the peak memory traced meanwhile."""
    with traced_peak() as peak, pytest.raises(ValueError) as info:
        call()
    return info.value, peak.bytes


def _npy_header(shape: tuple, descr: str = "<f4") -> bytes:
    """A .npy version 1.0 header declaring ``shape`` (no data follows)."""
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"
    text += " " * (-(len(text) + 11) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode()


def _png_header(width: int, height: int, bit_depth: int = 16, colour: int = 0) -> bytes:
    """A PNG signature and IHDR declaring ``width`` x ``height`` (no pixel data)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
            + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)))


@pytest.mark.parametrize(("content", "says"), [
    (_npy_header((200000, 200000)), "declares 200000 x 200000"),
    (_npy_header((2000, 2000)), "but the file is"),  # within the limit, data missing
    (_npy_header((2, 2)) + b"\x00" * 16 + b"\x00" * 4096, "more appended"),
    (_npy_header((4, 4), "|O"), "expected plain numbers"),
    (_npy_header((10**12,)), "declares"),
    (b"\x93NUMPY\x01\x00\xff\xff" + b" " * 100, "not a readable .npy file"),
])
def test_npy_prompt_header_is_checked_before_any_data_is_read(tmp_path, content, says):
    path = tmp_path / "prompt.npy"
    path.write_bytes(content)
    error, peak = _peak(lambda: read_prompt_depth(path))
    assert says in str(error) and str(path) in str(error), error
    assert peak < _SMALL_PEAK


def test_png_prompt_declaring_too_many_pixels_is_refused(tmp_path):
    path = tmp_path / "prompt.png"
    path.write_bytes(_png_header(16000, 16000) + b"\x00" * 1000)
    error, peak = _peak(lambda: read_prompt_depth(path))
    assert "16000 x 16000" in str(error) and "limit" in str(error), error
    assert peak < _SMALL_PEAK
    # A lower --max-input-pixels bounds prompts too.
    cv2.imwrite(str(tmp_path / "small.png"), np.full((40, 50), 1500, np.uint16))
    with pytest.raises(ValueError, match="40 = 2,000 pixels, more than the limit of 1,000"):
        read_prompt_depth(tmp_path / "small.png", max_pixels=1000)
    assert read_prompt_depth(tmp_path / "small.png", max_pixels=2000).shape == (40, 50)


@pytest.mark.parametrize("read", [read_rgb, read_prompt_depth], ids=["photo", "prompt"])
def test_a_file_far_larger_than_its_image_is_not_read(tmp_path, read):
    """1 GiB holding a 64 x 48 PNG (a sparse file: no disk used) is refused after its
    first megabyte, and so is a file whose head declares nothing and is larger than the
    pixel limit allows."""
    path = tmp_path / "big.png"
    cv2.imwrite(str(path), np.zeros((48, 64), np.uint16))
    os.truncate(path, 1 << 30)
    error, peak = _peak(lambda: read(path))
    assert "1,073,741,824 bytes" in str(error) and "64 x 48" in str(error), error
    assert peak < _SMALL_PEAK
    unknown = tmp_path / "unknown.tif"
    unknown.write_bytes(b"II*\x00" + struct.pack("<I", 1 << 30))  # its directory: far away
    os.truncate(unknown, 1 << 30)
    error, peak = _peak(lambda: read(unknown, max_pixels=1000))
    assert "the pixel limit is 1,000" in str(error), error
    assert peak < _SMALL_PEAK


def test_a_photo_longer_than_the_head_reads_whole(tmp_path):
    noise = np.random.default_rng(1).integers(0, 256, (700, 900, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "noise.png"), noise)
    assert (tmp_path / "noise.png").stat().st_size > (1 << 20)
    np.testing.assert_array_equal(read_rgb(tmp_path / "noise.png"), noise[..., ::-1])


@pytest.mark.parametrize("read", [read_rgb, read_prompt_depth], ids=["photo", "prompt"])
def test_a_fifo_is_refused_without_blocking(tmp_path, read):
    fifo = tmp_path / "p.png"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        read(fifo)


def test_a_write_error_midway_leaves_nothing(tmp_path):
    """Files may not grow past 4 kB (RLIMIT_FSIZE: writes fail with EFBIG, as on a full
    disk): the small files fit, the .npy does not, and no output is left."""
    import resource
    import signal

    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an error, not a signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, old_limit[1]))
    try:
        with pytest.raises(OSError):
            write_depth_outputs(tmp_path, "x", np.ones((40, 40), np.float32))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("content", "says"), [
    (b"Pf\n7000 7000\n-1.0\n" + bytes(64), "PFM header declares 7000 x 7000"),
    (b"P6\n7000 7000\n255\n" + bytes(64), "PNM header declares 7000 x 7000"),
    (b"P4\n7000 7000\n" + bytes(64), "PNM header declares 7000 x 7000"),
    (b"P7\nWIDTH 7000\nHEIGHT 7000\nDEPTH 4\nMAXVAL 255\nENDHDR\n" + bytes(64), "PAM header"),
    (b"BM" + bytes(12) + struct.pack("<IiiHHI", 40, 7000, -7000, 1, 24, 0) + bytes(64),
     "BMP header declares 7000 x 7000"),
])
def test_an_uncompressed_image_shorter_than_its_samples_is_not_decoded(tmp_path, content,
                                                                       says):
    """A 100-byte PFM declaring 49 MP (under the pixel limit) would have the decoder
    allocate 588 MB before finding the samples missing."""
    path = tmp_path / "short.pfm"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="truncated, refused before decoding") as info:
        read_rgb(path)
    assert says in str(info.value)
    for name, channels in (("ok.pgm", ()), ("ok.bmp", (3,)), ("ok.ppm", (3,))):
        assert cv2.imwrite(str(tmp_path / name), np.full((30, 41, *channels), 7, np.uint8))
        assert read_rgb(tmp_path / name).shape == (30, 41, 3)
