"""The layering of docs/conventions.md, checked on the source text (AST, no imports run).

* Only ``depth_pro_ros/ros/`` may import rclpy or other ROS Python packages.
* ``model/`` is pure torch: no rclpy, OpenCV, transformers, timm or torchvision.
* ``io/`` is pure numpy/OpenCV: no torch.
* Imports between the sub-packages only point downwards.
* Model families (the folders of ``model/`` but ``common/``) import no other family, and
  ``model/common/`` none; nothing outside ``model/`` imports a family folder (it goes
  through ``depth_pro_ros.model`` and its registry).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "depth_pro_ros"
PACKAGE_DIR = Path(__file__).resolve().parents[1] / PACKAGE

# Python packages that exist only in a ROS installation (or its PyPI wheels).
ROS_MODULES = {
    "rclpy",
    "rosidl_runtime_py",
    "builtin_interfaces",
    "std_msgs",
    "sensor_msgs",
    "diagnostic_msgs",
    "geometry_msgs",
    "cv_bridge",
    "launch",
    "launch_ros",
}

# Third-party modules a layer must not import (on top of ROS_MODULES outside ros/).
FORBIDDEN_EXTERNAL = {
    "model": {"cv2", "transformers", "timm", "torchvision"},
    "engine": {"transformers", "timm", "torchvision"},
    "io": {"torch", "transformers", "timm", "torchvision"},
}

# Sub-packages (and modules) of depth_pro_ros that each layer may import.
ALLOWED_INTERNAL = {
    "model": {"model"},
    "engine": {"engine", "model"},
    "io": {"io"},
    "stream": {"stream", "engine", "io", "model"},
    "ros": {"ros", "stream", "engine", "io", "model"},
    "bag": {"bag", "stream", "engine", "io", "model"},
    "cli": {"cli", "bag", "stream", "engine", "io", "model"},
    "__init__": set(),
}


def _source_files() -> list[Path]:
    return sorted(p for p in PACKAGE_DIR.rglob("*.py") if "__pycache__" not in p.parts)


def _layer(path: Path) -> str:
    rel = path.relative_to(PACKAGE_DIR)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imported_modules(path: Path, root: Path = PACKAGE_DIR.parent) -> set[str]:
    """Absolute dotted names of every module imported anywhere in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    # The package a relative import starts from (for __init__.py: the package itself).
    package_parts = list(path.relative_to(root).parts[:-1])

    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            else:
                anchor = package_parts[: len(package_parts) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            names.add(base)
            # `from depth_pro_ros import model` imports the sub-package itself.
            if base == PACKAGE:
                names.update(f"{PACKAGE}.{alias.name}" for alias in node.names)
    return {n for n in names if n}


def _top(name: str) -> str:
    return name.split(".")[0]


FILES = _source_files()


def test_package_sources_found():
    assert PACKAGE_DIR.is_dir()
    assert (PACKAGE_DIR / "ros" / "__init__.py") in FILES


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE_DIR)))
def test_ros_imports_only_in_ros_layer(path: Path):
    if _layer(path) == "ros":
        return
    bad = sorted(n for n in _imported_modules(path) if _top(n) in ROS_MODULES)
    assert not bad, f"{path.relative_to(PACKAGE_DIR.parent)} imports ROS modules {bad}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE_DIR)))
def test_forbidden_third_party_imports(path: Path):
    forbidden = FORBIDDEN_EXTERNAL.get(_layer(path), set())
    bad = sorted(n for n in _imported_modules(path) if _top(n) in forbidden)
    assert not bad, f"{path.relative_to(PACKAGE_DIR.parent)} must not import {bad}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE_DIR)))
def test_internal_imports_point_downwards(path: Path):
    layer = _layer(path)
    allowed = ALLOWED_INTERNAL.get(layer)
    if allowed is None:
        pytest.fail(f"unknown layer {layer!r}: add it to ALLOWED_INTERNAL in {__file__}")
    bad = []
    for name in _imported_modules(path):
        parts = name.split(".")
        if parts[0] != PACKAGE:
            continue
        if len(parts) == 1:
            continue  # `from depth_pro_ros import __version__` and the like
        target = parts[1]
        if (PACKAGE_DIR / target).is_dir() or (PACKAGE_DIR / f"{target}.py").is_file():
            if target not in allowed:
                bad.append(name)
    assert not bad, (
        f"{path.relative_to(PACKAGE_DIR.parent)} (layer {layer!r}) imports {sorted(bad)}; "
        f"allowed layers: {sorted(allowed)}"
    )


MODEL_DIR = PACKAGE_DIR / "model"
FAMILY_FOLDERS = sorted(p.name for p in MODEL_DIR.iterdir()
                        if (p / "__init__.py").is_file() and p.name != "common")


def _family_imports(path: Path) -> set[str]:
    """The model family folders that ``path`` imports."""
    prefix = f"{PACKAGE}.model."
    return {name[len(prefix):].split(".")[0] for name in _imported_modules(path)
            if name.startswith(prefix)} & set(FAMILY_FOLDERS)


def test_model_families_found():
    assert {"depth_pro", "depth_anything"} <= set(FAMILY_FOLDERS)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE_DIR)))
def test_families_are_reached_only_through_the_model_package(path: Path):
    rel = path.relative_to(PACKAGE_DIR)
    if rel.parts[0] == "model" and len(rel.parts) > 2:
        own = rel.parts[1]  # a family folder, or common/, which may import no family
        bad = _family_imports(path) - {own}
        assert not bad, f"{rel} (in model/{own}) imports the family folders {sorted(bad)}"
    elif rel.parts[0] != "model":
        bad = _family_imports(path)
        assert not bad, (f"{rel} imports the model family folders {sorted(bad)}; use "
                         f"depth_pro_ros.model (its registry) instead")


def test_import_collector_sees_relative_and_nested_imports(tmp_path: Path):
    """Self-check of the AST walker on a synthetic file."""
    fake_pkg = tmp_path / PACKAGE / "io"
    fake_pkg.mkdir(parents=True)
    source = fake_pkg / "thing.py"
    source.write_text(
        "import os\n"
        "from . import colorize\n"
        "from ..model import infer\n"
        "def f():\n"
        "    import rclpy.node\n"
    )
    names = _imported_modules(source, root=tmp_path)
    assert {"os", "depth_pro_ros.io", "depth_pro_ros.model", "rclpy.node"} <= names
