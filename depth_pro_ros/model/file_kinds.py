"""What a file that is not a usable checkpoint is, told from its bytes (standard library).

The checkpoint loader asks :func:`torch_file_problem` before ``torch.load`` and the
``*_message`` functions after a failure, so that each refused file gets one plain sentence
naming it, what it is (a JPEG, a Git LFS pointer, a pickled whole module ...) and what is
expected, instead of torch's internal messages. Nothing here unpickles: pickles are only
read as a stream of opcodes.
"""

from __future__ import annotations

import pickletools
import re
import zipfile
from pathlib import Path
from typing import IO

__all__ = [
    "expected_files",
    "is_zip",
    "read_head",
    "refused_objects_message",
    "safetensors_problem",
    "torch_file_problem",
    "truncated_message",
    "unsafe_globals",
]

_SAVE_STATE_DICT = "torch.save(model.state_dict(), path)"
# What a pickle of tensors names besides them: rebuild functions, containers, and (in
# torch's own namespace) storages and dtypes.
_PICKLE_HELPERS = ("torch._utils.", "collections.", "builtins.", "copyreg.", "_codecs.")
_TENSOR_MACHINERY = (*_PICKLE_HELPERS, "torch.")
# Names a pickle of tensors may import and nothing else may: anything outside them is
# code or an object that a weights file must not hold.
_WEIGHTS_GLOBALS = re.compile(
    r"torch\._utils\._rebuild_\w+|torch\._tensor\._rebuild_\w+|torch\.\w*Storage"
    r"|torch\.storage\.\w+|torch\.(Size|device|Tensor|dtype|strided|sparse_\w+|\w*float\w*"
    r"|\w*int\d*|bool|complex\w*|bfloat16|half|double|long|short|chalf|cfloat|cdouble"
    r"|qu?int\w*)"
    r"|torch\.nn\.parameter\.Parameter|torch\.serialization\._get_layout"
    r"|collections\.(OrderedDict|Counter|defaultdict)|_codecs\.encode"
    r"|builtins\.(set|frozenset|bytearray|slice|complex|int|float|bool|str|bytes|tuple|list"
    r"|dict)|__builtin__\.(set|frozenset|bytearray|slice|complex)"
)

_HEAD_BYTES = 512  # enough for every signature below (tar's is at offset 257)

