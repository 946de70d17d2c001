"""launch/depth.launch.py: its arguments, checked on the source everywhere and loaded
with the real ``launch`` package where a ROS installation provides it."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

LAUNCH_FILE = Path(__file__).resolve().parents[2] / "launch" / "depth.launch.py"
EXPECTED = {"namespace", "image_topic", "camera_info_topic", "checkpoint", "device",
            "precision", "params_file", "use_compressed"}


def _declared_in_source() -> dict[str, str]:
    """name -> description of the ARGUMENTS table, read from the file's syntax tree."""
    tree = ast.parse(LAUNCH_FILE.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id == "ARGUMENTS":
            return {entry.elts[0].value: entry.elts[2].value for entry in node.value.elts}
    raise AssertionError("no ARGUMENTS table in the launch file")


def test_launch_arguments_are_declared_with_descriptions():
    declared = _declared_in_source()
    assert set(declared) == EXPECTED
    assert all(isinstance(d, str) and len(d) > 10 for d in declared.values()), declared


def test_launch_description_loads_with_ros_launch():
    # launch.actions, not launch: the repository's own launch/ folder imports as "launch".
    pytest.importorskip("launch.actions", reason="the ROS 2 'launch' package is not on PyPI")
    pytest.importorskip("launch_ros", reason="the ROS 2 'launch_ros' package is not on PyPI")
    from launch.actions import DeclareLaunchArgument
    from launch_ros.actions import Node

    spec = importlib.util.spec_from_file_location("depth_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    arguments = {e.name: e.description for e in description.entities
                 if isinstance(e, DeclareLaunchArgument)}
    assert arguments == _declared_in_source()
    nodes = [e for e in description.entities if isinstance(e, Node)]
    assert len(nodes) == 1 and nodes[0].node_executable == "depth_pro_node"
