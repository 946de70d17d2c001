"""Where Depth Pro's weights live, and fetching Apple's release (standard library + tqdm).

The weights are never shipped with the package. The default location is
``~/.cache/depth_pro_ros/depth_pro.pt``, overridable with ``$DEPTH_PRO_CHECKPOINT``.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

__all__ = [
    "CHECKPOINT_ENV",
    "DEFAULT_CHECKPOINT",
    "STAND_IN_COMMAND",
    "WEIGHTS_URL",
    "DownloadError",
    "MissingCheckpointError",
    "checkpoint_files",
    "checkpoint_sha256",
    "default_checkpoint",
    "download_weights",
    "missing_checkpoint_message",
    "resolve_checkpoint",
]

WEIGHTS_URL = "https://ml-site.cdn-apple.com/models/depth-pro/depth_pro.pt"
DEFAULT_CHECKPOINT = Path("~/.cache/depth_pro_ros/depth_pro.pt")
CHECKPOINT_ENV = "DEPTH_PRO_CHECKPOINT"


class DownloadError(OSError):
    """The weights could not be downloaded; the text says why and what to do instead."""


class MissingCheckpointError(FileNotFoundError):
    """No checkpoint at the path asked for; the text is :func:`missing_checkpoint_message`."""


def default_checkpoint() -> Path:
    """``$DEPTH_PRO_CHECKPOINT`` when set, else ``~/.cache/depth_pro_ros/depth_pro.pt``."""
    env = os.environ.get(CHECKPOINT_ENV)
    return Path(env).expanduser() if env else DEFAULT_CHECKPOINT.expanduser()


#: How to get a random-weight stand-in (``depth-pro-ros checkpoint``), named in the
#: messages about missing weights.
STAND_IN_COMMAND = "depth-pro-ros checkpoint --random tiny -o tiny.pt"
_STAND_IN_HINT = (f"To try the tools without the weights: {STAND_IN_COMMAND} writes a random "
                  "stand-in (add --model-type for another family; its depth is meaningless).")


def missing_checkpoint_message(path: str | os.PathLike) -> str:
    """What to say when the checkpoint ``path`` does not exist, for every family and
    every tool (command line, bag tool, demo, node): where the weights come from, where
    they go, the environment variable, and the random stand-in command."""
    return (
        f"checkpoint {path}: no such file or folder.\n"
        f"Get the weights: Depth Pro from {WEIGHTS_URL} (or the Hugging Face folder "
        "apple/DepthPro-hf: model.safetensors + config.json); Depth Anything V2 and Prompt "
        "Depth Anything from their depth-anything/* Hugging Face releases (original .pth / "
        ".ckpt or -hf folder; see docs/depth_anything.md).\n"
        f"Put them at {DEFAULT_CHECKPOINT} (the default of the depth-pro-ros commands and "
        f"the node), or set ${CHECKPOINT_ENV} to their path (both), "
        "or give the path: --checkpoint PATH (node and launch file: checkpoint:=PATH).\n"
        f"{_STAND_IN_HINT}"
    )


def resolve_checkpoint(path: str | os.PathLike | None = None) -> Path:
    """The checkpoint every tool loads: ``path`` (``~`` expanded), or when it is None or
    empty :func:`default_checkpoint`.

    Raises:
        MissingCheckpointError: nothing exists there; its text is the one family-neutral
            :func:`missing_checkpoint_message` that every tool shows.
    """
    checkpoint = Path(path).expanduser() if path else default_checkpoint()
    if not checkpoint.exists():
        raise MissingCheckpointError(missing_checkpoint_message(checkpoint))
    return checkpoint


def checkpoint_files(path: Path) -> list[Path]:
    """The files a checkpoint is made of: the file itself, or every file under a folder
    (a Hugging Face folder's config and shards), sorted."""
    return [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())


def checkpoint_sha256(path: Path) -> str:
    """SHA-256 of a checkpoint file, or of a folder's files (for each, its relative name
    and a NUL byte, then its bytes), which names the weights whatever the path."""
    digest = hashlib.sha256()
    for file in checkpoint_files(path):
        if file != path:
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with open(file, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def download_weights(
    dest: Path, url: str = WEIGHTS_URL, progress: bool = True, timeout: float = 30.0
) -> Path:
    """Download ``url`` to ``dest`` with a progress bar; return ``dest``.

    The data goes to a temporary file next to ``dest`` that is renamed only once the
    download is complete (and as long as the server announced), so an interrupted
    download never looks like weights.

    Raises:
        DownloadError: no network, an HTTP error, a short read or a file system error;
            the message says where to put the file by hand.
    """
    from tqdm import tqdm

    dest = Path(dest).expanduser()
    hint = (f"Without network access, download {url} on another machine and copy it to "
            f"{dest} (or set ${CHECKPOINT_ENV} to where it is). {_STAND_IN_HINT}")
    tmp = None
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            fd, name = tempfile.mkstemp(prefix=f".{dest.name}.download-", dir=dest.parent)
            tmp = Path(name)
            received = 0
            with os.fdopen(fd, "wb") as f, tqdm(
                total=total, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
                desc=dest.name, disable=not progress,
            ) as bar:
                while chunk := response.read(1 << 20):
                    f.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        if total is not None and received != total:
            raise DownloadError(f"download of {url} stopped after {received} of {total} "
                                f"bytes. {hint}")
        os.replace(tmp, dest)
        tmp = None
        return dest
    except DownloadError:
        raise
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DownloadError(f"could not download {url}: {reason}. {hint}") from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