# Leading bytes of formats people hand over by mistake, and what to call them.
_SIGNATURES = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\x93NUMPY", "a NumPy .npy array"),
    (b"%PDF", "a PDF document"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file (Keras / TensorFlow weights?)"),
    (b"GGUF", "a GGUF model (llama.cpp)"),
    (b"\x1f\x8b", "a gzip-compressed file"),
    (b"BZh", "a bzip2-compressed file"),
    (b"\xfd7zXZ\x00", "an xz-compressed file"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
)
_LFS_POINTER = b"version https://git-lfs.github.com/spec/"
# The first pickle of a torch.save file in the legacy (pre-1.6, non-zip) format.
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
# The attributes every pickled torch.nn.Module carries in its __dict__.
_MODULE_STATE = frozenset({"_parameters", "_buffers", "_modules"})


def expected_files() -> str:
    """What a checkpoint may be, for messages about files that are none of these (the
    families' plain files from the registry, imported here only when a message is made)."""
    from .registry import families_in_order

    plain = ", ".join(f.plain_files for f in families_in_order() if f.plain_files)
    return (f"expected {plain}, a Hugging Face folder or .safetensors file (with its "
            "config.json), or a file written by depth-pro-ros")


def read_head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(_HEAD_BYTES)


def is_zip(head: bytes) -> bool:
    return head.startswith(b"PK\x03\x04")


def _is_pickle(head: bytes) -> bool:
    """A pickle of protocol 2 or later (what torch.save and pickle.dump write)."""
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _is_old_pickle(head: bytes) -> bool:
    """Bytes that may start a protocol 0 / 1 pickle (a GLOBAL, MARK or empty container)."""
    return head[:1] in (b"c", b"(", b"}", b"]", b")")


def _foreign_kind(head: bytes, size: int) -> tuple[str, str | None] | None:
    """What the file is when its first bytes say it is no checkpoint in any accepted layout
    (an image, an archive, a Git LFS pointer, a web page, a safetensors file under another
    name ...): a noun phrase ("a JPEG image") and, when there is one, what to do about it;
    None when the bytes say nothing."""
    for signature, kind in _SIGNATURES:
        if head.startswith(signature):
            return kind, None
    if head[257:262] == b"ustar":
        return "a tar archive", "unpack it first"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "a WebP image", None
    if head.startswith(_LFS_POINTER):
        return ("a Git LFS pointer, not the weights it stands for",
                "fetch the file itself (git lfs pull in its clone, or download it)")
    if head.lstrip().lower().startswith((b"<!doctype html", b"<html")):
        return ("an HTML page, not the weights",
                "download the file itself (a download link that returned a web page?)")
    if len(head) > 8 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < size:
        return ("a safetensors file under another name",
                "name it model.safetensors and keep its config.json beside it")
    return None


def _torch_zip_kind(path: Path) -> str:
    """``pytorch`` (a torch.save zip), ``torchscript`` (torch.jit.save), ``other`` (a zip
    without data.pkl) or ``unreadable`` (a truncated or corrupt archive)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return "unreadable"
    if any(n.endswith("/constants.pkl") for n in names):
        return "torchscript"
    if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        return "pytorch"
    return "other"


def _is_legacy_torch(path: Path) -> bool:
    """Whether a pickle file starts the way torch.save's legacy (non-zip) format does."""
    with open(path, "rb") as f:
        try:
            for op, arg, _ in pickletools.genops(f):
                if op.name in ("PROTO", "FRAME"):
                    continue
                return op.name.startswith("LONG") and arg == _TORCH_LEGACY_MAGIC
        except (ValueError, EOFError):
            return False
    return False


def torch_file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a ``torch.save`` file, told from its bytes before loading
    it (an empty file, a truncated archive, TorchScript, a plain pickle, an image ...);
    None when it may be one (a torch zip, or the legacy pickle format)."""
    size = path.stat().st_size
    if size == 0:
        return f"checkpoint {path}: the file is empty"
    head = read_head(path)
    if is_zip(head):
        kind = _torch_zip_kind(path)
        if kind == "unreadable":
            return truncated_message(path)
        if kind == "torchscript":
            return (f"checkpoint {path} is a TorchScript program (torch.jit.save), not a state "
                    f"dict: save the weights with {_SAVE_STATE_DICT}")
        if kind == "other":
            return (f"checkpoint {path} is a zip archive but not a PyTorch checkpoint (it has "
                    f"no data.pkl): {expected_files()}")
        return None
    if _is_pickle(head):
        if _is_legacy_torch(path):
            return None
        if unsafe_globals(path):
            return refused_objects_message(path)
        return (f"checkpoint {path} is a plain Python pickle, not a PyTorch checkpoint: save "
                f"the weights with {_SAVE_STATE_DICT}")
    if _is_old_pickle(head) and unsafe_globals(path):  # protocol 0 / 1: no PROTO opcode
        return refused_objects_message(path)
    return _foreign_message(path, head, size) or (
        f"checkpoint {path} is not a PyTorch checkpoint (neither a torch.save zip nor "
        f"pickle) nor a safetensors file: {expected_files()}")


def safetensors_problem(path: Path) -> str:
    """What a file that the safetensors reader refused is."""
    head = read_head(path)
    if is_zip(head) or _is_pickle(head):
        return f"checkpoint {path} is a PyTorch file, not safetensors: give it a .pt name"
    return _foreign_message(path, head, path.stat().st_size) or (
        f"checkpoint {path} is not a valid safetensors file (truncated or corrupt?)")


def truncated_message(path: Path) -> str:
    return (f"checkpoint {path} is a truncated or corrupt PyTorch file (its data cannot be "
            "read; an interrupted download or copy?)")


def refused_objects_message(path: Path) -> str:
    """What a torch file that holds more than tensors holds (``torch.load`` with
    ``weights_only`` refused it: unpickling other objects could run their code)."""
    contents = _pickle_contents(path)
    if contents.holds_module:
        cls = contents.first_class(_PICKLE_HELPERS)  # the module's class (first named)
        named = f" ({cls})" if cls else ""
        return (f"checkpoint {path} holds a pickled whole torch module{named}, written by "
                "torch.save(model), not a state dict: save model.state_dict() instead")
    others = [g for g in dict.fromkeys(contents.globals) if not _WEIGHTS_GLOBALS.fullmatch(g)]
    objects = f" ({', '.join(others[:3])})" if others else ""
    return (f"checkpoint {path} holds Python objects besides tensors{objects}, which are not "
            "loaded because unpickling them could run code: it holds code or objects that a "
            f"weights file must not hold; expected a state dict of tensors ({_SAVE_STATE_DICT})")


def unsafe_globals(path: Path) -> list[str]:
    """The classes and functions the file's pickle would import that a pickle of tensors
    never does (read as opcodes, never unpickled); [] for a file without any, or with no
    readable pickle."""
    try:
        names = _pickle_contents(path).globals
    except (OSError, zipfile.BadZipFile, ValueError, StopIteration, RuntimeError):
        return []
    return [g for g in dict.fromkeys(names) if not _WEIGHTS_GLOBALS.fullmatch(g)]


def _foreign_message(path: Path, head: bytes, size: int) -> str | None:
    found = _foreign_kind(head, size)
    if found is None:
        return None
    kind, advice = found
    if advice:
        return f"checkpoint {path} is {kind}: {advice}"
    return f"checkpoint {path} is {kind}, not a checkpoint: {expected_files()}"


class _PickleContents:
    """What a pickle names without unpickling it: the classes and functions it would
    import (``module.name``, in order) and whether it holds a torch ``nn.Module``."""

    def __init__(self, globals_: list[str], holds_module: bool) -> None:
        self.globals = globals_
        self.holds_module = holds_module

    def first_class(self, skip: tuple[str, ...]) -> str | None:
        """The first name from a module not starting with one of ``skip``."""
        return next((g for g in self.globals if not g.startswith(skip)), None)


def _pickle_contents(path: Path) -> _PickleContents:
    """Read the object pickle of a torch.save file: ``data.pkl`` inside a zip, else the
    pickles at the start of a legacy file (magic, protocol, system info, object)."""
    if is_zip(read_head(path)):
        with zipfile.ZipFile(path) as archive:
            name = next(n for n in archive.namelist()
                        if n == "data.pkl" or n.endswith("/data.pkl"))
            with archive.open(name) as f:
                return _scan(f, pickles=1)
    with open(path, "rb") as f:
        return _scan(f, pickles=4)


def _scan(stream: IO[bytes], pickles: int) -> _PickleContents:
    names: list[str] = []
    strings: set[str] = set()
    recent: list[str] = []  # the last strings pushed, for STACK_GLOBAL (protocol 4+)
    try:
        for _ in range(pickles):
            for op, arg, _ in pickletools.genops(stream):
                if op.name == "GLOBAL":
                    names.append(str(arg).replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(recent) == 2:
                    names.append(".".join(recent))
                elif isinstance(arg, str):
                    if arg in _MODULE_STATE:
                        strings.add(arg)
                    recent = [*recent[-1:], arg]
    except (ValueError, EOFError, UnicodeDecodeError):
        pass  # a damaged stream: report what was read
    return _PickleContents(names, _MODULE_STATE <= strings)
