"""Reading photos and writing depth results as files (numpy + OpenCV only)."""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from depth_pro_ros.io.bounded_files import image_file_bytes, read_npy
from depth_pro_ros.io.colorize import annotate_range, colorize_depth, valid_depth_mask
from depth_pro_ros.io.image_decode import DEFAULT_MAX_INPUT_PIXELS, decode_image_bytes

_JPEG_MAGIC = b"\xff\xd8\xff"


def _to_uint8(img: np.ndarray, path: Path) -> np.ndarray:
    """Scale an 8/16-bit integer or floating point image to uint8."""
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        # 0..65535 -> 0..255 with rounding (65535 / 257 == 255 exactly).
        return ((img.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if img.dtype in (np.float32, np.float64):
        finite = np.nan_to_num(img.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        # Floating point images are taken as 0..1 unless their values say 0..255.
        top = 1.0 if finite.size == 0 or float(finite.max()) <= 1.0 else 255.0
        return np.round(np.clip(finite / top, 0.0, 1.0) * 255.0).astype(np.uint8)
    raise ValueError(f"cannot read image {path}: unsupported sample type {img.dtype}")


def _composite_alpha(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Blend uint8 colour channels over a black background with a uint8 alpha."""
    a = alpha.astype(np.uint16)[..., None] if colour.ndim == 3 else alpha.astype(np.uint16)
    return ((colour.astype(np.uint16) * a + 127) // 255).astype(np.uint8)


def read_rgb(
    path: str | os.PathLike,
    max_pixels: int | None = DEFAULT_MAX_INPUT_PIXELS,
    warnings: list[str] | None = None,
) -> np.ndarray:
    """Read an image file as an HxWx3 uint8 RGB array.

    * 8-bit colour images are returned as they are (EXIF orientation applied for JPEG
      and other formats OpenCV orients);
    * grayscale images are replicated to three channels;
    * 16-bit images are scaled to 8 bits (``v / 257``, rounded); float images are
      taken as 0..1 (or 0..255 when their maximum is above 1);
    * images with an alpha channel are composited over black.

    The file is untrusted: its header must state a size (see
    :func:`depth_pro_ros.io.image_decode.decode_image_bytes`) of at most ``max_pixels``
    (None: no bound), checked before decoding, and a file larger than that image can be
    is refused before it is read in full (:func:`.bounded_files.image_file_bytes`).
    Codec warnings go to ``warnings`` (when given), never to stderr.

    Raises:
        ValueError: with the path and the reason, when the file is missing, is not a
            regular file, cannot be read, is not an image OpenCV can decode, or is too
            large (an ``ImageDecodeError``, ``ImageTooLargeError`` for the latter).
    """
    p = Path(path)
    what = f"cannot read image {p}"
    # Header first: a file far larger than its image is refused before it is read.
    data = image_file_bytes(p, what, max_pixels)

    buf = np.frombuffer(data, dtype=np.uint8)
    img = None
    if not data.startswith(_JPEG_MAGIC):
        # Only non-JPEG formats can carry alpha; look at the stored channels first.
        img = decode_image_bytes(buf, cv2.IMREAD_UNCHANGED, what, max_pixels, warnings)
        has_alpha = img.ndim == 3 and img.shape[2] in (2, 4)
        if not has_alpha:
            img = None  # decode again below so that EXIF orientation is honoured

    if img is None:
        img = decode_image_bytes(
            buf, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH, what, max_pixels, warnings)

    if img.size == 0:
        raise ValueError(f"cannot read image {p}: the image is empty")
    img = _to_uint8(img, p)

    if img.ndim == 2:
        rgb = np.repeat(img[:, :, None], 3, axis=2)
    elif img.shape[2] == 1:
        rgb = np.repeat(img, 3, axis=2)
    elif img.shape[2] == 2:  # gray + alpha
        gray = _composite_alpha(img[:, :, 0], img[:, :, 1])
        rgb = np.repeat(gray[:, :, None], 3, axis=2)
    elif img.shape[2] == 3:
        rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif img.shape[2] == 4:
        rgb = _composite_alpha(cv2.cvtColor(img[:, :, :3], cv2.COLOR_BGR2RGB), img[:, :, 3])
    else:
        raise ValueError(f"cannot read image {p}: unsupported channel count {img.shape[2]}")
    return np.ascontiguousarray(rgb)


class InputFiles:
    """The files a run reads, by path and by identity (device and inode, so that another
    name of the same file counts too): outputs must never replace them. Built once per run
    (each test is then a set lookup, not a comparison with every input)."""

    def __init__(self, paths: Iterable[str | os.PathLike] = ()) -> None:
        self._keys: set[object] = set()
        for path in paths:
            self._keys.update(self._identities(Path(path)))

    @staticmethod
    def _identities(path: Path) -> list[object]:
        keys: list[object] = [os.path.abspath(path)]
        try:
            st = os.stat(path)
            keys.append((st.st_dev, st.st_ino))
        except OSError:  # not there (yet): its name is its only identity
            pass
        return keys

    def __contains__(self, path: object) -> bool:
        return isinstance(path, (str, os.PathLike)) and any(
            key in self._keys for key in self._identities(Path(path)))


def _check_target(path: Path, overwrite: bool, protect: InputFiles) -> None:
    if path in protect:
        raise FileExistsError(f"{path} is an input of this run: it is never replaced")
    if not overwrite and os.path.lexists(path):
        raise FileExistsError(f"{path} exists and replacing outputs was not asked for")


def _input_files(protect: InputFiles | Iterable[str | os.PathLike]) -> InputFiles:
    return protect if isinstance(protect, InputFiles) else InputFiles(protect)


def _place(tmp: Path, path: Path, overwrite: bool) -> None:
    """Rename ``tmp`` to ``path``; without ``overwrite`` never over an existing file, not
    even one created since the check (a hard link fails when the name exists)."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(f"{path} exists and replacing outputs was not asked for") from None
    except OSError:  # a file system without hard links: check, then rename
        if os.path.lexists(path):
            raise FileExistsError(f"{path} exists and replacing outputs was not asked for") \
                from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def _write_all(files: dict[Path, bytes], overwrite: bool, protect: InputFiles) -> None:
    """Write every file or none: each goes to a temporary name first and is renamed into
    place once all are written; on any failure (a full disk, a read-only folder) the
    temporary files and the ones already renamed are removed, so no partial set is left
    looking complete."""
    for path in files:
        _check_target(path, overwrite, protect)
    written: list[Path] = []
    placed: list[Path] = []
    try:
        for path, data in files.items():
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            written.append(tmp)
            with open(tmp, "wb") as f:
                f.write(data)
        for tmp, path in zip(written, files):
            _place(tmp, path, overwrite)
            placed.append(path)
    except BaseException:
        for leftover in (*written, *placed):
            leftover.unlink(missing_ok=True)
        raise


def _output_folder(outdir: str | os.PathLike, stem: str) -> Path:
    """``outdir`` (created if missing) for files named ``<stem>_...``; ``stem`` must be a
    plain file name prefix."""
    if not stem or Path(stem).name != stem:
        raise ValueError(f"stem must be a plain file name prefix, got {stem!r}")
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _npy_bytes(array: np.ndarray) -> bytes:
    npy = io.BytesIO()
    np.save(npy, array, allow_pickle=False)
    return npy.getvalue()


def _encode_png(img: np.ndarray, path: Path) -> bytes:
    ok, encoded = cv2.imencode(".png", img)
    if not ok:
        raise OSError(f"OpenCV could not encode {path} as PNG")
    return encoded.tobytes()


def depth_to_millimetres(depth_m: np.ndarray) -> np.ndarray:
    """uint16 millimetres from float metres: invalid (NaN, inf, <= 0) -> 0.

    Valid depths are rounded and clipped to 1..65535 mm, so a valid pixel never reads
    as invalid and anything beyond 65.535 m saturates.
    """
    depth = np.asarray(depth_m, dtype=np.float32)
    valid = valid_depth_mask(depth)
    mm = np.where(valid, depth, 0.0).astype(np.float64) * 1000.0
    mm = np.clip(np.round(mm), 1, 65535)
    return np.where(valid, mm, 0).astype(np.uint16)


def depth_output_paths(outdir: str | os.PathLike, stem: str) -> dict[str, Path]:
    """The files :func:`write_depth_outputs` writes for ``stem`` (keys as it returns)."""
    out = Path(outdir)
    return {"npy": out / f"{stem}_depth.npy", "mm_png": out / f"{stem}_depth_mm.png",
            "color_png": out / f"{stem}_depth_color.png"}


def relative_output_paths(outdir: str | os.PathLike, stem: str) -> dict[str, Path]:
    """The files :func:`write_relative_outputs` writes for ``stem``."""
    out = Path(outdir)
    return {"npy": out / f"{stem}_relative.npy", "color_png": out / f"{stem}_relative_color.png"}


def write_depth_outputs(
    outdir: str | os.PathLike,
    stem: str,
    depth_m: np.ndarray,
    min_depth: float | None = None,
    max_depth: float | None = None,
    overwrite: bool = False,
    protect: InputFiles | Iterable[str | os.PathLike] = (),
) -> dict[str, Path]:
    """Write one depth map in three forms and return their paths.

    Files (in ``outdir``, created if missing; all three or none: each is written to a
    temporary file and renamed into place once all are written). An existing file is
    replaced only with ``overwrite``, and a file among ``protect`` (the run's inputs: an
    :class:`InputFiles`, or paths)
    never; either refusal is a ``FileExistsError`` raised before anything is written:

    * ``<stem>_depth.npy`` -- float32 metres, HxW, NaN where invalid (key ``"npy"``);
    * ``<stem>_depth_mm.png`` -- uint16 millimetres, 0 = invalid, clipped at 65535
      (key ``"mm_png"``);
    * ``<stem>_depth_color.png`` -- colorized preview with its range legend
      (key ``"color_png"``); ``min_depth``/``max_depth`` fix its colour range.
    """
    depth = np.asarray(depth_m, dtype=np.float32)
    if depth.ndim == 3 and depth.shape[2] == 1:
        depth = depth[:, :, 0]
    if depth.ndim != 2:
        raise ValueError(f"depth must be a 2-D HxW array, got shape {depth.shape}")
    paths = depth_output_paths(_output_folder(outdir, stem), stem)

    for path in paths.values():  # refuse before any encoding work
        _check_target(path, overwrite, protect)
    stored = np.where(valid_depth_mask(depth), depth, np.float32(np.nan)).astype(np.float32)
    bgr, (lo, hi) = colorize_depth(depth, min_depth, max_depth)
    preview = annotate_range(bgr, lo, hi)
    _write_all({paths["npy"]: _npy_bytes(stored),
                paths["mm_png"]: _encode_png(depth_to_millimetres(depth), paths["mm_png"]),
                paths["color_png"]: _encode_png(preview, paths["color_png"])},
               overwrite, protect)
    return paths


def write_relative_outputs(outdir: str | os.PathLike, stem: str, relative: np.ndarray,
                           overwrite: bool = False,
                           protect: InputFiles | Iterable[str | os.PathLike] = (),
                           ) -> dict[str, Path]:
    """Write a relative model's unitless inverse depth (HxW, larger = nearer) and return
    the paths: ``<stem>_relative.npy`` (float32, as the model gave it; key ``"npy"``) and
    ``<stem>_relative_color.png`` (a preview without a metric legend; key
    ``"color_png"``); both or none, ``overwrite`` and ``protect`` as for
    :func:`write_depth_outputs`."""
    rel = np.asarray(relative, dtype=np.float32)
    if rel.ndim != 2:
        raise ValueError(f"relative depth must be a 2-D HxW array, got shape {rel.shape}")
    paths = relative_output_paths(_output_folder(outdir, stem), stem)
    protect = _input_files(protect)
    with np.errstate(divide="ignore"):
        pseudo_depth = np.where(rel > 0, 1.0 / rel, np.nan).astype(np.float32)
    bgr, _ = colorize_depth(pseudo_depth)  # colours evenly spaced in the inverse depth
    _write_all({paths["npy"]: _npy_bytes(rel),
                paths["color_png"]: _encode_png(bgr, paths["color_png"])}, overwrite, protect)
    return paths


def read_prompt_depth(path: str | os.PathLike,
                      max_pixels: int | None = DEFAULT_MAX_INPUT_PIXELS) -> np.ndarray:
    """A prompt depth file as float32 metres (h, w): ``.npy`` in metres, or a 16-bit
    single-channel image (PNG, TIFF ...) in millimetres (0 = no measurement, as LiDAR
    depth maps are usually stored).

    The file is untrusted: the size its header declares must be at most ``max_pixels``
    (None: no bound) and agree with the file's size, checked before the data is read.

    Raises:
        ValueError: unreadable, too large, or not a single-channel depth map.
    """
    p = Path(path)
    what = f"cannot read prompt depth {p}"
    if p.suffix.lower() == ".npy":
        depth = read_npy(p, what, max_pixels)
        if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.floating):
            raise ValueError(f"prompt depth {p}: expected an (h, w) float array in metres, "
                             f"got {depth.dtype} {depth.shape}")
        return depth.astype(np.float32)
    data = image_file_bytes(p, what, max_pixels)
    img = decode_image_bytes(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED,
                             f"{what} (a .npy in metres or a 16-bit PNG in millimetres)",
                             max_pixels)
    if img.ndim != 2 or img.dtype != np.uint16:
        raise ValueError(f"prompt depth {p}: expected a single-channel 16-bit PNG in "
                         f"millimetres, got {img.dtype} {img.shape}")
    return np.where(img > 0, img.astype(np.float32) / 1000.0, np.float32(np.nan))
