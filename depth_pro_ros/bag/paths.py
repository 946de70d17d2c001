"""What the bag tools may open: regular files and folders only, checked without opening.

A FIFO blocks ``open()`` until a writer comes (forever), a device may be endless, a
symlink loop or a dangling link fails deep inside a reader with a confusing traceback.
:func:`path_problem` looks with ``stat`` / ``lstat`` only (they never block), so every
such input becomes one clear line before anything is opened.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

__all__ = ["path_problem"]

_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def path_problem(path: Path, want: str = "any") -> str | None:
    """Why ``path`` cannot be opened as a bag file or folder (None: it can).

    ``want``: ``file``, ``dir`` or ``any`` (a regular file or a folder). The text reads
    after the path: ``f"{path} {problem}"``.
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symbolic link loop"
        if exc.errno == errno.ENOENT:
            try:
                os.lstat(path)
            except OSError:
                return "does not exist"
            return f"is a dangling symbolic link (to {os.readlink(path)})"
        if exc.errno == errno.ENAMETOOLONG:
            return "has a name too long for the filesystem"
        return f"cannot be examined ({exc.strerror or exc})"
    if stat.S_ISREG(st.st_mode):
        return None if want in ("file", "any") else "is a file, not a folder"
    if stat.S_ISDIR(st.st_mode):
        return None if want in ("dir", "any") else "is a folder, not a file"
    kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
    return f"is {kind}, not a bag file or folder"


#: Files of a ROS 2 bag folder a reader opens: by suffix (``.mcap.zstd``: file compression).
_STORAGE_SUFFIXES = (".mcap", ".db3", ".zstd", ".yaml")
#: How much of ``metadata.yaml`` is searched for the names of the storage files.
_METADATA_BYTES = 1 << 20


def bag_problem(path: Path) -> str | None:
    """One line saying why the bag at ``path`` cannot be opened safely, or None.

    A bag file must be a regular file; a bag folder a folder whose ``metadata.yaml`` and
    storage files (by suffix, or named in ``metadata.yaml``) are regular files.
    """
    problem = path_problem(path)
    if problem is not None:
        return f"{path} {problem}"
    if not path.is_dir():
        return None
    meta = path / "metadata.yaml"
    named = ""
    if os.path.lexists(meta):
        problem = path_problem(meta, "file")
        if problem is not None:
            return f"{meta} {problem}"
        try:
            with open(meta, "rb") as f:  # a regular file: open() cannot block
                named = f.read(_METADATA_BYTES).decode("utf-8", "replace")
        except OSError as exc:
            return f"cannot read {meta}: {exc.strerror or exc}"
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
    except OSError as exc:
        return f"cannot list the bag folder {path}: {exc.strerror or exc}"
    for entry in entries:
        if entry.name.startswith(".") or not (entry.name.endswith(_STORAGE_SUFFIXES)
                                              or entry.name in named):
            continue
        # A subfolder whose name happens to occur in metadata.yaml is no storage file.
        want = "file" if entry.name.endswith(_STORAGE_SUFFIXES) else "any"
        problem = path_problem(Path(entry.path), want)
        if problem is not None:
            return f"{entry.path} (in the bag folder {path}) {problem}"
    return None
